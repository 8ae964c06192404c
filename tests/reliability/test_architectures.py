"""Torchvision's architecture families, as users hand them over: layers chosen automatically,
an explanation that runs, a circuit read or refused with CircuitUnsupportedError, the model unchanged.

Random weights and small inputs: these check mechanics, not explanation quality.
"""

import pytest
import torch
import torchvision.models as tvm

from nbexplain import Explainer
from nbexplain.circuits import CircuitUnsupportedError

from ._support import ModelState, hook_count, is_binary


def tiny_vit():
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                 num_classes=10)


def tiny_swin():
    return tvm.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=[4, 4],
                               num_classes=10)


# name -> (builder, input side, circuit readable)
ARCHITECTURES = {
    "resnet50": (lambda: tvm.resnet50(num_classes=10), 64, True),
    "resnext50_32x4d": (lambda: tvm.resnext50_32x4d(num_classes=10), 64, True),
    "alexnet": (lambda: tvm.alexnet(num_classes=10), 64, True),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=10), 64, True),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(num_classes=10), 64, True),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 64, True),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 64, True),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10), 64, True),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 64, True),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=10), 64, True),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 64, True),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=True, init_weights=False), 64, True),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), 64, True),
    "vit": (tiny_vit, 32, True),
    "swin": (tiny_swin, 32, False),
}
TRANSFORMERS = {"vit", "swin", "convnext_tiny"}  # their blocks work on tokens or channels-last maps


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_is_explained_and_left_unchanged(name):
    build, side, readable = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = build().eval()
    before = ModelState.of(model)
    ex = Explainer(model)
    assert 1 <= len(ex.layers) <= 5
    res = ex.explain(torch.randn(3, side, side), progress=False, live=False, steps=2, min_steps=2,
                     mask_resolution=16, unet_width=4, robustness_draws=1)
    assert res.mask.shape == (side, side) and is_binary(res.mask)
    if name not in TRANSFORMERS:
        # Automatic layers of a CNN are spatial feature maps, not pooled vectors or 1x1 gates.
        for layer, act in res.activations_original.items():
            assert act.dim() == 3 and act.shape[1] * act.shape[2] > 1, (layer, tuple(act.shape))
    if readable:
        circuit = res.circuit
        assert circuit.size > 0 and circuit.graph.number_of_nodes() > circuit.size
    else:
        with pytest.raises(CircuitUnsupportedError):
            res.circuit
    before.assert_same(model)
    assert hook_count(model) == 0
