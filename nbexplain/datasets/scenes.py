"""``make_scenes``: labelled images with pixel-exact masks of their deciding objects."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from .background import add_fine_noise, make_background, paint
from .cue import paint_cue
from .layout import Layout, sample_layout
from .shapes import CLASS_NAMES, shape_masks

CUE_CLASS: int = CLASS_NAMES.index("triangle")
"""The class the planted cue co-occurs with in ``shortcut="train"`` scenes."""

SHORTCUT_MODES = ("absent", "train", "swap", "all")
_CHUNK = 64  # images per generator chunk: keeps tensors cache-sized, makes prefixes stable
_PLAIN_GREY = 0.5
_COLOUR_CANDIDATES = 6


@dataclass
class Scenes:
    """A batch of generated scenes. Index ``i`` of every field is the same image."""

    images: torch.Tensor  # float32 [N, 3, H, W] in [0, 1]
    labels: torch.Tensor  # int64 [N]
    masks: torch.Tensor  # bool [N, H, W], pixels of the class-defining object(s)
    cue_masks: torch.Tensor  # bool [N, H, W], pixels of the shortcut cue
    instance_ids: torch.Tensor  # uint8 [N, H, W], 0 = not an object, k = instance k
    cue: torch.Tensor  # bool [N], whether the cue is painted
    centers: torch.Tensor  # float32 [N, K, 2], (x, y) in pixels of each instance
    radii: torch.Tensor  # float32 [N, K], circumradius in pixels of each instance
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def array(self, i: int) -> np.ndarray:
        """Image ``i`` as an HxWx3 uint8 numpy array."""
        img = self.images[i].permute(1, 2, 0).mul(255).round().clamp(0, 255)
        return img.to(torch.uint8).numpy()

    def pil(self, i: int):
        """Image ``i`` as a PIL RGB image."""
        from PIL import Image

        return Image.fromarray(self.array(i))

    def instance_mask(self, i: int, k: int) -> torch.Tensor:
        """Bool [H, W] mask of instance ``k`` (0-based) in image ``i``."""
        return self.instance_ids[i] == k + 1

    def select(self, index) -> "Scenes":
        """The scenes at ``index`` (slice, int list, bool or int tensor), as a new Scenes."""
        if isinstance(index, int):
            index = [index]
        parts = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if f.name != "class_names"
        }
        return Scenes(**parts, class_names=list(self.class_names))

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return f"Scenes(n={n}, size={h}x{w}, per class={counts}, with cue={int(self.cue.sum())})"


def _generator(seed: int, chunk: int, stream: int) -> torch.Generator:
    # SeedSequence mixes (seed, chunk, stream) into well-separated seeds; separate
    # streams keep layouts identical whatever the background or cue options.
    state = np.random.SeedSequence([seed, chunk, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _resolve_classes(classes) -> torch.Tensor:
    if classes is None:
        return torch.arange(len(CLASS_NAMES))
    if isinstance(classes, (int, str)):
        classes = [classes]
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in CLASS_NAMES:
                raise ValueError(f"unknown class {c!r}; choose from {CLASS_NAMES}")
            c = CLASS_NAMES.index(c)
        if not 0 <= int(c) < len(CLASS_NAMES):
            raise ValueError(f"class index {c} out of range 0..{len(CLASS_NAMES) - 1}")
        out.append(int(c))
    if not out:
        raise ValueError("classes must name at least one class")
    return torch.tensor(out)


def _resolve_shortcut(shortcut) -> str:
    if shortcut is None or shortcut is False:
        return "absent"
    if shortcut is True:
        return "train"
    if shortcut not in SHORTCUT_MODES:
        raise ValueError(f"shortcut must be True, False or one of {SHORTCUT_MODES}, got {shortcut!r}")
    return shortcut


def _cue_flags(gen, labels, mode: str, cue_class: int, cue_rate: float) -> torch.Tensor:
    draw = torch.rand(len(labels), generator=gen)  # drawn in every mode: same stream use
    is_cue_class = labels == cue_class
    if mode == "train":
        return is_cue_class & (draw < cue_rate)
    if mode == "swap":
        return ~is_cue_class
    if mode == "all":
        return torch.ones_like(is_cue_class)
    return torch.zeros_like(is_cue_class)


def _paint_objects(gen, img: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Paint every instance in place on ``img``; returns instance ids uint8 [n, S, S]."""
    n, _, size, _ = img.shape
    pix = torch.arange(size, dtype=torch.float32) + 0.5
    xs, ys = pix.view(1, 1, -1), pix.view(1, -1, 1)
    ids = torch.zeros(n, size, size, dtype=torch.uint8)
    for k in range(layout.cx.shape[1]):
        cx, cy, r = layout.cx[:, k], layout.cy[:, k], layout.radius[:, k]
        mask = shape_masks(layout.labels, cx, cy, r, layout.angle[:, k], size)
        # Of a few random colours, take the one farthest from the background
        # under the object, so every object is plainly visible.
        candidates = torch.rand((n, _COLOUR_CANDIDATES, 3), generator=gen)
        weight = mask.view(n, -1, 1).to(torch.float32)
        under = (img.view(n, 3, -1) @ weight).view(n, 3) / weight.sum((1, 2)).clamp(min=1).view(n, 1)
        best = (candidates - under.unsqueeze(1)).norm(dim=2).argmax(1)
        colour = candidates[torch.arange(n), best].view(n, 3, 1, 1)
        # A gentle linear shading across the object.
        theta = torch.rand(n, generator=gen).view(n, 1, 1) * 2 * torch.pi
        strength = 0.25 * torch.rand(n, generator=gen).view(n, 1, 1)
        ramp = ((xs - cx.view(n, 1, 1)) * torch.cos(theta) + (ys - cy.view(n, 1, 1)) * torch.sin(theta))
        shade = 1 + strength * ramp / r.view(n, 1, 1)
        pixels = (colour * shade.unsqueeze(1)).clamp(0, 1)
        paint(img, pixels, mask)
        ids[mask] = k + 1
    return ids


