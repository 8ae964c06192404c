"""The fill hides the class, and a sufficient mask holds under the other neutral fills too."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nbexplain import ExplainConfig, Explainer
from nbexplain.core.fills import BLUR_SIGMAS, FILL_LEAK, fill_ladder, hiding_bound, hiding_fill, make_fill
from nbexplain.core.sufficiency import SufficiencyProblem

from conftest import fast_options


def detail_logits(images):
    """Class 0 in proportion to the detail an image keeps (it survives blurring); class 1 never wins."""
    detail = images.flatten(1).std(1)
    return torch.stack([8 * detail, torch.zeros_like(detail), torch.full_like(detail, 0.5),
                        torch.full_like(detail, 0.5)], 1)


def test_a_blur_that_still_shows_the_class_is_blurred_more_until_it_hides_it():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    target = torch.tensor([0, 1])
    prob_x = detail_logits(x).softmax(1).gather(1, target[:, None])[:, 0]
    fill, fills = hiding_fill(x, "blur", None, detail_logits, target, prob_x)
    assert fills[1].kind.blur == BLUR_SIGMAS[0] and fills[1].tried == ()  # the weakest blur hides class 1
    assert torch.equal(fill[1], make_fill(x[1:], "blur", None)[0])
    assert fills[0].kind.kind == "blur" and fills[0].kind.blur > BLUR_SIGMAS[0] and fills[0].tried
    for f, t in zip(fills, target):
        alone = detail_logits(f.image[None])
        assert f.hides and int(alone.argmax()) != t and f.prob <= f.bound
        assert f.prob == pytest.approx(float(alone.softmax(1)[0, t]))
    assert fills[0].bound == pytest.approx(max(FILL_LEAK * float(prob_x[0]), 1.5 / 4))


def test_where_no_blur_hides_the_class_a_flat_fill_is_used_and_where_nothing_does_it_says_so():
    x = torch.randn(1, 3, 32, 32)

    def flat_is_class_1(images):  # every blur still reads as class 0; a flat fill reads as class 1
        flat = images.flatten(2).std(2).amax(1) < 1e-6
        return torch.stack([torch.where(flat, 0.0, 5.0), torch.where(flat, 5.0, 0.0), torch.zeros(len(images))], 1)

    _, (f,) = hiding_fill(x, "blur", None, flat_is_class_1, torch.tensor([0]), torch.ones(1))
    assert f.hides and f.kind.kind == "mean" and len(f.tried) == len(BLUR_SIGMAS)
    _, (g,) = hiding_fill(x, "blur", None, lambda im: torch.tensor([[5.0, 0.0, 0.0]]).expand(len(im), 3),
                          torch.tensor([0]), torch.ones(1))
    assert not g.hides and len(g.tried) < len(fill_ladder("blur"))  # the least likely fill, flagged
    assert "does NOT hide" in g.describe("cat")


def test_the_hiding_bound_is_a_quarter_of_the_image_or_about_chance():
    assert hiding_bound(torch.tensor([0.8]), 1000).item() == pytest.approx(0.2)
    assert hiding_bound(torch.tensor([0.4]), 6).item() == pytest.approx(0.25)


class Constant(nn.Module):
    """Gives class 0 to every input (a class no fill can hide)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return 0.01 * self.head(h) + torch.tensor([4.0, 0.0, 0.0])


def test_a_class_no_fill_hides_is_said_in_the_result_and_warned():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="No fill hides"):
        res = Explainer(Constant(), layers=["conv"]).explain(torch.randn(3, 32, 32), progress=False,
                                                             **fast_options())
    assert not res.fill.hides and res.fill.prob > 0.9
    assert "No fill hides" in res.summary() and "does NOT hide" in res.summary()


def test_every_check_fill_is_reported_and_a_sufficient_mask_holds_under_each(tiny, image):
    res = Explainer(tiny).explain(image, progress=False, **fast_options(check_fills=("mean", "black")))
    assert [c.name for c in res.checks] == ["mean colour", "black"]
    if res.sufficient:
        assert all(c.label_kept for c in res.checks)
    plain = Explainer(tiny).explain(image, progress=False, **fast_options(check_fills=()))
    assert plain.checks == ()
    with pytest.raises(ValueError, match="check_fills"):
        ExplainConfig(check_fills=("grey",))


def test_a_mask_that_holds_only_under_its_own_fill_is_not_sufficient():
    def forward(images):  # class 0 on dark images, class 1 on bright ones
        bright = images.mean((1, 2, 3))
        return torch.stack([2.0 - bright, bright - 2.0], 1) * 10

    x = torch.ones(1, 3, 8, 8)
    state = SimpleNamespace(x=x, fill=torch.zeros_like(x), target=torch.tensor([0]), prob_needed=torch.tensor([0.5]),
                            cfg=ExplainConfig(), forward=forward, checks=torch.zeros(1, *x.shape))
    half = torch.zeros(1, 8, 8)
    half[:, :4] = 1
    _, ok = SufficiencyProblem.judge(state, torch.tensor([0]), half, backgrounds=False)
    assert ok.tolist() == [True]  # dark check fill: the label holds
    state.checks = torch.full((1, *x.shape), 5.0)
    _, ok = SufficiencyProblem.judge(state, torch.tensor([0]), half, backgrounds=False)
    assert ok.tolist() == [False]  # under a bright neutral fill the label is lost: not sufficient
