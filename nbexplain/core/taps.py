"""Activation taps and the layers they read.

Only forward hooks are used (module backward hooks break on in-place ReLU),
outputs are cloned so later in-place operations cannot change them, and every
handle is removed on exit (``plumbing.hooks``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..errors import LayerError
from .plumbing import hooks
from .views import CHANNELS_FIRST, MapView, first_tensor


@dataclass(frozen=True)
class LayerPlan:
    """The layers to tap at one input size, how to read each as a map, and the patch grid the mask
    follows (a transformer's; None for CNNs)."""

    layers: list[str]
    views: dict[str, MapView]
    patch_grid: tuple[int, int] | None = None


def default_layers(model: nn.Module, size: tuple[int, int] | None = None) -> list[str]:
    """Up to five layers spread over the depth, chosen from a probe forward (see
    ``nbexplain.core.layer_choice``) at the input ``size`` if given, or a clear error."""
    return plan_layers(model, None, size).layers


def plan_layers(model: nn.Module, layers: list[str] | None, size: tuple[int, int] | None = None) -> LayerPlan:
    """The ``LayerPlan`` for the given layer names (None: chosen automatically) at input ``size``."""
    from .layer_choice import ProbeFailed, probe_model, spread, stage_outputs, token_blocks

    try:
        probe = probe_model(model, size)
    except ProbeFailed as failed:
        if layers is not None:
            if size is not None:
                raise failed.error  # the model's own error on an input of this size
            return LayerPlan(list(layers), {})  # the explanation's own forward will say what is wrong
        h, w = failed.size
        raise LayerError(
            f"cannot choose layers automatically for {type(model).__name__}: its forward failed on a probe batch "
            f"[2, C, {h}, {w}] (and on every other probe size) with {failed}. Check that model(x) runs on a batch "
            "of two images of your input's size; or pass layers=['name', ...] with module names from "
            "model.named_modules()."
        ) from failed.error
    views = probe.views()
    if layers is None:
        blocks = token_blocks(probe)
        maps = [f for f in probe.maps if f.name != probe.patch_embedding and f.view.layout != "tokens"]
        if blocks:
            chosen = spread(blocks)
        elif maps:
            chosen = stage_outputs(maps)
            if len(chosen) < 3:  # few resolutions: add maps spread over the depth
                chosen = sorted(set(chosen) | set(spread(maps)), key=lambda f: f.order)
            chosen = spread(chosen)
        else:
            raise LayerError(
                f"cannot choose layers automatically for {type(model).__name__}: a probe forward found no feature "
                "map (no module that runs once and returns [batch, channels, height, width], [batch, height, width, "
                "channels] or patch tokens). Pass layers=['name', ...] with module names from model.named_modules()."
            )
        layers = [f.name for f in chosen]
    views = {name: views.get(name, CHANNELS_FIRST) for name in layers}
    follows_patches = any(v.layout != "channels_first" for v in views.values())
    return LayerPlan(list(layers), views, probe.patch_grid if follows_patches else None)


def resolve_layers(model: nn.Module, layers) -> list[str]:
    if layers is None:
        return default_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise LayerError(
            f"layers must be a module name or a list of names from model.named_modules(), got {layers!r}"
        ) from None
    if not layers:
        raise LayerError("layers must name at least one module")
    modules = dict(model.named_modules())
    for name in layers:
        if not isinstance(name, str):
            raise LayerError(f"layer names must be strings from model.named_modules(), got {name!r}")
        if name not in modules or name == "":
            close = [n for n in modules if n and (name in n or n in name)][:5]
            hint = f" Close names: {close}." if close else ""
            raise LayerError(f"model has no module named {name!r}.{hint} Use names from model.named_modules().")
    if len(set(layers)) != len(layers):
        raise LayerError(f"layers contains duplicates: {layers}")
    return layers


@contextlib.contextmanager
def tap_activations(model: nn.Module, layers: list[str], views: dict[str, MapView] | None = None) -> Iterator["Taps"]:
    """Record the output of each named module during forward passes, as the map its view reads
    (``views``, default channels-first: the output as it is).

    Yields a ``Taps``; call ``collect()`` after each forward.  A module
    called more than once per forward (a shared ReLU) is an error, since its
    output is ambiguous.
    """
    modules = dict(model.named_modules())
    views = views or {}
    store: dict[str, torch.Tensor] = {}
    prefix: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def make_hook(name):
        view = views.get(name, CHANNELS_FIRST)

        def hook(_module, _inputs, output):
            output = first_tensor(output)
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {name!r} does not return a tensor; choose another layer")
            calls[name] = calls.get(name, 0) + 1
            # A clone: later in-place ops (ReLU(inplace), +=) must not alter it.
            store[name] = view.map(output).clone()
            tokens = view.prefix_tokens(output)
            if tokens is not None:
                prefix[name] = tokens.clone()

        return hook

    def start_forward(_module, _inputs):
        # Each forward of the whole model starts afresh, so forwards made in between
        # (another explainer on the same model, say) leave nothing behind here.
        store.clear()
        prefix.clear()
        calls.clear()

    with hooks() as held:
        held.append(model.register_forward_pre_hook(start_forward))
        for name in layers:
            held.append(modules[name].register_forward_hook(make_hook(name)))
        store.clear()
        yield Taps(store, prefix, calls, layers)


class Taps:
    """The live view of tapped outputs, with a check that every layer fired exactly once.

    ``prefix`` holds, after each ``collect()``, the prefix tokens ``[B, k, D]`` of the token
    layers that have them (the class token of a ViT), from the same forward."""

    def __init__(self, store, prefix, calls, layers):
        self._store, self._prefix, self._calls, self._layers = store, prefix, calls, layers
        self.prefix: dict[str, torch.Tensor] = {}

    def reset(self):
        self._store.clear()
        self._prefix.clear()
        self._calls.clear()

    def collect(self) -> dict[str, torch.Tensor]:
        missing = [n for n in self._layers if n not in self._store]
        if missing:
            raise LayerError(f"layer(s) {missing} did not run during the forward pass; choose layers the model uses")
        shared = [n for n in self._layers if self._calls.get(n, 0) > 1]
        if shared:
            raise LayerError(
                f"layer(s) {shared} run more than once per forward (a shared module, e.g. the ReLU inside a "
                "torchvision BasicBlock); tap the enclosing block instead"
            )
        out = {n: self._store[n] for n in self._layers}
        self.prefix = dict(self._prefix)
        self.reset()
        return out
