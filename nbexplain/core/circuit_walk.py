"""Structural transfer matrices between tapped layers: the walk behind circuit edges.

The model is traced once with ``torch.fx`` (symbolically: no real forward pass, no
weights touched), which gives its true data-flow graph: every convolution, every
residual addition, every downsample shortcut, every block of every stage. A
*transfer matrix* ``T[v, u]`` from tap A (``C_A`` channels) to tap B is then
computed by pushing the identity ``[C_A, C_A]`` forward through that graph in the
**absolute linearised network**:

* ``ConvNd``: ``|W|`` summed over the kernel, a ``[C_out, C_in]`` matrix (grouped and
  depthwise convolutions become block-diagonal);
* ``BatchNorm`` (folded, the default): the per-channel gain
  ``|gamma| / sqrt(running_var + eps)``; its shift is dropped;
* ``Linear``: ``|W|``; after a flatten, each channel's row is repeated once per
  spatial position it was flattened into (channel-major order);
* residual / skip additions: the transfers of the added branches are summed
  (identity shortcut = ``I``, downsample shortcut = ``|conv| * |bn|``);
* channel concatenation: the transfers are stacked;
* ReLU and other element-wise activations, dropout, max/average pooling, flatten,
  reshape: channel-wise, passed through unchanged (ReLU gating is ignored).

So ``T[v, u]`` is the sum, over every path from channel ``u`` of tap A to channel
``v`` of tap B, of the product of the absolute kernel sums (and BatchNorm gains)
along the path. Equivalently: the interior value of channel ``v`` at tap B in the
absolute linearised network when channel ``u`` at tap A is the constant map 1 and
every other channel is 0. It says how strongly ``u`` *can* drive ``v`` per unit of
activation; it ignores ReLU gating, biases and sign cancellation, so it counts
paths that happen to be switched off or to cancel for a given image.

A ``signed`` variant (``W`` and ``gamma`` with their signs) exists for heads that
are linear end to end (pooling, flatten, Linear); any non-linearity on the way
makes it unavailable.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

SUPPORTED = (
    "The circuit readout walks models that torch.fx can trace symbolically and that are "
    "built from Conv1d/2d/3d (any kernel, stride, groups), BatchNorm, Linear, pooling, "
    "element-wise activations, dropout, flatten/reshape, residual additions and channel "
    "concatenation: torchvision ResNets of any depth (BasicBlock and Bottleneck), the "
    "nbexplain zoo models and VGG-like conv/ReLU stacks with a Linear classifier. Tap "
    "modules that run once per forward, at block or stage boundaries (for torchvision "
    "ResNets: 'relu', 'layer1', ..., 'layer4')."
)


# float32 keeps ResNet-50-sized products fast; the scores rank channels, they need no more precision.
_DTYPE = torch.float32


class CircuitUnsupportedError(RuntimeError):
    """The circuit readout cannot walk this model (or these taps); the message says why."""

    def __init__(self, reason: str):
        super().__init__(
            f"{reason}\n{SUPPORTED} Explanations themselves still work; only the circuit "
            "readout is unavailable. Choose other layers, or wrap the unsupported part so "
            "that it is not between two tapped layers."
        )


class _NotLinear(Exception):
    """Raised inside the signed walk when a non-linear operation is met."""


# Operations that act on each channel separately: the transfer passes through.
_CHANNELWISE_LINEAR_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten,
)
_CHANNELWISE_NONLINEAR_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_CHANNELWISE_LINEAR_FUNCTIONS = {
    torch.flatten, F.dropout, F.dropout2d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    torch.reshape, torch.squeeze, torch.unsqueeze,
}
_CHANNELWISE_NONLINEAR_FUNCTIONS = {
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu,
    F.mish, F.hardswish, F.hardsigmoid, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    F.softplus, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}
_CHANNELWISE_LINEAR_METHODS = {
    "flatten", "view", "reshape", "contiguous", "clone", "squeeze", "unsqueeze", "float",
    "to", "type_as",
}
_CHANNELWISE_NONLINEAR_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
_ADD = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_SUB = {operator.sub, operator.isub, torch.sub}
_SPATIAL_REDUCTIONS = {"mean", "sum", "amax"}


class _TapTracer(fx.Tracer):
    """Records, for every module call (leaf or container), its output node and call count."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, fx.Node] = {}
        self.calls: Counter = Counter()

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        name = self.path_of_module(m)
        self.calls[name] += 1
        if isinstance(out, fx.Proxy):
            self.outputs[name] = out.node
        return out


