"""compare() with the methods Captum and pytorch-grad-cam users bring: callables, Captum attribution
objects, CAM objects and precomputed maps, scored like the built-ins under their names."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nbexplain.attribution import Attribution
from nbexplain.baselines import gradcam
from nbexplain.baselines.external import ClassTarget, resolve_methods, to_input_map
from nbexplain.baselines import METHODS
from nbexplain.compare import compare
from nbexplain.metrics import METRICS

TARGET = 1
MAP_METRICS = set(METRICS) - {"pointing", "gt_precision", "precision", "iou"}


def coarse_map(model, x, target):
    """A low-resolution map [1, 1, 8, 8]: brighter towards the bottom right."""
    assert x.shape == (1, 3, 32, 32) and isinstance(target, int)
    return torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)


def test_a_callable_is_run_upsampled_scored_and_named(tiny, image):
    c = compare(tiny, image, methods=["gradcam", coarse_map], target=TARGET)
    assert c.methods == ["gradcam", "coarse_map"]
    a = c.attributions["coarse_map"]
    expected = F.interpolate(coarse_map(None, image[None], 0), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(a.map, expected[0, 0]) and a.target == TARGET and a.seconds > 0
    assert set(c.scores["coarse_map"]) == set(c.scores["gradcam"]) == MAP_METRICS
    assert "coarse_map" in c.table() and "coarse_map" in repr(c)
    fig = c.figure()
    assert len(fig.axes) == 2 * 3 and fig.axes[2].get_title().startswith("coarse_map\n")


@pytest.mark.parametrize("ask", ["in place", "on a clone"])
def test_a_callable_asks_for_input_gradients_the_usual_ways_and_leaves_the_weights_alone(tiny, image, ask):
    """Gradient x input written the two common ways: the callable gets a leaf that needs no grad."""

    def grad_times_input(model, x, target):
        assert x.is_leaf and not x.requires_grad
        x = x.requires_grad_() if ask == "in place" else x.clone().requires_grad_()
        model(x)[0, target].backward()
        return (x.grad * x).sum(1)[0]

    a = compare(tiny, image, methods={"gxi": grad_times_input}, target=TARGET).attributions["gxi"]
    assert a.map.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())


@pytest.mark.parametrize("shape", [(32, 32), (1, 32, 32), (1, 1, 32, 32)])
def test_full_size_maps_of_every_accepted_shape_are_one_map(tiny, image, shape):
    values = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))

    def fn(model, x, target):
        return values.reshape(shape).numpy()

    a = compare(tiny, image, methods={"mine": fn}).attributions["mine"]
    assert torch.equal(a.map, values)


def test_options_go_to_the_callable_as_keywords(tiny, image):
    calls = []

    def fn(model, x, target, scale=1.0):
        calls.append(scale)
        return torch.ones(32, 32) * scale

    compare(tiny, image, methods={"scaled": fn}, method_options={"scaled": {"scale": 3.0}})
    assert calls == [3.0]


def test_a_captum_input_attribution_is_summed_over_channels_in_absolute_value(tiny, image):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(tiny)
    c = compare(tiny, image, methods=[ig], target=TARGET, method_options={"IntegratedGradients": {"n_steps": 8}})
    a = c.attributions["IntegratedGradients"]
    raw = IntegratedGradients(tiny).attribute(image[None], target=TARGET, n_steps=8)
    assert torch.allclose(a.map, raw[0].sum(0).abs(), atol=1e-6)
    assert a.info["sign"] == "absolute_value" and a.info["kind"] == "captum"
    positive = compare(tiny, image, methods={"ig+": ig}, target=TARGET,
                       method_options={"ig+": {"n_steps": 8, "sign": "positive"}}).attributions["ig+"]
    assert torch.allclose(positive.map, raw[0].sum(0).clamp_min(0), atol=1e-6)


def test_captum_layer_gradcam_matches_the_built_in_gradcam(tiny, image):
    from captum.attr import LayerGradCam

    c = compare(tiny, image, methods={"captum": LayerGradCam(tiny, tiny.features[7])}, target=TARGET,
                method_options={"captum": {"relu_attributions": True}})
    ours = gradcam(tiny, image, TARGET, layer="features.7")
    assert torch.allclose(c.attributions["captum"].map, ours.map, atol=1e-5)
    assert c.scores["captum"]["deletion_auc"] == pytest.approx(compare(
        tiny, image, methods={"g": ours}, target=TARGET).scores["g"]["deletion_auc"], abs=1e-6)


def test_a_pytorch_grad_cam_object_is_called_with_the_comparisons_target(tiny, image):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=tiny, target_layers=[tiny.features[7]])
    tiny.train()  # GradCAM's constructor put it in eval mode; compare borrows it and gives it back as it was
    c = compare(tiny, image, methods=[cam, "gradcam"], target=TARGET)
    assert tiny.training and c.methods == ["GradCAM", "gradcam"]
    tiny.eval()
    expected = cam(input_tensor=image[None], targets=[ClassifierOutputTarget(TARGET)])[0]
    assert torch.allclose(c.attributions["GradCAM"].map, torch.from_numpy(expected), atol=1e-5)
    assert c.attributions["GradCAM"].info["kind"] == "cam"
    assert set(c.scores["GradCAM"]) == MAP_METRICS
    cam.activations_and_grads.release()


def test_class_target_reads_one_class_like_pytorch_grad_cams():
    out = torch.arange(12.0).view(3, 4)
    assert ClassTarget(2)(out[1]) == 6.0 and torch.equal(ClassTarget(1)(out), out[:, 1])


def test_precomputed_maps_in_the_dict_form(tiny, image, tmp_path):
    tensor_map = torch.rand(32, 32, generator=torch.Generator().manual_seed(1))
    array_map = np.random.default_rng(2).random((16, 16))
    c = compare(tiny, image, methods={"gradcam": "gradcam", "saved": tensor_map, "coarse": array_map})
    assert c.methods == ["gradcam", "saved", "coarse"]
    assert torch.equal(c.attributions["saved"].map, tensor_map)
    assert c.attributions["coarse"].shape == (32, 32) and c.attributions["coarse"].info["precomputed"]
    assert c.scores["saved"]["seconds"] is None and c.scores["gradcam"]["seconds"] > 0
    line = next(row for row in c.table().splitlines() if row.startswith("saved"))
    assert line.split()[1] == "-"
    assert c.figure().axes[2].get_title() == "saved\nprecomputed"
    c.save(tmp_path / "c.png")
    with pytest.raises(TypeError, match="needs a name"):
        compare(tiny, image, methods=["gradcam", tensor_map])


def test_unknown_things_get_an_error_listing_what_is_accepted(tiny, image):
    with pytest.raises(TypeError, match="Captum attribution object.*pytorch-grad-cam CAM object"):
        compare(tiny, image, methods=["gradcam", 42])
    with pytest.raises(ValueError, match="unknown method.*'lime'"):
        compare(tiny, image, methods={"x": "lime"})
    with pytest.raises(ValueError, match="keeps its name"):
        compare(tiny, image, methods={"ours": "nbexplain"})
    with pytest.raises(TypeError, match="returned a str"):
        compare(tiny, image, methods={"bad": lambda model, x, target: "map"})
    with pytest.raises(ValueError, match="aspect ratio"):
        compare(tiny, image, methods={"wide": torch.rand(8, 16)})
    with pytest.raises(ValueError, match="one map for one image"):
        compare(tiny, image, methods={"batch": torch.rand(2, 2, 32, 32)})
    with pytest.raises(ValueError, match="sign must be"):
        compare(tiny, image, methods={"f": coarse_map}, method_options={"f": {"sign": "loud"}})


def test_names_follow_the_objects_and_stay_unique():
    from captum.attr import IntegratedGradients, Saliency

    model = torch.nn.Linear(2, 2)
    ig1, ig2, sal = IntegratedGradients(model), IntegratedGradients(model), Saliency(model)
    named = resolve_methods([ig1, sal, ig2, ig1, "gradcam", "gradcam", lambda m, x, t: x], METHODS)
    assert list(named) == ["IntegratedGradients", "Saliency", "IntegratedGradients 2", "gradcam", "function"]
    assert named["IntegratedGradients 2"] is ig2
    given = Attribution(map=torch.ones(4, 4), method="old", target=0)
    assert list(resolve_methods([given], METHODS)) == ["old"]


def test_the_builtin_under_another_name_and_a_given_attribution(tiny, image):
    c = compare(tiny, image, methods={"cam": "gradcam", "given": Attribution(torch.ones(8, 8), "x", None)})
    assert c.attributions["cam"].method == "cam" and c.attributions["cam"].info["layer"] == gradcam(tiny, image).info["layer"]
    assert torch.equal(c.attributions["given"].map, torch.ones(32, 32))


def test_to_input_map_reduces_channels_and_resizes():
    raw = torch.tensor([[[1.0, -3.0]], [[-2.0, 1.0]]])  # [C=2, 1, 2]
    assert torch.equal(to_input_map(raw, (1, 2)), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(to_input_map(raw, (1, 2), "all"), torch.tensor([[-1.0, -2.0]]))
    assert torch.equal(to_input_map(raw, (1, 2), "positive"), torch.zeros(1, 2))
    one = torch.tensor([[[-1.0, 2.0]]])  # one channel: signed as it comes
    assert torch.equal(to_input_map(one, (1, 2)), torch.tensor([[-1.0, 2.0]]))
    big = to_input_map(torch.ones(64, 64), (32, 32))
    assert big.shape == (32, 32) and torch.allclose(big, torch.ones(32, 32))
