import math

import pytest
import torch

from nbexplain.core import losses


def test_area_and_binarization_on_hand_made_masks():
    m = torch.tensor([[[0.0, 1.0], [1.0, 0.5]]])
    assert losses.area(m).item() == pytest.approx(2.5 / 4)
    assert losses.binarization(m).item() == pytest.approx(0.25 / 4)
    assert losses.binarization(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])).item() == 0.0


def test_total_variation_counts_four_directions():
    flat = torch.ones(1, 4, 4)
    assert losses.total_variation(flat).item() == 0.0
    half = torch.zeros(1, 4, 4)
    half[:, :, 2:] = 1.0  # a vertical edge: horizontal and both diagonal differences see it
    horizontal = 4 / 12  # 4 of 12 horizontal pairs differ
    diagonal = 3 / 9  # 3 of 9 pairs in each diagonal direction
    assert losses.total_variation(half).item() == pytest.approx((0 + horizontal + 2 * diagonal) / 4)


def test_activation_distances_are_zero_on_equal_and_scale_free():
    a = torch.rand(2, 3, 5, 5) + 0.1
    for kind in ("mse", "std_mse", "cosine"):
        assert torch.allclose(losses.activation_distance(a, a, kind), torch.zeros(2), atol=1e-6)
    # Relative MSE does not depend on the activation scale.
    d1 = losses.activation_distance(a, a * 0.5, "mse")
    d2 = losses.activation_distance(a * 10, a * 5, "mse")
    assert torch.allclose(d1, d2, rtol=1e-4)
    assert torch.allclose(d1, torch.full((2,), 0.25), rtol=1e-4)
    # Cosine ignores positive rescaling entirely.
    assert torch.allclose(losses.activation_distance(a, 3 * a, "cosine"), torch.zeros(2), atol=1e-6)
    with pytest.raises(ValueError):
        losses.activation_distance(a, a, "l7")


def test_std_mse_survives_dead_channels():
    a = torch.rand(1, 4, 6, 6)
    a[:, 0] = 0.0  # a dead channel has no spread
    e = a.clone()
    e[:, 0] = 1.0
    d = losses.activation_distance(a, e, "std_mse")
    assert torch.isfinite(d).all() and d.item() > 0


def test_kl_and_ce():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    assert losses.output_kl(z, z, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.output_kl(z, z.flip(1), 2.0).item() > 0
    ce = losses.label_ce(z, torch.tensor([0]))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
    assert ce.item() == pytest.approx(expected, rel=1e-5)
