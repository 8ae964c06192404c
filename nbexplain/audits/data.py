"""Whatever the user audits, seen as one indexable collection of images.

Accepted: a list of images (PIL, numpy, tensors), a list of ``(image, label)`` pairs, a
tensor ``[N, C, H, W]`` already in model space, a torch ``Dataset`` (image or
``(image, label)`` items), a torch ``DataLoader`` that does not shuffle (its batches unbatched,
``nbexplain.audits.loader``), ``nbexplain.datasets.Scenes`` (labels and object masks), or a
folder of images (class sub-folders give the labels). Positions in the collection are the
image ids the audit stores, resumes and reports by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_FINGERPRINT_SAMPLES = 8  # images whose pixels enter the data fingerprint, spread over the data


@dataclass
class AuditData:
    """``len(data)`` images; ``image(i)``, ``label(i)`` (or None), ``key(i)`` (a stable name)
    and ``object_mask(i)`` (bool [H, W] of the labelled object, or None)."""

    n: int
    _image: Callable[[int], Any]
    _label: Callable[[int], int | None]
    _key: Callable[[int], str]
    _mask: Callable[[int], np.ndarray | None] | None = None
    class_names: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return self.n

    def image(self, i: int):
        return self._image(self._check(i))

    def label(self, i: int) -> int | None:
        label = self._label(self._check(i))
        return None if label is None else int(label)

    def key(self, i: int) -> str:
        return self._key(self._check(i))

    def object_mask(self, i: int) -> np.ndarray | None:
        return None if self._mask is None else self._mask(self._check(i))

    @property
    def has_masks(self) -> bool:
        return self._mask is not None

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(f"image id {i} is out of range: the data has {self.n} images (0..{self.n - 1})")
        return i

    def fingerprint(self) -> str:
        """Hash of the size, every key and the pixels of a few images spread over the data: resuming
        an audit on other data is refused (a change to an image's pixels alone may pass unseen)."""
        h = hashlib.sha256(f"{self.source}|{self.n}".encode())
        for i in range(self.n):
            h.update(self.key(i).encode() + b"\0")
        for i in sorted({round(j * (self.n - 1) / max(1, _FINGERPRINT_SAMPLES - 1)) for j in range(_FINGERPRINT_SAMPLES)}):
            if self.n:
                h.update(_pixel_bytes(self.image(i)))
                h.update(str(self.label(i)).encode())
        return h.hexdigest()[:16]


def as_audit_data(data, masks=None) -> AuditData:
    """Wrap ``data`` (see the module's docstring); ``masks``: optional bool [N, H, W] object masks."""
    if isinstance(data, AuditData):
        out = data
    elif _is_scenes(data):
        out = _from_scenes(data)
    elif isinstance(data, (str, Path)):
        out = _from_folder(Path(data))
    elif isinstance(data, torch.Tensor):
        out = _from_tensor(data)
    elif isinstance(data, (list, tuple)):
        out = _from_sequence(list(data))
    elif isinstance(data, torch.utils.data.DataLoader):
        out = _from_loader(data)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        out = _from_dataset(data)
    else:
        raise TypeError(
            f"cannot audit a {type(data).__name__}: pass a list of images, a tensor [N, C, H, W], a torch Dataset "
            "or DataLoader, nbexplain.datasets.Scenes or the path of a folder of images"
        )
    if out.n == 0:
        raise ValueError("the data holds no images")
    if masks is not None:
        out = _with_masks(out, masks)
    return out


def _from_scenes(scenes) -> AuditData:
    return AuditData(
        len(scenes), scenes.array, lambda i: int(scenes.labels[i]), lambda i: str(i),
        lambda i: scenes.masks[i].numpy(), class_names=list(scenes.class_names), source="scenes",
    )


def _from_tensor(t: torch.Tensor) -> AuditData:
    if t.dim() != 4:
        raise ValueError(f"a tensor of images must be [N, C, H, W]; got shape {tuple(t.shape)}")
    return AuditData(len(t), lambda i: t[i], lambda i: None, lambda i: str(i), source="tensor")


def _from_sequence(items: list) -> AuditData:
    pairs = [_split_item(item) for item in items]
    return AuditData(len(items), lambda i: pairs[i][0], lambda i: pairs[i][1], lambda i: str(i), source="list")


def _from_loader(loader) -> AuditData:
    from .loader import loader_items

    n, image, label, key = loader_items(loader)
    classes = getattr(loader.dataset, "classes", None)
    return AuditData(n, image, label, key, class_names=list(classes) if classes is not None else None,
                     source=f"DataLoader({type(loader.dataset).__name__})")


def _from_dataset(ds) -> AuditData:
    classes = getattr(ds, "classes", None)
    return AuditData(
        len(ds), lambda i: _split_item(ds[i])[0], lambda i: _split_item(ds[i])[1], lambda i: str(i),
        class_names=list(classes) if classes is not None else None, source=type(ds).__name__,
    )


def _from_folder(root: Path) -> AuditData:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    tops = [p.relative_to(root).parts for p in files]
    # Class sub-folders (as torchvision's ImageFolder): every image one level down.
    labelled = all(len(parts) == 2 for parts in tops)
    classes = sorted({parts[0] for parts in tops}) if labelled else None
    labels = [classes.index(parts[0]) for parts in tops] if labelled else [None] * len(files)

    def load(i):
        from PIL import Image

        with Image.open(files[i]) as im:
            return im.convert("RGB")

    return AuditData(len(files), load, lambda i: labels[i], lambda i: "/".join(tops[i]), class_names=classes,
                     source="folder")


def _with_masks(data: AuditData, masks) -> AuditData:
    masks = [np.asarray(m, dtype=bool) for m in masks]
    if len(masks) != data.n:
        raise ValueError(f"got {len(masks)} object masks for {data.n} images")
    data._mask = lambda i: masks[i]
    return data


def _split_item(item):
    if isinstance(item, (tuple, list)) and len(item) == 2 and not _looks_like_image(item[1]):
        image, label = item
        if isinstance(label, torch.Tensor):
            label = label.item()
        return image, None if label is None else int(label)
    return item, None


def _looks_like_image(obj) -> bool:
    return hasattr(obj, "convert") or (hasattr(obj, "ndim") and getattr(obj, "ndim", 0) >= 2)


def _is_scenes(obj) -> bool:
    from ..datasets import Scenes

    return isinstance(obj, Scenes)


def _pixel_bytes(image) -> bytes:
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().contiguous().numpy().tobytes()
    if hasattr(image, "tobytes"):
        return image.tobytes()
    return np.asarray(image).tobytes()

