"""compare(): every method on one target, one table, a figure that renders headless."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nbexplain import Explainer
from nbexplain.compare import DEFAULT_AREA, Comparison, compare
from nbexplain.metrics import METRICS

from conftest import fast_options, make_tiny

LAYERS = ["features.2", "features.5", "features.7"]
OCCLUSION_FAST = {"occlusion": {"window": 8, "stride": 8}}


class StubExplainer:
    """Stands in for the Explainer: a fixed square mask, whatever the image."""

    def __init__(self, target=1):
        self.target, self.calls = target, []

    def explain(self, img, target=None, **kwargs):
        self.calls.append(dict(target=target, **kwargs))
        mask = torch.zeros(32, 32)
        mask[8:20, 8:20] = 1
        t = self.target if target is None else target
        return SimpleNamespace(mask=mask, input=img.clone(), explanation=img * mask, target=t, seconds=0.25,
                               area=float(mask.mean()), normalization=None, config=SimpleNamespace(fill="mean"))


def square_gt():
    gt = torch.zeros(32, 32, dtype=torch.bool)
    gt[4:16, 4:16] = True
    return gt


def test_baselines_only_share_the_models_top1(tiny, image):
    c = compare(tiny, image, methods=["gradcam", "occlusion"], method_options=OCCLUSION_FAST)
    top1 = int(tiny(image[None]).argmax())
    assert isinstance(c, Comparison) and c.target == top1
    assert c.methods == ["gradcam", "occlusion"]
    assert all(a.target == top1 for a in c.attributions.values())
    assert c.area == DEFAULT_AREA
    assert c.attributions["occlusion"].info["window"] == 8
    for scores in c.scores.values():
        assert set(scores) == set(METRICS) - {"pointing", "gt_precision", "precision", "iou"}
        assert scores["area"] == pytest.approx(DEFAULT_AREA, abs=1 / 1024)
    assert 0 < c.prob <= 1


def test_ground_truth_adds_localisation_and_sets_the_area(tiny, image):
    c = compare(tiny, image, methods="gradcam", gt_mask=square_gt().numpy(), target=2)
    assert c.target == 2 and c.area == pytest.approx(144 / 1024)
    assert {"pointing", "gt_precision", "precision", "iou"} <= set(c.scores["gradcam"])
    c = compare(tiny, image, methods="gradcam", gt_mask=square_gt(), area=0.5)
    assert c.scores["gradcam"]["area"] == 0.5
    with pytest.raises(ValueError, match="model-input resolution"):
        compare(tiny, image, methods="gradcam", gt_mask=torch.ones(8, 8))


def test_stub_explainer_sets_target_input_and_area(tiny, image):
    stub = StubExplainer(target=3)
    c = compare(tiny, image, methods=["nbexplain", "gradcam"], explainer=stub, seed=5)
    assert stub.calls == [dict(target=None, seed=5, progress=False, live=False)]
    assert c.target == 3 and c.attributions["gradcam"].target == 3
    assert c.area == pytest.approx(144 / 1024)
    assert c.scores["gradcam"]["area"] == pytest.approx(c.scores["nbexplain"]["area"])
    assert c.scores["nbexplain"]["seconds"] == 0.25 and c.scores["nbexplain"]["pieces"] == 1
    assert torch.equal(c.masked_input("nbexplain"), c.explanation.explanation)


def test_real_explainer_end_to_end(image, tmp_path):
    model = make_tiny()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ex = Explainer(model, layers=LAYERS)
    c = compare(model, image, methods=["nbexplain", "gradcam", "occlusion"], explainer=ex, target=1,
                gt_mask=square_gt(), method_options=OCCLUSION_FAST, save=tmp_path / "cmp.png", **fast_options())
    res = c.explanation
    assert res.target == 1 and all(a.target == 1 for a in c.attributions.values())
    assert torch.equal(c.attributions["nbexplain"].map, res.mask)
    assert c.area == pytest.approx(res.area)
    # The metric's label check agrees with the explainer's own, since both use the explainer's fill.
    assert c.scores["nbexplain"]["label_kept"] == float(res.label_kept)
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_displays(tiny, image, tmp_path):
    c = compare(tiny, image, methods=["gradcam", "integrated_gradients"], gt_mask=square_gt(),
                method_options={"integrated_gradients": {"steps": 4}})
    assert c._repr_png_()[:4] == b"\x89PNG"
    page = c._repr_html_()
    assert "<table>" in page and "integrated_gradients" in page and "data:image/png;base64," in page
    text = repr(c)
    assert "gradcam" in text and "iou ↑" in text and "deletion_auc ↓" in text
    fig = c.figure()
    assert len(fig.axes) == 2 * 3
    assert c.save(tmp_path / "sub" / "c.pdf").endswith("c.pdf") and (tmp_path / "sub" / "c.pdf").stat().st_size > 0
    assert c.image().shape == (32, 32, 3) and 0 <= c.image().min() and c.image().max() <= 1


def test_to_frame_needs_pandas(tiny, image):
    c = compare(tiny, image, methods="gradcam")
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pandas"):
            c.to_frame()
    else:
        frame = c.to_frame()
        assert list(frame.index) == ["gradcam"] and "label_kept" in frame.columns


def test_bad_arguments(tiny, image):
    with pytest.raises(ValueError, match="unknown method"):
        compare(tiny, image, methods=["gradcam", "lime"])
    with pytest.raises(TypeError, match="explainer"):
        compare(tiny, image, methods=["gradcam"], steps=5)
    with pytest.raises(ValueError, match="method_options"):
        compare(tiny, image, methods=["gradcam"], method_options={"occlusion": {}})
    with pytest.raises(ValueError, match="out of range"):
        compare(tiny, image, methods=["gradcam"], target=9)


def test_pixels_go_through_the_preprocess(tiny):
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    c = compare(tiny, pixels, methods="gradcam")
    assert c.input.shape == (3, 32, 32)
    assert np.abs(c.image() - pixels / 255).max() < 1e-5  # ImageNet normalisation, undone for display
