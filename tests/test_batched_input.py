"""explain() takes a batched tensor [B, C, H, W] the way Captum and pytorch-grad-cam users hold images."""

import numpy as np
import pytest
import torch

from nbexplain import Explainer, Explanation
from nbexplain.core.inputs import per_image, split_images

from conftest import fast_options

LAYERS = ["features.2", "features.5", "features.7"]
#: the tiny random model may give a class to the fill alone: the note says so, and is not the point here
pytestmark = pytest.mark.filterwarnings("ignore:explaining:UserWarning")


def batch_of(n: int, seed: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 3, 32, 32)


def test_a_batch_is_explained_as_the_list_of_its_images(tiny):
    x = batch_of(3)
    ex = Explainer(tiny, layers=LAYERS)
    from_batch = ex.explain(x, progress=False, seed=2, **fast_options())
    from_list = ex.explain(list(x), progress=False, seed=2, **fast_options())
    assert isinstance(from_batch, list) and len(from_batch) == 3
    assert all(isinstance(r, Explanation) for r in from_batch)
    assert [r.target for r in from_batch] == tiny(x).argmax(1).tolist()
    for a, b, image in zip(from_batch, from_list, x):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.input, image)


def test_a_batch_of_one_is_one_explanation(tiny):
    res = Explainer(tiny, layers=LAYERS).explain(batch_of(1), progress=False, **fast_options())
    assert isinstance(res, Explanation) and res.mask.shape == (32, 32)


@pytest.mark.parametrize("target", [torch.tensor([2, 0, 3]), np.array([2, 0, 3]), [2, 0, 3]])
def test_one_target_per_image_as_a_tensor_array_or_list(tiny, target):
    results = Explainer(tiny, layers=LAYERS).explain(batch_of(3), target=target, progress=False, **fast_options())
    assert [r.target for r in results] == [2, 0, 3]


def test_one_int_target_is_for_every_image_of_the_batch(tiny):
    results = Explainer(tiny, layers=LAYERS).explain(batch_of(2), target=1, progress=False, **fast_options())
    assert [r.target for r in results] == [1, 1]


def test_a_pixel_batch_goes_through_like_single_pixel_tensors(tiny):
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    ex = Explainer(tiny, layers=LAYERS)
    results = ex.explain(pixels, progress=False, **fast_options())
    single = ex.explain(pixels[1], progress=False, **fast_options())
    assert torch.equal(results[1].input, single.input)


def test_shapes_that_make_no_sense_are_refused(tiny):
    ex = Explainer(tiny, layers=LAYERS)
    with pytest.raises(ValueError, match="got 2 targets for 3 images"):
        ex.explain(batch_of(3), target=torch.tensor([0, 1]), progress=False)
    with pytest.raises(ValueError, match="1-D tensor"):
        ex.explain(batch_of(2), target=torch.zeros(2, 1, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="empty batch"):
        ex.explain(torch.zeros(0, 3, 32, 32), progress=False)
    with pytest.raises(ValueError, match="BxCxHxW"):
        ex.explain(torch.zeros(2, 2, 3, 32, 32), progress=False)
    with pytest.raises(ValueError, match="channels-last"):
        ex.explain(torch.zeros(2, 32, 32, 3), progress=False)  # a batch of HxWxC arrays held as a tensor


def test_helpers_keep_lists_and_single_images_as_before():
    one = torch.zeros(1, 3, 8, 8)
    assert split_images(one) == ([one], False)
    images, many = split_images([one[0], one[0]])
    assert many and len(images) == 2
    assert per_image(None, 2) == [None, None]
    assert per_image(torch.tensor(3), 2) == [torch.tensor(3)] * 2
    assert per_image("cat", 2) == ["cat", "cat"]


def test_the_amortised_explainer_takes_a_batch_too(tiny):
    from nbexplain.amortized import AmortizedExplainer

    x = batch_of(3)
    masks = torch.zeros(3, 32, 32)
    masks[:, 8:20, 8:20] = 1.0
    am = AmortizedExplainer(tiny, layers=LAYERS, config=dict(mask_resolution=16, unet_width=4, unet_depth=2))
    am.fit(x, masks=masks, steps=2, batch_size=2, progress=False)
    results = am.explain(x, target=torch.tensor([0, 1, 2]))
    assert [r.target for r in results] == [0, 1, 2]
    assert all(torch.equal(r.mask, am.explain(image, target=k).mask) for k, (r, image) in enumerate(zip(results, x)))
    assert isinstance(am.explain(x[:1]), Explanation)
