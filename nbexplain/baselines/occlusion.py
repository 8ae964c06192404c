"""Occlusion through Captum: slide a patch of the fill colour and watch the target's score drop."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..attribution import Attribution
from ..core.plumbing import borrowed, unwrap_model
from .common import model_batch, resolve_target


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """Default (window, stride) for an input of this size.

    The square window is about 1/15 of the shorter side and the stride about
    half the window: ``window = max(1, round(min(H, W) / 15))``,
    ``stride = max(1, ceil(window / 2))``.  224x224 -> window 15, stride 8
    (the usual reference setting); 128 -> 9 / 5; 32 -> 2 / 1.
    """
    window = max(1, round(min(height, width) / 15))
    return window, max(1, math.ceil(window / 2))


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    window: int | None = None,
    stride: int | None = None,
    baseline: float = 0.0,
    batch_size: int = 64,
) -> Attribution:
    """Occlusion map [H, W] of ``target`` for the model-space input ``x``.

    Each ``window`` x ``window`` patch (all channels) is replaced by
    ``baseline`` (0 in model space is the dataset's mean colour for a
    normalised model) and the drop in the target's logit is spread over the
    patch; Captum averages over the overlapping windows.  The map is the sum
    over channels: positive where hiding the pixels hurts the target.
    ``window``/``stride`` default to ``occlusion_window``; ``batch_size``
    occluded copies go through the model per forward.
    """
    from captum.attr import Occlusion

    net = unwrap_model(model)
    batch = model_batch(x, net)
    c, h, w = batch.shape[1:]
    window = occlusion_window(h, w)[0] if window is None else _positive(window, "window", min(h, w))
    # Half the window by default, as in occlusion_window.
    stride = _positive(max(1, math.ceil(window / 2)) if stride is None else stride, "stride", min(h, w))
    target = resolve_target(net, batch, target)
    start = time.perf_counter()
    with borrowed(net), torch.no_grad():
        attr = Occlusion(net).attribute(
            batch,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=float(baseline),
            target=target,
            perturbations_per_eval=max(1, int(batch_size)),
        )
    seconds = time.perf_counter() - start
    return Attribution(
        map=attr[0].sum(0), method="occlusion", target=target, seconds=seconds,
        info={"window": window, "stride": stride, "baseline": float(baseline)},
    )


def _positive(value, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"occlusion {name} must be an integer between 1 and {limit} (the input's shorter side), got {value!r}")
    return value
