"""Images in every form users pass them: each becomes the right model input or a clear error."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import fast_options, make_tiny
from nbexplain import Explainer
from nbexplain.core.inputs import IMAGENET_MEAN, IMAGENET_STD, DefaultPreprocess, to_model_input

from ._support import TINY_LAYERS, ModelState, is_binary

PREP = DefaultPreprocess()
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)


def model_input(image):
    """The default normalisation path for a 3-channel model, as explain() runs it."""
    return to_model_input(image, PREP, PREP.normalization, 3)


def pixels_of(x: torch.Tensor) -> np.ndarray:
    """Model input [1,3,H,W] -> HxWx3 pixels in [0, 1] (undoing the ImageNet normalisation)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x[0] * std + mean).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def explainer():
    return Explainer(make_tiny(), layers=TINY_LAYERS)


def explain(ex, image, **kw):
    return ex.explain(image, progress=False, **fast_options(**kw))


# -- PIL modes ---------------------------------------------------------------------


def _with_transparency(mode: str) -> tuple[Image.Image, np.ndarray]:
    """An image of `mode` whose left half is fully transparent, and the expected pixels."""
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[:, :12, 3] = 0
    image = Image.fromarray(rgba, "RGBA")
    expected = RGB.astype(np.float64) / 255
    if mode == "LA":
        image = image.convert("LA")
        gray = np.asarray(Image.fromarray(RGB).convert("L"), np.float64) / 255
        expected = np.repeat(gray[:, :, None], 3, axis=2)
    expected = expected.copy()
    expected[:, :12] = 1.0  # transparent pixels show as white
    return image, expected


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white(mode):
    image, expected = _with_transparency(mode)
    assert np.abs(pixels_of(model_input(image)) - expected).max() < 1.5 / 255


def test_palette_with_transparency_uses_it():
    image = Image.fromarray(RGB).convert("P")
    index = np.asarray(image)
    see_through = int(index[0, 0])
    image.info["transparency"] = see_through
    got = pixels_of(model_input(image))
    opaque = np.asarray(Image.fromarray(RGB).convert("P").convert("RGB"), np.float64) / 255
    hidden = index == see_through
    assert np.allclose(got[hidden], 1.0, atol=1e-6)
    assert np.allclose(got[~hidden], opaque[~hidden], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_opaque_modes_match_pils_own_rgb_conversion(mode):
    image = Image.fromarray(RGB).convert(mode)
    expected = np.asarray(image.convert("RGB"), np.float64) / 255
    assert np.abs(pixels_of(model_input(image)) - expected).max() < 1e-6


def test_grayscale_becomes_three_equal_channels():
    got = pixels_of(model_input(Image.fromarray(RGB).convert("L")))
    assert np.allclose(got[..., 0], got[..., 1], atol=1e-6) and np.allclose(got[..., 1], got[..., 2], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK"])
def test_every_pil_mode_explains_end_to_end(explainer, mode):
    res = explain(explainer, Image.fromarray(RGB).convert(mode))
    assert res.mask.shape == (20, 24) and is_binary(res.mask)
    assert res.input.shape == (3, 20, 24) and torch.isfinite(res.input).all()


# -- 16-bit images -------------------------------------------------------------------


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (gray or RGB) written by hand: Pillow cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    colour_type = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("shape", [(20, 24), (20, 24, 3)], ids=["gray", "rgb"])
def test_16bit_png_keeps_its_brightness(tmp_path, shape):
    arr = RNG.integers(0, 65536, size=shape).astype(np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(arr))
    got = pixels_of(model_input(Image.open(path)))
    expected = arr / 65535.0
    if arr.ndim == 2:
        expected = np.repeat(expected[:, :, None], 3, axis=2)
    assert np.abs(got - expected).max() < 1.5 / 255  # 8-bit precision, never 256x too bright or dark


def test_dark_16bit_png_stays_dark(tmp_path):
    # Values below 256 in a 16-bit file are nearly black, not 8-bit pixels.
    Image.fromarray(np.full((16, 16), 200, np.uint16)).save(tmp_path / "dark.png")
    image = Image.open(tmp_path / "dark.png")
    assert image.mode.startswith("I")
    assert pixels_of(model_input(image)).max() < 2 / 255


# -- numpy arrays --------------------------------------------------------------------


def test_hwc_uint8_array_matches_the_pil_image(explainer):
    a = explain(explainer, RGB)
    b = explain(explainer, Image.fromarray(RGB))
    assert torch.equal(a.input, b.input) and torch.equal(a.mask, b.mask)


def test_hw_array_matches_grayscale_pil():
    gray = np.asarray(Image.fromarray(RGB).convert("L"))
    assert torch.equal(model_input(gray), model_input(Image.fromarray(gray, "L")))
    assert torch.equal(model_input(gray[:, :, None]), model_input(gray))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_arrays_match_their_pil_images(mode):
    image, _ = _with_transparency(mode)
    assert torch.allclose(model_input(np.asarray(image)), model_input(image), atol=1.5 / 255 / min(IMAGENET_STD))


def test_float_arrays_in_either_pixel_range_agree():
    ref = model_input(RGB)
    assert torch.allclose(model_input(RGB.astype(np.float32) / 255), ref, atol=1e-5)
    assert torch.allclose(model_input(RGB.astype(np.float64)), ref, atol=1e-5)
    assert torch.equal(model_input(RGB.astype(np.int64)), ref)
    assert torch.allclose(model_input(RGB.astype(np.uint16) * 257), ref, atol=1e-5)


def test_bool_array_is_black_and_white():
    mask = RGB[:, :, 0] > 128
    assert torch.equal(model_input(mask), model_input(mask.astype(np.uint8) * 255))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((16, 16, 3), 1.02, np.float32), "unclear whether pixels are in"),
        (RGB.astype(np.float32) - 128, r"pass pixels in \[0, 1\] or \[0, 255\]"),
        (RGB.astype(np.int32) * 4, "outside"),
        (RGB.transpose(2, 0, 1).copy(), "channels-first"),
        (np.zeros((16, 16, 5), np.uint8), "5 channels"),
        (RGB[None], "HxW or HxWxC"),
        (np.zeros((0, 16, 3), np.uint8), "empty"),
        (np.zeros((16, 16, 3), np.complex64), "unsupported array dtype"),
    ],
    ids=["float-just-over-1", "negative", "int-over-255", "chw", "5-channels", "4-d", "empty", "complex"],
)
def test_ambiguous_or_broken_arrays_are_refused(array, message):
    with pytest.raises((ValueError, TypeError), match=message):
        model_input(array)


