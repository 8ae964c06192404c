"""Metrics on hand-made cases whose answers are known."""

import math
from collections import deque

import numpy as np
import pytest
import torch
from torch import nn

from nbexplain.attribution import Attribution
from nbexplain.metrics import (
    METRICS, apply_mask, connected_pieces, deletion_curve, insertion_curve, iou, kept_fraction, label_kept,
    mask_precision, pointing_game, probability_kept, robustness, score_attribution, top_gt_precision,
)

SIZE = 8


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


class RegionMean(nn.Module):
    """Class 0's logit is 4 x (mean of channel 0 over the top-left quarter), class 1's is 2.

    On an all-ones image the logit gap is 4 * (share of the quarter kept) - 2.
    """

    def __init__(self):
        super().__init__()
        region = torch.zeros(SIZE, SIZE)
        region[: SIZE // 2, : SIZE // 2] = 1
        self.register_buffer("region", region)

    def forward(self, x):
        score = 4 * (x[:, 0] * self.region).sum((1, 2)) / self.region.sum()
        return torch.stack([score, torch.full_like(score, 2.0)], 1)


@pytest.fixture
def model():
    return RegionMean().eval()


@pytest.fixture
def x():
    return torch.ones(3, SIZE, SIZE)


def region_mask(rows=slice(0, SIZE // 2), cols=slice(0, SIZE // 2)):
    m = torch.zeros(SIZE, SIZE)
    m[rows, cols] = 1
    return m


def test_apply_mask_keeps_and_fills():
    x = torch.arange(8.0).view(1, 2, 2, 2)
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = apply_mask(x, m, fill=-1.0)
    assert out[0, :, 0, 0].tolist() == [0.0, 4.0] and out[0, :, 0, 1].tolist() == [-1.0, -1.0]


def test_label_and_probability_kept(model, x):
    whole_region = region_mask()
    assert label_kept(model, x, whole_region, 0)
    assert probability_kept(model, x, whole_region, 0) == pytest.approx(1.0)
    half_region = region_mask(rows=slice(0, 2))  # gap 4 * 0.5 - 2 = 0: a tie, p = 0.5
    assert probability_kept(model, x, half_region, 0) == pytest.approx(0.5 / sigmoid(2), rel=1e-5)
    outside = region_mask(rows=slice(4, 8))
    assert not label_kept(model, x, outside, 0)
    assert label_kept(model, x, outside, 1)
    # A different fill changes the answer: filling with 1 is the same as keeping everything.
    assert label_kept(model, x, outside, 0, fill=1.0)


def test_continuous_maps_are_binarised_at_the_given_area(model, x):
    scores = Attribution(region_mask() + 0.01 * torch.rand(SIZE, SIZE), "m", 0)
    assert label_kept(model, x, scores, area=0.25)
    assert not label_kept(model, x, scores, area=0.05)
    with pytest.raises(ValueError, match="area"):
        label_kept(model, x, scores)
    with pytest.raises(ValueError, match="target"):
        label_kept(model, x, region_mask())


def test_robustness_counts_backgrounds_that_keep_the_label(model, x):
    # The model reads only the region: any background outside a mask covering it changes nothing.
    assert robustness(model, x, region_mask(), 0, draws=9) == 1.0
    # Nothing kept and a zero background: the label is always lost.
    assert robustness(model, x, torch.zeros(SIZE, SIZE), 0, draws=4, backgrounds=("zeros",)) == 0.0
    r = robustness(model, x, torch.zeros(SIZE, SIZE), 0, draws=30, backgrounds=("uniform",), seed=3)
    assert r == robustness(model, x, torch.zeros(SIZE, SIZE), 0, draws=30, backgrounds=("uniform",), seed=3)
    with pytest.raises(ValueError, match="backgrounds"):
        robustness(model, x, region_mask(), 0, backgrounds=("plaid",))


def test_deletion_and_insertion_curves_known_values(model, x):
    good = Attribution(region_mask(), "good", 0)  # the region first
    bad = Attribution(1 - region_mask(), "bad", 0)  # the region last
    hi, lo = sigmoid(2), sigmoid(-2)

    d = deletion_curve(model, x, good, steps=4)
    assert d.fractions == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert d.probs == pytest.approx([hi, lo, lo, lo, lo], rel=1e-5)
    assert d.auc == pytest.approx(0.25 * (hi + lo) / 2 + 0.75 * lo, rel=1e-5)

    i = insertion_curve(model, x, good, steps=4)
    assert i.probs == pytest.approx([lo, hi, hi, hi, hi], rel=1e-5)
    assert i.auc == pytest.approx(0.25 * (hi + lo) / 2 + 0.75 * hi, rel=1e-5)

    assert deletion_curve(model, x, bad, steps=4).auc > d.auc
    assert insertion_curve(model, x, bad, steps=4).auc < i.auc


def test_curve_checks(model, x):
    with pytest.raises(ValueError, match="steps"):
        deletion_curve(model, x, region_mask(), 0, steps=0)
    with pytest.raises(ValueError, match="input"):
        deletion_curve(model, x, torch.zeros(4, 4), 0)


def test_kept_fraction():
    assert kept_fraction(region_mask()) == 0.25
    assert kept_fraction(Attribution(torch.rand(10, 10), "m", 0), area=0.3) == pytest.approx(0.3)


def bfs_pieces(grid: np.ndarray, connectivity: int) -> int:
    """Reference count by plain breadth-first search."""
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    seen = np.zeros_like(grid, dtype=bool)
    pieces = 0
    for r, c in zip(*np.nonzero(grid)):
        if seen[r, c]:
            continue
        pieces += 1
        seen[r, c] = True
        queue = deque([(r, c)])
        while queue:
            i, j = queue.popleft()
            for di, dj in steps:
                a, b = i + di, j + dj
                if 0 <= a < grid.shape[0] and 0 <= b < grid.shape[1] and grid[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    queue.append((a, b))
    return pieces


def test_connected_pieces_hand_made():
    assert connected_pieces(torch.zeros(5, 5)) == 0
    assert connected_pieces(torch.ones(5, 5)) == 1
    diagonal = torch.eye(4)
    assert connected_pieces(diagonal, 4) == 4 and connected_pieces(diagonal, 8) == 1
    u_shape = torch.tensor([[1, 0, 1], [1, 0, 1], [1, 1, 1]])  # two arms that meet only at the bottom
    assert connected_pieces(u_shape) == 1
    two_blocks = torch.zeros(6, 6)
    two_blocks[:2, :2] = 1
    two_blocks[4:, 3:] = 1
    assert connected_pieces(two_blocks) == 2
    with pytest.raises(ValueError):
        connected_pieces(two_blocks, connectivity=6)


@pytest.mark.parametrize("seed", range(20))
def test_connected_pieces_matches_bfs_on_random_masks(seed):
    gen = torch.Generator().manual_seed(seed)
    grid = torch.rand(12, 15, generator=gen) < 0.45
    for conn in (4, 8):
        assert connected_pieces(grid, conn) == bfs_pieces(grid.numpy(), conn)


def test_pointing_game():
    gt = region_mask().bool()
    peak_inside = torch.zeros(SIZE, SIZE)
    peak_inside[1, 1] = 5
    assert pointing_game(Attribution(peak_inside, "m", 0), gt)
    peak_outside = torch.zeros(SIZE, SIZE)
    peak_outside[6, 6] = 5
    assert not pointing_game(Attribution(peak_outside, "m", 0), gt)
    # A binary mask inside the ground truth points inside, whichever kept pixel is first.
    assert pointing_game(region_mask(rows=slice(1, 3), cols=slice(1, 3)), gt)


def test_top_gt_precision_mask_precision_and_iou():
    gt = region_mask()
    assert top_gt_precision(Attribution(gt + 0.1, "m", 0), gt) == 1.0
    assert top_gt_precision(Attribution(-gt, "m", 0), gt) == 0.0
    half = region_mask(rows=slice(0, 4), cols=slice(2, 6))  # 16 pixels, 8 on the object
    assert mask_precision(half, gt) == 0.5
    assert iou(half, gt) == pytest.approx(8 / 24)
    assert mask_precision(torch.zeros(SIZE, SIZE), gt) == 0.0
    # A continuous map is binarised at the ground truth's area unless told otherwise.
    ramp = Attribution(gt * 2 + torch.linspace(0, 1, SIZE * SIZE).view(SIZE, SIZE), "m", 0)
    assert iou(ramp, gt) == 1.0
    assert iou(ramp, gt, area=0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ground-truth"):
        iou(half, torch.ones(4, 4))
    with pytest.raises(ValueError, match="empty"):
        top_gt_precision(half, torch.zeros(SIZE, SIZE))


def test_score_attribution_has_every_metric(model, x):
    good = Attribution(region_mask(), "good", 0, seconds=0.5, binary=True)
    scores = score_attribution(model, x, good, area=0.25, gt_mask=region_mask(), curve_steps=4, draws=3)
    assert set(scores) == set(METRICS)
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["seconds"] == 0.5 and scores["area"] == 0.25 and scores["pieces"] == 1
    assert scores["label_kept"] == 1.0 and scores["robustness"] == 1.0
    assert scores["iou"] == 1.0 and scores["precision"] == 1.0 and scores["pointing"] == 1.0
    no_gt = score_attribution(model, x, good, area=0.25, curve_steps=4, draws=3)
    assert "iou" not in no_gt and "label_kept" in no_gt
