"""A set to audit for the planted shortcut: clean scenes, cue scenes, and cue next to other classes."""

from __future__ import annotations

from dataclasses import fields

import torch

from .scenes import CUE_CLASS, Scenes, make_scenes


def concat_scenes(parts: list[Scenes]) -> Scenes:
    """One Scenes of several (same size, same instance count)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    merged = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Scenes) if f.name != "class_names"}
    return Scenes(**merged, class_names=list(parts[0].class_names))


def shortcut_mix(n: int = 120, seed: int = 0, size: int = 128, cue: bool = True) -> Scenes:
    """``n`` scenes in three equal parts, shuffled: clean scenes of every class; triangles (the cue
    class) with the cue; and scenes of the other classes with the cue beside their object.
    ``Scenes.cue`` says which carry it. ``cue=False``: the very same scenes without any cue (the
    counterfactual that tells which decisions the cue made)."""
    third = n // 3
    with_cue = "all" if cue else False
    clean = make_scenes(third, seed=seed, size=size)
    cued = make_scenes(third, seed=seed + 1, size=size, shortcut=with_cue, classes=[CUE_CLASS])
    others = [c for c in range(len(clean.class_names)) if c != CUE_CLASS]
    beside = make_scenes(n - 2 * third, seed=seed + 2, size=size, shortcut=with_cue, classes=others)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return concat_scenes([clean, cued, beside]).select(order)


def photo_grids(n: int = 16, seed: int = 0, side: int = 256, names=None) -> tuple[list, list[list[str]]]:
    """``n`` real-photo grids: 2 x 2 cells, each a different photo, at random places, ``side``
    pixels square (PIL images). Every photo sits in several grids and cells, so the evidence for
    one class moves about the frame as an object's does. Returns the grids and, for each, its
    photos' names in reading order (top left, top right, bottom left, bottom right)."""
    from PIL import Image, ImageOps

    from .photos import PHOTOS, load_photo

    names = sorted(PHOTOS) if names is None else list(names)
    if len(names) < 4:
        raise ValueError(f"a grid needs four different photos; got {len(names)}")
    cell = side // 2
    cells = {name: ImageOps.fit(load_photo(name), (cell, cell), Image.BILINEAR) for name in names}
    rng = torch.Generator().manual_seed(seed)
    grids, layout = [], []
    for _ in range(n):
        chosen = [names[int(i)] for i in torch.randperm(len(names), generator=rng)[:4]]
        grid = Image.new("RGB", (2 * cell, 2 * cell))
        for k, name in enumerate(chosen):
            grid.paste(cells[name], ((k % 2) * cell, (k // 2) * cell))
        grids.append(grid)
        layout.append(chosen)
    return grids, layout
