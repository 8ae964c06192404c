"""Vision transformers as users hand them over: torchvision ViT and Swin, a timm DeiT-style ViT with class
and distillation tokens and fused attention, a Hugging Face ViT (output objects, tuple block outputs).

Random weights with the classifier re-initialised so the logits depend on the input (torchvision's ViT
head starts at zero); small sizes: these check mechanics and meaning, not explanation quality.
"""

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from nbexplain import Explainer
from nbexplain.circuits import CircuitUnsupportedError
from nbexplain.circuits.sites import WindowAttentionSite, window_heads
from nbexplain.circuits.sites import MultiheadAttentionSite, block_sites, mha_heads
from nbexplain.core.taps import plan_layers, tap_activations
from nbexplain.core.views import MapView

from ._support import ModelState, hook_count, is_binary

FAST = dict(progress=False, live=False, steps=12, min_steps=4, unet_width=4, robustness_draws=1)


def _reinit(linear: nn.Linear, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) * 0.5)
    return linear


def torchvision_vit():
    torch.manual_seed(0)
    m = tvm.VisionTransformer(image_size=64, patch_size=8, num_layers=3, num_heads=4, hidden_dim=32, mlp_dim=64,
                              num_classes=5)
    _reinit(m.heads.head)
    return m.eval()


def torchvision_swin():
    torch.manual_seed(0)
    m = tvm.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 2],
                            window_size=[4, 4], num_classes=5)
    _reinit(m.head)
    return m.eval()


def timm_deit():
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    m = VisionTransformerDistilled(img_size=64, patch_size=8, embed_dim=32, depth=3, num_heads=4, mlp_ratio=2,
                                   num_classes=5)
    _reinit(m.head, 0), _reinit(m.head_dist, 1)
    return m.eval()


def hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=64, num_labels=5)
    m = ViTForImageClassification(cfg)
    _reinit(m.classifier)
    return m.eval()


VITS = {"torchvision": (torchvision_vit, 1), "timm_deit": (timm_deit, 2), "huggingface": (hf_vit, 1)}


def _image(seed=0, side=64):
    return torch.rand(3, side, side, generator=torch.Generator().manual_seed(seed))


