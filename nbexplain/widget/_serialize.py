"""Turn tensors, arrays and numbers into what the widget sends to the browser.

Everything here is pure (no widget, no kernel) so the wire format can be tested
on its own. Pictures travel as raw uint8 bytes plus a shape, never as base64,
PNG or float lists: the browser draws them straight onto a canvas.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

#: Longest loss history (points per term) stored in the synced ``history`` trait.
HISTORY_POINTS = 400


def to_numpy(value: Any) -> np.ndarray:
    """Return ``value`` (torch tensor, numpy array or nested list) as a numpy array."""
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach()
        if hasattr(value, "float") and getattr(value, "is_floating_point", lambda: True)():
            value = value.float()  # bf16/fp16 have no numpy dtype
        value = value.cpu().numpy()
    return np.asarray(value)


def quantize_unit(values: Any) -> np.ndarray:
    """Map values in [0, 1] to uint8 0..255 (clipped; NaN becomes 0)."""
    arr = to_numpy(values).astype(np.float32, copy=False)
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def mask_to_uint8(mask: Any) -> tuple[bytes, list[int]]:
    """Encode a mask ([h, w], or [1, h, w]) as (uint8 bytes, [h, w])."""
    arr = to_numpy(mask)
    arr = np.squeeze(arr) if arr.ndim > 2 else arr
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D [h, w]; got shape {tuple(to_numpy(mask).shape)}")
    q = np.ascontiguousarray(quantize_unit(arr))
    return q.tobytes(), [int(q.shape[0]), int(q.shape[1])]


def image_to_rgb_uint8(image: Any) -> tuple[bytes, list[int]]:
    """Encode a displayable image in [0, 1] as (RGB uint8 bytes row-major, [H, W]).

    Accepts [H, W, 3] (the training callback's ``info["image"]``), [H, W],
    [H, W, 1], [H, W, 4] (alpha dropped) and channel-first [C, H, W] tensors.
    """
    arr = to_numpy(image).astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W, 3] in [0, 1]; got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[:, :, :3]
    q = np.ascontiguousarray(quantize_unit(arr))
    return q.tobytes(), [int(q.shape[0]), int(q.shape[1])]


def masked_image(image_hwc: np.ndarray, mask: Any) -> np.ndarray:
    """Image * mask (nearest-upsampled to the image size), both in [0, 1], as [H, W, 3].

    The fallback picture of an explanation when the true (denormalised) one is
    not available, e.g. for the best mask of an interrupted run.
    """
    img = to_numpy(image_hwc).astype(np.float32, copy=False)
    m = to_numpy(mask).astype(np.float32, copy=False)
    m = np.squeeze(m) if m.ndim > 2 else m
    rows = (np.arange(img.shape[0]) * m.shape[0]) // img.shape[0]
    cols = (np.arange(img.shape[1]) * m.shape[1]) // img.shape[1]
    return img * m[rows][:, cols][:, :, None]


def json_number(value: Any) -> float | None:
    """A float that survives JSON (NaN and infinities become None)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def json_safe(value: Any) -> Any:
    """Deep copy of dicts/lists/numbers with every non-finite float replaced by None.

    The browser parses messages with JSON.parse, which rejects NaN/Infinity.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) or hasattr(value, "item"):
        return json_number(value)
    return value


def frame_message(
    step: int,
    total: int,
    losses: Mapping[str, float],
    prob: float,
    area: float,
    label_kept: bool,
    mask: Any,
    elapsed: float,
    half: str = "sufficient",
    changes_decision: bool = False,
) -> tuple[dict, list[bytes]]:
    """Build one live frame: (JSON content, [mask uint8 bytes]).

    ``half`` says which mask trains. The sufficient half's frames (``mask``: the kept pixels) are of type
    "frame"; the necessary half's (``mask``: the removed cells) are of type "necessary", so a front end
    that does not know them ignores them, and they carry ``changes_decision``: whether removing those
    cells changes the decision."""
    data, shape = mask_to_uint8(mask)
    content = {
        "type": "necessary" if half == "necessary" else "frame",
        "step": int(step),
        "total": int(total),
        "losses": {str(k): json_number(v) for k, v in losses.items()},
        "prob": json_number(prob),
        "area": json_number(area),
        "label_kept": bool(label_kept),
        "shape": shape,
        "dtype": "uint8",
        "elapsed": json_number(elapsed),
    }
    if half == "necessary":
        content["changes_decision"] = bool(changes_decision)
    return content, [data]


def downsample_history(history: Mapping[str, Sequence[float]], max_points: int = HISTORY_POINTS) -> dict:
    """Evenly thin a per-step history to at most ``max_points`` (first and last kept).

    Returns ``{"steps": [...], "terms": {name: [...]}}`` with JSON-safe numbers.
    """
    lengths = [len(v) for v in history.values()]
    n = max(lengths, default=0)
    if n == 0:
        return {"steps": [], "terms": {}}
    if n <= max_points:
        index = np.arange(n)
    else:
        index = np.unique(np.rint(np.linspace(0, n - 1, max_points)).astype(int))
    terms = {}
    for name, values in history.items():
        vals = list(values)
        terms[str(name)] = [json_number(vals[i]) if i < len(vals) else None for i in index]
    return {"steps": [int(i) for i in index], "terms": terms}


def channel_maps(map_x: Any, map_e: Any) -> tuple[list[bytes], list[int], list[float]]:
    """Normalise two activation maps [h, w] with one shared scale to uint8.

    A shared scale keeps the two pictures comparable: the same colour means the
    same activation on x and on the explanation. Returns (buffers, [h, w], [lo, hi]).
    """
    ax = to_numpy(map_x).astype(np.float32, copy=False)
    ae = to_numpy(map_e).astype(np.float32, copy=False)
    ax = ax.reshape(ax.shape[-2:]) if ax.ndim > 2 else ax.reshape(1, -1) if ax.ndim < 2 else ax
    ae = ae.reshape(ae.shape[-2:]) if ae.ndim > 2 else ae.reshape(1, -1) if ae.ndim < 2 else ae
    if ax.shape != ae.shape:
        raise ValueError(f"activation maps differ in shape: {ax.shape} vs {ae.shape}")
    both = np.concatenate([ax.ravel(), ae.ravel()])
    finite = both[np.isfinite(both)]
    lo = float(min(finite.min(), 0.0)) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    span = hi - lo if hi > lo else 1.0
    buffers = [np.ascontiguousarray(quantize_unit((a - lo) / span)).tobytes() for a in (ax, ae)]
    return buffers, [int(ax.shape[0]), int(ax.shape[1])], [lo, hi]