# -- tensors ---------------------------------------------------------------------


def test_float_tensor_of_0_255_pixels_is_refused():
    with pytest.raises(ValueError, match=r"looks like pixels in \[0, 255\].*divide by 255"):
        model_input(torch.from_numpy(RGB).permute(2, 0, 1).float())


def test_unnormalised_0_1_tensor_warns_and_is_used_as_given(explainer):
    pixels = torch.from_numpy(RGB).permute(2, 0, 1).float() / 255
    with pytest.warns(UserWarning, match=r"in \[0, 1\] but the model expects normalised inputs"):
        res = explain(explainer, pixels)
    assert torch.equal(res.input, pixels)


def test_normalised_tensor_is_taken_silently():
    x = model_input(RGB)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(model_input(x), x[None])


def test_3d_and_4d_tensors_are_the_same_image(explainer):
    torch.manual_seed(0)
    x = torch.randn(3, 32, 32)
    a, b = explain(explainer, x), explain(explainer, x[None])
    assert torch.equal(a.mask, b.mask) and torch.equal(a.input, b.input)


@pytest.mark.parametrize(
    "tensor, message",
    [
        # A batch is several images (tests/test_batched_input.py); inside a list, where each item is one
        # image, it is refused.
        ([torch.randn(2, 3, 32, 32)], r"batch of 2 images"),
        (torch.randn(1, 1, 3, 32, 32), "5-D"),
        (torch.randn(32, 32), "2-D"),
        (torch.randn(32, 32, 3), r"channels-last.*permute\(2, 0, 1\)"),
        (torch.randn(4, 32, 32), "expects 3 input channels but the image has 4"),
        (torch.zeros(3, 0, 32), "empty"),
        (torch.ones(3, 32, 32, dtype=torch.bool), "mask, not an image"),
        (torch.full((3, 32, 32), 300, dtype=torch.int64), r"\[0, 255\]"),
        (torch.randn(3, 32, 32, dtype=torch.complex64), "complex"),
    ],
    ids=["batch-in-a-list", "5d", "2d", "hwc", "4-channels", "empty", "bool", "int-over-255", "complex"],
)
def test_wrongly_shaped_or_typed_tensors_are_refused(explainer, tensor, message):
    with pytest.raises((ValueError, TypeError), match=message):
        explain(explainer, tensor)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_nan_and_inf_are_refused(explainer, bad, kind):
    x = torch.randn(3, 32, 32)
    x[1, 5, 7] = bad
    image = x if kind == "tensor" else (x.clamp(0, 1).permute(1, 2, 0).numpy().copy())
    if kind == "array":
        image[5, 7, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite values; clean it"):
        explain(explainer, image)


@pytest.mark.parametrize("image", [np.zeros((32, 32, 3), np.uint8), torch.zeros(3, 32, 32)], ids=["black-pixels", "zero-tensor"])
def test_all_zero_image_gives_a_finite_binary_mask(explainer, image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-zero tensor also lies in [0, 1]: the warning is fair
        res = explain(explainer, image)
    assert is_binary(res.mask)
    assert all(np.isfinite(v).all() for v in res.history.values())
    assert np.isfinite([res.prob_original, res.prob_explanation, res.area]).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_tensors_are_pixels(dtype):
    t = torch.from_numpy(RGB).permute(2, 0, 1).to(dtype)
    assert torch.equal(model_input(t), model_input(RGB))


def test_rgba_integer_tensor_matches_the_pil_image():
    image, _ = _with_transparency("RGBA")
    t = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # like torchvision.io.read_image
    assert torch.allclose(model_input(t), model_input(image), atol=1.5 / 255 / min(IMAGENET_STD))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_explained_in_float32(explainer, dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 32, 32).to(dtype)
    res = explain(explainer, x)
    ref = explain(explainer, x.float())
    assert res.input.dtype == torch.float32
    assert torch.equal(res.input, x.float()) and torch.equal(res.mask, ref.mask)


def test_the_users_image_is_not_modified(explainer):
    torch.manual_seed(0)
    x = torch.randn(3, 32, 32)
    arr = RGB.copy()
    x0 = x.clone()
    explain(explainer, x)
    explain(explainer, arr)
    assert torch.equal(x, x0) and np.array_equal(arr, RGB)


# -- sizes ---------------------------------------------------------------------


def _pooled_model() -> nn.Module:
    """Tiny, and cheap at any size: it averages 4x4 blocks before the first convolution."""
    return nn.Sequential(nn.AvgPool2d(4), make_tiny()).eval()


@pytest.mark.parametrize("hw", [(32, 32), (500, 334), (334, 500)])
def test_odd_and_non_square_sizes_keep_their_shape(hw):
    model = _pooled_model()
    before = ModelState.of(model)
    shapes = []

    class Watch:
        def on_step(self, state):
            shapes.append(tuple(state.mask.shape))

    ex = Explainer(model, layers=["1.features.2", "1.features.7"])
    image = RNG.integers(0, 256, size=hw + (3,), dtype=np.uint8)
    res = ex.explain(image, progress=False, callbacks=[Watch()], **fast_options(steps=2, min_steps=2))
    assert res.mask.shape == hw and res.input.shape == (3, *hw) and is_binary(res.mask)
    # The working mask keeps the aspect ratio (longest side = mask_resolution), in the right orientation.
    h, w = shapes[0]
    assert max(h, w) == 16 and (h >= w) == (hw[0] >= hw[1])
    before.assert_same(model)


@pytest.mark.parametrize("hw", [(1, 224), (224, 1), (7, 64)])
def test_images_too_thin_to_explain_are_refused(explainer, hw):
    with pytest.raises(ValueError, match=r"too small; both sides must be at least 8 pixels"):
        explain(explainer, np.zeros(hw + (3,), np.uint8))


def test_huge_image_is_refused_unless_allowed(explainer, monkeypatch):
    big = torch.zeros(3, 2000, 3000, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"2000x3000 pixels, more than max_input_pixels.*max_input_pixels=None"):
        explain(explainer, big)

    # With the limit lifted it goes ahead; stop it where the optimisation would start (never run at this size).
    seen = {}

    def stop(self, batch, targets, cfg, seed, callbacks):
        seen["shape"] = tuple(batch.shape)
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(Explainer, "_explain_batch", stop)
    with pytest.raises(RuntimeError, match="stopped before training"):
        explain(explainer, big, max_input_pixels=None)
    assert seen["shape"] == (1, 3, 2000, 3000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: input on the CPU, model on the GPU")
def test_cpu_image_for_a_gpu_model():
    model = make_tiny().cuda()
    res = Explainer(model, layers=TINY_LAYERS).explain(torch.randn(3, 32, 32), progress=False, **fast_options())
    assert res.mask.device.type == "cpu" and is_binary(res.mask)
    assert next(model.parameters()).device.type == "cuda"
