"""Turn whatever the user passes as an image into one model-space tensor.

PIL images and numpy arrays are pixels: they go through ``preprocess``.
Float tensors are taken to be model inputs already (normalised); integer
tensors are pixels.  Anything ambiguous or broken is refused with a message
that says what to pass instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(pixel - mean) / std`` used by the model's preprocessing."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _stats(self, like: torch.Tensor):
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean


def find_normalization(preprocess) -> Normalization | None:
    """The ``Normalize`` step inside a torchvision-style preprocess, if any."""
    if preprocess is None:
        return None
    from torchvision import transforms

    stack = [preprocess]
    while stack:
        t = stack.pop()
        if isinstance(t, transforms.Normalize):
            return Normalization(tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std))
        for attr in ("transforms", "normalize"):
            inner = getattr(t, attr, None)
            if isinstance(inner, (list, tuple)):
                stack.extend(inner)
            elif inner is not None and callable(inner):
                stack.append(inner)
        # torchvision's weights.transforms() (ImageClassification) keeps mean/std as attributes
        if hasattr(t, "mean") and hasattr(t, "std") and not isinstance(t, torch.Tensor):
            try:
                return Normalization(tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std))
            except (TypeError, ValueError):
                pass
    return None


class DefaultPreprocess:
    """Resize-free to-tensor plus per-channel normalisation (ImageNet statistics by default)."""

    def __init__(self, normalization: Normalization = Normalization(IMAGENET_MEAN, IMAGENET_STD)):
        self.normalization = normalization
        self.mean, self.std = normalization.mean, normalization.std

    def __call__(self, image) -> torch.Tensor:
        return self.normalization.normalize(pixels_to_tensor(image))

    def __repr__(self) -> str:
        return f"DefaultPreprocess(mean={self.mean}, std={self.std})"


def pil_to_rgb(image):
    """Convert any PIL mode (L, LA, RGBA, P, CMYK, I;16, F...) to 8-bit RGB."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as image viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def pixels_to_tensor(image) -> torch.Tensor:
    """PIL image or HxW(xC) array of pixels -> float tensor [3,H,W] in [0, 1].

    Gray is repeated to RGB; an alpha channel is composited on white, as for PIL images.
    """
    if _is_pil(image):
        image = np.asarray(pil_to_rgb(image))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC array of pixels, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"the image array is empty (shape {arr.shape})")
    if arr.shape[2] not in (1, 2, 3, 4):
        if arr.shape[0] in (1, 3, 4):
            raise ValueError(f"array of shape {arr.shape} looks channels-first; pass HxWxC pixels or a torch tensor")
        raise ValueError(f"array of shape {arr.shape} has {arr.shape[2]} channels; pass gray, gray+alpha, RGB or RGBA pixels")
    if arr.dtype == np.bool_:
        scaled = arr.astype(np.float32)  # True is white, as for PIL mode "1"
    elif arr.dtype == np.uint8:
        scaled = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        scaled = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scaled = arr.astype(np.float32)
        _check_finite(torch.from_numpy(scaled))
        lo, hi = float(scaled.min()), float(scaled.max())
        if lo < 0 or hi > 2:
            if lo < 0 or hi > 255:
                raise ValueError(
                    f"float pixel array has values in [{lo:.3g}, {hi:.3g}]; "
                    "pass pixels in [0, 1] or [0, 255], or a normalised torch tensor"
                )
            scaled = scaled / 255.0
        elif hi > 1:
            # Either [0, 1] pixels that overshoot or a very dark [0, 255] image: guessing could be badly wrong.
            raise ValueError(
                f"float pixel array has values in [{lo:.3g}, {hi:.3g}], so it is unclear whether pixels are in "
                "[0, 1] or [0, 255]; clip it to [0, 1] (np.clip(a, 0, 1)) or convert it to uint8"
            )
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError("integer pixel array has values outside [0, 255]; convert it to uint8 first")
        scaled = arr.astype(np.float32) / 255.0
    else:
        raise TypeError(f"unsupported array dtype {arr.dtype}; pass uint8, uint16 or float pixels")
    return pixels_to_rgb(torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1))))


def pixels_to_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """[C,H,W] pixels in [0, 1] with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) -> [3,H,W].

    Alpha is composited on white, as ``pil_to_rgb`` does, so an array and the
    PIL image it came from give the same model input.
    """
    c = pixels.shape[-3]
    pixels = _composite_alpha(pixels)
    if pixels.shape[-3] == 1:
        pixels = pixels.expand(*pixels.shape[:-3], 3, *pixels.shape[-2:])
    if pixels.shape[-3] != 3:
        raise ValueError(f"expected 1 to 4 pixel channels (gray, gray+alpha, RGB, RGBA), got {c}")
    return pixels.contiguous()


def split_images(image) -> tuple[list, bool]:
    """What ``explain()`` was given, as a list of single images and whether it was several.

    A list or tuple holds one image per item; a tensor ``[B, C, H, W]`` with ``B > 1`` is ``B``
    images (a DataLoader's batch, as Captum and pytorch-grad-cam take them); anything else,
    ``[1, C, H, W]`` included, is one image.
    """
    if isinstance(image, (list, tuple)):
        return list(image), True
    if isinstance(image, torch.Tensor) and image.dim() == 4:
        if image.shape[0] == 0:
            raise ValueError(f"got an empty batch of images (shape {tuple(image.shape)})")
        if image.shape[0] > 1:
            return list(image.unbind(0)), True
    return [image], False


