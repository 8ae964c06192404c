"""Models in every state users hand them over: explained correctly, or refused clearly, and never changed."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import fast_options, make_tiny, tiny_resnet
from nbexplain import Explainer
from nbexplain.errors import LayerError

from ._support import TINY_LAYERS, ModelState, hook_count, is_binary


def image(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(3, 32, 32)


def explain(ex, img=None, **kw):
    return ex.explain(image() if img is None else img, progress=False, **fast_options(**kw))


@pytest.fixture(scope="module")
def reference():
    """The explanation of image() by an untouched, eval-mode tiny model."""
    return explain(Explainer(make_tiny(), layers=TINY_LAYERS))


def same_result(a, b) -> bool:
    return torch.equal(a.mask, b.mask) and a.history["total"] == b.history["total"] and a.target == b.target


# -- model states ---------------------------------------------------------------------


def test_train_mode_model_is_explained_in_eval_mode_and_left_in_train_mode(reference):
    model = make_tiny().train()
    model.features[1].eval()  # mixed flags must come back exactly
    before = ModelState.of(model)
    res = explain(Explainer(model, layers=TINY_LAYERS))
    before.assert_same(model)  # BatchNorm running statistics included
    assert same_result(res, reference)


def test_dropout_in_train_mode_does_not_make_results_random():
    torch.manual_seed(0)
    model = nn.Sequential(make_tiny().features, nn.Dropout2d(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    model.train()
    before = ModelState.of(model)
    ex = Explainer(model, layers=["0.2", "0.5"])
    a, b = explain(ex), explain(ex)
    assert same_result(a, b)
    before.assert_same(model)


def test_frozen_model_is_explained_and_stays_frozen(reference):
    model = make_tiny()
    for p in model.parameters():
        p.requires_grad_(False)
    before = ModelState.of(model)
    res = explain(Explainer(model, layers=TINY_LAYERS))
    before.assert_same(model)
    assert same_result(res, reference)
    assert res.history["total"][0] != res.history["total"][-1]  # the mask still trained


def test_grad_mode_of_the_caller_is_restored():
    ex = Explainer(make_tiny(), layers=TINY_LAYERS)
    with torch.no_grad():
        explain(ex)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_users_own_hooks_survive_and_still_fire():
    model = make_tiny()
    fired = []
    handle = model.features[2].register_forward_hook(lambda *_: fired.append(1))
    before = ModelState.of(model)
    explain(Explainer(model, layers=TINY_LAYERS))
    before.assert_same(model)
    fired.clear()
    model(image()[None])
    assert fired == [1]
    handle.remove()


# -- in-place operations ---------------------------------------------------------------


def test_tapping_a_conv_followed_by_an_inplace_relu_records_the_conv_output():
    model = make_tiny()
    x = image()
    res = explain(Explainer(model, layers=["features.0", "features.2"]), x)
    with torch.no_grad():
        conv = model.features[0](x[None])[0]
        relu = model.features[:3](x[None])[0]  # conv, BatchNorm, ReLU(inplace=True)
    # Without a copy, the in-place ReLU would have overwritten the recorded conv output.
    assert (res.activations_original["features.0"] < 0).any()
    assert torch.allclose(res.activations_original["features.0"], conv, atol=1e-6)
    assert torch.allclose(res.activations_original["features.2"], relu, atol=1e-6)


class EditsItsInput(nn.Module):
    """Normalises its input in place, as some user models do."""

    def __init__(self):
        super().__init__()
        self.net = make_tiny()

    def forward(self, x):
        x.sub_(0.5).mul_(2.0)
        return self.net(x)


def test_a_model_that_edits_its_input_in_place_does_not_corrupt_the_result():
    model = EditsItsInput()
    x = image()
    res = explain(Explainer(model, layers=["net.features.2", "net.features.5"]), x)
    assert torch.equal(res.input, x)
    keep = res.mask.bool()
    assert torch.equal(res.explanation[:, keep], x[:, keep])
    with torch.no_grad():
        p = model(res.explanation[None].clone()).softmax(1)[0, res.target]
    assert float(p) == pytest.approx(res.prob_explanation, rel=1e-5)


# -- shared modules, wrappers ----------------------------------------------------------


def test_reused_relu_of_a_basicblock_is_refused_with_advice():
    model = tiny_resnet()
    before = ModelState.of(model)
    ex = Explainer(model, layers=["layer1.0.relu"])
    with pytest.raises(ValueError, match=r"more than once per forward.*tap the enclosing block"):
        explain(ex)
    before.assert_same(model)


def test_default_resnet_taps_work_on_a_real_torchvision_resnet():
    model = tiny_resnet()
    before = ModelState.of(model)
    ex = Explainer(model)
    assert ex.layers == ["relu", "layer1", "layer2", "layer3", "layer4"]
    res = explain(ex)
    assert set(res.activations_explanation) == set(ex.layers) and is_binary(res.mask)
    before.assert_same(model)


def test_dataparallel_wrapper_is_explained_through_its_module(reference):
    model = make_tiny()
    wrapped = nn.DataParallel(model)
    before = ModelState.of(wrapped)
    ex = Explainer(wrapped, layers=["module.features.2", "features.5", "module.features.7"])
    assert ex.layers == TINY_LAYERS
    res = explain(ex)
    assert same_result(res, reference) and res.model is wrapped
    before.assert_same(wrapped)


def test_compiled_model_is_explained_through_the_eager_module(reference):
    compiled_calls = []

    def backend(graph, example_inputs):
        compiled_calls.append(1)
        return graph.forward

    model = make_tiny()
    compiled = torch.compile(model, backend=backend)
    ex = Explainer(compiled, layers=["_orig_mod.features.2", "features.5", "features.7"])
    res = explain(ex)
    assert same_result(res, reference) and res.model is compiled
    # Hooks on a compiled graph would be traced away or force recompiles: the eager module is used instead.
    assert compiled_calls == []
    assert hook_count(model) == 0


# -- broken models -------------------------------------------------------------------


class FailsOnCall(nn.Module):
    """Wraps a layer and raises on its n-th call."""

    def __init__(self, inner, n, error):
        super().__init__()
        self.inner, self.n, self.error, self.calls = inner, n, error, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.n:
            raise self.error
        return self.inner(x)


def first_step_forward() -> int:
    """Which forward is the first training step's (after the image and the fills the ladder tries)."""
    model = make_tiny().train()
    counter = model.features[5] = FailsOnCall(model.features[5], -1, None)
    seen = []

    class First:
        def on_step(self, state):
            seen.append(counter.calls)

    explain(Explainer(model, layers=TINY_LAYERS), callbacks=[First()], fill="mean")
    return seen[0]