@dataclass
class ModelWalk:
    """A traced model with the graph node of each tapped layer's output."""

    model: nn.Module
    graph: fx.Graph
    layers: tuple[str, ...]
    tap_nodes: dict[str, fx.Node]
    order: dict[fx.Node, int]

    @property
    def output_node(self) -> fx.Node:
        return next(n for n in reversed(self.graph.nodes) if n.op == "output")


def trace_model(model: nn.Module, layers) -> ModelWalk:
    """Trace ``model`` with torch.fx and locate the tapped layers; never runs the model."""
    tracer = _TapTracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        raise CircuitUnsupportedError(
            f"torch.fx could not trace {type(model).__name__} ({type(err).__name__}: {err})."
        ) from err
    order = {node: i for i, node in enumerate(graph.nodes)}
    tap_nodes = {}
    for name in layers:
        calls = tracer.calls.get(name, 0)
        if calls == 0 or name not in tracer.outputs:
            raise CircuitUnsupportedError(f"Tapped layer {name!r} is not called in the traced forward pass.")
        if calls > 1:
            raise CircuitUnsupportedError(
                f"Tapped layer {name!r} runs {calls} times per forward pass, so its output is ambiguous."
            )
        tap_nodes[name] = tracer.outputs[name]
    positions = [order[tap_nodes[name]] for name in layers]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(
            f"layers must be in forward order; the model computes them in the order "
            f"{sorted(layers, key=lambda n: order[tap_nodes[n]])}, got {list(layers)}."
        )
    return ModelWalk(model, graph, tuple(layers), tap_nodes, order)


def transfer_matrix(walk: ModelWalk, src: str, dst: str, n_src: int, *, fold_bn: bool = True) -> torch.Tensor:
    """``[C_dst, C_src]`` non-negative transfer from tapped layer ``src`` to ``dst`` (see module doc)."""
    return _propagate(walk, walk.tap_nodes[src], walk.tap_nodes[dst], n_src, fold_bn, signed=False,
                      what=f"layer {dst!r}", src_name=src)


def head_transfer(walk: ModelWalk, last: str, n_src: int, *, fold_bn: bool = True,
                  signed: bool = False) -> torch.Tensor | None:
    """``[num_classes, C_last]`` transfer from the last tap to the logits.

    With ``signed=True`` returns the signed linear map when everything between the tap
    and the logits is linear (e.g. global average pool + flatten + Linear), else None.
    """
    out = walk.output_node.args[0]
    if not isinstance(out, fx.Node):
        raise CircuitUnsupportedError("The model's forward must return a single logits tensor.")
    try:
        return _propagate(walk, walk.tap_nodes[last], out, n_src, fold_bn, signed=signed,
                          what="the logits", src_name=last)
    except _NotLinear:
        return None