def per_image(value, n: int, what: str = "target") -> list:
    """One ``value`` per image of ``n``: a list, tuple or 1-D tensor / array of ``n`` gives one each;
    anything else (an int, a label name, None, a one-element tensor) is the same for all."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim > 0:
        if value.ndim != 1:
            raise ValueError(f"{what} must be one class per image (a 1-D tensor of {n}), got shape {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"got {len(value)} {what}s for {n} images")
        return list(value)
    return [value] * n


def to_model_input(image, preprocess, normalization: Normalization | None, in_channels: int | None) -> torch.Tensor:
    """One image -> float32 tensor [1, C, H, W] in model space."""
    if isinstance(image, (list, tuple)):
        raise TypeError("expected one image; pass a list to explain() to explain several")
    is_pixels = _is_pil(image) or isinstance(image, np.ndarray) or (
        isinstance(image, torch.Tensor) and not image.is_floating_point() and not image.is_complex()
    )
    if is_pixels and isinstance(preprocess, DefaultPreprocess) and in_channels not in (None, len(preprocess.mean)):
        # The ImageNet default makes RGB; guessing a gray model's normalisation would be a silent error.
        raise ValueError(
            f"the model takes {in_channels}-channel input, but the default preprocessing makes ImageNet-normalised "
            f"RGB; pass preprocess= (the model's own transform, returning a {in_channels}xHxW tensor) "
            f"or a {in_channels}xHxW float tensor already in model space"
        )
    if _is_pil(image) or isinstance(image, np.ndarray):
        if in_channels == 1 and _is_pil(image):
            image = pil_to_rgb(image).convert("L")
        x = preprocess(image)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"preprocess returned {type(x).__name__}; it must return a torch tensor")
    elif isinstance(image, torch.Tensor):
        x = _tensor_input(image, normalization)
    else:
        raise TypeError(
            f"unsupported image type {type(image).__name__}; pass a PIL image, an HxWxC numpy array "
            "or a CxHxW / 1xCxHxW torch tensor in model space"
        )
    x = x.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"image tensor must be CxHxW or 1xCxHxW, got shape {tuple(x.shape)}")
    if x.shape[0] != 1:
        raise ValueError(
            f"got a batch of {x.shape[0]} images where one was expected; pass them as a list "
            "(explain([img1, img2])) to explain each"
        )
    if x.shape[-1] < 8 or x.shape[-2] < 8:
        raise ValueError(f"image of size {x.shape[-2]}x{x.shape[-1]} is too small; both sides must be at least 8 pixels")
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"the model expects {in_channels} input channels but the image has {x.shape[1]}; "
            "pass a PIL image (converted automatically) or a tensor with the right channels"
        )
    x = x.float()
    _check_finite(x)
    return x


def _tensor_input(t: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    if t.is_complex():
        raise TypeError("complex tensors are not images")
    if t.dim() not in (3, 4):
        raise ValueError(f"image tensor must be CxHxW, 1xCxHxW or a batch BxCxHxW, got {t.dim()}-D shape "
                         f"{tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"the image tensor is empty (shape {tuple(t.shape)})")
    if t.shape[-3] > 4 and t.shape[-1] <= 4:
        raise ValueError(
            f"image tensor of shape {tuple(t.shape)} looks channels-last (HxWxC); "
            "pass CxHxW, e.g. t.permute(2, 0, 1) (or the numpy array / PIL image itself)"
        )
    if t.dtype == torch.bool:
        raise ValueError("a bool tensor is a mask, not an image; pass pixels (uint8) or a float tensor in model space")
    if not t.is_floating_point():
        # Integer tensors hold pixel values, as torchvision.io.read_image returns them.
        if t.min() < 0 or t.max() > 255:
            raise ValueError("integer image tensor must hold pixel values in [0, 255] (like torchvision.io.read_image)")
        pixels = _composite_alpha(t.float() / 255.0)
        if normalization is None:
            return pixels
        if pixels.shape[-3] == 1 and len(normalization.mean) == 3:
            pixels = pixels_to_rgb(pixels)
        if len(normalization.mean) not in (1, pixels.shape[-3]):
            raise ValueError(
                f"the {t.shape[-3]}-channel pixel tensor does not match the preprocessing's "
                f"{len(normalization.mean)}-channel normalisation; pass a PIL image or a float tensor in model space"
            )
        return normalization.normalize(pixels)
    t = t.float()
    _check_finite(t)
    lo, hi = float(t.min()), float(t.max())
    if hi > 20:
        raise ValueError(
            f"float tensor has values up to {hi:.3g}: it looks like pixels in [0, 255], not a model input; "
            "divide by 255 and normalise it (or pass the PIL image / uint8 array and let the explainer preprocess it)"
        )
    if normalization is not None and lo >= 0 and hi <= 1 and any(m != 0 for m in normalization.mean):
        warnings.warn(
            "the image tensor is in [0, 1] but the model expects normalised inputs; it is used as given. "
            "If these are raw pixels, pass explainer.preprocess(image) or a PIL image instead.",
            UserWarning,
            stacklevel=4,
        )
    return t


def _composite_alpha(pixels: torch.Tensor) -> torch.Tensor:
    """Gray+alpha or RGBA [..., C, H, W] in [0, 1] -> gray or RGB on a white background; others unchanged."""
    if pixels.shape[-3] not in (2, 4):
        return pixels
    colour, alpha = pixels[..., :-1, :, :], pixels[..., -1:, :, :]
    return colour * alpha + (1.0 - alpha)


def _check_finite(t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError("the image contains NaN or infinite values; clean it before explaining")


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a torchvision dependency
        return False
    return isinstance(obj, Image.Image)