@pytest.mark.parametrize("when", ["first-forward", "during-training", "while-finishing"])
def test_an_error_inside_a_hooked_layer_propagates_and_leaves_the_model_as_it_was(when):
    n = {"first-forward": 1, "during-training": first_step_forward() + 1, "while-finishing": 0}[when]
    model = make_tiny().train()
    if when == "while-finishing":  # the forward that scores the final mask
        counter = make_tiny().train()
        counter.features[5] = FailsOnCall(counter.features[5], -1, None)
        explain(Explainer(counter, layers=TINY_LAYERS), fill="mean")
        n = counter.features[5].calls - 1
    model.features[5] = FailsOnCall(model.features[5], n, RuntimeError("layer exploded"))
    before = ModelState.of(model)
    ended = []

    class Ends:
        def on_end(self, info):
            ended.append(info)

    ex = Explainer(model, layers=TINY_LAYERS)
    with pytest.raises(RuntimeError, match="layer exploded"):
        explain(ex, callbacks=[Ends()], fill="mean")  # a flat fill: one forward for it (a blur may take more)
    before.assert_same(model)
    assert ex.last_partial is None
    if when == "during-training":  # progress bars and widgets are told to settle
        assert ended and ended[0]["interrupted"] and ended[0]["result"] is None
    # The explainer is still usable afterwards.
    model.features[5].n = -1
    assert is_binary(explain(ex).mask)
    before.assert_same(model)


