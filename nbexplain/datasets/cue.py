"""The planted shortcut cue: a small black-and-white checker in the top-left corner.

It is deliberately tiny, fixed in place and unlike any class shape, so a model
that relies on it is relying on something no person would call the object.
"""

from __future__ import annotations

import torch


def cue_geometry(size: int) -> tuple[int, int]:
    """(offset, side) in pixels of the cue square for an image of side ``size``."""
    side = max(4, round(size / 16) // 2 * 2)  # even, so the checker has whole cells
    offset = max(1, round(size / 32))
    return offset, side


def cue_keepout(size: int) -> float:
    """Objects stay out of the square [0, keepout)^2, so they never touch the cue."""
    offset, side = cue_geometry(size)
    return float(offset + side + max(2, size // 40))


def cue_pattern(size: int) -> torch.Tensor:
    """The cue's pixels, float [3, side, side]: a checker of 2x2-pixel cells."""
    _, side = cue_geometry(size)
    idx = torch.arange(side) // 2
    checker = ((idx.view(-1, 1) + idx.view(1, -1)) % 2).to(torch.float32)
    return checker.expand(3, side, side).clone()


def paint_cue(images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Paint the cue in place on images [n, 3, S, S] where ``present`` [n] is True.

    Returns the cue masks, bool [n, S, S].
    """
    n, _, size, _ = images.shape
    offset, side = cue_geometry(size)
    window = (slice(offset, offset + side), slice(offset, offset + side))
    images[present, :, window[0], window[1]] = cue_pattern(size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[present, window[0], window[1]] = True
    return masks
