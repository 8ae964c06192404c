"""A published ImageNet shortcut, offline: the ImageNet-W watermark on real photos.

ImageNet-W (Li et al., "A Whac-A-Mole Dilemma", CVPR 2023; PyPI ``imagenet-w``) overlays a
semi-transparent text watermark, as found on many "carton" photos of the web, with its own font, text
and opacity (0.5) at 40 % of the height. ImageNet models change their decision on many photos when
it is added: a shortcut that tips decisions rather than deciding alone.

>>> from nbexplain.datasets.watermark import add_watermark, watermark_strokes, photo_views
>>> views = photo_views("rocket")                       # [(name, [3, 224, 224] in [0, 1]), ...]  # doctest: +SKIP
>>> marked = add_watermark(views[0][1])                  # the published transform  # doctest: +SKIP
>>> near = watermark_strokes(224, within=3)             # pixels within 3 px of its strokes  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HINT = "the ImageNet-W watermark needs the package imagenet-w: pip install 'nbexplain[examples]'"
#: ImageNet's "carton", the class the watermark was learned as
CARTON = 478
#: crops of a photo (share of its shorter side) and where they sit, for more views of the same photos
CROPS = {"full": None, "top-left": (0.7, 0.0, 0.0), "bottom-right": (0.7, 1.0, 1.0), "centre": (0.7, 0.5, 0.5)}


def _transform(size: int):
    try:
        from imagenet_w import AddWatermark
    except ImportError as err:
        raise ImportError(HINT) from err
    return AddWatermark(size)


def add_watermark(image: torch.Tensor) -> torch.Tensor:
    """The published watermark on a [3, S, S] image in [0, 1] (square, at the model's input size)."""
    if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise ValueError(f"add_watermark takes a square [3, S, S] image in [0, 1], got {tuple(image.shape)}")
    return _transform(image.shape[-1])(image.clamp(0, 1))


def watermark_strokes(size: int = 224, within: int = 0) -> torch.Tensor:
    """Bool [size, size]: the watermark's strokes, grown by ``within`` pixels (its text drawn opaque)."""
    from PIL import Image, ImageDraw

    mark = _transform(size)
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text((mark.x_pos * size, mark.y_pos * size), mark.text, fill=255, font=mark.font)
    import numpy as np

    strokes = torch.from_numpy(np.asarray(canvas) > 0).float()[None, None]
    if within:
        strokes = F.max_pool2d(strokes, 2 * within + 1, stride=1, padding=within)
    return strokes[0, 0] > 0


def photo_views(name: str, size: int = 224) -> list[tuple[str, torch.Tensor]]:
    """A photo of ``nbexplain.datasets.PHOTOS`` as several model-size views, [3, size, size] in [0, 1]:
    the whole photo and three crops (``CROPS``), each also mirrored, each resized so its shorter side
    is ``size`` (antialiased) and centre-cropped."""
    from ..core.inputs import pixels_to_tensor
    from .photos import load_photo

    img = pixels_to_tensor(load_photo(name))[None]
    h, w = img.shape[-2:]
    out = []
    for crop, where in CROPS.items():
        part = img
        if where is not None:
            share, fy, fx = where
            s = int(min(h, w) * share)
            top, left = round((h - s) * fy), round((w - s) * fx)
            part = img[..., top:top + s, left:left + s]
        for mirrored in (False, True):
            view = part.flip(-1) if mirrored else part
            out.append((f"{name} {crop}{' mirrored' if mirrored else ''}", _resize_crop(view, size)))
    return out


def _resize_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    scale = size / min(h, w)
    img = F.interpolate(img, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bilinear",
                        antialias=True, align_corners=False).clamp(0, 1)
    h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[0, :, top:top + size, left:left + size]