def test_a_model_producing_nan_is_refused():
    class NaNs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_tiny()

        def forward(self, x):
            return self.net(x) * float("nan")

    with pytest.raises(ValueError, match="NaN or infinite logits"):
        explain(Explainer(NaNs(), layers=["net.features.2"]))


def test_a_model_that_fails_on_every_input_is_reported_with_its_own_error():
    """Not mistaken for a model without feature maps: the user sees the model's own error."""

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_tiny()

        def forward(self, x):
            return self.net(x).view(7, -1)  # a bug of the model's, not of the input

    with pytest.raises(LayerError, match=r"forward failed on a probe batch.*RuntimeError: shape .\[7, -1\]. is invalid") as err:
        explain(Explainer(Broken()))
    assert isinstance(err.value.__cause__, RuntimeError)


# -- layer choice ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, message",
    [
        (["features.22"], r"no module named 'features.22'.*Close names"),
        (["featurez"], "no module named 'featurez'"),
        ("", "no module named ''"),
        ([], "at least one module"),
        (["features.2", "features.2"], "duplicates"),
        (5, "a module name or a list of names"),
        ([3], "must be strings"),
    ],
    ids=["missing-index", "typo", "empty-name", "empty-list", "duplicate", "not-a-list", "not-a-string"],
)
def test_bad_layer_names_are_refused_at_construction(layers, message):
    model = make_tiny()
    with pytest.raises(ValueError, match=message):
        Explainer(model, layers=layers)
    assert hook_count(model) == 0


def test_a_layer_the_forward_never_reaches_is_refused():
    class SkipsAHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.unused = make_tiny(), nn.ReLU()

        def forward(self, x):
            return self.net(x)

    model = SkipsAHead()
    with pytest.raises(ValueError, match=r"did not run during the forward pass"):
        explain(Explainer(model, layers=["net.features.2", "unused"]))
    assert hook_count(model) == 0


def test_model_without_convolutions_needs_named_layers():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(ValueError, match=r"found no feature map.*Pass layers=\['name', \.\.\.\]"):
        Explainer(mlp)
    res = explain(Explainer(mlp, layers=["2"]))  # with a named layer it works
    assert is_binary(res.mask) and res.mask.shape == (32, 32)


# -- outputs ------------------------------------------------------------------


class Head(nn.Module):
    """The tiny model with its output reshaped by `post`."""

    def __init__(self, post):
        super().__init__()
        self.net, self.post = make_tiny(), post

    def forward(self, x):
        return self.post(self.net(x), x)


class WithLogits:
    def __init__(self, logits):
        self.logits = logits


@pytest.mark.parametrize(
    "post, message",
    [
        (lambda z, x: z[:, :, None, None].expand(-1, -1, 4, 4), r"logits of shape \[batch, classes\]; it returned \(1, 4, 4, 4\)"),
        (lambda z, x: z[0], r"it returned \(4,\)"),
        (lambda z, x: {"out": z}, "it returned dict"),
        (lambda z, x: z[:, :1], "one logit per image.*torch.cat"),
        (lambda z, x: z.argmax(1, keepdim=True).repeat(1, 3), "float logits"),
    ],
    ids=["segmentation-map", "unbatched", "dict", "single-logit", "class-ids"],
)
def test_outputs_that_are_not_logits_are_refused(post, message):
    with pytest.raises(ValueError, match=message):
        explain(Explainer(Head(post), layers=["net.features.2"]))


@pytest.mark.parametrize(
    "post",
    [lambda z, x: (z, x.mean()), lambda z, x: WithLogits(z)],
    ids=["tuple", "output-object"],
)
def test_outputs_wrapping_logits_are_explained_like_the_logits(post):
    res = explain(Explainer(Head(post), layers=["net.features.2", "net.features.5"]))
    ref = explain(Explainer(Head(lambda z, x: z), layers=["net.features.2", "net.features.5"]))
    assert torch.equal(res.mask, ref.mask) and res.target == ref.target


