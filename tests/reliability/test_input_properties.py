"""Property: whatever is passed as an image, the input normalisation returns a finite float32
[1, 3, H, W] tensor or raises ValueError/TypeError with a message. Nothing else, and the
caller's image is never modified."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbexplain.core.inputs import DefaultPreprocess, to_model_input

PREP = DefaultPreprocess()
SETTINGS = settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

NP_DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
TORCH_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                torch.float32, torch.float64, torch.bool]
# Value ranges users really produce: pixels, normalised inputs, 16-bit, and anything at all.
RANGES = [(0, 1), (0, 255), (-2.5, 2.5), (0, 65535), (0, 1.05), (-1, 1), (3, 3), (-1e4, 1e4), (0, 20), (1, 2)]


@st.composite
def shapes(draw):
    """Mostly image-like shapes (so the success path is exercised), sometimes anything."""
    side = st.integers(0, 40)
    structured = draw(st.sampled_from(["hw", "hwc", "chw", "1chw", "any"]))
    if structured == "any":
        return tuple(draw(st.lists(st.integers(0, 12), min_size=0, max_size=5)))
    h, w, c = draw(side), draw(side), draw(st.integers(1, 5))
    return {"hw": (h, w), "hwc": (h, w, c), "chw": (c, h, w), "1chw": (draw(st.integers(1, 2)), c, h, w)}[structured]


@st.composite
def values(draw, shape):
    """Float64 values of the given shape in a drawn range, with NaN/inf sprinkled in sometimes."""
    lo, hi = draw(st.sampled_from(RANGES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = np.asarray(rng.uniform(lo, hi, size=shape))
    special = draw(st.sampled_from([None, None, None, np.nan, np.inf, -np.inf]))
    if special is not None and v.size:
        v.flat[rng.integers(v.size)] = special
    return v


def _cast(v: np.ndarray, dtype) -> np.ndarray:
    """Like a user's astype, without relying on undefined float-to-int overflow."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.asarray(v > 0.5)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        v = np.clip(np.nan_to_num(v, posinf=info.max, neginf=info.min), info.min, info.max)
        with np.errstate(invalid="ignore"):  # float64 cannot hold int64's maximum exactly
            return np.asarray(v.round().astype(dtype))
    with np.errstate(over="ignore"):
        return np.asarray(v.astype(dtype))


@st.composite
def images(draw):
    kind = draw(st.sampled_from(["numpy", "tensor", "pil"]))
    if kind == "pil":
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        mode = draw(st.sampled_from(["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        if mode == "I;16":
            return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        return Image.fromarray(rgba, "RGBA").convert(mode)
    shape = draw(shapes())
    v = draw(values(shape))
    if kind == "numpy":
        return _cast(v, draw(st.sampled_from(NP_DTYPES)))
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    if dtype == torch.bfloat16:
        return torch.from_numpy(_cast(v, np.float32)).to(torch.bfloat16)
    np_dtype = {torch.bool: np.bool_}.get(dtype, torch.empty(0, dtype=dtype).numpy().dtype)
    return torch.from_numpy(_cast(v, np_dtype))


def _spatial(image):
    """The (H, W) an accepted image must keep, or None when no reading of it is valid."""
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    if isinstance(image, np.ndarray):
        return image.shape[:2] if image.ndim in (2, 3) else None
    return tuple(image.shape[-2:]) if image.dim() in (3, 4) else None


def _fingerprint(image) -> bytes:
    """The exact bytes of an image (NaN-safe, unlike ==)."""
    if isinstance(image, Image.Image):
        return image.tobytes()
    if isinstance(image, torch.Tensor):
        image = (image.view(torch.int16) if image.dtype == torch.bfloat16 else image).numpy()
    return image.tobytes()


@SETTINGS
@given(images())
def test_any_image_becomes_a_finite_rgb_float_tensor_or_a_clear_error(image):
    before = _fingerprint(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "[0, 1] but normalised expected" is allowed
        try:
            x = to_model_input(image, PREP, PREP.normalization, 3)
        except (ValueError, TypeError) as err:
            assert len(str(err)) > 15, f"unhelpful message: {err!r}"
            x = None
    assert _fingerprint(image) == before, "the caller's image was modified"
    if x is None:
        return
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert x.dim() == 4 and x.shape[:2] == (1, 3)
    assert tuple(x.shape[-2:]) == tuple(_spatial(image)) and min(x.shape[-2:]) >= 8
    assert torch.isfinite(x).all()


@SETTINGS
@given(h=st.integers(8, 40), w=st.integers(8, 40), channels=st.sampled_from([1, 2, 3, 4]), seed=st.integers(0, 2**32 - 1))
def test_the_same_pixels_give_the_same_input_whatever_their_container(h, w, channels, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    from_array = to_model_input(pixels, PREP, PREP.normalization, 3)
    from_tensor = to_model_input(torch.from_numpy(pixels).permute(2, 0, 1), PREP, PREP.normalization, 3)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    from_pil = to_model_input(Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode), PREP,
                              PREP.normalization, 3)
    assert torch.allclose(from_array, from_tensor, atol=1e-5)
    # PIL composites alpha in 8-bit arithmetic: one grey level apart at most.
    assert torch.allclose(from_array, from_pil, atol=1.01 / 255 / 0.224)


@pytest.mark.parametrize("in_channels", [1, 3, None])
def test_float_tensors_in_model_space_pass_through_unchanged(in_channels):
    torch.manual_seed(0)
    x = torch.randn(1, in_channels or 5, 12, 9)
    assert torch.equal(to_model_input(x, PREP, PREP.normalization, in_channels), x)
