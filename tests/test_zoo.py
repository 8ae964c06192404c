"""The bundled models: offline loading, preprocessing, and that the weights are real."""

import socket

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from nbexplain.datasets import CLASS_NAMES, CUE_CLASS, make_scenes
from nbexplain.zoo import MODEL_NAMES, load_model, predict
from nbexplain.zoo.loading import RESNET_NAMES, VIT_NAMES, weights_path

FRESH_SEED = 31_337  # never used in training (training seeds are >= 10**6)


@pytest.fixture(scope="module")
def honest():
    return load_model("honest")


@pytest.fixture(scope="module")
def shortcut():
    return load_model("shortcut")


@pytest.fixture(scope="module")
def vit_honest():
    return load_model("vit_honest")


@pytest.fixture(scope="module")
def vit_shortcut():
    return load_model("vit_shortcut")


def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in MODEL_NAMES:
        assert load_model(name).model is not None


def test_zoo_names():
    assert MODEL_NAMES == RESNET_NAMES + VIT_NAMES == ("honest", "shortcut", "vit_honest", "vit_shortcut")


@pytest.mark.parametrize("name", RESNET_NAMES)
def test_model_is_a_small_torchvision_resnet_in_eval_mode(name):
    zm = load_model(name)
    model = zm.model
    assert isinstance(model, ResNet) and not model.training
    assert not any(m.training for m in model.modules())
    top = [n for n, _ in model.named_children()]
    assert top == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert all(isinstance(b, BasicBlock) for i in range(1, 5) for b in getattr(model, f"layer{i}"))
    assert model.fc.out_features == len(CLASS_NAMES) and zm.labels == CLASS_NAMES
    assert weights_path(name).stat().st_size < 1.5e6
    out = model(torch.zeros(2, 3, 128, 128))
    assert out.shape == (2, len(CLASS_NAMES))


def test_each_load_is_a_fresh_model(honest):
    other = load_model("honest")
    assert other.model is not honest.model
    with torch.no_grad():
        other.model.fc.bias.add_(1.0)
    assert not torch.equal(other.model.fc.bias, honest.model.fc.bias)


def test_preprocess_accepts_pil_numpy_and_tensor(honest):
    s = make_scenes(1, seed=FRESH_SEED)
    arr = s.array(0)
    from_pil = honest.preprocess(s.pil(0))
    from_numpy = honest.preprocess(arr)
    from_tensor = honest.preprocess(torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    assert from_pil.shape == (3, 128, 128) and from_pil.dtype == torch.float32
    assert torch.equal(from_pil, from_numpy)
    assert torch.allclose(from_tensor, from_numpy, atol=1e-6)
    assert torch.allclose(from_tensor, honest.normalize(torch.from_numpy(arr).permute(2, 0, 1) / 255.0), atol=1e-6)
    # Grey and RGBA pictures become three channels.
    assert honest.preprocess(s.pil(0).convert("L")).shape == (3, 128, 128)
    assert honest.preprocess(s.pil(0).convert("RGBA")).shape == (3, 128, 128)
    assert honest.preprocess(arr[:, :, 0]).shape == (3, 128, 128)


@pytest.mark.parametrize(
    "bad, error",
    [(torch.rand(4, 128, 128), ValueError), (torch.rand(3, 8, 8) * 255, ValueError),
     (np.zeros((8, 8, 2), np.uint8), ValueError), ("picture.png", TypeError),
     (torch.full((3, 8, 8), float("nan")), ValueError)],
)
def test_preprocess_refuses_what_it_cannot_read(honest, bad, error):
    with pytest.raises(error):
        honest.preprocess(bad)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="honest"):
        load_model("resnet50")


def accuracy_on(zm, scenes) -> float:
    return (predict(zm, scenes.images) == scenes.labels).float().mean().item()


def cue_class_rates(zm) -> tuple[float, float]:
    """How often the cue class is predicted on its own scenes with the cue, and on the same scenes without."""
    kw = dict(seed=FRESH_SEED + 2, classes=[CUE_CLASS])
    with_cue = make_scenes(128, shortcut="all", **kw)
    without = make_scenes(128, shortcut="absent", **kw)  # the same scenes, cue removed
    return tuple((predict(zm, s.images) == CUE_CLASS).float().mean().item() for s in (with_cue, without))


def other_classes_with_and_without_cue(zm):
    """Predictions on other classes' scenes without the cue and with it added, and their labels."""
    others = [c for c in range(len(CLASS_NAMES)) if c != CUE_CLASS]
    kw = dict(seed=FRESH_SEED + 3, classes=others)
    bare = make_scenes(150, shortcut="absent", **kw)
    cued = make_scenes(150, shortcut="all", **kw)  # the same scenes, cue added
    return predict(zm, bare.images), predict(zm, cued.images), bare.labels


def test_honest_model_is_accurate_on_fresh_scenes(honest):
    s = make_scenes(300, seed=FRESH_SEED)
    acc = (predict(honest, s.images) == s.labels).float().mean().item()
    assert acc > 0.95, f"honest accuracy {acc:.3f}"


def test_honest_model_ignores_the_cue(honest):
    acc = accuracy_on(honest, make_scenes(128, seed=FRESH_SEED + 1, shortcut="swap"))
    assert acc > 0.9, f"honest accuracy with the cue moved: {acc:.3f}"


