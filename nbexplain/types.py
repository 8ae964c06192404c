"""The shapes of what users hand to nbexplain, named once for the public signatures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .config import ExplainConfig

#: A PIL image (any mode), an HxW / HxWxC numpy array, a uint8 tensor, or a float CxHxW / 1xCxHxW
#: tensor already in model space.
ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
#: One image, a list of them, or a batched ``[B, C, H, W]`` tensor.
Images = Union[ImageLike, Sequence[ImageLike]]
#: A class: its index or its name in ``labels``; for several images, one per image.
Target = Union[int, str, None, Sequence[Union[int, str]], torch.Tensor]
#: An ``ExplainConfig``, a preset name (``"fast"``, ``"default"``, ``"thorough"``) or a dict of options.
ConfigLike = Union[ExplainConfig, str, Mapping[str, Any], None]
#: Whatever turns an image into the model's input tensor, e.g. ``weights.transforms()``.
Preprocess = Union[Callable[[Any], torch.Tensor], None]
#: Class names by index (a sequence) or by id (a mapping).
Labels = Union[Sequence[str], Mapping[int, str], None]

__all__ = ["ConfigLike", "ImageLike", "Images", "Labels", "Preprocess", "Target"]
