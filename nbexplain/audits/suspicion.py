"""Is a group's shared evidence a shortcut? Three measurements per group, and their verdict.

* ``transplant``: the kept pixels of each member, pasted into images the model gives another
  class, turn that image's prediction to the group's class this often. Evidence that causes the
  decision wherever it goes.
* ``transplant_control``: the same, with the member's pixels under its mask moved by half the
  image (a patch of the same size and shape from elsewhere in the member). A mask that keeps half
  of a photo transplants the photo's subject whatever its exact pixels; specific evidence does
  not survive the move.
* ``same_place``: the share of each member's kept pixels that lie where at least half of the
  other members keep pixels too, beyond what masks of that size would share by chance (the
  share of the frame that region covers). Objects move about the frame; a watermark, a corner tag
  or a border does not.
* ``off_object``: the share of kept pixels off the labelled object, where the data has object
  masks.

``suspicion = max(0, transplant - transplant_control) x max(same_place, off_object)``: evidence
that causes the class on its own, by itself rather than by its size, *and* is not the object, or
is pinned to the frame. An object the model rightly relies on
transplants too, but it is on the object and moves; so it scores low.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MAP_SIDE = 64  #: resolution of the shared evidence maps
SHARED_AT = 0.5  #: a pixel is shared evidence where at least this share of the members keep it


@dataclass
class Group:
    """Images of one class decided by the same evidence, with the test of that evidence."""

    index: int
    target: int
    target_name: str
    indices: np.ndarray  #: positions in the audited data
    shared_map: np.ndarray  #: [MAP_SIDE, MAP_SIDE], share of members keeping each pixel
    representative: int  #: the member whose evidence is nearest the group's
    channels: list[str]  #: circuit channels at least half the members share
    transplant: float  #: share of transplants that turn another image to the target (nan: not tested)
    same_place: float  #: nan for a group of one
    off_object: float  #: nan where the data has no object masks
    accuracy: float  #: share of members whose prediction is their label (nan: no labels)
    mean_area: float
    transplants: int = 0  #: how many transplants were scored
    transplant_control: float = float("nan")  #: the same with each mask moved by half the image
    suspicion: float = field(init=False)

    def __post_init__(self):
        known = [v for v in (self.same_place, self.off_object) if not np.isnan(v)]
        place = max(known) if known else 0.0
        control = 0.0 if np.isnan(self.transplant_control) else self.transplant_control
        cause = 0.0 if np.isnan(self.transplant) else max(0.0, self.transplant - control)
        self.suspicion = float(cause * place)

    @property
    def size(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        off = "" if np.isnan(self.off_object) else f", off object {self.off_object:.0%}"
        return (f"<Group {self.index}: {self.size} images of {self.target_name!r}, suspicion {self.suspicion:.2f} "
                f"(transplant {self.transplant:.0%}, same place {self.same_place:.0%}{off})>")


def pooled_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Bool masks of any sizes -> float [N, MAP_SIDE, MAP_SIDE] (share of each cell kept)."""
    out = np.empty((len(masks), MAP_SIDE, MAP_SIDE), dtype=np.float32)
    for i, m in enumerate(masks):
        t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
        out[i] = torch.nn.functional.adaptive_avg_pool2d(t, MAP_SIDE)[0, 0].numpy()
    return out


def same_place(pooled: np.ndarray) -> tuple[np.ndarray, float]:
    """The shared evidence map, and the share of each member's evidence that lies where at least
    half of the *other* members keep pixels, beyond chance (mean over members; nan for a group of
    one). Leaving the member out matters: in a group of two, every pixel either keeps is kept by
    half the group."""
    shared = pooled.mean(0)
    n = len(pooled)
    if n < 2:
        return shared, float("nan")
    total = pooled.sum(0)
    shares = []
    for p in pooled:
        kept = p.sum()
        if kept > 0:
            region = (total - p) / (n - 1) >= SHARED_AT
            chance = float(region.mean())  # the share a mask of any shape would have there at random
            share = float((p * region).sum() / kept)
            shares.append(max(0.0, (share - chance) / (1 - chance)) if chance < 1 else 0.0)
    return shared, float(np.mean(shares)) if shares else 0.0


def transplant_rate(worker, members, recipients, masks_of, target: int, rng, per_member: int = 4,
                    max_members: int = 16) -> tuple[float, float, int]:
    """Paste members' kept pixels into recipient images: the share whose prediction becomes
    ``target``, the same share with each mask moved by half the image (the control), and the
    number of pastes."""
    members = list(members)
    recipients = list(recipients)
    if not members or not recipients:
        return float("nan"), float("nan"), 0
    chosen = rng.choice(members, size=min(max_members, len(members)), replace=False)
    pastes, controls = [], []
    for m in chosen:
        x = worker.model_input(int(m))[0]
        mask = torch.from_numpy(masks_of(int(m))).to(x.dtype)
        if not mask.any():
            continue
        moved = torch.roll(mask, (mask.shape[0] // 2, mask.shape[1] // 2), (0, 1))
        for r in rng.choice(recipients, size=min(per_member, len(recipients)), replace=False):
            y = worker.model_input(int(r))[0]
            if y.shape != x.shape:
                continue  # images of another size: a transplant would need a resize that changes both
            pastes.append(mask * x + (1 - mask) * y)
            controls.append(moved * x + (1 - moved) * y)
    if not pastes:
        return float("nan"), float("nan"), 0
    preds = worker.predict(torch.stack(pastes + controls))
    hits = (preds == target).float()
    n = len(pastes)
    return float(hits[:n].mean()), float(hits[n:].mean()), n
