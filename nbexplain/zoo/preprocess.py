"""Turning a picture (PIL, numpy or tensor) into a zoo model's input."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import Normalize


def to_unit_tensor(img) -> torch.Tensor:
    """A float32 [3, H, W] tensor in [0, 1] from a PIL image, an HxW(x3/4) array or a tensor.

    Accepted: PIL images of any mode (converted to RGB); numpy arrays HxW or
    HxWxC (C = 1, 3 or 4; uint8 in 0..255, floats in [0, 1]); tensors [3, H, W]
    or [1, 3, H, W] (uint8 in 0..255, floats in [0, 1]). Alpha is dropped and
    grey is repeated to three channels.
    """
    if hasattr(img, "convert") and hasattr(img, "mode"):  # PIL, without importing it
        img = np.asarray(img.convert("RGB"))
    if isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(f"expected an HxW or HxWxC array (C = 1, 3 or 4), got shape {img.shape}")
        arr = arr[:, :, :3] if arr.shape[2] == 4 else arr
        arr = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
        tensor = torch.from_numpy(np.array(arr)).permute(2, 0, 1)  # a copy: PIL arrays are read-only
    elif isinstance(img, torch.Tensor):
        tensor = img.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected a [3, H, W] tensor, got shape {tuple(img.shape)}")
    else:
        raise TypeError(f"expected a PIL image, numpy array or torch tensor, got {type(img).__name__}")

    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / 255.0
    if not tensor.is_floating_point():
        raise TypeError(f"expected uint8 or floating-point pixels, got {tensor.dtype}")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError("image contains NaN or infinite values")
    if tensor.min() < -1e-3 or tensor.max() > 1 + 1e-3:
        raise ValueError(
            f"float pixels must lie in [0, 1] (got {tensor.min():.3g}..{tensor.max():.3g}); "
            "divide 0..255 images by 255, and pass images before normalisation"
        )
    return tensor.clamp(0, 1)


class Preprocess:
    """Callable: picture -> normalised float32 [3, H, W] tensor for a zoo model.

    The size is left alone: the zoo models were trained on 128x128 scenes and
    accept other sizes, though shapes at other scales are out of distribution.
    """

    def __init__(self, normalize: Normalize) -> None:
        self.normalize = normalize

    def __call__(self, img) -> torch.Tensor:
        return self.normalize(to_unit_tensor(img))

    def __repr__(self) -> str:
        return f"Preprocess(to [0, 1] RGB tensor, then {self.normalize!r})"