def _propagate(walk, start, end, n_src, fold_bn, signed, what, src_name):
    if walk.order[end] <= walk.order[start]:
        raise ValueError(f"{what} is computed before layer {src_name!r}.")
    param = next(walk.model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    values: dict[fx.Node, torch.Tensor | None] = {start: torch.eye(n_src, device=device, dtype=_DTYPE)}
    needed = _ancestors(end)  # side branches that do not reach `end` (e.g. auxiliary heads) are skipped
    for node in list(walk.graph.nodes)[walk.order[start] + 1: walk.order[end] + 1]:
        if node in needed:
            values[node] = _node_transfer(walk.model, node, values, fold_bn, signed)
    result = values[end]
    if result is None:
        raise CircuitUnsupportedError(f"{what} does not depend on layer {src_name!r} in the traced graph.")
    return result.cpu()


def _ancestors(node):
    seen, stack = {node}, [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _node_transfer(model, node, values, fold_bn, signed):
    """Transfer at ``node`` given those of its inputs; None where the node does not depend on the start."""
    deps = [values.get(n) for n in node.all_input_nodes]
    if all(d is None for d in deps):
        return None
    first = _first_tensor_arg(node, values)
    if node.op == "call_module":
        return _module_transfer(model.get_submodule(node.target), node, first, fold_bn, signed)
    if node.op == "call_function":
        return _function_transfer(node, values, first, signed)
    if node.op == "call_method":
        return _method_transfer(node, values, first, signed)
    raise CircuitUnsupportedError(f"Unexpected graph node {node.format_node()}.")


def _first_tensor_arg(node, values):
    for a in node.args:
        if isinstance(a, fx.Node) and values.get(a) is not None:
            return values[a]
    for a in node.kwargs.values():
        if isinstance(a, fx.Node) and values.get(a) is not None:
            return values[a]
    return None


def _module_transfer(module, node, t, fold_bn, signed):
    name = node.target
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:
            raise CircuitUnsupportedError(f"Transposed convolution {name!r} is not supported.")
        return _check_in(conv_channel_matrix(module, signed).to(t), t, module.in_channels, name) @ t
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not fold_bn:
            return t
        return bn_channel_gain(module, signed).to(t)[:, None] * _check_in(None, t, module.num_features, name)
    if isinstance(module, nn.Linear):
        return _linear(module.weight, t, name, signed)
    if isinstance(module, _CHANNELWISE_LINEAR_MODULES):
        return t
    if isinstance(module, _CHANNELWISE_NONLINEAR_MODULES):
        if signed:
            raise _NotLinear
        return t
    raise CircuitUnsupportedError(
        f"Module {name!r} ({type(module).__name__}) lies between tapped layers and is not one the walk knows."
    )


def _function_transfer(node, values, t, signed):
    fn = node.target
    if fn in _ADD or fn in _SUB:
        return _combine(node, values, subtract=(fn in _SUB) and signed)
    if fn in (operator.mul, torch.mul, operator.truediv, torch.div):
        return _scale(node, values, t, divide=fn in (operator.truediv, torch.div), signed=signed)
    if fn is torch.cat:
        return _concat(node, values)
    if fn in _CHANNELWISE_LINEAR_FUNCTIONS:
        return t
    if fn in _CHANNELWISE_NONLINEAR_FUNCTIONS:
        if signed:
            raise _NotLinear
        return t
    if fn in (torch.mean, torch.sum, torch.amax) and _reduces_spatial_only(node):
        if signed and fn is torch.amax:
            raise _NotLinear
        return t
    raise CircuitUnsupportedError(f"Operation {node.format_node()} lies between tapped layers and is not supported.")


def _method_transfer(node, values, t, signed):
    name = node.target
    if name in _ADD_METHODS:
        return _combine(node, values, subtract=False)
    if name in ("mul", "mul_", "div", "div_"):
        return _scale(node, values, t, divide=name.startswith("div"), signed=signed)
    if name in _CHANNELWISE_LINEAR_METHODS:
        return t
    if name in _CHANNELWISE_NONLINEAR_METHODS:
        if signed:
            raise _NotLinear
        return t
    if name in _SPATIAL_REDUCTIONS and _reduces_spatial_only(node):
        if signed and name == "amax":
            raise _NotLinear
        return t
    raise CircuitUnsupportedError(f"Method call {node.format_node()} lies between tapped layers and is not supported.")


def _reduces_spatial_only(node) -> bool:
    """True for reductions over the spatial dims of an [N, C, h, w] map (dim given, channel dim kept)."""
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if dim is None:
        return False
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return all(isinstance(d, int) and (d >= 2 or d in (-1, -2)) for d in dims)


def _combine(node, values, subtract):
    parts = [values.get(a) for a in node.args if isinstance(a, fx.Node)]
    parts = [p for p in parts if p is not None]
    if any(p.shape != parts[0].shape for p in parts):
        raise CircuitUnsupportedError(f"Addition {node.format_node()} of differently shaped transfers.")
    total = parts[0]
    for p in parts[1:]:
        total = total - p if subtract else total + p
    return total


def _scale(node, values, t, divide, signed):
    others = [a for a in node.args if not (isinstance(a, fx.Node) and values.get(a) is not None)]
    tensors = [a for a in node.args if isinstance(a, fx.Node) and values.get(a) is not None]
    if len(tensors) != 1 or len(others) != 1 or not isinstance(others[0], (int, float)):
        raise CircuitUnsupportedError(
            f"Multiplication {node.format_node()} is not by a constant number (gating is not supported)."
        )
    s = float(others[0])
    s = 1.0 / s if divide else s
    return t * (s if signed else abs(s))


def _concat(node, values):
    seq = node.args[0]
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    if dim != 1 or not all(isinstance(a, fx.Node) and values.get(a) is not None for a in seq):
        raise CircuitUnsupportedError(
            f"Concatenation {node.format_node()} must be along channels (dim=1) of maps that all depend on the "
            "previous tapped layer."
        )
    return torch.cat([values[a] for a in seq], dim=0)


def _check_in(matrix, t, expected, name):
    if t.shape[0] != expected:
        raise ValueError(
            f"Module {name!r} expects {expected} input channels but the walk brings {t.shape[0]}: the "
            "activations given for the tapped layers do not match this model."
        )
    return matrix if matrix is not None else t


def _linear(weight, t, name, signed):
    w = weight.detach().to(_DTYPE)
    w = w if signed else w.abs()
    n_in = w.shape[1]
    if t.shape[0] != n_in:
        if n_in % t.shape[0]:
            raise CircuitUnsupportedError(
                f"Linear {name!r} takes {n_in} features, which is not a multiple of the {t.shape[0]} channels "
                "reaching it: the tapped maps are probably channels-last [h, w, C] (Swin, ConvNeXt blocks), "
                "and the readout needs channels-first maps."
            )
        # Flattened [C, h, w] maps are channel-major: each channel fills n_in // C consecutive features,
        # so a constant map feeds each output the sum of its channel's block of weights.
        w = w.view(w.shape[0], t.shape[0], n_in // t.shape[0]).sum(dim=2)
    return w.to(t) @ t


def conv_channel_matrix(conv: nn.modules.conv._ConvNd, signed: bool = False) -> torch.Tensor:
    """``[C_out, C_in]``: ``|W|`` (or ``W``) summed over the kernel; groups become block-diagonal blocks."""
    w = conv.weight.detach().to(_DTYPE)
    w = w if signed else w.abs()
    per_group = w.sum(dim=tuple(range(2, w.dim())))  # [C_out, C_in / groups]
    g = conv.groups
    if g == 1:
        return per_group
    out_per, in_per = conv.out_channels // g, conv.in_channels // g
    full = per_group.new_zeros(conv.out_channels, conv.in_channels)
    for k in range(g):
        full[k * out_per:(k + 1) * out_per, k * in_per:(k + 1) * in_per] = per_group[k * out_per:(k + 1) * out_per]
    return full


def bn_channel_gain(bn: nn.modules.batchnorm._BatchNorm, signed: bool = False) -> torch.Tensor:
    """Per-channel gain of an eval-mode BatchNorm: ``gamma / sqrt(running_var + eps)`` (absolute unless signed).

    Without running statistics only ``gamma`` is used; without affine weights the gain is 1.
    """
    n = bn.num_features
    gamma = bn.weight.detach().to(_DTYPE) if bn.weight is not None else torch.ones(n, dtype=_DTYPE)
    if bn.running_var is not None:
        gamma = gamma / torch.sqrt(bn.running_var.detach().to(gamma.device, _DTYPE) + bn.eps)
    return gamma if signed else gamma.abs()


def evaluate_head(walk: ModelWalk, last: str, act: torch.Tensor) -> torch.Tensor | None:
    """Logits computed from the last tap's activation [1, C, h, w] by running the graph after it.

    Returns None when the graph after the tap needs anything else (e.g. the input image).
    The caller is responsible for eval mode and no_grad.
    """
    start = walk.tap_nodes[last]
    env = {start: act}
    model = walk.model
    for node in list(walk.graph.nodes)[walk.order[start] + 1:]:
        if node.op == "output":
            out = node.args[0]
            return env.get(out) if isinstance(out, fx.Node) else None
        if any(n not in env for n in node.all_input_nodes):
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_module":
            env[node] = model.get_submodule(node.target)(*args, **kwargs)
        elif node.op == "call_function":
            env[node] = node.target(*args, **kwargs)
        elif node.op == "call_method":
            env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
        elif node.op == "get_attr":
            env[node] = _get_attr(model, node.target)
    return None


def _get_attr(model, dotted):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
