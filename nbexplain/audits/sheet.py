"""A static contact sheet of one group: its shared evidence map and its members with their masks.

The picture an audit shows where no widget front end exists (GitHub, nbviewer, exported
HTML, a terminal saving PNGs). Matplotlib's object API only (no pyplot state), so it is safe
on any backend and in threads.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .suspicion import Group

_DIM = 0.3  # brightness of the removed pixels: the kept region stands out, the context stays readable
_OUTLINE = "#ffd23f"


def contact_sheet(audit, group: Group, max_images: int = 24, columns: int = 8):
    """A matplotlib Figure: the group's shared evidence map, then up to ``max_images`` members
    (the representative first), each dimmed outside its mask and outlined; the group's test
    figures in the title."""
    from matplotlib.figure import Figure

    if max_images < 1 or columns < 1:
        raise ValueError(f"max_images and columns must be at least 1, got {max_images} and {columns}")
    ids = _members(group, max_images)
    # At least 4 columns (empty ones for a small group), so the title's figures fit.
    cols = max(1, min(columns, max(len(ids), 4)))
    rows = max(1, math.ceil(len(ids) / cols))
    cell = 1.25  # inches per thumbnail
    fig = Figure(figsize=(cell * (cols + rows + 0.3), cell * rows + 0.9), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[rows, cols])
    _draw_map(fig.add_subplot(grid[0]), group)
    thumbs = grid[1].subgridspec(rows, cols)
    for k in range(rows * cols):
        ax = fig.add_subplot(thumbs[k // cols, k % cols])
        ax.set_axis_off()
        if k < len(ids):
            _draw_member(ax, audit, ids[k], ids[k] == group.representative)
    more = f" (first {len(ids)} shown)" if group.size > len(ids) else ""
    fig.suptitle(f"{_headline(group)}{more}\n{_figures(group)}", fontsize=9)
    return fig


def _members(group: Group, limit: int) -> list[int]:
    ids = [int(i) for i in group.indices]
    if group.representative in ids:  # the member nearest the group's evidence leads
        ids.remove(group.representative)
        ids.insert(0, int(group.representative))
    return ids[:limit]


def _headline(group: Group) -> str:
    n = group.size
    return (f"group {group.index}: {n} image{'s' if n != 1 else ''} of \u201c{group.target_name}\u201d, "
            f"suspicion {group.suspicion:.2f}")


def _figures(group: Group) -> str:
    def pct(v):
        return "n/a" if v is None or np.isnan(v) else f"{v:.0%}"

    return (f"transplant {pct(group.transplant)} (control {pct(group.transplant_control)}) \u00b7 "
            f"same place {pct(group.same_place)} \u00b7 "
            f"off object {pct(group.off_object)} \u00b7 accuracy {pct(group.accuracy)} \u00b7 "
            f"mean area {pct(group.mean_area)}")


def _draw_map(ax, group: Group) -> None:
    ax.imshow(group.shared_map, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("shared evidence", fontsize=7)  # share of the members keeping each pixel
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_member(ax, audit, image_id: int, representative: bool) -> None:
    image = _thumbnail(audit, image_id)
    row = audit.rows.loc[image_id]
    if image is None:
        ax.text(0.5, 0.5, "not\nexplained", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    try:
        mask = audit.mask(image_id)
    except ValueError:
        mask = None
    h, w = image.shape[:2]
    if mask is not None:
        small = _resize_mask(mask, h, w)
        image = np.where(small[..., None], image, image * _DIM)
        ax.imshow(image)
        if small.any() and not small.all():
            ax.contour(small.astype(float), levels=[0.5], colors=_OUTLINE, linewidths=0.8)
    else:
        ax.imshow(image)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    correct = row.get("correct")
    wrong = isinstance(correct, (bool, np.bool_)) and not correct
    title = f"{image_id}" + (" \u2605" if representative else "") + (" \u2717" if wrong else "")
    area = row.get("area")
    if area is not None and not np.isnan(area):
        title += f" \u00b7 {area:.0%}"
    ax.set_title(title, fontsize=6, color="#c0392b" if wrong else "black", pad=2)


def _thumbnail(audit, image_id: int) -> np.ndarray | None:
    """The stored JPEG as [h, w, 3] floats in [0, 1] (None: the image was not explained)."""
    from PIL import Image

    data = audit.thumbnail(image_id)
    if data is None or isinstance(data, float) or not len(data):
        return None
    with Image.open(io.BytesIO(bytes(data))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def _resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """The mask at the thumbnail's size (a pixel is kept where most of its area is)."""
    if mask.shape == (h, w):
        return mask.astype(bool)
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BOX)) >= 128
