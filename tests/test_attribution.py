"""The one attribution type: validation, ranking, binarisation at an area."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nbexplain.attribution import Attribution, as_attribution


def test_map_is_normalised_to_cpu_float_hw():
    a = Attribution(map=torch.arange(12, dtype=torch.float64).view(1, 3, 4), method="m", target=torch.tensor(2))
    assert a.map.dtype == torch.float32 and a.shape == (3, 4)
    assert a.target == 2 and isinstance(a.target, int)
    assert a.area is None and not a.binary


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(map=torch.tensor([[0.0, float("nan")]])), ValueError),
        (dict(map=torch.zeros(2, 3, 4)), ValueError),
        (dict(map=torch.tensor([[0.0, 0.5]]), binary=True), ValueError),
        (dict(map=torch.zeros(2, 2), target=1.0), TypeError),
        (dict(map=torch.zeros(2, 2), target=True), TypeError),
    ],
)
def test_bad_maps_and_targets_are_refused(kwargs, error):
    with pytest.raises(error):
        Attribution(**{"method": "m", "target": 0, **kwargs})


def test_binarize_keeps_exactly_the_top_pixels():
    values = torch.randperm(100, generator=torch.Generator().manual_seed(3)).float().view(10, 10)
    b = Attribution(values, "m", 0).binarize(0.25)
    assert b.binary and b.area == pytest.approx(0.25)
    assert torch.equal(b.map.bool(), values >= 75)
    assert b.info["binarized_at"] == 0.25
    assert Attribution(values, "m", 0).binarize(0.0).map.sum() == 0
    assert Attribution(values, "m", 0).binarize(1.0).map.sum() == 100


def test_ties_are_broken_deterministically_and_without_raster_bias():
    flat = Attribution(torch.zeros(40, 40), "m", 0)
    first, second = flat.binarize(0.5).map, flat.binarize(0.5).map
    assert torch.equal(first, second)
    # Raster order would keep exactly the top 20 rows; a spatially neutral order keeps about half of them.
    assert 0.35 < float(first[:20].mean()) < 0.65


def test_ranking_puts_higher_values_first_and_ties_after():
    m = torch.zeros(6, 6)
    m[1, 2], m[4, 4] = 3.0, 2.0
    order = Attribution(m, "m", 0).ranking()
    assert order[:2].tolist() == [1 * 6 + 2, 4 * 6 + 4]
    assert sorted(order.tolist()) == list(range(36))


def test_area_validation():
    a = Attribution(torch.rand(4, 4), "m", 0)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            a.binarize(bad)
    with pytest.raises(TypeError):
        a.binarize("half")
    with pytest.raises(ValueError, match="continuous"):
        a.as_mask()


def test_binary_map_is_its_own_mask():
    m = torch.zeros(5, 5)
    m[1:3, 1:3] = 1
    a = Attribution(m, "m", 0, binary=True)
    assert a.area == pytest.approx(4 / 25)
    assert torch.equal(a.as_mask(area=0.9), m.bool())


def test_from_explanation_wraps_mask_target_and_time():
    mask = torch.zeros(8, 8)
    mask[2:5, 2:6] = 1
    res = SimpleNamespace(mask=mask, target=3, seconds=1.5, area=float(mask.mean()), prob_original=0.9,
                          prob_explanation=0.8, steps=12)
    a = Attribution.from_explanation(res)
    assert (a.method, a.target, a.seconds, a.binary) == ("nbexplain", 3, 1.5, True)
    assert torch.equal(a.map, mask)
    assert a.info["prob_explanation"] == 0.8


def test_as_attribution_detects_binary_masks():
    assert as_attribution(torch.ones(3, 3, dtype=torch.bool)).binary
    assert as_attribution(np.eye(3)).binary
    assert not as_attribution(torch.rand(3, 3) + 0.1).binary
    a = Attribution(torch.rand(3, 3), "m", 1)
    assert as_attribution(a) is a


def test_display_map_scales_positive_part():
    a = Attribution(torch.tensor([[-2.0, 0.0], [1.0, 4.0]]), "m", 0)
    assert np.allclose(a.display_map(), [[0, 0], [0.25, 1]])
    assert np.allclose(Attribution(torch.zeros(2, 2), "m", 0).display_map(), 0)
