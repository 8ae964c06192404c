"""Every term of the objective must move the mask generator (the authors' code lost the robustness gradient)."""

import pytest
import torch

from nbexplain.config import ExplainConfig
from nbexplain.core.fills import make_fill
from nbexplain.core.optimize import MaskOptimizer
from nbexplain.core.plumbing import borrowed
from nbexplain.core.sufficiency import TERMS
from nbexplain.core.taps import tap_activations
from nbexplain.core.inputs import Normalization

from conftest import make_tiny


@pytest.mark.parametrize("term", TERMS)
def test_each_term_sends_gradient_to_the_mask_generator(term):
    model = make_tiny()
    layers = ["features.2", "features.5", "features.7"]
    torch.manual_seed(3)
    x = torch.randn(1, 3, 32, 32)
    cfg = ExplainConfig(mask_resolution=16, unet_width=4)
    with borrowed(model), tap_activations(model, layers) as taps:
        with torch.no_grad():
            logits_x = model(x)
            acts_x = taps.collect()
        target = logits_x.argmax(1)
        fill = make_fill(x, "mean", Normalization((0.5,) * 3, (0.25,) * 3))
        opt = MaskOptimizer(model, taps, layers, x, target, acts_x, logits_x, fill, cfg, seed=0)
        terms, *_ = opt.loss_terms(step=0)
        terms[term].sum().backward()
    grads = [p.grad for p in opt.net.parameters() if p.grad is not None]
    assert grads, f"{term}: no parameter received a gradient"
    total = sum(g.abs().sum().item() for g in grads)
    assert total > 0, f"{term}: gradient is identically zero"
    # The model itself is frozen: nothing accumulates there.
    assert all(p.grad is None for p in model.parameters())
