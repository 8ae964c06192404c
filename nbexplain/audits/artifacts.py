"""Artifacts that tip decisions across classes: a pattern many images carry at one place.

A watermark, a timestamp, a border or a hospital tag does not decide one class: it tips images into
many, so the per-class groups of ``.analysis`` split it into crumbs, and one image's necessary
region is too small and too mixed with the image's own edges to say "artifact" alone (a fragile
decision flips when a little of anything is removed). Pooled over many images it does: an artifact
is found by *where* the necessary evidence of many images gathers and *what* lies there.

1. **Where.** The necessary regions (``res.necessary``) of every image, of any class, are pooled;
   the ``SEED_SHARE`` of the frame where they are densest, split into separate places, is where to
   look.
2. **What.** At each place, the images whose fine detail (the image minus a ``DETAIL_SIGMA`` blur)
   is like the mean detail there *carry* a pattern (cosine ``CARRIES_AT``; the mean and its
   carriers are refined together a few times). A pattern laid over different photos has the same
   sign everywhere it lies; the photos beneath cancel out in the mean. Carriers are chosen on half
   the place's pixels (a checkerboard of blocks), since images chosen for being alike are alike
   where they were chosen, even on noise.
3. **Its footprint.** The pixels where the carriers' detail agrees far beyond chance: their mean
   detail over its standard error reaches ``FOOTPRINT_T`` in some colour channel. A place whose
   carriers agree on no pixel they were not chosen by shares nothing; otherwise the carriers are
   then those alike on the footprint.
4. **Its test**, on the footprint:

   * ``removal``: removing it (filled in from its surroundings) changes this share of the carriers'
     decisions. The carriers it changes are the ones the artifact *decides*: they form the group
     (``indices``);
   * ``removal_moved``: removing the same footprint moved half an image away changes this share
     (a control of the same size and shape: a fragile decision flips when anything is removed);
   * ``paste``: pasting a carrier's pixels of the footprint into images that do not carry it changes
     their decision this often (any change: an artifact tips images into many classes);
   * ``paste_moved``: the same with the donor's pixels from half an image away (other content in
     the footprint's shape). Reported, not subtracted: an artifact's shape drawn in any pixels (the
     letters of a text) can tip decisions too, and is still the artifact.

``suspicion = max(0, removal - removal_moved) x paste``: a pattern the carriers need more than the
same amount of anything else, and that changes decisions where it is pasted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core.fills import gaussian_blur, surroundings
from ..core.pieces import label_pieces
from ..core.plumbing import class_name
from .suspicion import MAP_SIDE

#: share of the frame, where the necessary regions of all images are densest, searched for a pattern
SEED_SHARE = 0.03
#: cells along each side of the density map of necessary regions (4 px at 224)
SEED_GRID = 56
#: pixels: fine detail is the image minus a Gaussian blur of this sigma (an overlay's strokes, not the photo)
DETAIL_SIGMA = 2.0
#: a footprint pixel: the carriers' mean detail is this many standard errors from zero. On 144 photo
#: views the watermark's carriers reached 25 on its strokes; images without it stayed below 3.
FOOTPRINT_T = 8.0
#: an image carries a pattern when its fine detail there has at least this cosine with the carriers'
#: mean detail (on the footprint: watermarked photo views 0.77-0.98, the same views clean at most 0.16)
CARRIES_AT = 0.5
#: hot cells this many cells apart (or closer) belong to one place
SEED_JOIN = 2
#: refinements of a pattern's carriers (they settle in two or three)
REFINE_STEPS = 6
#: images described and tested at most (a random draw of the audit): memory, and time
MAX_IMAGES = 256


@dataclass
class Artifact:
    """A pattern images of any class carry at one place, and its test (see the module docstring)."""

    index: int
    indices: np.ndarray  #: ids of the carriers whose decision removing it changes (the group)
    carriers: np.ndarray  #: ids of every image that carries it
    classes: dict  #: class name -> how many of ``indices`` decide it
    footprint: np.ndarray  #: bool [H, W], the pixels where the carriers' pattern lies
    shared_map: np.ndarray  #: [MAP_SIDE, MAP_SIDE], share of each cell in the footprint
    area: float  #: share of the frame the footprint covers
    removal: float
    removal_moved: float
    paste: float
    paste_moved: float
    suspicion: float = field(init=False)

    def __post_init__(self):
        def gain(a, b):
            return 0.0 if np.isnan(a) else max(0.0, a - (0.0 if np.isnan(b) else b))

        self.suspicion = float(gain(self.removal, self.removal_moved) * (0.0 if np.isnan(self.paste) else self.paste))

    @property
    def size(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        top = ", ".join(f"{k} ({v})" for k, v in list(self.classes.items())[:3])
        if self.area == 0:
            return (f"<Artifact {self.index}: {len(self.carriers)} images grouped by what lies where necessary "
                    f"evidence gathers, but no pattern they share there, so nothing to test>")
        return (f"<Artifact {self.index}: a pattern on {self.area:.1%} of the frame carried by {len(self.carriers)} "
                f"images; removing it changes {self.size} decisions ({top}), suspicion {self.suspicion:.2f} "
                f"(removal {self.removal:.0%} vs {self.removal_moved:.0%} moved, "
                f"paste {self.paste:.0%} vs {self.paste_moved:.0%} moved)>")


def find_artifacts(table: pd.DataFrame, necessary_of, worker, labels=None, *, max_groups: int = 8,
                   min_size: int = 3, seed: int = 0, max_images: int = MAX_IMAGES) -> list[Artifact]:
    """Patterns that images of any class carry at one place, most suspicious first.

    ``necessary_of(id)`` gives an image's bool necessary region; ``worker`` (an ``AuditWorker``)
    gives model inputs and predictions for the tests; ``max_images`` bounds the images described
    and tested (a random draw)."""
    found = table[table["necessary_found"].fillna(False).astype(bool)] if "necessary_found" in table else table.iloc[:0]
    if len(found) < min_size:
        return []
    rng = np.random.default_rng(seed)
    ids, x = _common_size_inputs(table, worker, rng, max_images)
    if len(ids) < 2 * min_size:
        return []
    detail = x - gaussian_blur(x, DETAIL_SIGMA)
    before = worker.predict(x)
    targets = table["target"].to_dict() if "target" in table else {}
    out, seen = [], []
    half = _blocks(x.shape[-2:])
    for window in _dense_places(found.index.to_numpy(), necessary_of, x.shape[-2:])[:max_groups]:
        # Carriers chosen on half the place's pixels are alike there by choice, even on noise: the
        # pattern must show on the pixels they were not chosen by.
        sel = _carriers(detail, window & half, min_size)
        if sel is None:
            continue
        footprint = _footprint(detail[torch.from_numpy(sel)])
        if (footprint & ~(window & half)).any():
            sel = _carriers(detail, footprint, min_size, start=sel)
        else:
            footprint = torch.zeros_like(footprint)
        if sel is None or any((sel & s).sum() >= 0.8 * max(sel.sum(), s.sum()) for s in seen):
            continue
        seen.append(sel)
        tests, changed = _test(worker, x, before, torch.from_numpy(sel), footprint, rng, max_images)
        decided = ids[sel][changed]
        names = Counter(class_name(labels, int(targets.get(int(i), int(before[k]))))
                        for k, i in zip(np.nonzero(sel)[0][changed], decided))
        fp = footprint.numpy()
        out.append(Artifact(index=0, indices=decided, carriers=ids[sel].copy(), classes=dict(names.most_common()),
                            footprint=fp, shared_map=_pooled(footprint), area=float(fp.mean()), **tests))
    out.sort(key=lambda a: (-a.suspicion, -a.size))
    for k, a in enumerate(out):
        a.index = k
    return out


def _common_size_inputs(table, worker, rng, max_images):
    """Ids and model inputs [N, C, H, W] of the audited images (without errors) of the most common
    size, a random draw of ``max_images`` at most."""
    ids = table.index[table["error"].isna()].to_numpy() if "error" in table else table.index.to_numpy()
    if len(ids) > max_images:
        ids = np.sort(rng.choice(ids, max_images, replace=False))
    inputs = [worker.model_input(int(i)) for i in ids]
    sizes = Counter(tuple(t.shape[-2:]) for t in inputs)
    if not sizes:
        return ids, torch.zeros(0)
    size = sizes.most_common(1)[0][0]
    keep = [k for k, t in enumerate(inputs) if tuple(t.shape[-2:]) == size]
    return ids[keep], torch.cat([inputs[k] for k in keep]).float()


def _dense_places(ids, necessary_of, size) -> list[torch.Tensor]:
    """Where the necessary regions of ``ids`` gather: the ``SEED_SHARE`` of the frame where they are
    densest, as separate places (cells within ``SEED_JOIN`` of each other are one place), the most
    visited first; each a bool [H, W]."""
    density = torch.zeros(SEED_GRID, SEED_GRID)
    for i in ids:
        m = torch.from_numpy(np.ascontiguousarray(necessary_of(int(i)), dtype=np.float32))[None, None]
        density += F.adaptive_avg_pool2d(m, SEED_GRID)[0, 0]
    k = max(1, round(SEED_SHARE * density.numel()))
    hot = torch.zeros(SEED_GRID * SEED_GRID)
    hot[density.flatten().topk(k).indices] = 1.0
    hot = hot.view(1, 1, SEED_GRID, SEED_GRID)
    joined = F.max_pool2d(hot, 2 * SEED_JOIN + 1, 1, SEED_JOIN)[0]
    labels = label_pieces(joined, (SEED_GRID, SEED_GRID))[0]
    places = []
    for piece in labels.unique().tolist():
        if piece == 0:
            continue
        cells = (labels == piece).float() * hot[0, 0]
        places.append((float((cells * density).sum()), cells))
    places.sort(key=lambda p: -p[0])
    return [F.interpolate(c[None, None], size=tuple(size), mode="nearest")[0, 0].bool() for _, c in places]


def _footprint(detail: torch.Tensor) -> torch.Tensor:
    """bool [H, W]: where the carriers' fine detail [n, C, H, W] agrees (``FOOTPRINT_T``)."""
    n = detail.shape[0]
    t = detail.mean(0) / (detail.std(0) / n ** 0.5).clamp_min(1e-6)
    return t.abs().amax(0) >= FOOTPRINT_T


