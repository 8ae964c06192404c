"""The amortised explainer: trains over a set, explains in one pass, saves and loads."""

import pytest
import torch

from nbexplain import ExplainConfig
from nbexplain.amortized import AmortizedExplainer
from nbexplain.core.cuts import CUT_AREAS

from conftest import fast_options, make_tiny

LAYERS = ["features.2", "features.5", "features.7"]
TINY = dict(mask_resolution=16, unet_width=4, unet_depth=2)


def trained(model, images):
    am = AmortizedExplainer(model, layers=LAYERS, config=TINY)
    teacher = ExplainConfig(**fast_options(unet_depth=2))
    return am.fit(images, steps=5, finetune_steps=2, batch_size=4, teacher=teacher, progress=False)


def test_fit_explain_save_load_round_trip(tmp_path):
    model = make_tiny()
    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    am = trained(model, images)
    assert len(am.fit_history["distill"]) == 5 and len(am.fit_history["finetune"]) == 2
    res = am.explain(images[0])
    assert res.mask.shape == (32, 32) and set(res.mask.unique().tolist()) <= {0.0, 1.0}
    assert res.target == int(model(images[:1]).argmax())
    path = tmp_path / "gen.pt"
    am.save(path)
    again = AmortizedExplainer.load(path, model, config=TINY)
    assert torch.equal(again.explain(images[0]).mask, res.mask)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_refinement_starts_from_the_generator_and_leaves_it_unchanged():
    model = make_tiny()
    torch.manual_seed(1)
    images = torch.randn(4, 3, 32, 32)
    am = trained(model, images)
    state = {k: v.clone() for k, v in am.generator.state_dict().items()}
    res = am.explain(images[1], refine=3)
    assert res.steps == 3
    assert all(torch.equal(state[k], v) for k, v in am.generator.state_dict().items())


def test_untrained_explainer_says_what_to_do():
    with pytest.raises(RuntimeError, match="fit"):
        AmortizedExplainer(make_tiny(), layers=LAYERS).explain(torch.randn(3, 32, 32))


def test_fit_learns_from_given_masks_without_a_teacher_pass():
    model = make_tiny()
    torch.manual_seed(2)
    images = torch.randn(4, 3, 32, 32)
    masks = torch.zeros(4, 32, 32)
    masks[:, 8:20, 8:20] = 1.0
    am = AmortizedExplainer(model, layers=LAYERS, config=TINY)
    am.fit(images, masks=masks, steps=3, batch_size=2, progress=False)
    assert torch.equal(am.teacher_masks, masks) and len(am.fit_history["distill"]) == 3
    with pytest.raises(ValueError, match=r"masks must be \[N, H, W\]"):
        AmortizedExplainer(model, layers=LAYERS, config=TINY).fit(images, masks=masks[:3], steps=1, progress=False)


def test_a_generator_saved_by_another_version_is_refused_with_advice(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "nbexplain-amortized-1", "state_dict": {}}, path)
    with pytest.raises(ValueError, match="train it again"):
        AmortizedExplainer.load(path, make_tiny())


def test_one_pass_takes_the_smallest_cut_of_the_generator_that_keeps_the_label():
    model = make_tiny()
    torch.manual_seed(3)
    images = torch.randn(4, 3, 32, 32)
    am = trained(model, images)
    with torch.no_grad():
        am.generator.head.conv.bias -= 50.0  # a generator that, left to its threshold, keeps nothing
    res = am.explain(images[0], fill="mean")  # the random tiny model gives a blur of the image its label
    assert 0 < res.area < 1 and set(res.mask.unique().tolist()) == {0.0, 1.0}
    on_the_ladder = [abs(res.area - a) < 0.02 for a in CUT_AREAS]
    assert any(on_the_ladder) or res.area < 0.01  # one of the cuts (its own threshold keeps ~1 pixel)
    with torch.no_grad():
        assert (model(res.explanation[None]).argmax().item() == res.target) == res.label_kept


def test_fit_takes_the_data_as_it_lives_and_remembers_the_classes_it_saw(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    model = make_tiny()
    torch.manual_seed(4)
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    teacher = ExplainConfig(**fast_options(unet_depth=2))
    kinds = {
        "pairs": [(img, int(y)) for img, y in zip(images, labels)],
        "dataset": TensorDataset(images, labels),
        "loader": DataLoader(TensorDataset(images, labels), batch_size=4),
    }
    for name, data in kinds.items():
        am = AmortizedExplainer(model, layers=LAYERS, config=TINY)
        am.fit(data, targets="label", steps=2, batch_size=4, teacher=teacher, progress=False)
        assert am.classes_seen == (0, 1), name
        assert am.teacher_masks.shape == (6, 32, 32) and am.fit_info["images"] == 6, name
    with pytest.raises(ValueError, match="labelled"):
        AmortizedExplainer(model, layers=LAYERS, config=TINY).fit(list(images), targets="label", steps=1,
                                                                  teacher=teacher, progress=False)
    path = tmp_path / "gen.pt"
    am.save(path)
    again = AmortizedExplainer.load(path, model)  # no preprocess, layers or config given: all from the file
    assert again.classes_seen == (0, 1) and again.layers == am.layers and again.fit_info["images"] == 6
    assert again.config.fill == am.config.fill and again.config.check_fills == am.config.check_fills
    with pytest.warns(UserWarning, match="never explained 'class 3'"):
        res = again.explain(images[0], target=3, config=TINY)
    assert res.target == 3


def test_a_list_goes_through_in_one_pass_and_each_result_says_whether_it_suffices():
    model = make_tiny()
    torch.manual_seed(5)
    images = torch.randn(5, 3, 32, 32)
    am = trained(model, images)
    calls = []
    model.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    many = am.explain(list(images))
    assert len(many) == 5 and max(calls) > 1  # the images went through together
    for one, res in zip(images, many):
        assert isinstance(res.sufficient, bool)
        if res.sufficient:
            assert res.label_kept and all(c.label_kept for c in res.checks)
        assert torch.equal(am.explain(one).mask, res.mask)
