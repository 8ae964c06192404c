"""What the gallery's detail panel shows for a clicked image: outputs for an ``ipywidgets.Output``.

With the audit's model, the image is explained again in full (the same seed gives the stored
mask) and its explanation widget is shown; without it, the stored numbers and mask, and how
to reopen the audit with its model.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from ._gallery_wire import is_missing as _missing


def display_output(bundle: Any) -> dict:
    """One ``display_data`` output (the form ``Output.outputs`` holds) from a mime bundle."""
    if isinstance(bundle, tuple):  # (data, metadata), as anywidget returns it
        bundle = bundle[0]
    return {"output_type": "display_data", "data": dict(bundle or {}), "metadata": {}}


def text_output(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text if text.endswith("\n") else text + "\n"}


def describe(audit: Any, image_id: int, reopen_hint: bool) -> dict:
    """An HTML line naming the image, its group and its stored numbers."""
    row = audit.rows.loc[int(image_id)]
    group = audit.group_of(image_id)
    names = audit.labels

    def name(k: Any) -> str:
        if _missing(k):
            return "\u2014"
        k = int(k)
        return str(names[k]) if names is not None and 0 <= k < len(names) else str(k)

    parts = [f"<b>image {int(image_id)}</b>"]
    if not _missing(row.get("key")) and str(row["key"]) != str(image_id):
        parts.append(f"<code>{html.escape(str(row['key']))}</code>")
    if group is not None:
        parts.append(f"group {group.index} ({html.escape(group.target_name)}, suspicion {group.suspicion:.2f})")
    line = [f"label {html.escape(name(row.get('label')))}", f"predicted {html.escape(name(row.get('pred')))}"]
    for key, label, fmt in (("prob_original", "p(x)", "{:.3f}"), ("prob_explanation", "p(explanation)", "{:.3f}"),
                            ("area", "area kept", "{:.1%}")):
        if not _missing(row.get(key)):
            line.append(f"{label} {fmt.format(float(row[key]))}")
    text = " \u00b7 ".join(parts) + "<br>" + " \u00b7 ".join(line)
    if not _missing(row.get("error")):
        text += f"<br>could not be explained: {html.escape(str(row['error']))}"
    if reopen_hint:
        out = html.escape(repr(str(audit.store.root)))
        text += ("<br><i>Stored numbers and mask only: this audit has no model. To see the full explanation "
                 f"and its circuit, reopen it with <code>Audit.load({out}, model=..., data=...)</code>.</i>")
    return display_output({"text/html": f"<div class='nbxg-detail-text'>{text}</div>",
                           "text/plain": html.unescape(text.replace("<br>", "\n"))})


def stored_picture(audit: Any, image_id: int, side: int = 192) -> dict | None:
    """The stored thumbnail, enlarged, with the pixels outside the stored mask dimmed (a PNG)."""
    from PIL import Image

    thumb = audit.thumbnail(image_id)
    if _missing(thumb) or not thumb:
        return None
    with Image.open(io.BytesIO(bytes(thumb))) as im:
        rgb = im.convert("RGB")
    scale = side / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    pixels = np.asarray(rgb.resize(size, Image.BICUBIC), dtype=np.float32) / 255
    try:
        mask = audit.mask(image_id)
    except ValueError:
        mask = None
    if mask is not None:
        keep = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) >= 128
        pixels = np.where(keep[..., None], pixels, pixels * 0.25)
    buf = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return display_output({"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                           "text/plain": f"<image {image_id} with its stored mask>"})

