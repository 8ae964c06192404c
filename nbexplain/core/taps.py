"""Borrowing the user's model: activation taps, layer choice, state restore.

Only forward hooks are used (module backward hooks break on in-place ReLU),
outputs are cloned so later in-place operations cannot change them, and every
handle is removed in ``finally``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class LayerError(ValueError):
    """A tapped layer name that cannot be used; the message says what to do."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The eager module behind DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        else:
            return model


def is_resnet(model: nn.Module) -> bool:
    return all(hasattr(model, n) for n in ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "layer4", "fc"))


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish)


def default_layers(model: nn.Module) -> list[str]:
    """Stem ReLU and layer1..layer4 for ResNets; otherwise up to five evenly spaced
    candidates of ``layer_candidates``; or a clear error."""
    if is_resnet(model):
        return ["relu", "layer1", "layer2", "layer3", "layer4"]
    candidates = layer_candidates(model)
    if not candidates:
        raise LayerError(
            f"cannot choose layers automatically for {type(model).__name__}: it has no convolution "
            "followed by an activation module or a BatchNorm. Pass layers=['name', ...] with module names "
            "from model.named_modules()."
        )
    if len(candidates) <= 5:
        return candidates
    idx = [round(i * (len(candidates) - 1) / 4) for i in range(5)]
    return [candidates[i] for i in sorted(set(idx))]


def layer_candidates(model: nn.Module) -> list[str]:
    """Modules whose outputs are feature maps worth matching, in definition order.

    Only modules after the first convolution count. Activation modules in the
    convolutional trunk (the last weighted layer before them is a convolution); failing
    those, activations after Linear layers (vision transformers: a patch convolution,
    then MLPs over tokens); failing those, BatchNorm2d after a convolution
    (models that apply their activations as functions, like GoogLeNet and Inception).
    Skipped: modules registered under several names, activations after an adaptive
    pooling of their own parent (squeeze-and-excitation gates see 1x1 maps), and
    auxiliary classifier branches (``aux*``: they run only in training).
    """
    names_of: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        names_of[id(module)] = names_of.get(id(module), 0) + 1
    trunk, tokens, norms = [], [], []
    last_weighted, seen_conv, pooled_parents = None, False, set()
    for name, module in model.named_modules():
        parent = name.rpartition(".")[0]
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and parent:
            pooled_parents.add(parent)
        if isinstance(module, nn.Conv2d):
            last_weighted, seen_conv = "conv", True
        elif isinstance(module, nn.Linear):
            last_weighted = "linear"
        usable = (name and names_of[id(module)] == 1 and parent not in pooled_parents
                  and not any(part.lower().startswith("aux") for part in name.split(".")))
        if not usable or not seen_conv:
            continue
        if isinstance(module, ACTIVATIONS):
            (trunk if last_weighted == "conv" else tokens).append(name)
        elif isinstance(module, nn.BatchNorm2d) and last_weighted == "conv":
            norms.append(name)
    return trunk or tokens or norms


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
def tap_activations(model: nn.Module, layers: list[str]) -> Iterator["Taps"]:
    """Record the output of each named module during forward passes.

    Yields a ``Taps``; call ``collect()`` after each forward.  A module
    called more than once per forward (a shared ReLU) is an error, since its
    output is ambiguous.
    """
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    handles = []

    def make_hook(name):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {name!r} does not return a tensor; choose another layer")
            calls[name] = calls.get(name, 0) + 1
            store[name] = output.clone()  # later in-place ops (ReLU(inplace), +=) must not alter it

        return hook

    def start_forward(_module, _inputs):
        # Each forward of the whole model starts afresh, so forwards made in between
        # (another explainer on the same model, say) leave nothing behind here.
        store.clear()
        calls.clear()

    try:
        handles.append(model.register_forward_pre_hook(start_forward))
        for name in layers:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        store.clear()
        yield Taps(store, calls, layers)
    finally:
        for h in handles:
            h.remove()


class Taps:
    """The live view of tapped outputs, with a check that every layer fired exactly once."""

    def __init__(self, store, calls, layers):
        self._store, self._calls, self._layers = store, calls, layers

    def reset(self):
        self._store.clear()
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
        self.reset()
        return out


@contextlib.contextmanager
def borrowed(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode with frozen parameters, restoring both afterwards.

    Eval mode matters: BatchNorm must use its running statistics (a train-mode
    forward would update the user's buffers and mix the explanation with the
    robustness variants in one batch).
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def input_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None
