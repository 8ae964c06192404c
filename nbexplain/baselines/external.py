"""Methods the user brings to ``compare()``, each turned into an ``nbexplain.attribution.Attribution``.

Accepted, besides the built-in names (``"nbexplain"`` and ``nbexplain.baselines.METHODS``):

- a callable ``fn(model, x, target, **options) -> map``: ``x`` is the model-space input
  ``[1, C, H, W]`` on the model's device, a leaf tensor that does not require gradients (call
  ``x.requires_grad_()`` for them: the model's weights are frozen meanwhile), ``target`` an int;
- a Captum attribution object: anything with ``.attribute(inputs, target=...)``, e.g.
  ``IntegratedGradients(model)``, ``Occlusion(model)`` or ``LayerGradCam(model, model.layer4)``;
  ``method_options`` go to ``attribute()`` (``n_steps=``, ``sliding_window_shapes=``...);
- a pytorch-grad-cam CAM object: anything called as ``cam(input_tensor=x, targets=[...])`` that
  returns a numpy array ``[B, H, W]`` (``GradCAM(model, target_layers=[...])``, ``ScoreCAM``...),
  recognised by its ``target_layers`` without importing ``pytorch_grad_cam``; ``method_options``
  go to the call (``aug_smooth=``, ``eigen_smooth=``);
- a precomputed map (tensor or numpy array), named in the dict form ``{name: map}``;
- an ``nbexplain.attribution.Attribution``.

How a map becomes one value per input pixel:

- axes of length 1 are dropped (``[H, W]``, ``[1, H, W]``, ``[1, 1, H, W]`` are one map);
- several channels (``[C, h, w]`` or ``[1, C, h, w]``: an input attribution of Captum, or a layer
  attribution) are summed over channels and then, by default, taken in absolute value: Captum's
  ``visualize_image_attr`` does the same with its default ``sign="absolute_value"``. The option
  ``sign=`` (in ``method_options``) picks ``"absolute_value"`` (default), ``"positive"`` (the
  positive part: evidence for the target only) or ``"all"`` (the signed sum, ranked as it is);
  a one-channel map (Grad-CAM, a CAM) is signed as it comes, unless ``sign=`` is given;
- a map at a lower (or other) resolution is resized to the input bilinearly
  (``align_corners=False``), as the built-in Grad-CAM does; its aspect ratio must be the input's.

Every call runs with gradients on (even under ``torch.no_grad()``) and borrows the model: its
train/eval flags are as before afterwards. The wall time of the call and of this conversion is the
attribution's ``seconds``; a precomputed map has none (``info["precomputed"]``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..attribution import Attribution
from ..core.plumbing import borrowed, unwrap_model
from .common import gradients_on

SIGNS = ("absolute_value", "positive", "all")
ACCEPTED = (
    "a built-in name ('nbexplain', {builtins}), a callable fn(model, x, target) -> map, a Captum attribution "
    "object (with .attribute(inputs, target=...)), a pytorch-grad-cam CAM object (cam(input_tensor=x, "
    "targets=[...]) -> [B, H, W]), an nbexplain Attribution, or (in the dict form {{name: map}}) a precomputed "
    "map as a tensor or numpy array"
)


class ClassTarget:
    """The class score pytorch-grad-cam differentiates: ``output[..., category]`` (what its
    ``ClassifierOutputTarget`` does, written here so nbexplain need not import the package)."""

    def __init__(self, category: int):
        self.category = int(category)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.dim() == 1:
            return model_output[self.category]
        return model_output[:, self.category]


def method_kind(method: Any) -> str | None:
    """What ``method`` is: ``"builtin"``, ``"attribution"``, ``"captum"``, ``"cam"``, ``"callable"``,
    ``"map"``, or None for something compare() cannot use."""
    if isinstance(method, str):
        return "builtin"
    if isinstance(method, Attribution):
        return "attribution"
    if isinstance(method, (torch.Tensor, np.ndarray)):
        return "map"
    if callable(getattr(method, "attribute", None)):
        return "captum"
    if callable(method) and not isinstance(method, nn.Module) and hasattr(method, "target_layers"):
        return "cam"
    if callable(method) and not isinstance(method, nn.Module):
        return "callable"
    return None


def default_name(method: Any) -> str:
    """A display name for a method given without one: the built-in's name, the function's name, or
    the class of a Captum or CAM object (``"IntegratedGradients"``, ``"GradCAM"``)."""
    kind = method_kind(method)
    if kind == "builtin":
        return method
    if kind == "attribution":
        return method.method
    if kind == "callable":
        name = getattr(method, "__name__", None)
        if name is None:  # a callable object
            return type(method).__name__
        return "function" if name == "<lambda>" else name
    return type(method).__name__


def resolve_methods(methods: Any, builtins: Mapping) -> dict[str, Any]:
    """``compare()``'s ``methods`` as ``{display name: method}``, in order.

    ``methods``: a built-in name, a sequence of names and method objects, or a mapping
    ``{name: method}`` (where precomputed maps go). Unknown things raise ``TypeError`` /
    ``ValueError`` listing what is accepted.
    """
    accepted = ACCEPTED.format(builtins=", ".join(repr(k) for k in sorted(builtins)))
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = []
        for name, method in methods.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"the names of a methods dict must be non-empty strings, got {name!r}")
            items.append((name, method))
    elif isinstance(methods, (torch.Tensor, np.ndarray)):
        raise TypeError("a precomputed map needs a name: pass methods={'name': map}")
    else:
        try:
            given = list(methods)
        except TypeError:
            raise TypeError(f"methods must be a name, a list or a dict {{name: method}}; got a "
                            f"{type(methods).__name__}. Accepted methods: {accepted}") from None
        items = []
        for method in given:
            if method_kind(method) == "map":
                raise TypeError("a precomputed map needs a name: pass it in the dict form methods={'name': map}")
            items.append((default_name(method) if method_kind(method) is not None else None, method))
    out: dict[str, Any] = {}
    for name, method in items:
        kind = method_kind(method)
        if kind is None:
            raise TypeError(f"compare() cannot use {method!r} (a {type(method).__name__}) as a method; accepted: "
                            f"{accepted}")
        if kind == "builtin":
            if method != "nbexplain" and method not in builtins:
                raise ValueError(f"unknown method(s) [{method!r}]; choose from {['nbexplain', *sorted(builtins)]}, "
                                 f"or pass {accepted}")
            if method == "nbexplain" and name != "nbexplain":
                raise ValueError(f"nbexplain's own method keeps its name: use {{'nbexplain': 'nbexplain'}}, not {name!r}")
        if name in out:
            if out[name] is method or isinstance(method, str):
                continue  # the same method twice runs once, as for repeated names
            name = _unique(name, out)
        out[name] = method
    if not out:
        raise ValueError(f"no methods given; choose from {['nbexplain', *sorted(builtins)]} or pass {accepted}")
    return out


def run_external(method: Any, model: nn.Module, x: torch.Tensor, target: int, name: str,
                 **options: Any) -> Attribution:
    """The ``Attribution`` of a user's ``method`` (see the module's docstring) for ``target``
    on the model-space batch ``x`` ``[1, C, H, W]``, upsampled to the input's size."""
    kind = method_kind(method)
    sign = options.pop("sign", None)
    if sign is not None and sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    size = tuple(x.shape[-2:])
    if kind == "attribution":
        if options:
            raise TypeError(f"{name!r} is a finished Attribution: method_options {sorted(options)} do not apply")
        return Attribution(map=to_input_map(method.map, size, sign, name), method=name, target=target,
                           seconds=method.seconds, binary=method.binary, info=dict(method.info))
    if kind == "map":
        if options:
            raise TypeError(f"{name!r} is a precomputed map: method_options {sorted(options)} do not apply")
        return Attribution(map=to_input_map(method, size, sign, name), method=name, target=target,
                           info={"precomputed": True})
    call = {"captum": _call_captum, "cam": _call_cam, "callable": _call_function}.get(kind)
    if call is None:
        raise TypeError(f"{name!r} is not a method compare() can run (a {type(method).__name__})")
    net = unwrap_model(model)
    start = time.perf_counter()
    with borrowed(net), gradients_on():
        # The model's weights are frozen while it is borrowed, so gradients start at the input. A CAM
        # object needs them there; a callable gets a plain leaf tensor and asks for them itself
        # (``x.requires_grad_()`` or ``x.clone().requires_grad_()`` both work), as in Captum.
        raw = call(method, model, x.detach().clone().requires_grad_(kind == "cam"), target, options)
    if isinstance(raw, Attribution):
        raw = raw.map
    result = to_input_map(raw, size, sign, name)
    seconds = time.perf_counter() - start
    return Attribution(map=result, method=name, target=target, seconds=seconds,
                       info={"kind": kind, "class": type(method).__name__, "sign": sign or _default_sign(raw)})


