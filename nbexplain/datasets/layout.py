"""Where the class-defining objects go: labels, centres, radii, rotations.

Placement is vectorised rejection sampling: every image draws a batch of
candidate layouts at once and keeps the first one whose objects lie inside the
image, clear of the cue corner and clear of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cue import cue_keepout

_CANDIDATES = 48
_MARGIN = 2.0  # pixels between an object and the image border
_GAP = 4.0  # pixels between two instances

# Radius ranges as fractions of the image side (single object, several objects).
_RADIUS_SINGLE = (0.12, 0.23)
_RADIUS_MULTI = (0.09, 0.15)
_FALLBACK_RADIUS = 0.09
_FALLBACK_SLOTS = [(0.72, 0.3), (0.3, 0.72), (0.72, 0.72)]


@dataclass
class Layout:
    """Per-image object parameters; every tensor is [n, k] for k instances."""

    labels: torch.Tensor  # int64 [n]
    cx: torch.Tensor
    cy: torch.Tensor
    radius: torch.Tensor
    angle: torch.Tensor


def _valid(cx, cy, r, size: int) -> torch.Tensor:
    """Which candidate layouts ([..., k] tensors) satisfy every placement rule."""
    inside = (cx - r >= _MARGIN) & (cx + r <= size - _MARGIN)
    inside &= (cy - r >= _MARGIN) & (cy + r <= size - _MARGIN)
    # Keep the whole object's circle off the cue's corner box.
    box = cue_keepout(size)
    near_x, near_y = cx.clamp(max=box), cy.clamp(max=box)
    clear_of_cue = (cx - near_x) ** 2 + (cy - near_y) ** 2 > r**2
    ok = (inside & clear_of_cue).all(-1)
    k = cx.shape[-1]
    for i in range(k):
        for j in range(i + 1, k):
            dist2 = (cx[..., i] - cx[..., j]) ** 2 + (cy[..., i] - cy[..., j]) ** 2
            ok &= dist2 >= (r[..., i] + r[..., j] + _GAP) ** 2
    return ok


def sample_layout(
    gen: torch.Generator, labels: torch.Tensor, instances: int, size: int
) -> Layout:
    """Place ``instances`` objects of each image's class; deterministic given ``gen``."""
    n, k = len(labels), instances
    lo, hi = _RADIUS_SINGLE if k == 1 else _RADIUS_MULTI
    shape = (n, _CANDIDATES, k)
    r = (lo + (hi - lo) * torch.rand(shape, generator=gen)) * size
    cx = r + _MARGIN + (size - 2 * (r + _MARGIN)) * torch.rand(shape, generator=gen)
    cy = r + _MARGIN + (size - 2 * (r + _MARGIN)) * torch.rand(shape, generator=gen)
    angle = torch.rand((n, k), generator=gen) * 2 * torch.pi

    ok = _valid(cx, cy, r, size)
    # First valid candidate per image (argmax returns the first maximum).
    pick = ok.to(torch.uint8).argmax(1)
    rows = torch.arange(n)
    cx, cy, r = cx[rows, pick], cy[rows, pick], r[rows, pick]
    failed = ~ok[rows, pick]
    if failed.any():
        # Practically never for k <= 3, but the layout must always exist.
        slots = torch.tensor(_FALLBACK_SLOTS[:k] if k > 1 else [(0.6, 0.6)])
        cx[failed] = slots[:, 0] * size
        cy[failed] = slots[:, 1] * size
        r[failed] = _FALLBACK_RADIUS * size
    return Layout(labels=labels, cx=cx, cy=cy, radius=r, angle=angle)