def _carriers(detail, where, min_size, start=None) -> np.ndarray | None:
    """Which images carry one pattern at ``where`` (bool [H, W]): their fine detail there has a cosine
    of at least ``CARRIES_AT`` with the carriers' mean, found by refining that mean a few times from
    the mean of ``start`` (every image by default). A pattern laid over different photos has the same
    sign everywhere it lies, while the photos beneath cancel out in the mean. None when fewer than
    ``min_size`` images carry it."""
    on = detail[..., where].flatten(1)  # [N, C * pixels]
    sel = np.ones(len(on), bool) if start is None else start
    for _ in range(REFINE_STEPS):
        if sel.sum() < min_size:
            return None
        pattern = on[torch.from_numpy(sel)].mean(0)
        now = (F.cosine_similarity(on, pattern[None], dim=1) >= CARRIES_AT).numpy()
        if (now == sel).all():
            break
        sel = now
    return sel if sel.sum() >= min_size else None


def _blocks(size, side: int = 8) -> torch.Tensor:
    """bool [H, W]: half the pixels, in a checkerboard of ``side``-pixel blocks."""
    rows, cols = torch.arange(size[0]) // side, torch.arange(size[1]) // side
    return (rows[:, None] + cols[None, :]) % 2 == 0


def _pooled(footprint: torch.Tensor) -> np.ndarray:
    return F.adaptive_avg_pool2d(footprint.float()[None, None], MAP_SIDE)[0, 0].numpy()


