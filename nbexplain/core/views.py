"""One view of every feature map: ``[B, C, h, w]``, whatever layout a layer returns.

Convolutional layers return channels-first maps. Transformers return tokens ``[B, N, D]``
(``N = k + gh * gw``: k prefix tokens such as the class, distillation or register tokens,
then one token per patch of a ``gh x gw`` grid), and Swin- or ConvNeXt-style blocks return
channels-last maps ``[B, h, w, C]``. A ``MapView`` turns a layer's output into the
channels-first map of its spatial positions, and keeps a token layer's prefix tokens apart,
as vectors ``[B, k, D]``: taps, relevance, activation matching, circuits and the widget then
all see one layout. Tuple outputs (``(hidden, attention)``) are read at their first tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LAYOUTS = ("channels_first", "channels_last", "tokens")
#: the most prefix tokens a token layer may have (class, distillation and a few registers)
MAX_PREFIX = 16


@dataclass(frozen=True)
class MapView:
    """How to read one layer's output as a channels-first map (see the module docstring)."""

    layout: str = "channels_first"
    grid: tuple[int, int] | None = None  #: the patch grid of a token layer
    prefix: int = 0  #: a token layer's prefix tokens (class, distillation, registers)

    def map(self, out: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` of a layer's output (a view: gradients flow through it)."""
        if self.layout == "channels_last":
            return out.permute(0, 3, 1, 2)
        if self.layout == "tokens":
            b, _, d = out.shape
            return out[:, self.prefix:].transpose(1, 2).reshape(b, d, *self.grid)
        return out

    def prefix_tokens(self, out: torch.Tensor) -> torch.Tensor | None:
        """A token layer's prefix tokens ``[B, k, D]``; None where there are none."""
        if self.layout != "tokens" or not self.prefix:
            return None
        return out[:, :self.prefix]


CHANNELS_FIRST = MapView()


def first_tensor(out):
    """A module's output, or the first tensor of a tuple / list / ModelOutput-like output."""
    if isinstance(out, (tuple, list)):
        return out[0] if out else None
    return out


def token_grid(n_tokens: int, grid: tuple[int, int] | None) -> int | None:
    """The number of prefix tokens if ``n_tokens`` tokens are prefix tokens plus the patch ``grid``."""
    if grid is None:
        return None
    k = n_tokens - grid[0] * grid[1]
    return k if 0 <= k <= MAX_PREFIX else None


def is_spatial(shape: tuple[int, ...], size: tuple[int, int], layout: str) -> bool:
    """Whether a 4-D output of ``shape`` is a ``layout`` map whose h x w > 1 follows the input ``size``
    (one pixel of rounding allowed)."""
    if len(shape) != 4:
        return False
    h, w = (shape[2], shape[3]) if layout == "channels_first" else (shape[1], shape[2])
    big, small = size
    return h * w > 1 and h <= big and w <= small and abs(h * small - w * big) <= max(size)


def view_of(shape: tuple[int, ...], size: tuple[int, int], grid: tuple[int, int] | None) -> MapView | None:
    """The view that reads an output of ``shape`` at input ``size`` as a map, or None (a pooled vector,
    a gate, logits). Channels-first wins where both 4-D layouts fit (a map with few channels)."""
    if is_spatial(shape, size, "channels_first"):
        return CHANNELS_FIRST
    if is_spatial(shape, size, "channels_last"):
        return MapView("channels_last")
    if len(shape) == 3:
        k = token_grid(shape[1], grid)
        if k is not None and grid[0] * grid[1] > 1:
            return MapView("tokens", grid, k)
    return None
