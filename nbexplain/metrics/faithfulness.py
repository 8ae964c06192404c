"""Does the model still decide the same on what an attribution keeps?

Every function takes the model, the model-space input ``x`` ([C, H, W] or
[1, C, H, W]), an attribution or mask, and the target class.  A continuous
map is binarised at ``area`` where a binary mask is needed (callers comparing
with an nbexplain explanation pass its area).  Removed pixels become ``fill``:
a number or a tensor broadcastable to x, in model space; the default 0 is the
dataset's mean colour for a normalised model (``compare()`` passes the explanation's own
fill, a blur of x by default, so every method is scored as the explanation was).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..attribution import Attribution, as_attribution
from ..baselines.common import model_batch
from ..core.plumbing import borrowed, unwrap_model

BACKGROUNDS = ("zeros", "gaussian", "uniform")


def apply_mask(x: torch.Tensor, mask: torch.Tensor, fill=0.0) -> torch.Tensor:
    """``mask * x + (1 - mask) * fill`` for x [1, C, H, W] (or [C, H, W]) and a mask [H, W]."""
    m = mask.to(x.device, x.dtype)
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return m * x + (1 - m) * fill


@torch.no_grad()
def class_probabilities(model: nn.Module, batch: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Softmax outputs [N, K] for a batch of model inputs, in chunks, model left as it was."""
    net = unwrap_model(model)
    with borrowed(net):
        chunks = [net(batch[i : i + batch_size]).softmax(-1) for i in range(0, len(batch), batch_size)]
    return torch.cat(chunks).float().cpu()


def label_kept(model, x, mask, target=None, fill=0.0, area=None) -> bool:
    """Whether the masked input's top-1 class is ``target``."""
    a, target = _prepare(mask, target)
    probs = _masked_probs(model, x, a.as_mask(area), fill)
    return int(probs.argmax()) == target


def probability_kept(model, x, mask, target=None, fill=0.0, area=None) -> float:
    """The target's probability on the masked input divided by its probability on x.

    1 means the kept pixels alone convince the model as much as the whole
    image; above 1, more.
    """
    a, target = _prepare(mask, target)
    net = unwrap_model(model)
    batch = model_batch(x, net)
    probs = class_probabilities(net, torch.cat([batch, apply_mask(batch, a.as_mask(area), fill)]))
    return float(probs[1, target] / probs[0, target].clamp_min(1e-12))


def robustness(
    model, x, mask, target=None, draws: int = 12, backgrounds=BACKGROUNDS, seed: int = 0, area=None,
    batch_size: int = 32,
) -> float:
    """Share of ``draws`` random backgrounds outside the mask that keep the target as top-1.

    Draw ``i`` fills the removed pixels with ``backgrounds[i % len(backgrounds)]``:
    ``"zeros"`` (the mean colour), ``"gaussian"`` noise or ``"uniform"`` noise
    matched to x's per-channel statistics (the same kinds the explainer
    trains with; seeded with ``seed``, so the number is reproducible).
    """
    from ..core.fills import random_background

    a, target = _prepare(mask, target)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    unknown = [b for b in backgrounds if b not in BACKGROUNDS]
    if unknown or not backgrounds:
        raise ValueError(f"backgrounds must be a non-empty subset of {BACKGROUNDS}, got {backgrounds!r}")
    net = unwrap_model(model)
    batch = model_batch(x, net)
    m = a.as_mask(area)
    gen = torch.Generator(device=batch.device).manual_seed(seed)
    variants = [apply_mask(batch, m, random_background(backgrounds[i % len(backgrounds)], batch, gen)) for i in range(draws)]
    probs = class_probabilities(net, torch.cat(variants), batch_size)
    return float((probs.argmax(-1) == target).float().mean())


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve: the target's probability against the fraction of pixels changed."""

    fractions: tuple[float, ...]
    probs: tuple[float, ...]

    @property
    def auc(self) -> float:
        """Area under the curve (trapezoid rule over fractions in [0, 1])."""
        f, p = self.fractions, self.probs
        return float(sum((f[i + 1] - f[i]) * (p[i] + p[i + 1]) / 2 for i in range(len(f) - 1)))


def deletion_curve(model, x, attribution, target=None, steps: int = 20, fill=0.0, batch_size: int = 32) -> Curve:
    """Remove pixels in the attribution's order (most important first) in ``steps`` equal steps.

    Point ``i`` has the top ``i / steps`` of the pixels replaced by ``fill``.
    A faithful map makes the probability fall fast: lower AUC is better.
    Binary maps order their kept pixels by the fixed tie permutation
    (see ``nbexplain.attribution``).
    """
    return _curve(model, x, attribution, target, steps, fill, batch_size, insert=False)


def insertion_curve(model, x, attribution, target=None, steps: int = 20, fill=0.0, batch_size: int = 32) -> Curve:
    """Start from the all-``fill`` image and put pixels back, most important first.

    A faithful map makes the probability rise fast: higher AUC is better.
    """
    return _curve(model, x, attribution, target, steps, fill, batch_size, insert=True)


def _curve(model, x, attribution, target, steps, fill, batch_size, insert: bool) -> Curve:
    a, target = _prepare(attribution, target)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    net = unwrap_model(model)
    batch = model_batch(x, net)
    if a.shape != tuple(batch.shape[-2:]):
        raise ValueError(f"attribution is {a.shape} but the input is {tuple(batch.shape[-2:])}")
    n = a.map.numel()
    rank = torch.empty(n, dtype=torch.long)
    rank[a.ranking()] = torch.arange(n)  # position of each pixel in the order
    rank = rank.view(a.shape)
    fractions = [i / steps for i in range(steps + 1)]
    changed = torch.stack([rank < round(f * n) for f in fractions])  # [S, H, W]: pixels touched so far
    keep = changed if insert else ~changed
    variants = apply_mask(batch, keep.unsqueeze(1), fill)  # [S, C, H, W]
    probs = class_probabilities(net, variants, batch_size)[:, target]
    return Curve(tuple(fractions), tuple(float(p) for p in probs))


def _masked_probs(model, x, mask, fill) -> torch.Tensor:
    net = unwrap_model(model)
    batch = model_batch(x, net)
    return class_probabilities(net, apply_mask(batch, mask, fill))[0]


def _prepare(obj, target) -> tuple[Attribution, int]:
    a = as_attribution(obj, target)
    target = a.target if target is None else target
    if target is None:
        raise ValueError("give the target class (a bare mask does not carry one)")
    return a, int(target)


__all__ = [
    "apply_mask", "class_probabilities", "label_kept", "probability_kept", "robustness",
    "Curve", "deletion_curve", "insertion_curve", "BACKGROUNDS",
]