def _test(worker, x, before, sel, footprint, rng, max_tests):
    """The removal and paste rates of the module docstring, and which carriers removal changes."""
    nan = float("nan")
    members = sel.nonzero()[:, 0]
    if not footprint.any():
        return dict(removal=nan, removal_moved=nan, paste=nan, paste_moved=nan), np.zeros(len(members), bool)
    h, w = footprint.shape
    region = footprint.float()[None, None]
    moved = torch.roll(region, (h // 2, w // 2), (2, 3))
    changed = _removed_predictions(worker, x[members], region) != before[members]
    removal_moved = _rate(_removed_predictions(worker, x[members], moved) != before[members])
    others = (~sel).nonzero()[:, 0]
    others = others[torch.from_numpy(rng.permutation(len(others))[:max_tests])]
    paste = paste_moved = nan
    if len(others):
        donors = x[members[torch.from_numpy(rng.integers(0, len(members), len(others)))]]
        shifted = torch.roll(donors, (h // 2, w // 2), (2, 3))
        paste = _rate(worker.predict(region * donors + (1 - region) * x[others]) != before[others])
        # The donor's pixels half an image away, pasted in the same place: other content, same spot.
        paste_moved = _rate(worker.predict(region * shifted + (1 - region) * x[others]) != before[others])
    tests = dict(removal=_rate(changed), removal_moved=removal_moved, paste=paste, paste_moved=paste_moved)
    return tests, changed.numpy()


def _removed_predictions(worker, images, region, chunk: int = 32) -> torch.Tensor:
    """Top-1 of ``images`` with ``region`` [1, 1, H, W] filled in from its surroundings."""
    return torch.cat([worker.predict(surroundings(part, region.expand(len(part), 1, *region.shape[-2:])))
                      for part in images.split(chunk)])


def _rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else float("nan")
