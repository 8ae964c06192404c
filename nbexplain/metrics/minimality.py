"""How small and how simple is a mask?"""

from __future__ import annotations

import numpy as np

from ..attribution import as_attribution


def kept_fraction(mask, area=None) -> float:
    """Share of pixels kept by a mask (a continuous map is binarised at ``area`` first)."""
    return float(as_attribution(mask).as_mask(area).float().mean())


def connected_pieces(mask, connectivity: int = 4, area=None) -> int:
    """Number of connected pieces of kept pixels.

    ``connectivity`` 4 joins pixels sharing an edge, 8 also those sharing a
    corner.  Runs of kept pixels in each row are joined with the overlapping
    runs of the row above through a union-find.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    grid = as_attribution(mask).as_mask(area).numpy()
    reach = 1 if connectivity == 8 else 0  # how far past a run's ends a neighbour run may start
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[tuple[int, int, int]] = []  # (start, stop, run id) in the row above
    for row in grid:
        current = []
        for start, stop in _runs(row):
            run = len(parent)
            parent.append(run)
            for p_start, p_stop, p_run in previous:
                if p_start < stop + reach and start < p_stop + reach:
                    parent[find(p_run)] = find(run)
            current.append((start, stop, run))
        previous = current
    return len({find(i) for i in range(len(parent))})


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) column ranges of True values in a bool row."""
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


__all__ = ["kept_fraction", "connected_pieces"]
