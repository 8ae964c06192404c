"""Artifacts that tip decisions across classes: group images by where their *necessary* evidence lies.

A watermark, a timestamp, a border or a hospital tag does not decide one class: it tips images into
many, so the per-class groups of ``.analysis`` split it into crumbs. Here every image whose
decision has a necessary region (``res.necessary``) is grouped with others by where that region lies
in the frame, whatever their class. Each group is then tested where it matters, on its shared region
(the cells where at least half of its members' regions lie):

* ``removal``: removing the shared region (filled in from its surroundings, as ``res.necessary`` is
  judged) changes the member's decision this often;
* ``removal_elsewhere``: removing it from the other audited images changes theirs this often. Removing
  an object's usual place (the centre of the frame) changes everyone's decision; removing an
  artifact changes the decisions of the images that carry it;
* ``paste``: pasting a member's pixels of the shared region into the other images changes their
  decision this often (any change: an artifact tips images into many classes);
* ``paste_moved``: the same with the pixels taken half an image away (a patch of the member of the
  same size that is not the shared evidence).

``suspicion = max(0, removal - removal_elsewhere) x max(0, paste - paste_moved)``: evidence the
members need and others do not, and that changes decisions wherever it goes, by what it shows
rather than by where it is pasted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..core.fills import surroundings
from ..core.plumbing import class_name
from .grouping import knn_graph, mask_features, merge_alike, spectral_groups
from .suspicion import SHARED_AT, pooled_masks


@dataclass
class Artifact:
    """Images of any classes whose necessary evidence lies in the same place, and its test."""

    index: int
    indices: np.ndarray  #: positions in the audited data
    classes: dict  #: class name -> members deciding it
    shared_map: np.ndarray  #: [MAP_SIDE, MAP_SIDE], share of members whose necessary region covers each cell
    area: float  #: share of the frame the shared region covers
    removal: float
    removal_elsewhere: float
    paste: float
    paste_moved: float
    suspicion: float = field(init=False)

    def __post_init__(self):
        def gain(a, b):
            return 0.0 if np.isnan(a) else max(0.0, a - (0.0 if np.isnan(b) else b))

        self.suspicion = float(gain(self.removal, self.removal_elsewhere) * gain(self.paste, self.paste_moved))

    @property
    def size(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        top = ", ".join(f"{k} ({v})" for k, v in list(self.classes.items())[:3])
        if self.area == 0:
            return (f"<Artifact {self.index}: {self.size} images of {len(self.classes)} classes ({top}): no place is "
                    f"in half of their necessary regions, so nothing shared to test>")
        return (f"<Artifact {self.index}: {self.size} images of {len(self.classes)} classes ({top}), suspicion "
                f"{self.suspicion:.2f} (removal {self.removal:.0%} vs {self.removal_elsewhere:.0%} elsewhere, "
                f"paste {self.paste:.0%} vs {self.paste_moved:.0%} moved)>")


def find_artifacts(table: pd.DataFrame, necessary_of, worker, labels=None, *, neighbours: int = 10,
                   max_groups: int = 8, min_size: int = 3, seed: int = 0, max_tests: int = 48) -> list[Artifact]:
    """Groups of images of any class by where their necessary regions lie, most suspicious first.

    ``necessary_of(id)`` gives an image's bool necessary region; ``worker`` (an ``AuditWorker``)
    gives model inputs and predictions for the tests; ``max_tests`` bounds the images each test uses."""
    rows = table[table["necessary_found"].fillna(False).astype(bool)] if "necessary_found" in table else table.iloc[:0]
    if len(rows) < min_size:
        return []
    ids = rows.index.to_numpy()
    pooled = pooled_masks([necessary_of(int(i)) for i in ids])
    feats = mask_features(pooled)
    groups = np.zeros(len(ids), dtype=np.int64)
    if len(ids) >= 2 * min_size:
        groups = merge_alike(feats, spectral_groups(knn_graph(feats, neighbours), max_groups, seed)[0])
    everyone = table.index[table["error"].isna()].to_numpy() if "error" in table else table.index.to_numpy()
    out = []
    for g in np.unique(groups):
        sel = groups == g
        if sel.sum() < min_size:
            continue
        members = ids[sel]
        shared = pooled[sel].mean(0)
        rng = np.random.default_rng([seed, int(g)])
        others = np.setdiff1d(everyone, members)
        tests = _test(worker, members, others, shared >= SHARED_AT, rng, max_tests)
        names = Counter(class_name(labels, int(t)) for t in rows.loc[members, "target"])
        out.append(Artifact(index=0, indices=members.copy(), classes=dict(names.most_common()), shared_map=shared,
                            area=float((shared >= SHARED_AT).mean()), **tests))
    out.sort(key=lambda a: (-a.suspicion, -a.size))
    for k, a in enumerate(out):
        a.index = k
    return out


def _test(worker, members, others, region_small: np.ndarray, rng, max_tests: int) -> dict:
    nan = float("nan")
    if not region_small.any():
        return dict(removal=nan, removal_elsewhere=nan, paste=nan, paste_moved=nan)
    members = rng.permutation(members)[:max_tests]
    others = rng.permutation(others)[:max_tests]
    x_members = torch.cat([worker.model_input(int(i)) for i in members])
    size = x_members.shape[-2:]
    region = torch.nn.functional.interpolate(torch.from_numpy(region_small.astype(np.float32))[None, None],
                                             size=size, mode="nearest")[0]
    before_m = worker.predict(x_members)
    removal = _rate(worker.predict(_removed(x_members, region)) != before_m)
    removal_elsewhere, paste, paste_moved = nan, nan, nan
    if len(others):
        x_others = torch.cat([worker.model_input(int(i)) for i in others])
        same = x_others.shape[-2:] == size
        if same:
            before_o = worker.predict(x_others)
            removal_elsewhere = _rate(worker.predict(_removed(x_others, region)) != before_o)
            donors = x_members[rng.integers(0, len(x_members), len(x_others))]
            shifted = torch.roll(donors, (size[0] // 2, size[1] // 2), (2, 3))
            paste = _rate(worker.predict(region * donors + (1 - region) * x_others) != before_o)
            # The donor's pixels half an image away, pasted in the same place: other content, same spot.
            paste_moved = _rate(worker.predict(region * shifted + (1 - region) * x_others) != before_o)
    return dict(removal=removal, removal_elsewhere=removal_elsewhere, paste=paste, paste_moved=paste_moved)


def _removed(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``images`` with ``region`` [1, H, W] filled in from its surroundings."""
    return surroundings(images, region[None].expand(len(images), 1, *region.shape[-2:]))


def _rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if hits.numel() else float("nan")
