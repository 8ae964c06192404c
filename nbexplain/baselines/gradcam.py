"""Grad-CAM through Captum's ``LayerGradCam``, upsampled to the input."""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..attribution import Attribution
from ..core.plumbing import borrowed, hooks, logits_from, unwrap_model
from .common import gradients_on, model_batch, resolve_target


def default_gradcam_layer(model: nn.Module, size: tuple[int, int] | None = None) -> str:
    """The layer Grad-CAM reads by default: the model's deepest spatial feature map.

    Found by the same probe forward as the explainer's automatic layers
    (``nbexplain.core.layer_choice``): the module that finishes last among those that
    run once and return a feature map, e.g. ``layer4`` for torchvision ResNets,
    ``features`` for VGG and MobileNet, the head's BatchNorm for ``efficientnet_pytorch``.
    For a ViT it is the input of the last block (the block before it): the last block's
    patch tokens reach the head only through the class token, so their gradient is zero
    (pytorch-grad-cam's advice, ``blocks[-1].norm1``, reads the same stream normalised).
    """
    from ..core.layer_choice import probe_model, token_blocks

    model = unwrap_model(model)
    probe = probe_model(model, size)
    blocks = token_blocks(probe)
    if blocks:
        return blocks[-2].name if len(blocks) > 1 else blocks[-1].name
    maps = [f for f in probe.maps if f.view.layout != "tokens"]
    if not maps:
        raise ValueError(
            f"{type(model).__name__} has no Conv2d feature map that Grad-CAM could read; "
            "pass layer='name' with a module name from model.named_modules()"
        )
    return maps[-1].name


def gradcam(model: nn.Module, x: torch.Tensor, target=None, layer=None) -> Attribution:
    """Grad-CAM map [H, W] of ``target`` for the model-space input ``x``.

    ``layer`` is a module name (or the module itself); default
    ``default_gradcam_layer``.  The class-weighted sum of the layer's
    channels is ReLU'd (Captum's ``relu_attributions=True``) and upsampled
    bilinearly to the input size.  ``target=None`` explains the model's top-1.
    The model is left as it was (modes, ``requires_grad``, no hooks).
    """
    from captum.attr import LayerGradCam

    from ..core.taps import plan_layers

    net = unwrap_model(model)
    batch = model_batch(x, net)
    name, module = _resolve_layer(net, layer)
    target = resolve_target(net, batch, target)
    view = plan_layers(net, [name], tuple(batch.shape[-2:])).views.get(name)
    start = time.perf_counter()
    with borrowed(net), gradients_on():
        if view is not None and view.layout != "channels_first":
            # Captum averages a token layer over the wrong axes: read it as its [C, h, w] map first
            # (pytorch-grad-cam's reshape_transform, found from the model instead of written by hand).
            cam = _viewed_gradcam(net, module, view, batch, target)
        else:
            cam = LayerGradCam(net, module).attribute(batch, target=target, relu_attributions=True)
    if not isinstance(cam, torch.Tensor) or cam.dim() != 4:
        raise ValueError(f"Grad-CAM needs a layer with a [N, C, h, w] output; {name!r} is not one: pass another layer")
    if cam.shape[-2:] == (1, 1):
        warnings.warn(
            f"Grad-CAM layer {name!r} has a 1x1 map at this input size, so the map is flat; "
            "pass an earlier layer (layer=...) or a larger input",
            UserWarning,
            stacklevel=2,
        )
    layer_size = tuple(cam.shape[-2:])
    cam = F.interpolate(cam.detach(), size=batch.shape[-2:], mode="bilinear", align_corners=False)
    seconds = time.perf_counter() - start
    return Attribution(
        map=cam[0, 0].clamp_min(0), method="gradcam", target=target, seconds=seconds,
        info={"layer": name, "layer_size": layer_size},
    )


def _viewed_gradcam(net, module, view, batch, target) -> torch.Tensor:
    """Grad-CAM of a layer read through its view: channel weights are the mean gradient over positions."""
    from ..core.views import first_tensor

    seen = {}

    def hook(_m, _i, out):
        seen["a"] = first_tensor(out)
        seen["a"].retain_grad()

    with hooks() as held:
        held.append(module.register_forward_hook(hook))
        out = net(batch.clone().requires_grad_(True))  # frozen weights: the gradient must start at the input
        logits_from(out)[0, target].backward()
    a, g = view.map(seen["a"].detach()), view.map(seen["a"].grad)
    weights = g.mean(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1, keepdim=True).clamp_min(0)


def _resolve_layer(model: nn.Module, layer, size=None) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    if layer is None:
        layer = default_gradcam_layer(model, size)
    if isinstance(layer, nn.Module):
        for name, m in modules.items():
            if m is layer:
                return name, m
        raise ValueError("the layer module given is not part of the model")
    if not isinstance(layer, str) or layer not in modules or layer == "":
        raise ValueError(f"model has no module named {layer!r}; use a name from model.named_modules()")
    return layer, modules[layer]
