"""Choosing layers to tap automatically, from one probe forward of the model.

Module names and types say little about how a model computes: the same ReLU
object may run twice per block (torchvision's BasicBlock, ``efficientnet_pytorch``'s
``_swish``), activations may be plain functions (timm style), and a container's
output may be a gate or a pooled vector. So the choice watches a forward pass on a
probe input instead and keeps modules that

* run exactly once per forward (a shared module's output is ambiguous),
* return a feature map whose size follows the input's (not a pooled vector or a 1x1
  gate): channels-first ``[B, C, h, w]``, channels-last ``[B, h, w, C]`` (Swin,
  ConvNeXt-style blocks) or tokens ``[B, k + gh * gw, D]`` over the patch grid of the
  model's patch embedding (see ``nbexplain.core.views``), and

then, for a CNN or Swin, takes at each spatial resolution the outermost module (fewest
dots in its name) that finishes last there: the end of the last block or stage at that
resolution. (The last module of all at a resolution is often the first layer of the
next stage's downsampling block, which is why the outermost ones are preferred.) For a
ViT, whose blocks all share one resolution, it takes the blocks' outputs (the residual
stream; ``token_blocks``). Up to five are kept, spread over the depth, the deepest always
included; the patch embedding (a per-patch projection of the pixels) never is.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .plumbing import borrowed, hooks, input_channels, model_device
from .views import CHANNELS_FIRST, MapView, first_tensor, is_spatial, token_grid, view_of

# Probe sizes, tried in order: non-square first, so channels-last maps [B, h, w, C] can be told
# from channels-first ones; square and small ones for models that only accept those (ViTs).
PROBE_SIZES = ((224, 192), (224, 224), (128, 112), (64, 56), (32, 32))
MAX_LAYERS = 5

PADDINGS = (nn.ZeroPad2d, nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
            nn.modules.padding._ReplicationPadNd, nn.CircularPad2d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish)


@dataclass(frozen=True)
class FeatureMap:
    """A module seen in the probe whose output is a feature map (read through ``view``)."""

    name: str
    order: int  # when it finished in the forward pass
    channels: int
    size: tuple[int, int]
    view: MapView = CHANNELS_FIRST
    kind: str = ""  #: the module's class name (blocks of one transformer share it)
    composite: bool = False  #: whether the module has submodules (a block does; a LayerNorm, Identity does not)
    ambiguous: bool = False  #: both layouts fit its shape (a square map with as many channels as pixels a side)


@dataclass(frozen=True)
class Probe:
    """What one probe forward saw: the feature maps (channels-first, channels-last and token
    layers) in finishing order, and the patch grid of the model's patch embedding, if it has one."""

    maps: tuple[FeatureMap, ...]
    size: tuple[int, int]
    patch_grid: tuple[int, int] | None = None
    patch_embedding: str | None = None

    @property
    def tokens(self) -> list[FeatureMap]:
        return [f for f in self.maps if f.view.layout == "tokens"]

    def views(self) -> dict[str, MapView]:
        return {f.name: f.view for f in self.maps}


def probe_feature_maps(model: nn.Module, size: tuple[int, int] | None = None) -> list[FeatureMap]:
    """The once-run modules returning channels-first or channels-last feature maps, in finishing order
    (token layers are in ``probe_model``)."""
    return [f for f in probe_model(model, size).maps if f.view.layout != "tokens"]


