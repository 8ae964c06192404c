"""A torch ``DataLoader`` as the audit's indexable stream of single images.

The audit finds images by id (their position in the data): to explain them in chunks, to resume a
killed run, to reopen it and to transplant evidence between images. A DataLoader gives batches in
order, so its images are unbatched: image ``i`` is row ``k`` of the batch that holds it, exactly as
iterating the loader would give it (its ``collate_fn`` included).

- A map-style dataset is read lazily: the loader's batch sampler says which dataset items make each
  batch, and only the batch that holds an image is collated (with the default ``collate_fn``, only
  that image). Each image's key is its dataset index, so resuming with another ``batch_size`` is
  the same audit.
- An ``IterableDataset`` has no index: the loader is iterated once and its images are kept in
  memory; keys are positions. Its order must be the same on every pass.
- A shuffling loader (``shuffle=True``, a random sampler, or any batch order that differs from one
  pass to the next) is refused: the ids would name other images on every pass, so resuming,
  reopening and transplants would silently mix images up.

A batch is a tensor of images, a sequence ``(images, labels, ...)`` or a mapping with an image key
(``pixel_values``, ``image``, ``images``, ``img``, ``input``) and a label key (``label``,
``labels``, ``target``, ``targets``, ``y``). Labels are used when they are one integer per image.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SubsetRandomSampler, WeightedRandomSampler

IMAGE_KEYS = ("pixel_values", "image", "images", "img", "input")
LABEL_KEYS = ("label", "labels", "target", "targets", "y")
SHUFFLED = (
    "the DataLoader gives its images in another order on every pass ({why}), so the audit could not name "
    "them by position: resuming, Audit.load and the transplant tests find images by id. Pass a loader with "
    "shuffle=False (DataLoader(dataset, batch_size=..., shuffle=False)) or the dataset itself"
)


def loader_items(loader: DataLoader) -> tuple[int, Any, Any, Any]:
    """``(n, image(i), label(i), key(i))`` of a DataLoader's images, in the order it gives them.

    Raises ``ValueError`` for a loader whose order changes from one pass to the next.
    """
    if isinstance(loader.dataset, IterableDataset):
        reader = _StreamReader(loader)
    else:
        refuse_shuffled(loader)
        reader = _IndexedReader(loader)
    return reader.n, reader.image, reader.label, reader.key


def refuse_shuffled(loader: DataLoader) -> None:
    """Raise ``ValueError`` if ``loader`` draws a random order (see the module's docstring)."""
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(sampler, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)):
            raise ValueError(SHUFFLED.format(why=f"shuffle=True or a {type(sampler).__name__}"))
        if getattr(sampler, "shuffle", False) is True:  # DistributedSampler(shuffle=True) and its kind
            raise ValueError(SHUFFLED.format(why=f"a {type(sampler).__name__} with shuffle=True"))
    if _batch_order(loader) != _batch_order(loader):
        raise ValueError(SHUFFLED.format(why="its sampler's order differs between two passes"))


def unbatch(batch, k: int, size: int | None = None) -> tuple[Any, int | None]:
    """Image ``k`` of a collated ``batch`` and its label (None where the batch has no integer labels).

    ``size``: the number of images in the batch, when known (a label column must have that length).
    """
    images, labels = _columns(batch)
    if size is None:
        size = len(images)
    image = images[k]
    if labels is None or len(labels) != size:
        return image, None
    label = labels[k]
    if isinstance(label, torch.Tensor):
        if label.numel() != 1 or label.is_floating_point() or label.dtype == torch.bool:
            return image, None
        label = label.item()
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        return image, None
    return image, int(label)


def _columns(batch) -> tuple[Any, Any]:
    """(images, labels or None) of a collated batch."""
    if isinstance(batch, Mapping):
        image_key = next((k for k in IMAGE_KEYS if k in batch), None)
        if image_key is None:
            raise ValueError(f"a DataLoader batch given as a mapping needs one of the keys {list(IMAGE_KEYS)} "
                             f"for its images; it has {sorted(map(str, batch))}")
        label_key = next((k for k in LABEL_KEYS if k in batch), None)
        return batch[image_key], None if label_key is None else batch[label_key]
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise ValueError("the DataLoader gave an empty batch")
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def _batch_order(loader: DataLoader) -> list[list[int]]:
    if loader.batch_sampler is not None:
        return [list(b) for b in loader.batch_sampler]
    return [[i] for i in loader.sampler]


class _IndexedReader:
    """Reads a map-style dataset's images through the loader's own batches, one batch at a time."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.batched = loader.batch_sampler is not None
        self.batches = _batch_order(loader)
        self.starts = [0]
        for b in self.batches:
            self.starts.append(self.starts[-1] + len(b))
        self.n = self.starts[-1]
        # The default collate stacks items: an image collated alone is the same as in its batch.
        self.per_item = not self.batched or _default_collate(loader.collate_fn)
        self._last: tuple[int, Any] | None = None

    def key(self, i: int) -> str:
        b, k = self._where(i)
        return str(self.batches[b][k])

    def image(self, i: int):
        return self._item(i)[0]

    def label(self, i: int) -> int | None:
        return self._item(i)[1]

    def _where(self, i: int) -> tuple[int, int]:
        b = bisect.bisect_right(self.starts, i) - 1
        return b, i - self.starts[b]

    def _item(self, i: int):
        b, k = self._where(i)
        ds, collate = self.loader.dataset, self.loader.collate_fn
        if not self.batched:  # auto-batching off: collate_fn converts one item
            return _single(collate(ds[self.batches[b][k]]))
        if self.per_item:
            return unbatch(collate([ds[self.batches[b][k]]]), 0, 1)
        if self._last is None or self._last[0] != b:
            self._last = (b, collate([ds[j] for j in self.batches[b]]))
        return unbatch(self._last[1], k, len(self.batches[b]))


class _StreamReader:
    """An iterable-style dataset's images, read once through the loader and kept in memory."""

    def __init__(self, loader: DataLoader):
        self.items: list[tuple[Any, int | None]] = []
        for batch in loader:
            if loader.batch_size is None:
                self.items.append(_single(batch))
                continue
            size = len(_columns(batch)[0])
            self.items += [unbatch(batch, k, size) for k in range(size)]
        self.n = len(self.items)

    def image(self, i: int):
        return self.items[i][0]

    def label(self, i: int) -> int | None:
        return self.items[i][1]

    def key(self, i: int) -> str:
        return str(i)


def _single(item) -> tuple[Any, int | None]:
    """(image, label) of one unbatched item."""
    images, labels = _columns(item)
    if labels is None:
        return images, None
    return unbatch(([images], [labels]), 0, 1)


def _default_collate(fn) -> bool:
    from torch.utils.data import default_collate

    return fn is default_collate or getattr(fn, "__name__", "") == "default_collate"


__all__ = ["loader_items", "refuse_shuffled", "unbatch", "IMAGE_KEYS", "LABEL_KEYS"]
