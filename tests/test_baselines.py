"""Captum baselines behind one interface: shapes, targets, known answers, the model left alone."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from nbexplain.attribution import Attribution
from nbexplain.baselines import (
    METHODS, default_gradcam_layer, gradcam, integrated_gradients, occlusion, occlusion_window, run_method,
)

from conftest import make_tiny, tiny_resnet

FAST = {"gradcam": {}, "occlusion": {"window": 4, "stride": 4}, "integrated_gradients": {"steps": 8}}


class RegionSum(nn.Module):
    """Class 0's logit is the (channel-summed) input over a known square, class 1's a constant."""

    def __init__(self, size=16, box=(4, 8, 4, 8)):
        super().__init__()
        region = torch.zeros(size, size)
        r0, r1, c0, c1 = box
        region[r0:r1, c0:c1] = 1
        self.register_buffer("region", region)
        self.conv = nn.Conv2d(3, 3, 1)  # so that Grad-CAM has a layer to read
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        score = (self.conv(x) * self.region).sum((1, 2, 3))
        return torch.stack([score, torch.full_like(score, 1.0)], 1)


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_returns_an_input_sized_attribution(name, tiny, image):
    a = run_method(name, tiny, image, None, **FAST[name])
    assert isinstance(a, Attribution) and a.method == name and not a.binary
    assert a.shape == (32, 32) and torch.isfinite(a.map).all()
    assert a.target == int(tiny(image[None]).argmax())  # default: the model's top-1
    assert a.seconds > 0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_given_target_is_explained(name, tiny, image):
    maps = {t: run_method(name, tiny, image, t, **FAST[name]) for t in (0, 2)}
    assert [maps[t].target for t in (0, 2)] == [0, 2]
    assert not torch.allclose(maps[0].map, maps[2].map)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_model_is_left_untouched(name, image):
    model = make_tiny()
    model.train()
    model.fc.weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    run_method(name, model, image, 1, **FAST[name])
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm buffers too
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_under_an_outer_no_grad(name, context, tiny, image):
    reference = run_method(name, tiny, image, 1, **FAST[name])
    with context():
        x = image.clone()[None]  # a tensor made inside the context, 4-D this time
        a = run_method(name, tiny, x, 1, **FAST[name])
    assert torch.allclose(a.map, reference.map, atol=1e-6)


def test_gradcam_is_relu_and_upsampled():
    model = tiny_resnet()
    torch.manual_seed(0)
    x = torch.randn(3, 64, 48)
    a = gradcam(model, x, 2)
    assert a.shape == (64, 48) and (a.map >= 0).all()
    assert a.info["layer"] == "layer4" and a.info["layer_size"] == (2, 2)


@pytest.fixture(scope="module")
def resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=3).eval()


def test_gradcam_on_torchvision_resnet18_default_layer(resnet18):
    model = resnet18
    a = gradcam(model, torch.randn(3, 64, 64), 0)
    assert a.info["layer"] == "layer4" and a.shape == (64, 64)
    with pytest.warns(UserWarning, match="1x1"):
        gradcam(model, torch.randn(3, 32, 32), 0)  # layer4 is 1x1 there: the map is flat
    a = gradcam(model, torch.randn(3, 32, 32), 0, layer="layer3")
    assert a.info["layer_size"] == (2, 2)


def test_every_method_on_torchvision_resnet18(resnet18):
    model = resnet18
    x = torch.randn(3, 64, 64)
    options = {"gradcam": {}, "occlusion": {"window": 16, "stride": 16}, "integrated_gradients": {"steps": 4}}
    for name in sorted(METHODS):
        a = run_method(name, model, x, 2, **options[name])
        assert a.shape == (64, 64) and a.target == 2 and torch.isfinite(a.map).all()
    assert hook_count(model) == 0


def test_gradcam_layer_choice_and_errors(tiny, image):
    assert default_gradcam_layer(tiny_resnet()) == "layer4"
    assert default_gradcam_layer(tiny) == "features"
    flat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    assert default_gradcam_layer(flat) == "3"  # the deepest feature map: the last ReLU's
    assert any(isinstance(m, nn.LazyLinear) for m in flat.modules())  # the probe never fixed the user's lazy layer
    wrapped = nn.Sequential(OrderedDict(net=make_tiny()))
    assert default_gradcam_layer(wrapped) == "net.features"
    assert default_gradcam_layer(nn.DataParallel(tiny)) == "features"
    with pytest.raises(ValueError, match="no Conv2d"):
        default_gradcam_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)))
    with pytest.raises(ValueError, match="no module named"):
        gradcam(tiny, image, 0, layer="nope")
    with pytest.raises(ValueError, match="output"):
        gradcam(tiny, image, 0, layer="fc")
    assert gradcam(tiny, image, 0, layer=tiny.features[2]).info["layer"] == "features.2"


def test_gradcam_known_answer():
    # The logit's gradient is the region indicator, so every channel's weight is |region| / (H * W)
    # and the map is ReLU(weight * sum over channels of the layer's output, here x itself).
    model = RegionSum().eval()
    torch.manual_seed(0)
    x = torch.randn(3, 16, 16)
    a = gradcam(model, x, 0, layer="conv")
    assert torch.allclose(a.map, (16 / 256 * x.sum(0)).clamp_min(0), atol=1e-6)


def test_occlusion_window_rule():
    assert occlusion_window(224, 224) == (15, 8)
    assert occlusion_window(128, 128) == (9, 5)
    assert occlusion_window(32, 48) == (2, 1)
    assert occlusion_window(8, 8) == (1, 1)


def test_occlusion_defaults_and_known_answer():
    model = RegionSum().eval()
    x = torch.ones(3, 16, 16)
    a = occlusion(model, x, 0)
    assert (a.info["window"], a.info["stride"]) == (1, 1)
    # Hiding one pixel of the region (all channels) removes 3 from the logit: attribution 3 per channel.
    expected = model.region * 9
    assert torch.allclose(a.map, expected)
    aligned = occlusion(model, x, 0, window=2, stride=2)
    assert torch.equal(aligned.map > 0, model.region.bool())


def test_integrated_gradients_completeness(tiny, image):
    a = integrated_gradients(tiny, image, 1, steps=64)
    with torch.no_grad():
        gap = tiny(image[None])[0, 1] - tiny(torch.zeros(1, 3, 32, 32))[0, 1]
    assert float(a.map.sum()) == pytest.approx(float(gap), rel=0.05, abs=1e-3)


def test_bad_inputs_and_targets_get_clear_errors(tiny, image):
    with pytest.raises(ValueError, match="out of range"):
        gradcam(tiny, image, 4)
    with pytest.raises(TypeError, match="integer"):
        occlusion(tiny, image, 1.5)
    with pytest.raises(ValueError, match="one image"):
        gradcam(tiny, torch.randn(2, 3, 32, 32), 0)
    with pytest.raises(TypeError, match="model-space"):
        gradcam(tiny, image.numpy(), 0)
    with pytest.raises(ValueError, match="NaN"):
        gradcam(tiny, torch.full((3, 32, 32), float("nan")), 0)
    with pytest.raises(ValueError, match="window"):
        occlusion(tiny, image, 0, window=40)
    with pytest.raises(ValueError, match="unknown attribution method"):
        run_method("lime", tiny, image, 0)