def probe_model(model: nn.Module, size: tuple[int, int] | None = None) -> Probe:
    """One probe forward of the model (see ``Probe``).

    Runs one forward on a random probe input of ``size`` (the input to be explained), else of
    the size the model declares or the first of ``PROBE_SIZES`` it accepts, in eval mode without gradients; the
    model's modes, parameters and buffers are as before afterwards and no hook stays.
    Raises ``ProbeFailed`` (with the model's own error of the first size tried) if the model
    runs on none of the sizes (on ``size``, if given).
    """
    lazy = any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())
    first_error = None
    # At a given size (the input's) only that size: another one says nothing about this input.
    sizes = [tuple(size)] if size is not None else [s for s in [declared_size(model)] if s is not None] \
        + list(PROBE_SIZES)
    for probe_size in sizes:
        # A forward fixes lazy layers' shapes: probe a copy, afresh for each size, never the user's model.
        try:
            probe = _probe(copy.deepcopy(model).eval() if lazy else model, probe_size, own_copy=lazy)
        except Exception as err:  # noqa: BLE001 - a size the model refuses; the next may do
            first_error = first_error or (probe_size, err)
            continue
        return _settle_layouts(model, probe, lazy)
    raise ProbeFailed(*first_error)


def _settle_layouts(model: nn.Module, probe: Probe, lazy: bool) -> Probe:
    """On a square input a map with as many channels as pixels a side ([B, 16, 16, 16]) fits both
    layouts; a probe at a non-square size tells them apart (where the model accepts one)."""
    if not any(f.ambiguous for f in probe.maps):
        return probe
    for size in (s for s in PROBE_SIZES if s[0] != s[1]):
        try:
            other = _probe(copy.deepcopy(model).eval() if lazy else model, size, own_copy=lazy)
        except Exception:  # noqa: BLE001 - the model takes square inputs only: keep channels-first
            continue
        layouts = {f.name: f.view for f in other.maps if not f.ambiguous}
        maps = tuple(replace(f, view=layouts[f.name], ambiguous=False) if f.ambiguous and f.name in layouts else f
                     for f in probe.maps)
        return replace(probe, maps=maps)
    return probe


def declared_size(model: nn.Module) -> tuple[int, int] | None:
    """The input size a model says it needs (ViTs with fixed position embeddings do): torchvision's
    ``image_size``, timm's ``patch_embed.img_size``, Hugging Face's ``config.image_size``."""
    for owner, attr in ((model, "image_size"), (getattr(model, "patch_embed", None), "img_size"),
                        (getattr(model, "config", None), "image_size")):
        value = getattr(owner, attr, None) if owner is not None else None
        if isinstance(value, int) and value > 0:
            return value, value
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return tuple(value)
    return None


class ProbeFailed(Exception):
    """The model ran on none of the probe sizes; ``size`` and ``error`` are those of the first one tried."""

    def __init__(self, size: tuple[int, int], error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.size, self.error = size, error


def _probe(model: nn.Module, size: tuple[int, int], own_copy: bool = False) -> Probe:
    """What one probe forward at ``size`` shows (the model's error if it refuses that size)."""
    names: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(module), []).append(name)
            modules[id(module)] = module
    calls: dict[int, int] = {}
    seen: dict[int, tuple[int, tuple[int, ...]]] = {}

    def hook(module, _inputs, output):
        output = first_tensor(output)
        key = id(module)
        calls[key] = calls.get(key, 0) + 1
        if isinstance(output, torch.Tensor):
            seen[key] = (len(seen), tuple(output.shape))

    with hooks() as held:
        held.extend(m.register_forward_hook(hook) for m in _unique_modules(model))
        with contextlib.nullcontext() if own_copy else borrowed(model), torch.no_grad():
            model(torch.rand(2, input_channels(model) or 3, *size, device=model_device(model)))
    usable = {}
    for key, (order, shape) in seen.items():
        module_names = names.get(key, [])
        if isinstance(modules[key], PADDINGS):
            continue  # a padded copy of its input, at a size no layer computes on
        if calls[key] != 1 or len(module_names) != 1:
            continue
        if any(part.lower().startswith("aux") for part in module_names[0].split(".")):
            continue  # auxiliary classifiers run only in training
        usable[key] = (module_names[0], order, shape)
    patch = _patch_embedding(modules, usable, size)
    grid = None if patch is None else usable[patch][2][2:]
    maps = []
    for key, (name, order, shape) in usable.items():
        view = view_of(shape, size, grid)
        if view is not None:
            channels = shape[-1] if view.layout != "channels_first" else shape[1]
            both = len(shape) == 4 and is_spatial(shape, size, "channels_first") and is_spatial(shape, size, "channels_last")
            maps.append(FeatureMap(name, order, channels, _spatial_size(shape, view), view, type(modules[key]).__name__,
                                   any(True for _ in modules[key].children()), both))
    return Probe(tuple(sorted(maps, key=lambda f: f.order)), tuple(size), grid,
                 None if patch is None else usable[patch][0])


