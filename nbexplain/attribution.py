"""One attribution type for every method, so every metric and display takes any method.

An ``Attribution`` is a map over the model's input pixels: a binary mask
(nbexplain's explanation) or a continuous score (Grad-CAM, occlusion, ...).
Continuous maps are compared with binary masks at equal area through
``Attribution.binarize``.

Pixels are ranked by value, highest first.  Equal values (a binary mask, the
flat zero region of a ReLU'd Grad-CAM) are ordered by a fixed pseudo-random
permutation of the pixels rather than in raster order: deterministic, yet
without favouring the top rows of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

TIE_SEED = 0  #: seed of the permutation that orders pixels of equal value


@dataclass(eq=False)
class Attribution:
    """A map over input pixels produced by one method for one target class.

    ``map`` is float32 [H, W] on the CPU (larger means more important for the
    target); ``binary`` says whether it is a 0/1 mask; ``seconds`` is the wall
    time the method took; ``info`` holds method details (layer, window, ...).
    """

    map: torch.Tensor
    method: str
    target: int | None
    seconds: float = 0.0
    binary: bool = False
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = torch.as_tensor(self.map).detach().to("cpu", torch.float32)
        while m.dim() > 2 and m.shape[0] == 1:
            m = m[0]
        if m.dim() != 2 or m.numel() == 0:
            raise ValueError(f"an attribution map must be [H, W] (or [1, H, W]), got shape {tuple(self.map.shape)}")
        if not torch.isfinite(m).all():
            raise ValueError(f"the {self.method!r} attribution map contains NaN or infinite values")
        if self.binary and not ((m == 0) | (m == 1)).all():
            raise ValueError("a binary attribution map must hold only 0 and 1")
        self.map = m.contiguous()
        self.target = None if self.target is None else as_class_index(self.target, "target")
        self.seconds = float(self.seconds)

    # -- basic facts -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.map.shape)

    @property
    def area(self) -> float | None:
        """Share of pixels kept for a binary map; None for a continuous one."""
        return float(self.map.mean()) if self.binary else None

    # -- ranking and binarisation -----------------------------------------
    def ranking(self) -> torch.Tensor:
        """Flat pixel indices, most important first (ties: fixed pseudo-random order)."""
        flat = self.map.reshape(-1)
        shuffle = _tie_permutation(flat.numel())
        # A stable sort of the shuffled values keeps the shuffled order among equal values.
        order = torch.argsort(flat[shuffle], descending=True, stable=True)
        return shuffle[order]

    def top_mask(self, k: int) -> torch.Tensor:
        """Bool [H, W] mask of the ``k`` top-ranked pixels."""
        n = self.map.numel()
        if not 0 <= k <= n:
            raise ValueError(f"k must be between 0 and {n}, got {k}")
        keep = torch.zeros(n, dtype=torch.bool)
        keep[self.ranking()[:k]] = True
        return keep.view(self.shape)

    def binarize(self, area: float) -> "Attribution":
        """A binary attribution keeping the top ``area`` fraction of pixels (rounded to whole pixels)."""
        area = _check_area(area)
        k = int(round(area * self.map.numel()))
        info = {**self.info, "binarized_at": area}
        return replace(self, map=self.top_mask(k).float(), binary=True, info=info)

    def as_mask(self, area: float | None = None) -> torch.Tensor:
        """Bool [H, W] mask: a binary map as it is; a continuous map binarised at ``area``."""
        if self.binary:
            return self.map.bool()
        if area is None:
            raise ValueError(
                f"the {self.method!r} map is continuous: give the area (fraction of pixels) to binarise it at"
            )
        return self.binarize(area).map.bool()

    def display_map(self) -> np.ndarray:
        """The positive part scaled to [0, 1] (HxW float numpy), for overlays."""
        m = self.map.clamp_min(0)
        top = float(m.max())
        return (m / top).numpy() if top > 0 else m.numpy()

    # -- construction ------------------------------------------------------
    @classmethod
    def from_explanation(cls, res, method: str = "nbexplain") -> "Attribution":
        """Wrap an nbexplain ``Explanation`` (its binary mask, target and time)."""
        info = {}
        for name in ("area", "prob_original", "prob_explanation", "steps"):
            if getattr(res, name, None) is not None:
                info[name] = getattr(res, name)
        return cls(map=res.mask, method=method, target=res.target, seconds=res.seconds, binary=True, info=info)

    def __repr__(self) -> str:
        kind = f"binary, area {self.area:.1%}" if self.binary else "continuous"
        h, w = self.shape
        return f"Attribution({self.method!r}, target={self.target}, {h}x{w}, {kind}, {self.seconds:.3g} s)"


def as_attribution(obj, target: int | None = None, method: str = "mask") -> Attribution:
    """An Attribution as given, or one made from a mask / map tensor or array.

    Bool tensors and tensors holding only 0 and 1 count as binary masks.
    """
    if isinstance(obj, Attribution):
        return obj
    t = torch.as_tensor(np.asarray(obj) if not isinstance(obj, torch.Tensor) else obj).detach().cpu()
    binary = t.dtype == torch.bool or bool(((t == 0) | (t == 1)).all())
    return Attribution(map=t.float(), method=method, target=target, binary=binary)


_PERMUTATIONS: dict[int, torch.Tensor] = {}


def _tie_permutation(n: int) -> torch.Tensor:
    if n not in _PERMUTATIONS:
        gen = torch.Generator().manual_seed(TIE_SEED)
        _PERMUTATIONS[n] = torch.randperm(n, generator=gen)
    return _PERMUTATIONS[n]


def _check_area(area) -> float:
    if isinstance(area, bool) or not isinstance(area, (int, float, np.floating, np.integer)):
        raise TypeError(f"area must be a number in [0, 1], got {area!r}")
    area = float(area)
    if not 0.0 <= area <= 1.0:
        raise ValueError(f"area must be a fraction in [0, 1], got {area}")
    return area


def as_class_index(value, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer class index, got {value!r}")
    return int(value)


__all__ = ["Attribution", "as_attribution"]
