"""The gallery's wire format: audit rows and groups as a few JSON columns plus binary blobs.

Pure (no widget, no kernel), so it is tested on its own. Each image travels as its stored
JPEG thumbnail and its mask shrunk to the thumbnail's size and packed one bit per pixel
(``np.packbits``, row-major): a 64 x 64 mask is 512 bytes, not 4096 floats. The browser
draws both onto a canvas. Thumbnails and masks of many images are concatenated into one
blob each (one binary buffer on the wire), with their lengths in the columns.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: Row fields the front end filters, sorts and labels by (the rest stays in the kernel).
NUMBERS = ("prob_original", "prob_explanation", "area")
INTEGERS = ("id", "label", "pred", "target")
#: JSON column names: short, since a large audit sends one value per image per column.
COLUMNS = ("id", "key", "label", "pred", "target", "correct", "prob", "prob_e", "area", "error",
           "thumb_w", "thumb_h", "thumb_len")


@dataclass(frozen=True)
class WireRow:
    """One image as the gallery sends it."""

    id: int
    meta: dict  #: JSON-safe numbers and strings
    thumb: bytes  #: JPEG (empty: the image could not be explained)
    mask: bytes  #: packed bits of the mask at the thumbnail's size
    thumb_w: int
    thumb_h: int
    source: tuple  #: (thumb, mask_bits) as stored: a row whose source is unchanged is not encoded again


def row_records(rows: Any) -> Iterable[Mapping[str, Any]]:
    """Dicts of a pyarrow Table (the audit's shards) or a pandas DataFrame (``Audit.rows``)."""
    if hasattr(rows, "to_pylist"):
        return rows.to_pylist()
    if hasattr(rows, "to_dict"):
        return rows.to_dict("records")
    return list(rows)


def encode_row(record: Mapping[str, Any], cache: Mapping[int, WireRow] | None = None) -> WireRow:
    """One stored row -> ``WireRow`` (reusing ``cache[id]`` when its thumbnail and mask are the same)."""
    image_id = int(record["id"])
    thumb, bits = _blob(record.get("thumb")), _blob(record.get("mask_bits"))
    source = (thumb, bits)
    old = cache.get(image_id) if cache is not None else None
    meta = {
        "id": image_id,
        "key": None if is_missing(record.get("key")) else str(record["key"]),
        "label": _int(record.get("label")),
        "pred": _int(record.get("pred")),
        "target": _int(record.get("target")),
        "correct": None if is_missing(record.get("correct")) else bool(record["correct"]),
        "prob": _num(record.get("prob_original")),
        "prob_e": _num(record.get("prob_explanation")),
        "area": _num(record.get("area")),
        "error": None if is_missing(record.get("error")) else str(record["error"]),
    }
    if old is not None and old.source == source:
        return WireRow(image_id, meta, old.thumb, old.mask, old.thumb_w, old.thumb_h, source)
    if not thumb:
        return WireRow(image_id, meta, b"", b"", 0, 0, source)
    tw, th = jpeg_size(thumb)
    mask = b""
    if bits:
        mask = pack_mask(shrink_mask(unpack_bits(bits, int(record["mask_h"]), int(record["mask_w"])), th, tw))
    return WireRow(image_id, meta, thumb, mask, tw, th, source)


def pack_rows(rows: Sequence[WireRow]) -> tuple[dict, bytes, bytes]:
    """Rows -> (JSON columns, all thumbnails, all masks). The browser splits the blobs by
    ``thumb_len`` and by ``ceil(thumb_w * thumb_h / 8)``."""
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for r in rows:
        for name in COLUMNS[:10]:
            columns[name].append(r.meta[name])
        columns["thumb_w"].append(r.thumb_w)
        columns["thumb_h"].append(r.thumb_h)
        columns["thumb_len"].append(len(r.thumb))
    return columns, b"".join(r.thumb for r in rows), b"".join(r.mask for r in rows)


def encode_groups(groups: Sequence[Any]) -> tuple[list[dict], bytes, int]:
    """Groups -> (JSON list, their shared evidence maps as uint8 [n, side, side], side)."""
    side = int(groups[0].shared_map.shape[0]) if groups else 0
    out, maps = [], []
    for g in groups:
        out.append({
            "index": int(g.index), "target": int(g.target), "target_name": str(g.target_name),
            "size": int(g.size), "ids": [int(i) for i in g.indices],
            "representative": int(g.representative), "channels": [str(c) for c in g.channels],
            "suspicion": _num(g.suspicion), "transplant": _num(g.transplant),
            "transplant_control": _num(getattr(g, "transplant_control", float("nan"))), "same_place": _num(g.same_place),
            "off_object": _num(g.off_object), "accuracy": _num(g.accuracy), "mean_area": _num(g.mean_area),
            "transplants": int(getattr(g, "transplants", 0)),
        })
        m = np.nan_to_num(np.asarray(g.shared_map, dtype=np.float32), nan=0.0)
        if m.shape != (side, side):
            raise ValueError(f"every group's shared map must be {side}x{side}; group {g.index} has {m.shape}")
        maps.append(np.rint(np.clip(m, 0, 1) * 255).astype(np.uint8).tobytes())
    return out, b"".join(maps), side


# --------------------------------------------------------------------------- pixels
def unpack_bits(bits: bytes, h: int, w: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=h * w).reshape(h, w).astype(bool)


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(np.ascontiguousarray(mask, dtype=bool)).tobytes()


def shrink_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """A bool mask at [h, w]: a thumbnail pixel is kept where at least half its area is.

    Area averaging, not nearest neighbour, so a thin kept stroke neither vanishes nor
    flickers with the sampling phase."""
    if mask.shape == (h, w):
        return mask.astype(bool)
    from PIL import Image

    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BOX)
    return np.asarray(small) >= 128


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG, read from its header only."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


# --------------------------------------------------------------------------- JSON values
def is_missing(v: Any) -> bool:
    """None, NaN or pandas' NA (what a null becomes in a DataFrame)."""
    if v is None:
        return True
    if isinstance(v, (bytes, str, bool, int)):
        return False
    try:
        return bool(v != v)  # NaN is the one value unequal to itself
    except TypeError:  # pandas.NA: its comparisons are NA, whose truth is undefined
        return True


def _num(v: Any, digits: int = 4) -> float | None:
    if is_missing(v):
        return None
    f = float(v)
    return round(f, digits) if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    return None if is_missing(v) else int(v)


def _blob(v: Any) -> bytes:
    return b"" if is_missing(v) else bytes(v)
