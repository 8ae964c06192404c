"""What removed pixels become.

A fill must *hide* the class: if the model already gives the target to the fill alone, a mask
needs no pixel of the image to keep the decision, and its pixels are not what decided. So the
fill is chosen per image along a ladder (``fill_ladder``), the first rung that hides the class
wins, and ``Fill`` records what was used and what the model made of it alone.

A fill hides the target when the model's top class on the fill alone is another class *and*
the fill keeps at most ``FILL_LEAK`` of the target's probability on the image, or about its share
by chance (``CHANCE_SLACK`` / classes) where that is larger: a mask must then add at least three
quarters of the evidence itself, and a weak model's near-uniform answer on a blur (0.18 for one of
six classes) is not taken for evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

#: blur strengths (sigma as a share of the longest side), weakest first: a blur of a small, flat
#: object is still that object (a pale blob where a triangle was), so where it keeps the class the
#: image is blurred more; the strongest is nearly a smooth field of the image's colours
BLUR_SIGMAS = (1 / 24, 1 / 12, 1 / 6, 1 / 3)
#: a hiding fill keeps at most this share of p(target | x) (or the share by chance, if larger)
FILL_LEAK = 0.25
CHANCE_SLACK = 1.5


@dataclass(frozen=True)
class FillKind:
    """One rung of the ladder: a kind ("blur", "mean", "black") and, for a blur, its strength."""

    kind: str
    blur: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "blur":
            return f"blur (sigma {Fraction(self.blur).limit_denominator(100)} of the side)"
        return {"mean": "mean colour", "black": "black"}[self.kind]


def fill_ladder(kind: str) -> list[FillKind]:
    """The fills tried in turn for ``cfg.fill = kind``: its own rungs first, then the other kinds."""
    rungs = {"blur": [FillKind("blur", s) for s in BLUR_SIGMAS], "mean": [FillKind("mean")],
             "black": [FillKind("black")]}
    return rungs[kind] + [r for k in ("blur", "mean", "black") if k != kind for r in rungs[k]]


def check_kind(kind: str) -> FillKind:
    """The rung a check fill of this kind uses: a blur check is the strongest blur."""
    return FillKind("blur", BLUR_SIGMAS[-1]) if kind == "blur" else FillKind(kind)


@dataclass(frozen=True)
class Fill:
    """What the removed pixels of an explanation became, and what the model makes of it alone."""

    image: torch.Tensor  #: [C, H, W], model space
    kind: FillKind
    prob: float  #: p(target | the fill alone)
    predicted: int  #: the model's top class on the fill alone
    bound: float  #: the most p(target | fill) a hiding fill may keep
    hides: bool  #: the fill alone is not classified as the target, and ``prob <= bound``
    tried: tuple[str, ...] = ()  #: the rungs tried before this one was taken

    @property
    def name(self) -> str:
        return self.kind.name

    def describe(self, target_name: str) -> str:
        verdict = "hides the class" if self.hides else f"does NOT hide {target_name!r}"
        return f"fill {self.name}: alone p={self.prob:.3f} ({verdict})"


@dataclass(frozen=True)
class FillCheck:
    """The mask under another neutral fill (``ExplainConfig.check_fills``): does the label hold?"""

    name: str
    label_kept: bool  #: the target is the top class with this fill outside the mask
    prob: float  #: p(target) with this fill outside the mask
    prob_fill_alone: float  #: p(target | this fill alone)
    fill_hides: bool  #: the fill alone is not classified as the target (else holding it says little)


def make_fill(x: torch.Tensor, kind: str | FillKind, normalization, blur: float | None = None) -> torch.Tensor:
    """What removed pixels become, in model space, shaped like x [B, C, H, W]."""
    if isinstance(kind, FillKind):
        kind, blur = kind.kind, kind.blur
    if kind == "blur":
        return gaussian_blur(x, max(x.shape[-2:]) * (BLUR_SIGMAS[0] if blur is None else blur))
    if normalization is None:
        # Unknown preprocessing: use the image's own statistics.
        stat = x.mean(dim=(2, 3), keepdim=True) if kind == "mean" else x.amin(dim=(2, 3), keepdim=True)
        return stat.expand_as(x).clone()
    mean = torch.tensor(normalization.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    pixel = mean if kind == "mean" else torch.zeros_like(mean)
    return ((pixel - mean) / std).expand_as(x).clone()


#: blurs wider than this (sigma, pixels) run on the image shrunk by sigma / BLUR_DIRECT: a direct
#: kernel of a third of a 128 px side is 127 px wide and took 20 ms of a 90 ms one-pass explanation
BLUR_DIRECT = 2.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of x [B, C, H, W]; a wide one is blurred at a lower resolution and scaled back
    (a smooth field loses nothing to that), which costs the same whatever the sigma."""
    from torchvision.transforms.functional import gaussian_blur

    factor = max(1, int(sigma // BLUR_DIRECT))
    small = x if factor == 1 else F.interpolate(x, scale_factor=1 / factor, mode="area", recompute_scale_factor=False)
    s = sigma / factor
    k = min(int(2 * math.ceil(3 * s) + 1), 2 * (min(small.shape[-2:]) // 2) - 1)
    out = gaussian_blur(small, [k, k], [s, s]) if k >= 3 else small
    if factor == 1:
        return out
    return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


#: scales of the surroundings fill (sigma as a share of the longest side), finest first
SURROUNDING_SIGMAS = (1 / 112, 1 / 56, 1 / 28, 1 / 14)
#: a removed pixel takes a scale's estimate where that scale's kept weight reaches this share of its kernel
SURROUNDING_SUPPORT = 0.5


def surroundings(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] with the pixels of m [B, 1, H, W] (1 = removed, soft values allowed) replaced by
    what their kept surroundings predict, as a photo editor's healing brush would.

    Each removed pixel takes the Gaussian-weighted mean of the kept pixels around it at the finest
    scale of ``SURROUNDING_SIGMAS`` that has enough of them, and the image's mean of kept pixels where
    none has. Unlike a flat or blurred fill it paints no new edges, so removing a thin added pattern
    (text, a timestamp) gives back roughly the photo beneath it, while removing part of an object
    leaves that object's colours in place: only what the decision needs changes it. Differentiable in m."""
    keep = 1 - m
    side = max(x.shape[-2:])
    fill = torch.zeros_like(x)
    have = torch.zeros_like(m)
    for share in SURROUNDING_SIGMAS:
        sigma = max(0.5, share * side)
        weight = gaussian_blur(keep, sigma)
        estimate = gaussian_blur(x * keep, sigma) / weight.clamp_min(1e-6)
        trust = (weight / SURROUNDING_SUPPORT).clamp(max=1) * (1 - have)
        fill = fill + trust * estimate
        have = have + trust
    kept_mean = (x * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1e-6)
    fill = fill + (1 - have) * kept_mean
    return keep * x + m * fill


def hiding_bound(prob_x: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The most p(target | fill) a hiding fill may keep: ``FILL_LEAK`` of p(target | x), or about chance."""
    return (FILL_LEAK * prob_x).clamp_min(CHANCE_SLACK / n_classes)


@torch.no_grad()
def hiding_fill(x: torch.Tensor, kind: str, normalization, logits_of, target: torch.Tensor,
                prob_x: torch.Tensor) -> tuple[torch.Tensor, list[Fill]]:
    """Per image, the first fill of ``fill_ladder(kind)`` that hides the target, and its ``Fill``.

    ``logits_of(images)`` -> logits [B, classes]. Where no rung hides the class, the fill that
    leaves the target least likely is used and its ``Fill.hides`` is False."""
    b = x.shape[0]
    ladder = fill_ladder(kind)
    fill = torch.empty_like(x)
    prob = torch.full((b,), math.inf, device=x.device)
    predicted = torch.zeros(b, dtype=torch.long, device=x.device)
    chosen = [0] * b
    hidden = torch.zeros(b, dtype=torch.bool, device=x.device)
    bound = None
    for r, rung in enumerate(ladder):
        rows = (~hidden).nonzero()[:, 0]
        if not len(rows):
            break
        candidate = make_fill(x[rows], rung, normalization)
        logits = logits_of(candidate)
        if bound is None:
            bound = hiding_bound(prob_x, logits.shape[1])
        p = logits.softmax(1).gather(1, target[rows, None])[:, 0]
        hides = (logits.argmax(1) != target[rows]) & (p <= bound[rows])
        # Take a rung that hides, or one that leaves the target less likely than any before it.
        take = hides | (p < prob[rows])
        for j, i in enumerate(rows.tolist()):
            if take[j]:
                fill[i], prob[i], predicted[i], chosen[i] = candidate[j], p[j], logits[j].argmax(), r
        hidden[rows[hides]] = True
    return fill, [
        Fill(image=fill[i], kind=ladder[chosen[i]], prob=float(prob[i]), predicted=int(predicted[i]),
             bound=float(bound[i]), hides=bool(hidden[i]), tried=tuple(r.name for r in ladder[:chosen[i]]))
        for i in range(b)
    ]


def random_background(kind: str, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random replacement for the pixels outside the mask, matched to x's per-channel range."""
    if kind == "zeros":
        return torch.zeros_like(x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True) + 1e-3
    if kind == "gaussian":
        return mean + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return lo + (hi - lo) * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