def _patch_constant(mask: torch.Tensor, patch: int) -> bool:
    h, w = mask.shape
    blocks = mask.view(h // patch, patch, w // patch, patch)
    return bool((blocks == blocks[:, :1, :, :1]).all())


@pytest.mark.parametrize("family", list(VITS))
def test_vit_is_explained_on_its_blocks_with_a_patch_mask(family):
    build, prefix = VITS[family]
    model = build()
    before = ModelState.of(model)
    ex = Explainer(model, preprocess=lambda t: t)
    plan = ex.use_plan((64, 64))
    # Block outputs (the residual stream), spread over depth, never the patch embedding.
    assert len(plan.layers) == 3 and all("proj" not in n and "embed" not in n for n in plan.layers)
    assert all(plan.views[n] == MapView("tokens", (8, 8), prefix) for n in plan.layers)
    assert plan.patch_grid == (8, 8)
    res = ex.explain(_image(), **FAST)
    assert res.mask.shape == (64, 64) and is_binary(res.mask) and _patch_constant(res.mask, 8)
    for act in res.activations_original.values():
        assert act.shape == (32, 8, 8)
    before.assert_same(model)
    assert hook_count(model) == 0


@pytest.mark.parametrize("family", list(VITS))
def test_vit_circuit_is_heads_and_units_that_validate_checks(family):
    model = VITS[family][0]()
    before = ModelState.of(model)
    flags = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    res = Explainer(model, preprocess=lambda t: t).explain(_image(1), **FAST)
    circuit = res.circuit
    kinds = {n["unit"] for n in circuit.nodes if n["kind"] == "channel"}
    assert kinds == {"head", "unit"} and len(circuit.layers) == 6  # heads and units of 3 blocks
    heads = [s for s in circuit.sites.values() if s.kind == "head"]
    assert all(s.n == 4 and s.group == 8 for s in heads)
    assert circuit.sizing is not None and circuit.sizing.kept
    check = circuit.validate(repeats=4)
    assert check.sufficient_circuit  # decision-sized: the circuit alone passes the test it was sized by
    assert len(check.random_sets) == 4
    # Each node has a picture on the patch grid, on both images, for the widget.
    for source in ("explanation", "original"):
        assert {tuple(m.shape[1:]) for m in circuit.node_maps[source].values()} == {(8, 8)}
    # Edges follow depth through the stream, and end at the classes.
    order = {name: i for i, name in enumerate(circuit.layers)}
    for e in circuit.edges:
        src = e["source"].rsplit(":", 1)[0]
        dst = e["target"].rsplit(":", 1)[0]
        assert dst == "class" or order[dst] == order[src] + 1
    assert any(e["target"].startswith("class:") for e in circuit.edges)
    assert all(m.fused_attn == flag for m, flag in flags)  # fused attention is read, never switched off
    before.assert_same(model)
    assert hook_count(model) == 0


def test_last_block_is_matched_at_its_class_token():
    """At the last block only the class token reaches the head: its relevance is there, and the taps keep it."""
    from nbexplain.core.relevance import relevance_maps, relevance_probes

    model = torchvision_vit()
    plan = plan_layers(model, None, (64, 64))
    x = _image(2)[None]
    with torch.enable_grad(), tap_activations(model, plan.layers, plan.views) as taps, \
            relevance_probes(model, plan.layers) as probes:
        logits = model(x)
        acts = taps.collect()
        prefix = taps.prefix
        rel = relevance_maps(logits, probes, acts, logits.argmax(1), plan.views, prefix)
    last, first = plan.layers[-1], plan.layers[0]
    assert prefix[last].shape == (1, 1, 32)
    assert float(rel.prefix_share(last)) > 0.99
    assert float(rel[last].sum()) == 0.0
    assert 0.0 < float(rel.prefix_share(first)) < 1.0 and float(rel[first].sum()) > 0


def test_multihead_attention_heads_are_recomputed_exactly():
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        out, _ = mha(x, x, x, need_weights=False)
        z = mha_heads(mha, x, x, x)
        assert torch.allclose(nn.functional.linear(z, mha.out_proj.weight, mha.out_proj.bias), out, atol=1e-5)


def _ablated(model, site, x, keep_all, drop_one):
    """The logits of ``x`` clean, with every node of ``site`` kept, and with ``drop_one``; and the site's
    last tensor (``seen["z"]``)."""
    seen = {}

    def ablate(keep):
        def fn(z):
            seen["z"] = z
            return site.apply_keep(z, keep, "zero")
        return fn

    with torch.no_grad():
        clean = model(x)
        handle = site.attach(model, ablate(keep_all))
        same = model(x)
        handle.remove()
        handle = site.attach(model, ablate(drop_one))
        changed = model(x)
        handle.remove()
    return clean, same, changed, seen


def test_ablating_a_head_changes_only_through_that_head():
    model = torchvision_vit()
    plan = plan_layers(model, None, (64, 64))
    site = block_sites(model, plan.layers[0], plan.views[plan.layers[0]])[0]
    assert isinstance(site, MultiheadAttentionSite)
    x = _image(3)[None]
    keep_all, drop_one = torch.ones(1, 4), torch.ones(1, 4)
    drop_one[0, 2] = 0
    clean, same, changed, seen = _ablated(model, site, x, keep_all, drop_one)
    assert torch.allclose(clean, same, atol=1e-5) and not torch.allclose(clean, changed, atol=1e-4)
    z = seen["z"].view(1, 65, 4, 8)
    assert hook_count(model) == 0 and z.shape[2] == 4


def test_swin_is_explained_on_its_stages_and_its_circuit_is_window_heads_and_units_that_validate_checks():
    model = torchvision_swin()
    before = ModelState.of(model)
    ex = Explainer(model, preprocess=lambda t: t)
    plan = ex.use_plan((64, 64))
    assert "features.0" not in plan.layers and "features.0.0" not in plan.layers  # not the patch embedding
    assert [plan.views[n].layout for n in plan.layers[:2]] == ["channels_last", "channels_last"]
    assert plan.patch_grid == (16, 16)
    res = ex.explain(_image(4), **FAST)
    assert _patch_constant(res.mask, 4)
    assert tuple(res.activations_original["features.1"].shape) == (16, 16, 16)  # [C, h, w], read channels-last
    circuit = res.circuit
    assert circuit.layers == ("features.1.0.attn.heads", "features.1.0.mlp.units", "features.3.0.attn.heads",
                              "features.3.0.mlp.units")  # the heads and units of each block of the tapped stages
    assert {n["unit"] for n in circuit.nodes if n["kind"] == "channel"} == {"head", "unit"}
    assert [(s.n, s.group) for s in circuit.sites.values() if s.kind == "head"] == [(1, 16), (2, 16)]
    assert circuit.sizing is not None and circuit.sizing.kept
    check = circuit.validate(repeats=20)
    assert check.sufficient_circuit
    assert check.random_sufficient_rate <= 0.15  # random sets of equal size
    # Node pictures on each stage's grid; edges follow depth, across the patch merging too, and reach the classes.
    grids = {name: tuple(m.shape[1:]) for name, m in circuit.node_maps["explanation"].items()}
    assert grids == {"features.1.0.attn.heads": (16, 16), "features.1.0.mlp.units": (16, 16),
                     "features.3.0.attn.heads": (8, 8), "features.3.0.mlp.units": (8, 8)}
    order = {name: i for i, name in enumerate(circuit.layers)}
    pairs = {(e["source"].rsplit(":", 1)[0], e["target"].rsplit(":", 1)[0]) for e in circuit.edges}
    assert all(dst == "class" or order[dst] == order[src] + 1 for src, dst in pairs)
    assert ("features.1.0.mlp.units", "features.3.0.attn.heads") in pairs
    assert ("features.3.0.mlp.units", "class") in pairs
    before.assert_same(model)
    assert hook_count(model) == 0


def test_swin_window_heads_are_recomputed_exactly_and_ablated_one_by_one():
    model = torchvision_swin()
    attention = model.features[3][0].attn  # two heads; 8 x 8 patches in 4 x 4 windows
    shifted = tvm.swin_transformer.ShiftedWindowAttention(16, [4, 4], [2, 2], 2).eval()
    x = torch.randn(2, 8, 8, 32)
    with torch.no_grad():
        for m, inputs in ((attention, x), (shifted, torch.randn(2, 6, 7, 16))):  # shifted windows, padding
            z = window_heads(m, inputs)
            assert z.shape == inputs.shape
            assert torch.allclose(nn.functional.linear(z, m.proj.weight, m.proj.bias), m(inputs), atol=1e-5)
    site = block_sites(model, "features.3.0", MapView("channels_last"))[0]
    assert isinstance(site, WindowAttentionSite) and (site.n, site.group) == (2, 16)
    clean, same, changed, seen = _ablated(model, site, _image(5)[None], torch.ones(1, 2), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(clean, same, atol=1e-5) and not torch.allclose(clean, changed, atol=1e-4)
    assert tuple(seen["z"].shape) == (1, 8, 8, 32) and hook_count(model) == 0


class _OddAttention(nn.Module):
    """Attention code nbexplain does not know: no head count, no output projection to hook."""

    def __init__(self, d):
        super().__init__()
        self.mix = nn.Linear(d, d)

    def forward(self, x):
        w = torch.softmax(x @ x.transpose(1, 2) / x.shape[-1] ** 0.5, dim=-1)
        return self.mix(w @ x)


class _OddBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = _OddAttention(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _OddViT(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, 8, 8)
        self.blocks = nn.Sequential(*[_OddBlock(d) for _ in range(2)])
        self.head = _reinit(nn.Linear(d, 4))

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # no class token: mean-pooled
        return self.head(self.blocks(tokens).mean(1))


def test_unknown_attention_is_explained_and_its_circuit_refused_naming_it():
    model = _OddViT().eval()
    ex = Explainer(model, preprocess=lambda t: t)
    res = ex.explain(_image(5, 32), **FAST)
    assert ex.layers == ["blocks.0", "blocks.1"] and ex.plan.views["blocks.0"] == MapView("tokens", (4, 4), 0)
    with pytest.raises(CircuitUnsupportedError, match="_OddAttention") as err:
        res.circuit
    assert "\n" not in str(err.value)
    assert hook_count(model) == 0


def test_amortised_explainer_refuses_a_transformer_clearly():
    from nbexplain import AmortizedExplainer

    with pytest.raises(ValueError, match="Use Explainer"):
        AmortizedExplainer(torchvision_vit(), preprocess=lambda t: t)


def test_a_convolutional_stem_is_the_patch_embedding_of_a_hybrid_vit():
    """Hybrid ViTs embed patches with a few convolutions (stride 16 in all), not one patchify conv."""
    model = torchvision_vit()
    model.conv_proj = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                    nn.Conv2d(16, 32, 2, 2))  # total stride 8, as the model's patch size
    model.eval()
    ex = Explainer(model, preprocess=lambda t: t)
    plan = ex.use_plan((64, 64))
    assert plan.patch_grid == (8, 8) and all(plan.views[n].layout == "tokens" for n in plan.layers)
    assert not any(n.startswith("conv_proj") for n in plan.layers)
    res = ex.explain(_image(6), **FAST)
    assert _patch_constant(res.mask, 8)
    assert res.circuit.size > 0