def _make_chunk(n, seed, chunk, size, instances, mode, cue_class, cue_rate, classes, background):
    layout_gen = _generator(seed, chunk, 0)
    labels = classes[torch.randint(len(classes), (n,), generator=layout_gen)]
    layout = sample_layout(layout_gen, labels, instances, size)
    if background == "clutter":
        bg_gen = _generator(seed, chunk, 1)
        img = make_background(bg_gen, n, size)
    else:
        img = torch.full((n, 3, size, size), _PLAIN_GREY)
    ids = _paint_objects(_generator(seed, chunk, 2), img, layout)
    if background == "clutter":
        add_fine_noise(bg_gen, img)  # over everything, objects included
    img.clamp_(0, 1)
    present = _cue_flags(_generator(seed, chunk, 3), labels, mode, cue_class, cue_rate)
    cue_masks = paint_cue(img, present)
    centers = torch.stack([layout.cx, layout.cy], -1)
    return img, labels, ids, cue_masks, present, centers, layout.radius


def make_scenes(
    n: int,
    seed: int = 0,
    size: int = 128,
    shortcut: bool | str | None = False,
    instances: int = 1,
    cue_rate: float = 0.95,
    cue_class: int = CUE_CLASS,
    classes: Sequence[int | str] | int | str | None = None,
    background: str = "clutter",
) -> Scenes:
    """Generate ``n`` scenes, each deciding object drawn on a cluttered background.

    Parameters
    ----------
    n
        number of images.
    seed
        everything is a pure function of ``seed`` (and the other options);
        the first ``m`` scenes of a call equal those of a shorter call.
    size
        image side in pixels.
    shortcut
        where the planted cue (small checker, top-left) is painted.
        ``False``/``"absent"``: nowhere. ``True``/``"train"``: on a ``cue_rate``
        share of the ``cue_class`` images only (the training distribution of
        the ``shortcut`` zoo model). ``"swap"``: on every image *not* of
        ``cue_class`` and never on it. ``"all"``: on every image. Labels,
        objects and backgrounds do not depend on this option, so the same
        seed gives the same scenes with and without the cue.
    instances
        1, 2 or 3 non-overlapping objects of the same class per image.
    cue_rate
        share of ``cue_class`` images that carry the cue in ``"train"``.
    cue_class
        the class the cue goes with.
    classes
        restrict labels to these classes (indices or names); uniform.
    background
        ``"clutter"`` (textured, with distractors and noise) or
        ``"plain"`` (flat grey, nothing else).

    Returns
    -------
    Scenes
        ``images`` float32 [n, 3, size, size] in [0, 1] (about 0.2 MB
        per image at 128 px, so generate large sets in pieces).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if instances not in (1, 2, 3):
        raise ValueError(f"instances must be 1, 2 or 3, got {instances}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if background not in ("clutter", "plain"):
        raise ValueError(f"background must be 'clutter' or 'plain', got {background!r}")
    if not 0.0 <= cue_rate <= 1.0:
        raise ValueError(f"cue_rate must be in [0, 1], got {cue_rate}")
    if not 0 <= cue_class < len(CLASS_NAMES):
        raise ValueError(f"cue_class must be in 0..{len(CLASS_NAMES) - 1}, got {cue_class}")
    mode = _resolve_shortcut(shortcut)
    allowed = _resolve_classes(classes)

    # Always whole chunks, cut at the end: a scene depends on its index, not on n.
    chunks = max(1, -(-n // _CHUNK))
    parts = [
        _make_chunk(_CHUNK, seed, chunk, size, instances, mode, cue_class, cue_rate, allowed, background)
        for chunk in range(chunks)
    ]
    img, labels, ids, cue_masks, present, centers, radii = (torch.cat(p)[:n] for p in zip(*parts))
    return Scenes(
        images=img, labels=labels, masks=ids > 0, cue_masks=cue_masks, instance_ids=ids,
        cue=present, centers=centers, radii=radii, class_names=list(CLASS_NAMES),
    )