def to_input_map(raw: Any, size: tuple[int, int], sign: str | None = None, name: str = "map") -> torch.Tensor:
    """One value per input pixel ``[H, W]`` (float32, CPU) from a method's output (see the module's
    docstring for the channel reduction, ``sign`` and the bilinear resize)."""
    if isinstance(raw, (tuple, list)) and len(raw) == 1:
        raw = raw[0]  # Captum returns a tuple for a tuple of inputs
    if not isinstance(raw, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name!r} returned a {type(raw).__name__}; a method must return a map: a tensor or "
                        "numpy array [H, W], [1, H, W] or [1, C, h, w]")
    t = torch.as_tensor(np.asarray(raw) if isinstance(raw, np.ndarray) else raw).detach().to("cpu", torch.float32)
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3:
        channels = t.shape[0]
        t = t.sum(0)
        if sign is None and channels > 1:
            sign = "absolute_value"
    if t.dim() != 2 or t.numel() == 0:
        raise ValueError(f"{name!r} gave a map of shape {tuple(np.shape(raw))}; expected one map for one image: "
                         "[H, W], [1, H, W], [1, 1, h, w] or [1, C, h, w] (summed over channels)")
    if sign == "absolute_value":
        t = t.abs()
    elif sign == "positive":
        t = t.clamp_min(0)
    h, w = t.shape
    big_h, big_w = size
    if (h, w) != (big_h, big_w):
        # One map pixel of rounding (a stride-32 map of 225 px is 8 rows), and no more, is allowed.
        if abs(h / w - big_h / big_w) / (big_h / big_w) > 1 / min(h, w) + 0.02:
            raise ValueError(f"{name!r} gave a {h}x{w} map for a {big_h}x{big_w} input: its aspect ratio is not the "
                             "input's (a transposed map, or one of another crop?)")
        t = F.interpolate(t[None, None], size=size, mode="bilinear", align_corners=False,
                          antialias=h > big_h or w > big_w)[0, 0]
    if not torch.isfinite(t).all():
        raise ValueError(f"the {name!r} map contains NaN or infinite values")
    return t.contiguous()


def _default_sign(raw) -> str:
    shape = tuple(np.shape(raw))
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return "absolute_value" if len(shape) == 3 and shape[0] > 1 else "all"


def _call_captum(method, model, x, target, options):
    return method.attribute(x, target=target, **options)


def _call_cam(method, model, x, target, options):
    out = method(input_tensor=x, targets=[ClassTarget(target)], **options)
    return out[0] if isinstance(out, np.ndarray) and out.ndim == 3 else out


def _call_function(method: Callable, model, x, target, options):
    return method(model, x, target, **options)


def _unique(name: str, taken: Mapping) -> str:
    k = 2
    while f"{name} {k}" in taken:
        k += 1
    return f"{name} {k}"


__all__ = ["ACCEPTED", "SIGNS", "ClassTarget", "default_name", "method_kind", "resolve_methods", "run_external",
           "to_input_map"]
