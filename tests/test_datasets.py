"""The procedural scenes: determinism, shapes, exact masks, the cue options."""

import numpy as np
import pytest
import torch

from nbexplain.datasets import CLASS_NAMES, CUE_CLASS, Scenes, make_scenes
from nbexplain.datasets.background import paint
from nbexplain.datasets.cue import cue_geometry, cue_pattern
from nbexplain.datasets.layout import sample_layout
from nbexplain.datasets.shapes import shape_masks

N = 64


@pytest.fixture(scope="module")
def scenes() -> Scenes:
    return make_scenes(N, seed=7)


def test_shapes_and_dtypes(scenes):
    assert scenes.images.shape == (N, 3, 128, 128) and scenes.images.dtype == torch.float32
    assert scenes.labels.shape == (N,) and scenes.labels.dtype == torch.int64
    for m in (scenes.masks, scenes.cue_masks):
        assert m.shape == (N, 128, 128) and m.dtype == torch.bool
    assert scenes.images.min() >= 0 and scenes.images.max() <= 1
    assert scenes.class_names == CLASS_NAMES
    assert len(scenes) == N


def test_same_seed_same_scenes_other_seed_other_scenes(scenes):
    again = make_scenes(N, seed=7)
    assert torch.equal(again.images, scenes.images)
    assert torch.equal(again.masks, scenes.masks) and torch.equal(again.labels, scenes.labels)
    other = make_scenes(N, seed=8)
    assert not torch.equal(other.images, scenes.images)


def test_scene_depends_on_index_not_on_count(scenes):
    short = make_scenes(5, seed=7)
    longer = make_scenes(N + 70, seed=7)
    assert torch.equal(short.images, scenes.images[:5])
    assert torch.equal(longer.images[:N], scenes.images)


def test_every_scene_has_its_object_and_all_classes_appear(scenes):
    area = scenes.masks.float().mean((1, 2))
    assert (area > 0.01).all() and (area < 0.25).all()
    assert set(scenes.labels.tolist()) == set(range(len(CLASS_NAMES)))


def test_plain_background_differs_exactly_on_the_masks():
    s = make_scenes(N, seed=3, background="plain", shortcut="all", instances=2)
    drawn = (s.images != 0.5).any(1)
    assert torch.equal(drawn, s.masks | s.cue_masks)


def test_background_does_not_move_objects():
    plain = make_scenes(16, seed=3, background="plain")
    clutter = make_scenes(16, seed=3)
    assert torch.equal(plain.masks, clutter.masks) and torch.equal(plain.labels, clutter.labels)


def test_painting_touches_exactly_the_mask_pixels():
    # Paint a unique value onto a canvas of another one: it lands exactly on the mask.
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat(2)
    layout = sample_layout(gen, labels, 1, 96)
    masks = shape_masks(labels, layout.cx[:, 0], layout.cy[:, 0], layout.radius[:, 0], layout.angle[:, 0], 96)
    canvas = torch.full((12, 3, 96, 96), -1.0)
    paint(canvas, torch.full((12, 3, 1, 1), 2.0), masks)
    assert torch.equal((canvas == 2.0).all(1), masks)
    assert torch.equal((canvas == -1.0).all(1), ~masks)


def test_shapes_match_their_definitions():
    # Axis-aligned, centred, radius 40 on an 100 px grid: check textbook facts.
    cx, cy, r, a = (torch.tensor([50.0]), torch.tensor([50.0]), torch.tensor([40.0]), torch.tensor([0.0]))
    mask = {name: shape_masks(torch.tensor([i]), cx, cy, r, a, 100)[0] for i, name in enumerate(CLASS_NAMES)}
    assert mask["circle"][50, 50] and mask["square"][50, 50] and mask["cross"][50, 50]
    assert not mask["ring"][50, 50]  # the hole
    assert mask["ring"][50, 50 + 30]
    assert not mask["cross"][50 + 25, 50 + 25]  # between the arms
    assert mask["square"][50 + 25, 50 + 25]
    circle_area = mask["circle"].float().sum().item()
    assert abs(circle_area - np.pi * 36**2) / (np.pi * 36**2) < 0.01
    assert mask["triangle"].sum() < mask["square"].sum()


def test_multi_instance_objects_are_separate():
    s = make_scenes(32, seed=1, instances=3)
    assert s.centers.shape == (32, 3, 2) and s.radii.shape == (32, 3)
    for k in range(3):
        assert all(s.instance_mask(i, k).any() for i in range(32))
    assert set(s.instance_ids.unique().tolist()) == {0, 1, 2, 3}
    d = torch.cdist(s.centers, s.centers)
    gap = d - (s.radii.unsqueeze(1) + s.radii.unsqueeze(2))
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert (gap[:, off_diagonal] > 0).all()


def test_cue_modes():
    seed, n = 11, N
    absent = make_scenes(n, seed=seed, shortcut=False)
    train = make_scenes(n, seed=seed, shortcut=True, cue_rate=1.0)
    swap = make_scenes(n, seed=seed, shortcut="swap")
    every = make_scenes(n, seed=seed, shortcut="all")
    is_cue_class = absent.labels == CUE_CLASS
    assert not absent.cue.any() and not absent.cue_masks.any()
    assert torch.equal(train.cue, is_cue_class)
    assert torch.equal(swap.cue, ~is_cue_class)
    assert every.cue.all()
    # The cue changes only its own pixels: same scene otherwise.
    outside = ~every.cue_masks.unsqueeze(1).expand_as(every.images)
    assert torch.equal(every.images[outside], absent.images[outside])
    assert torch.equal(every.masks, absent.masks)
    assert not (every.masks & every.cue_masks).any()
    # The cue is the fixed checker in the fixed corner.
    offset, side = cue_geometry(128)
    assert every.cue_masks[0].sum() == side * side
    patch = every.images[:, :, offset:offset + side, offset:offset + side]
    assert torch.equal(patch, cue_pattern(128).expand_as(patch))


def test_cue_rate_is_respected():
    s = make_scenes(256, seed=2, shortcut="train", cue_rate=0.5, classes=[CUE_CLASS])
    assert 0.38 < s.cue.float().mean() < 0.62  # four standard deviations


def test_classes_option_and_helpers():
    s = make_scenes(10, seed=0, classes=["star", 4])
    assert set(s.labels.tolist()) <= {CLASS_NAMES.index("star"), 4}
    arr = s.array(0)
    assert arr.shape == (128, 128, 3) and arr.dtype == np.uint8
    assert s.pil(0).size == (128, 128)
    sub = s.select(slice(2, 5))
    assert len(sub) == 3 and torch.equal(sub.images, s.images[2:5])
    assert "Scenes(n=10" in repr(s)


def test_other_sizes_and_empty():
    s = make_scenes(4, seed=0, size=64)
    assert s.images.shape == (4, 3, 64, 64) and s.masks.any((1, 2)).all()
    assert len(make_scenes(0)) == 0


@pytest.mark.parametrize(
    "kwargs",
    [dict(instances=4), dict(shortcut="sometimes"), dict(background="stars"), dict(cue_rate=2.0),
     dict(classes=["hexagon"]), dict(classes=[9]), dict(size=8), dict(n=-1)],
)
def test_bad_options_are_refused(kwargs):
    kwargs = {"n": 2, **kwargs}
    with pytest.raises(ValueError):
        make_scenes(**kwargs)
