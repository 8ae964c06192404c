"""Necessary evidence (``res.necessary``): the smallest region whose removal changes the decision."""

import pytest
import torch
from torch import nn

from nbexplain import Explainer
from nbexplain.core.fills import surroundings
from nbexplain.core.necessity import Necessary, changed, default_foils

from conftest import fast_options


class CornerNet(nn.Module):
    """Says class 0 when the top-left quarter is bright, else class 1 (classes 2, 3 trail).

    A convolution reads brightness (so the explainer has a feature map to tap); the decision is a
    threshold on the quarter's mean, so removing enough of that quarter, and nothing else, changes it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0] = 1 / 3
            self.conv.bias.copy_(torch.tensor([0.0, 0.3]))
        self.relu = nn.ReLU()

    def forward(self, x):
        f = self.relu(self.conv(x))
        h, w = f.shape[-2:]
        corner = f[:, 0, : h // 2, : w // 2].mean((1, 2))
        rest = f[:, 1].mean((1, 2))
        return torch.stack([3 * (corner - 0.8), rest + 0.2, rest - 0.5, rest - 1.0], 1)


@pytest.fixture
def corner_image():
    x = torch.zeros(3, 32, 32)
    x[:, :16, :16] = 2.0
    return x


def explain(model, img, **kw):
    return Explainer(model).explain(img, progress=False, live=False, **fast_options(**kw))


def test_the_necessary_region_is_where_the_decision_comes_from_and_its_removal_is_checked(corner_image):
    model = CornerNet().eval()
    res = explain(model, corner_image)
    nec = res.necessary
    assert isinstance(nec, Necessary) and nec.found
    assert set(nec.mask.unique().tolist()) <= {0.0, 1.0} and nec.mask.shape == (32, 32)
    assert nec.area == pytest.approx(float(nec.mask.mean()))
    inside = float(nec.mask[:16, :16].sum() / nec.mask.sum())
    assert inside >= 0.9, inside
    assert nec.turns_into == 1 and nec.target == 0
    # The verdict is a forward pass: the region filled in from its surroundings, the decision is another.
    m = nec.mask[None, None]
    with torch.no_grad():
        assert int(model(surroundings(res.input[None], m)).argmax()) == nec.turns_into
    assert nec.prob_after < nec.prob_before
    assert nec.prob_turns_into_after > nec.prob_turns_into_before
    assert nec.fills == ("surroundings",)
    assert "necessary evidence" in res.summary() and "filled in from its surroundings" in res.summary()


def test_the_old_removal_under_every_fill_is_still_there(corner_image):
    model = CornerNet().eval()
    res = explain(model, corner_image, necessary_removal="fills")
    nec = res.necessary
    assert nec.found and float(nec.mask[:16, :16].sum() / nec.mask.sum()) >= 0.9
    m = nec.mask[None]
    with torch.no_grad():
        assert int(model(((1 - m) * res.input + m * res.fill.image)[None]).argmax()) == nec.turns_into
    assert len(nec.fills) == 2 and "mean colour" in nec.fills  # the own fill and the check fill
    assert "under every fill" in res.summary()


def test_the_surroundings_fill_gives_back_the_photo_beneath_a_thin_pattern():
    """A removed pixel becomes what the kept pixels around it predict: a thin line drawn over a smooth
    image, removed, gives back that image; a flat fill would leave a grey line, a new edge."""
    ramp = torch.linspace(0, 1, 64)
    photo = torch.stack([ramp[None].expand(64, 64), ramp[:, None].expand(64, 64), torch.full((64, 64), 0.3)])[None]
    line = torch.zeros(1, 1, 64, 64)
    line[..., 30:32, :] = 1
    drawn = photo * (1 - line) + line  # a white line across it
    healed = surroundings(drawn, line)
    assert float((healed - photo).abs().max()) < 0.03
    assert float((drawn - photo).abs().max()) > 0.5
    # Soft masks pass gradients (the search optimises through it); nothing removed changes nothing.
    soft = line.clone().requires_grad_(True)
    surroundings(drawn, soft * 0.5).sum().backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all()
    assert torch.equal(surroundings(drawn, torch.zeros_like(line)), drawn)


def test_necessary_removal_is_validated():
    from nbexplain import ExplainConfig

    with pytest.raises(ValueError, match="necessary_removal"):
        ExplainConfig(necessary_removal="inpaint")


def test_a_class_the_model_does_not_predict_has_no_necessary_region(corner_image):
    res = explain(CornerNet().eval(), corner_image, target=2)
    assert not res.necessary.found and res.necessary.area == 0.0 and float(res.necessary.mask.sum()) == 0.0
    assert "does not predict" in res.necessary.note
    assert "necessary evidence: none" in res.summary()


def test_a_region_too_large_for_the_limit_is_reported_as_none(corner_image):
    # The decision needs over half of the quarter (an eighth of the image) removed: 2 % is not enough.
    res = explain(CornerNet().eval(), corner_image, necessary_max_area=0.02)
    assert not res.necessary.found
    assert "no region of up to 2%" in res.necessary.note and "robust" in res.necessary.note


def test_a_named_foil_asks_why_not_that_class(corner_image):
    model = CornerNet().eval()
    res = explain(model, corner_image, foil=1)
    nec = res.necessary
    assert nec.contrastive and nec.foils == (1,) and nec.found and nec.turns_into == 1
    assert "makes 'class 1' overtake 'class 0'" in res.summary()
    with pytest.raises(ValueError, match="another class than the target"):
        explain(model, corner_image, foil=0)
    with pytest.raises(ValueError, match="necessary=False"):
        explain(model, corner_image, foil=1, necessary=False)


def test_necessary_false_skips_the_half(corner_image):
    res = explain(CornerNet().eval(), corner_image, necessary=False)
    assert res.necessary is None and "necessary" not in res.summary()


def test_the_figure_shows_the_necessary_region(corner_image):
    res = explain(CornerNet().eval(), corner_image)
    fig = res.figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("necessary: removing") for t in titles), titles


def test_foils_and_the_change_test():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 1.0, 2.0]])
    target = torch.tensor([0, 1])
    foils = default_foils(logits, target, 2)
    assert foils.tolist() == [[2, 1], [3, 2]]
    after = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 5.0, 1.0, 2.0]])
    assert changed(after, target, foils, contrastive=False).tolist() == [True, False]
    # A named foil need only overtake the target, whatever else leads.
    after = torch.tensor([[1.0, 0.0, 2.0, 9.0]])
    assert changed(after, target[:1], torch.tensor([[2]]), contrastive=True).tolist() == [True]
    assert changed(after, target[:1], torch.tensor([[1]]), contrastive=True).tolist() == [False]


def test_necessary_settings_are_validated():
    from nbexplain import ExplainConfig

    with pytest.raises(ValueError, match="necessary_max_area"):
        ExplainConfig(necessary_max_area=0)
    with pytest.raises(ValueError, match="necessary_cells"):
        ExplainConfig(necessary_cells=0)


def test_compare_removes_each_methods_top_pixels_at_the_necessary_area(corner_image):
    from nbexplain import compare

    model = CornerNet().eval()
    cmp = compare(model, corner_image, methods=["nbexplain", "occlusion"], **fast_options())
    nec = cmp.explanation.necessary
    assert nec.found and set(cmp.necessary) == {"nbexplain", "occlusion"}
    assert cmp.necessary["nbexplain"]["decision_changed"] is True
    assert cmp.necessary["nbexplain"]["area"] == pytest.approx(nec.area)
    assert cmp.necessary["occlusion"]["area"] == pytest.approx(nec.area, abs=2 / 32**2)
    assert "at the necessary region's area" in repr(cmp)
    # Without a necessary region there is nothing to compare at its area.
    plain = compare(model, corner_image, methods=["nbexplain"], necessary=False, **fast_options())
    assert plain.necessary == {} and "necessary" not in repr(plain)
