"""Choosing layers to tap automatically, from one probe forward of the model.

Module names and types say little about how a model computes: the same ReLU
object may run twice per block (torchvision's BasicBlock, ``efficientnet_pytorch``'s
``_swish``), activations may be plain functions (timm style), and a container's
output may be a gate or a pooled vector. So the choice watches a forward pass on a
probe input instead and keeps modules that

* run exactly once per forward (a shared module's output is ambiguous),
* return a channels-first feature map ``[B, C, h, w]`` whose size follows the
  input's (not a pooled vector, a 1x1 gate or a channels-last map), and

then takes, at each spatial resolution, the outermost module (fewest dots in its
name) that finishes last there: the end of the last block or stage at that
resolution. (The last module of all at a resolution is often the first layer of the
next stage's downsampling block, which is why the outermost ones are preferred.) Up to five are kept,
spread over the depth, the deepest always included.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

# Probe sizes, tried in order: non-square first, so channels-last maps [B, h, w, C] can be told
# from channels-first ones; square and small ones for models that only accept those (ViTs).
PROBE_SIZES = ((224, 192), (224, 224), (128, 112), (64, 56), (32, 32))
MAX_LAYERS = 5

PADDINGS = (nn.ZeroPad2d, nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
            nn.modules.padding._ReplicationPadNd, nn.CircularPad2d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish)


@dataclass(frozen=True)
class FeatureMap:
    """A module seen in the probe whose output is a channels-first feature map."""

    name: str
    order: int  # when it finished in the forward pass
    channels: int
    size: tuple[int, int]


def probe_feature_maps(model: nn.Module, size: tuple[int, int] | None = None) -> list[FeatureMap]:
    """The once-run modules returning channels-first feature maps, in the order they finish.

    Runs one forward on a random probe input of ``size`` (the input to be explained), else of
    the first size of ``PROBE_SIZES`` the model accepts, in eval mode without gradients; the
    model's modes, parameters and buffers are as before afterwards and no hook stays.
    Raises ``ProbeFailed`` (with the model's own error of the first size tried) if the model
    runs on none of the sizes.
    """
    lazy = any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())
    first_error = None
    for probe_size in ([tuple(size)] if size is not None else []) + list(PROBE_SIZES):
        # A forward fixes lazy layers' shapes: probe a copy, afresh for each size, never the user's model.
        try:
            return _probe(copy.deepcopy(model).eval() if lazy else model, probe_size, own_copy=lazy)
        except Exception as err:  # noqa: BLE001 - a size the model refuses; the next may do
            first_error = first_error or (probe_size, err)
    raise ProbeFailed(*first_error)


class ProbeFailed(Exception):
    """The model ran on none of the probe sizes; ``size`` and ``error`` are those of the first one tried."""

    def __init__(self, size: tuple[int, int], error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.size, self.error = size, error


def _probe(model: nn.Module, size: tuple[int, int], own_copy: bool = False) -> list[FeatureMap]:
    """The feature maps of one probe forward at ``size`` (the model's error if it refuses that size)."""
    from .taps import borrowed, input_channels, model_device

    names: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(module), []).append(name)
            modules[id(module)] = module
    calls: dict[int, int] = {}
    seen: dict[int, tuple[int, tuple[int, ...]]] = {}

    def hook(module, _inputs, output):
        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        key = id(module)
        calls[key] = calls.get(key, 0) + 1
        if isinstance(output, torch.Tensor):
            seen[key] = (len(seen), tuple(output.shape))

    handles = [m.register_forward_hook(hook) for m in _unique_modules(model)]
    try:
        with contextlib.nullcontext() if own_copy else borrowed(model), torch.no_grad():
            model(torch.rand(2, input_channels(model) or 3, *size, device=model_device(model)))
    finally:
        for h in handles:
            h.remove()
    maps = []
    for key, (order, shape) in seen.items():
        module_names = names.get(key, [])
        if isinstance(modules[key], PADDINGS):
            continue  # a padded copy of its input, at a size no layer computes on
        if calls[key] != 1 or len(module_names) != 1 or not _is_feature_map(shape, size):
            continue
        if any(part.lower().startswith("aux") for part in module_names[0].split(".")):
            continue  # auxiliary classifiers run only in training
        maps.append(FeatureMap(module_names[0], order, shape[1], (shape[2], shape[3])))
    return sorted(maps, key=lambda f: f.order)


def _unique_modules(model: nn.Module):
    return [m for name, m in model.named_modules() if name]


def _is_feature_map(shape: tuple[int, ...], size: tuple[int, int]) -> bool:
    """[B, C, h, w] with h x w > 1 following the input's aspect (one pixel of rounding allowed)."""
    if len(shape) != 4:
        return False
    h, w = shape[2], shape[3]
    big, small = size
    return h * w > 1 and h <= big and w <= small and abs(h * small - w * big) <= max(size)


def stage_outputs(maps: list[FeatureMap]) -> list[FeatureMap]:
    """At each spatial resolution, the outermost module that finished last (the stage's output),
    in depth order."""
    best: dict[tuple[int, int], FeatureMap] = {}
    for fm in maps:  # in finishing order: a later one at the same nesting level wins
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


def token_candidates(model: nn.Module) -> list[str]:
    """For models with no spatial feature maps (vision transformers): activation modules
    after Linear layers (the MLPs over tokens), each registered under one name."""
    names_of: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        names_of[id(module)] = names_of.get(id(module), 0) + 1
    out, last_linear, seen_conv = [], False, False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            seen_conv, last_linear = True, False
        elif isinstance(module, nn.Linear):
            last_linear = True
        elif seen_conv and last_linear and isinstance(module, ACTIVATIONS) and names_of[id(module)] == 1:
            out.append(name)
    return out