def test_log_probabilities_are_explained_as_scores():
    """Log-probabilities have the logits' softmax, so the same target and a mask that keeps it; the
    mask may differ, since the start weighs positions by the gradient of the target's own score."""
    res = explain(Explainer(Head(lambda z, x: z.log_softmax(1)), layers=["net.features.2", "net.features.5"]))
    ref = explain(Explainer(Head(lambda z, x: z), layers=["net.features.2", "net.features.5"]))
    assert res.target == ref.target and res.label_kept and is_binary(res.mask)
    assert res.prob_original == pytest.approx(ref.prob_original, abs=1e-5)


def test_probabilities_instead_of_logits_warn():
    with pytest.warns(UserWarning, match="look like probabilities.*remove the final softmax"):
        explain(Explainer(Head(lambda z, x: z.softmax(1)), layers=["net.features.2"]))


# -- targets ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled():
    return Explainer(make_tiny(), layers=TINY_LAYERS, labels=["cat", "dog", "fox", "owl"])


@pytest.mark.parametrize(
    "target, error, message",
    [
        (4, ValueError, r"target 4 is out of range: the model has 4 classes \(0..3\)"),
        (-1, ValueError, "out of range"),
        (10**12, ValueError, "out of range"),
        (1.5, TypeError, "class index"),
        (2.0, TypeError, "class index"),
        ("zebra", TypeError, "known label name"),
        (True, TypeError, "class index"),
        (torch.tensor([1, 2]), ValueError, "2 targets for 1 images"),  # a 1-D tensor: one target per image
        (object(), TypeError, "class index"),
        ([1, 2], ValueError, "2 targets for 1 images"),
    ],
    ids=["too-big", "negative", "huge", "float", "integral-float", "unknown-name", "bool", "two-element-tensor",
         "object", "list-for-one-image"],
)
def test_bad_targets_are_refused(labelled, target, error, message):
    with pytest.raises(error, match=message):
        explain(labelled, target=target)


@pytest.mark.parametrize("target", [2, np.int64(2), torch.tensor(2), torch.tensor([2]), "fox"],
                         ids=["int", "numpy-int", "tensor", "one-element-tensor", "label"])
def test_every_spelling_of_a_class_index_is_accepted(labelled, target):
    res = explain(labelled, target=target)
    assert res.target == 2 and isinstance(res.target, int) and res.target_name == "fox"


# -- gray models ----------------------------------------------------------------------


class GrayNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def test_gray_model_with_the_rgb_default_preprocess_asks_for_its_own():
    ex = Explainer(GrayNet().eval())
    pil = Image.fromarray(np.zeros((32, 32), np.uint8), "L")
    with pytest.raises(ValueError, match=r"1-channel input.*pass preprocess="):
        explain(ex, pil)
    res = explain(ex, torch.randn(1, 32, 32))  # a tensor in model space needs no preprocessing
    assert res.input.shape == (1, 32, 32) and is_binary(res.mask)


def test_gray_model_with_its_own_preprocess_takes_any_pil_image():
    from torchvision import transforms

    prep = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.25,))])
    ex = Explainer(GrayNet().eval(), preprocess=prep)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    res = explain(ex, rgb, fill="mean")
    assert res.input.shape == (1, 32, 32)
    gray = torch.from_numpy(np.asarray(rgb.convert("L"), np.float32) / 255)
    assert torch.allclose(res.input[0], (gray - 0.5) / 0.25, atol=1e-5)
    # The mean-colour fill is the dataset's mean grey (0 in model space), not some RGB statistic.
    from nbexplain.core.fills import make_fill

    assert torch.equal(make_fill(res.input[None], "mean", ex.normalization), torch.zeros(1, 1, 32, 32))
    kept = res.mask.bool()
    assert torch.allclose(res.explanation[:, ~kept], res.fill.image[:, ~kept])