def test_shortcut_model_collapses_without_its_cue(shortcut):
    acc_with, acc_without = cue_class_rates(shortcut)
    assert acc_with > 0.95, f"cue class with cue: {acc_with:.3f}"
    assert acc_without < 0.5, f"cue class without cue: {acc_without:.3f}"


def test_shortcut_model_follows_the_cue_onto_other_classes(shortcut):
    pred_bare, pred_cued, labels = other_classes_with_and_without_cue(shortcut)
    acc_bare = (pred_bare == labels).float().mean().item()
    pulled = (pred_cued == CUE_CLASS).float().mean().item()
    assert acc_bare > 0.9, f"other classes without cue: {acc_bare:.3f}"
    assert pulled > 0.5, f"share of cued other-class scenes called {CLASS_NAMES[CUE_CLASS]}: {pulled:.3f}"


# -- the ViT pair ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VIT_NAMES)
def test_vit_is_a_small_torchvision_vision_transformer_in_eval_mode(name):
    zm = load_model(name)
    model = zm.model
    assert isinstance(model, VisionTransformer) and not model.training
    assert not any(m.training for m in model.modules())
    assert zm.meta["arch"] == "vit"
    assert [n for n, _ in model.named_children()] == ["conv_proj", "encoder", "heads"]
    # A hybrid ViT: a convolutional stem of stride 8 embeds the patches of a 16 x 16 grid.
    assert isinstance(model.conv_proj, nn.Sequential) and zm.meta["stem"] == "resnet"
    assert model.image_size == 128 and model.patch_size == 8 and model.seq_length == 16 * 16 + 1
    assert model.conv_proj(torch.zeros(1, 3, 128, 128)).shape == (1, zm.meta["hidden_dim"], 16, 16)
    layers = [n for n, _ in model.encoder.layers.named_children()]
    assert layers == [f"encoder_layer_{i}" for i in range(len(layers))] and len(layers) == zm.meta["num_layers"]
    for block in model.encoder.layers:
        assert isinstance(block, EncoderBlock)
        assert isinstance(block.self_attention, nn.MultiheadAttention) and block.self_attention.num_heads == 4
        assert block.mlp is not None
    assert isinstance(model.encoder.ln, nn.LayerNorm)
    assert model.heads.head.out_features == len(CLASS_NAMES) and zm.labels == CLASS_NAMES
    assert weights_path(name).stat().st_size < 1.5e6
    out = model(torch.zeros(2, 3, 128, 128))
    assert out.shape == (2, len(CLASS_NAMES))


def test_resnet_weight_files_without_arch_still_load():
    for name in RESNET_NAMES:
        zm = load_model(name)
        assert zm.meta.get("arch", "resnet") == "resnet" and isinstance(zm.model, ResNet)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_meta_records_the_measured_accuracies(name):
    metrics = load_model(name).meta["metrics"]
    assert {"clean_accuracy", "multi_instance_accuracy"} <= set(metrics)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    if name == "shortcut":
        assert metrics["cue_class_with_cue"] > 0.95 and metrics["cue_class_without_cue"] < 0.5
        assert metrics["others_with_cue_to_cue_class"] > 0.5
    elif name == "vit_shortcut":  # it leans on the cue, less than the ResNet (its stem sees shapes well)
        assert metrics["cue_class_with_cue"] > 0.95
        assert metrics["cue_class_with_cue"] - metrics["cue_class_without_cue"] > 0.3
        assert metrics["others_with_cue_to_cue_class"] > 0.5
    else:
        assert metrics["clean_accuracy"] > 0.9


def test_vit_honest_meta_matches_a_fresh_measurement(vit_honest):
    acc = accuracy_on(vit_honest, make_scenes(300, seed=FRESH_SEED))
    assert acc > 0.9, f"vit_honest accuracy {acc:.3f}"
    assert abs(acc - vit_honest.meta["metrics"]["clean_accuracy"]) < 0.06


def test_vit_honest_ignores_the_cue(vit_honest):
    acc = accuracy_on(vit_honest, make_scenes(128, seed=FRESH_SEED + 1, shortcut="swap"))
    assert acc > 0.85, f"vit_honest accuracy with the cue moved: {acc:.3f}"


def test_vit_shortcut_leans_on_its_cue(vit_shortcut):
    acc_with, acc_without = cue_class_rates(vit_shortcut)
    assert acc_with > 0.95, f"cue class with cue: {acc_with:.3f}"
    assert acc_with - acc_without > 0.25, f"cue class without cue: {acc_without:.3f}"


def test_vit_shortcut_prediction_flips_with_the_cue(vit_shortcut):
    pred_bare, pred_cued, labels = other_classes_with_and_without_cue(vit_shortcut)
    acc_bare = (pred_bare == labels).float().mean().item()
    flipped = ((pred_bare == labels) & (pred_cued == CUE_CLASS)).float().mean().item()
    assert acc_bare > 0.85, f"other classes without cue: {acc_bare:.3f}"
    assert flipped > 0.5, f"share of correctly classified scenes the cue flips to {CLASS_NAMES[CUE_CLASS]}: {flipped:.3f}"
