"""Where a circuit's nodes live in the model, and how to read, ablate and differentiate them.

A CNN node is a channel of a tapped module's output (``OutputSite``). A transformer node is
an attention head or an MLP unit of a tapped block:

* **heads** are read at the input of the attention's output projection, the concatenated
  per-head outputs ``[B, N, heads * head_dim]``, where every library computes them: timm
  (``attn.proj``, fused or not: the flag is never touched) and Hugging Face
  (``attention.output.dense``) call that projection as a module, so a forward pre-hook sees
  its input. torchvision's ``nn.MultiheadAttention`` passes its weights to a functional call,
  so for it the heads are recomputed from the module's own weights and inputs, and the
  recomputation is checked against the module's output on every clean forward. torchvision's
  Swin (``ShiftedWindowAttention``, V1 and V2) does the same with its windowed attention: its
  heads are recomputed the same way, channels-last ``[B, H, W, heads * head_dim]``;
* **units** are the hidden activations at the input of the MLP's output Linear (``mlp.fc2``,
  torchvision ``mlp.3``, Hugging Face ``output.dense``), whatever activation code precedes it.

Every site exposes one variable tensor ``z`` and ``attach(fn)``: during a forward, ``fn(z)``
may return a replacement (an ablation, a gradient leaf) or None. Hooks are per module and
are removed by the caller; no library module is patched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import swin_transformer as tv_swin

from ..errors import CircuitUnsupportedError
from ..core.views import CHANNELS_FIRST, MapView

HEAD_COUNT_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
OUT_PROJ_NAMES = ("proj", "out_proj", "o_proj", "c_proj")


class Site:
    """A set of ``n`` nodes sharing one tensor ``z``: ``group`` entries of its channel axis a node."""

    name: str
    n: int
    group: int = 1
    channel_dim: int = 1
    kind: str = "channel"
    view: MapView = CHANNELS_FIRST

    def attach(self, model: nn.Module, fn):
        raise NotImplementedError

    def apply_keep(self, z: torch.Tensor, keep: torch.Tensor, fill: str) -> torch.Tensor:
        """``z`` with the nodes outside ``keep`` [V, n] set to ``filled(z, fill)``."""
        keep = keep.to(device=z.device, dtype=z.dtype).repeat_interleave(self.group, dim=1)
        dim = self.channel_dim % z.dim()
        shape = [1] * z.dim()
        shape[0], shape[dim] = keep.shape[0], keep.shape[1]
        keep = keep.view(shape)
        if fill == "zero":
            return z * keep
        return z * keep + self.filled(z, fill) * (1 - keep)

    def filled(self, z: torch.Tensor, fill: str) -> torch.Tensor:
        """What ``fill`` puts in place of every node of ``z``: zero, or each node's mean over positions."""
        if fill == "zero":
            return torch.zeros_like(z)
        dim = self.channel_dim % z.dim()
        return z.mean(dim=tuple(d for d in range(1, z.dim()) if d != dim), keepdim=True)

    def node_values(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, n, positions...]``: the tensor per node (a head's entries stay together)."""
        if self.channel_dim == 1:
            return z.unsqueeze(2)  # [B, C, 1, h, w]
        b = z.shape[0]
        return z.reshape(b, -1, self.n, self.group).permute(0, 2, 1, 3)  # [B, n, N, group]; N = H * W if [B, H, W, C]

    def node_maps(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, n, h, w]`` pictures of the nodes: a channel's map; a head's output norm or a unit's
        activation at each patch."""
        if self.channel_dim == 1:
            return z
        per_token = self.node_values(z)
        per_token = per_token.norm(dim=3) if self.group > 1 else per_token[..., 0]  # [B, n, N]
        tokens = per_token.transpose(1, 2)  # [B, N, n]
        if z.dim() == 4:  # channels-last [B, H, W, C] (Swin)
            tokens = tokens.reshape(*z.shape[:3], self.n)
        return self.view.map(tokens)  # -> [B, n, gh, gw]


class OutputSite(Site):
    """The channels of a module's output (a CNN layer)."""

    def __init__(self, name: str, n: int = 0):
        self.name, self.module_name, self.n = name, name, n

    def attach(self, model, fn):
        def hook(module, args, out):
            if not isinstance(out, torch.Tensor) or out.dim() < 3:
                raise TypeError(f"Layer {self.name!r} does not output a [batch, C, ...] feature map.")
            self.n = out.shape[1]
            return fn(out)
        return model.get_submodule(self.module_name).register_forward_hook(hook)


class LinearInputSite(Site):
    """Nodes at the input of a Linear layer (heads before an attention's output projection, units
    before an MLP's output layer), on tokens ``[B, N, C]``."""

    channel_dim = -1

    def __init__(self, name: str, linear_name: str, linear: nn.Linear, kind: str, group: int, view: MapView,
                 owner: str, scope: str):
        self.name, self.module_name, self.kind, self.group, self.view = name, linear_name, kind, group, view
        self.n = linear.in_features // group
        self.owner = owner  # the attention or MLP class, for messages
        self.scope = scope  # the module holding the weights that read the nodes' inputs from the stream

    def attach(self, model, fn):
        def hook(module, args):
            z = args[0]
            new = fn(z)
            return None if new is None else (new, *args[1:])
        return model.get_submodule(self.module_name).register_forward_pre_hook(hook)


class MultiheadAttentionSite(Site):
    """The heads of an ``nn.MultiheadAttention``, recomputed from its weights (torchvision calls
    ``F.multi_head_attention_forward`` with them, so no submodule sees the heads)."""

    channel_dim = -1
    kind = "head"

    def __init__(self, name: str, module_name: str, mha: nn.MultiheadAttention, view: MapView):
        self.name, self.module_name, self.view = name, module_name, view
        self.n = mha.num_heads
        self.group = mha.embed_dim // mha.num_heads
        self.owner = type(mha).__name__

    def attach(self, model, fn):
        mha = model.get_submodule(self.module_name)

        def hook(module, args, kwargs, out):
            q, k, v = _mha_inputs(self, args, kwargs)
            z = mha_heads(mha, q, k, v)
            projected = F.linear(z, mha.out_proj.weight, mha.out_proj.bias)
            given = out[0] if isinstance(out, tuple) else out
            if not mha.batch_first:
                projected = projected.transpose(0, 1)
            if not torch.allclose(projected, given, atol=1e-4, rtol=1e-3):
                raise unsupported(f"the heads of {self.module_name!r} ({self.owner}) could not be recomputed "
                                  "exactly from its weights")
            new = fn(z)
            if new is None:
                return None
            result = F.linear(new, mha.out_proj.weight, mha.out_proj.bias)
            if not mha.batch_first:
                result = result.transpose(0, 1)
            return (result, *out[1:]) if isinstance(out, tuple) else result
        return mha.register_forward_hook(hook, with_kwargs=True)


class WindowAttentionSite(Site):
    """The heads of torchvision's ``ShiftedWindowAttention`` (Swin, V1 and V2), recomputed from its
    weights: it passes them to ``shifted_window_attention``, so its ``proj`` never runs as a module.
    ``z`` is the concatenated heads channels-last ``[B, H, W, heads * head_dim]``, what ``proj``
    projects token by token; the recomputation is checked against the module's output on every forward."""

    channel_dim = -1
    kind = "head"

    def __init__(self, name: str, module_name: str, attention: nn.Module, view: MapView):
        self.name, self.module_name, self.view = name, module_name, view
        self.n = attention.num_heads
        self.group = attention.proj.in_features // attention.num_heads
        self.owner = type(attention).__name__

    def attach(self, model, fn):
        attention = model.get_submodule(self.module_name)

        def hook(module, args, out):
            z = window_heads(attention, args[0])
            if not torch.allclose(F.linear(z, attention.proj.weight, attention.proj.bias), out, atol=1e-4, rtol=1e-3):
                raise unsupported(f"the heads of {self.module_name!r} ({self.owner}) could not be recomputed "
                                  "exactly from its weights")
            new = fn(z)
            return None if new is None else F.linear(new, attention.proj.weight, attention.proj.bias)
        return attention.register_forward_hook(hook)


def is_window_attention(module: nn.Module) -> bool:
    """Whether ``module`` is torchvision's ``ShiftedWindowAttention`` (or its V2)."""
    return isinstance(module, tv_swin.ShiftedWindowAttention)


def window_heads(attention: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The concatenated head outputs ``[B, H, W, heads * head_dim]`` of a ``ShiftedWindowAttention``
    on ``x`` [B, H, W, C]: torchvision's own ``shifted_window_attention`` with the module's weights
    and an identity in place of ``proj``. Windows are reversed, the shift undone and the padding
    removed after ``proj``, which acts on each token alone, so ``proj`` of this is the module's output."""
    width = attention.proj.in_features
    eye = torch.eye(width, device=x.device, dtype=x.dtype)
    return tv_swin.shifted_window_attention(
        x, attention.qkv.weight, eye, attention.get_relative_position_bias(), attention.window_size,
        attention.num_heads, shift_size=attention.shift_size, attention_dropout=attention.attention_dropout,
        dropout=0.0, qkv_bias=attention.qkv.bias, proj_bias=None, logit_scale=getattr(attention, "logit_scale", None),
        training=attention.training)


def _mha_inputs(site, args, kwargs):
    names = ("query", "key", "value")
    values = [args[i] if i < len(args) else kwargs.get(n) for i, n in enumerate(names)]
    for extra in ("key_padding_mask", "attn_mask"):
        index = {"key_padding_mask": 3, "attn_mask": 5}[extra]
        if kwargs.get(extra) is not None or (len(args) > index and args[index] is not None):
            raise unsupported(f"{site.module_name!r} ({site.owner}) is called with a {extra}; heads are read "
                              "only from unmasked self-attention")
    return values


def mha_heads(mha: nn.MultiheadAttention, q, k, v) -> torch.Tensor:
    """The concatenated head outputs ``[B, N, embed_dim]`` of an ``nn.MultiheadAttention`` (batch
    first), the input its output projection receives."""
    if mha.bias_k is not None or mha.add_zero_attn or not mha._qkv_same_embed_dim:
        raise unsupported(f"{type(mha).__name__} with bias_k, add_zero_attn or separate key/value sizes")
    if not mha.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None, None, None)
    b, n, e = q.shape
    heads, dh = mha.num_heads, e // mha.num_heads

    def split(t, w, bias):
        return F.linear(t, w, bias).view(b, t.shape[1], heads, dh).transpose(1, 2)

    qh, kh, vh = split(q, w_q, b_q), split(k, w_k, b_k), split(v, w_v, b_v)
    attn = torch.softmax(qh @ kh.transpose(-2, -1) / math.sqrt(dh), dim=-1)
    return (attn @ vh).transpose(1, 2).reshape(b, n, e)


def never_ran(model: nn.Module, site: Site):
    """The error for a site whose hook never fired: its module's weights are used by a functional call."""
    return unsupported(f"the {site.kind}s of {type(model).__name__} cannot be read: {site.module_name!r} "
                       f"({site.owner}) never runs as a module (its weights go to a functional call)")


def unsupported(reason: str):
    # One line: the CNN walk's list of supported operations says nothing about attention code.
    return CircuitUnsupportedError(f"transformer circuit: {reason}; explanations themselves still work", advice=False)


def has_attention(model: nn.Module) -> bool:
    """Whether any module is an attention layer (``nn.MultiheadAttention`` or one with a head count)."""
    return any(isinstance(m, nn.MultiheadAttention)
               or any(isinstance(getattr(m, a, None), int) for a in HEAD_COUNT_ATTRS) for m in model.modules())


# -- finding the sites of a transformer block ------------------------------------------------------
def block_sites(model: nn.Module, block: str, view: MapView) -> list[Site]:
    """The heads and the MLP units of transformer block ``block`` (a module name), in that order."""
    module = model.get_submodule(block)
    width = _stream_width(module)
    attention = _attention_site(block, module, view)
    mlp = _mlp_site(block, module, view, width, attention)
    return [attention, mlp]


def _stream_width(block: nn.Module) -> int:
    """The residual stream's width: the normalised size of the block's first LayerNorm."""
    for m in block.modules():
        if isinstance(m, nn.LayerNorm):
            return int(m.normalized_shape[-1])
    raise unsupported(f"{type(block).__name__} has no LayerNorm: nbexplain reads pre-norm transformer blocks")


def _attention_site(block: str, module: nn.Module, view: MapView) -> Site:
    named = list(module.named_modules())
    for name, m in named:
        if isinstance(m, nn.MultiheadAttention):
            path = f"{block}.{name}" if name else block
            return MultiheadAttentionSite(f"{path}.heads", path, m, view)
        if is_window_attention(m):
            path = f"{block}.{name}" if name else block
            return WindowAttentionSite(f"{path}.heads", path, m, view)
    candidates = []
    for name, m in named:
        heads = next((getattr(m, a) for a in HEAD_COUNT_ATTRS if isinstance(getattr(m, a, None), int)), None)
        if heads is None or heads < 1:
            continue
        path = f"{block}.{name}" if name else block
        candidates.append(f"{type(m).__name__} ({path!r})")
        linear_name = _out_projection(module, name, m)
        if linear_name is None:
            continue
        linear = module.get_submodule(linear_name)
        if linear.in_features % heads:
            continue
        return LinearInputSite(f"{path}.heads", f"{block}.{linear_name}", linear, "head",
                               linear.in_features // heads, view, type(m).__name__, path)
    if candidates:
        raise unsupported(f"cannot find where the heads of {candidates[0]} are projected back to the stream "
                          "(a Linear named proj / out_proj / o_proj / c_proj, or output.dense)")
    kinds = sorted({type(m).__name__ for _, m in named if "attn" in type(m).__name__.lower()
                    or "attention" in type(m).__name__.lower()})
    found = f" (found {', '.join(kinds)})" if kinds else ""
    raise unsupported(f"cannot read the attention heads of block {block!r}{found}: nbexplain reads "
                      "nn.MultiheadAttention and attention modules with a num_heads attribute and a Linear "
                      "output projection")


def _out_projection(block: nn.Module, name: str, attention: nn.Module) -> str | None:
    """The Linear (a name inside the block) that receives the heads of ``attention`` (named ``name``)."""
    prefix = f"{name}." if name else ""
    for child, m in attention.named_children():
        if child in OUT_PROJ_NAMES and isinstance(m, nn.Linear):
            return prefix + child
    # Hugging Face: ViTSelfAttention computes the heads, its sibling ViTSelfOutput.dense projects them.
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    scope = block.get_submodule(parent) if parent else block
    for sub, m in scope.named_modules():
        full = f"{parent}.{sub}" if parent else sub
        if isinstance(m, nn.Linear) and sub.endswith("dense") and not full.startswith(prefix or "\0"):
            return full
    return None


def _mlp_site(block: str, module: nn.Module, view: MapView, width: int, attention: Site) -> Site:
    """Units at the input of the MLP's output Linear: the last Linear from a wider hidden layer back
    to the residual stream."""
    found = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == width and m.in_features != width \
                and f"{block}.{name}" != attention.module_name:
            found = (name, m)
    if found is None:
        raise unsupported(f"cannot find the MLP of block {block!r} ({type(module).__name__}): no Linear from a "
                          f"hidden layer back to the {width}-wide residual stream")
    name, linear = found
    parent = name.rsplit(".", 1)[0] if "." in name else name
    return LinearInputSite(f"{block}.{parent}.units" if "." in name else f"{block}.units", f"{block}.{name}",
                           linear, "unit", 1, view, type(module.get_submodule(parent)).__name__, block)