def _spatial_size(shape, view: MapView) -> tuple[int, int]:
    if view.layout == "tokens":
        return view.grid
    return (shape[1], shape[2]) if view.layout == "channels_last" else (shape[2], shape[3])


def _patch_embedding(modules, usable, size):
    """The module whose channels-first map becomes a transformer's tokens (its patch embedding), or None
    for models without tokens.

    That is the last map to finish before the first token output ``[B, k + gh * gw, D]`` whose grid
    ``gh x gw`` accounts for the tokens with ``0 <= k <= MAX_PREFIX`` prefix tokens: a patchify
    convolution (kernel = stride, ViT, DeiT, Swin) or a convolutional stem (hybrid ViTs)."""
    seen = sorted(usable.items(), key=lambda kv: kv[1][1])
    maps = []
    for key, (_name, _order, shape) in seen:
        if len(shape) == 4 and is_spatial(shape, size, "channels_first"):
            maps.append((key, shape))
        elif len(shape) == 3 and maps:
            key_map, map_shape = maps[-1]
            if token_grid(shape[1], tuple(map_shape[2:])) is not None:
                return key_map
            # Swin: a channels-last map follows the patch convolution instead of tokens.
    for key, (_name, _order, shape) in seen:  # Swin-style: the first conv is a patchify one
        m = modules[key]
        if isinstance(m, nn.Conv2d) and len(shape) == 4:
            if m.kernel_size == m.stride and min(m.stride) > 1 and m.in_channels <= 4:
                return key
            return None  # the model starts with an ordinary convolution: a CNN
    return None


def _unique_modules(model: nn.Module):
    return [m for name, m in model.named_modules() if name]


def stage_outputs(maps: list[FeatureMap]) -> list[FeatureMap]:
    """At each spatial resolution, the outermost module that finished last (the stage's output),
    in depth order (token layers aside: all of a transformer's blocks share one resolution)."""
    best: dict[tuple[int, int], FeatureMap] = {}
    for fm in maps:
        if fm.view.layout == "tokens":
            continue  # in finishing order: a later one at the same nesting level wins
        old = best.get(fm.size)
        if old is None or fm.name.count(".") <= old.name.count("."):
            best[fm.size] = fm
    return sorted(best.values(), key=lambda f: f.order)


def spread(items: list, k: int = MAX_LAYERS) -> list:
    """Up to ``k`` items evenly spaced over the list, first and last included."""
    if len(items) <= k:
        return list(items)
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def token_blocks(probe: Probe) -> list[FeatureMap]:
    """A transformer's blocks: token layers of one class, with submodules of their own, that are children
    of one container (``blocks.0..11``, ``encoder.layers.encoder_layer_0..``, ``vit.encoder.layer.0..``)
    and return as many channels as the patch embedding (the residual stream), in depth order. The
    largest such group wins, the outermost on a tie. Found by what modules return and by
    repetition, not by class names."""
    if probe.patch_grid is None:
        return []
    width = next((f.channels for f in probe.maps if f.name == probe.patch_embedding), None)
    groups: dict[tuple[str, str], list[FeatureMap]] = {}
    for f in probe.tokens:
        if f.composite and (width is None or f.channels == width):
            parent = f.name.rsplit(".", 1)[0] if "." in f.name else ""
            groups.setdefault((parent, f.kind), []).append(f)
    if not groups:
        return []
    (parent, _), best = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[0][0].count(".")))
    return best if len(best) >= 2 else []
