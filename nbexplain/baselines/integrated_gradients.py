"""Integrated Gradients through Captum, from the fill colour to the image."""

from __future__ import annotations

import time

import torch
from torch import nn

from ..attribution import Attribution
from ..core.plumbing import borrowed, unwrap_model
from .common import gradients_on, model_batch, resolve_target


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    steps: int = 32,
    baseline: float = 0.0,
    batch_size: int = 32,
) -> Attribution:
    """Integrated Gradients map [H, W] of ``target`` for the model-space input ``x``.

    The path runs from a constant ``baseline`` image (0 in model space: the
    mean colour) to ``x`` in ``steps`` Gauss-Legendre points; the map is the
    sum over channels of the attributions (signed: positive where the pixel's
    value raises the target's logit).
    """
    from captum.attr import IntegratedGradients

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    net = unwrap_model(model)
    batch = model_batch(x, net)
    target = resolve_target(net, batch, target)
    start = time.perf_counter()
    with borrowed(net), gradients_on():
        attr = IntegratedGradients(net).attribute(
            batch, baselines=float(baseline), target=target, n_steps=steps,
            internal_batch_size=max(1, int(batch_size)),
        )
    seconds = time.perf_counter() - start
    return Attribution(
        map=attr.detach()[0].sum(0), method="integrated_gradients", target=target, seconds=seconds,
        info={"steps": steps, "baseline": float(baseline)},
    )
