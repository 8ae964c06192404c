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


def photo_set(names=None, per_photo: int = 4, seed: int = 0) -> tuple[list, list[str]]:
    """Real photos and views of them (the photo, its mirror image, random crops of 60 to 90 % of
    its side, flipped or not), ``per_photo`` views each: a small offline stand-in for a
    validation folder. Returns the PIL images and the name of the photo each came from."""
    from PIL import ImageOps

    from .photos import PHOTOS, load_photo

    rng = torch.Generator().manual_seed(seed)
    images, sources = [], []
    for name in names if names is not None else sorted(PHOTOS):
        photo = load_photo(name)
        for k in range(per_photo):
            view = photo if k == 0 else ImageOps.mirror(photo) if k == 1 else _random_crop(photo, rng)
            images.append(view)
            sources.append(name)
    return images, sources


def _random_crop(photo, rng):
    from PIL import ImageOps

    w, h = photo.size
    share = 0.6 + 0.3 * float(torch.rand(1, generator=rng))
    cw, ch = int(w * share), int(h * share)
    left = int(float(torch.rand(1, generator=rng)) * (w - cw))
    top = int(float(torch.rand(1, generator=rng)) * (h - ch))
    crop = photo.crop((left, top, left + cw, top + ch))
    return ImageOps.mirror(crop) if float(torch.rand(1, generator=rng)) < 0.5 else crop
