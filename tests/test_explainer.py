"""The Explainer contract and the promise that the user's model is only borrowed."""

import numpy as np
import pytest
import torch
from PIL import Image

from nbexplain import ExplainConfig, Explainer, Explanation

from conftest import fast_options, make_tiny, tiny_resnet

LAYERS = ["features.2", "features.5", "features.7"]


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_result_contract(tiny, image):
    res = Explainer(tiny, layers=LAYERS).explain(image, progress=False, **fast_options())
    assert isinstance(res, Explanation)
    assert res.mask.dtype == torch.float32 and res.mask.shape == (32, 32)
    assert set(res.mask.unique().tolist()) <= {0.0, 1.0}
    assert res.explanation.shape == (3, 32, 32)
    assert isinstance(res.target, int) and res.target == int(tiny(image[None]).argmax())
    assert 0 <= res.prob_original <= 1 and 0 <= res.prob_explanation <= 1
    assert res.area == pytest.approx(float(res.mask.mean()))
    for term in ("activation", "kl", "ce", "area", "binarization", "tv", "robustness", "total"):
        assert len(res.history[term]) == res.steps
    # The explanation is the input where the mask is 1 and the fill elsewhere.
    keep = res.mask.bool()
    assert torch.equal(res.explanation[:, keep], res.input[:, keep])
    assert "keeps" in repr(res)


def test_explanation_is_what_was_scored(tiny, image):
    res = Explainer(tiny, layers=LAYERS).explain(image, progress=False, **fast_options())
    with torch.no_grad():
        p = tiny(res.explanation[None]).softmax(1)[0, res.target].item()
    assert p == pytest.approx(res.prob_explanation, rel=1e-5)


def test_model_is_untouched(image):
    model = make_tiny()
    model.train()  # a user model left in train mode stays in train mode
    model.features[0].weight.requires_grad_(False)
    before = snapshot(model)
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    Explainer(model, layers=LAYERS).explain(image, progress=False, **fast_options())
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm buffers included
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_same_mask_and_different_seed_runs(tiny, image):
    ex = Explainer(tiny, layers=LAYERS)
    a = ex.explain(image, progress=False, seed=5, **fast_options())
    b = ex.explain(image, progress=False, seed=5, **fast_options())
    assert torch.equal(a.mask, b.mask)
    assert a.history["total"] == b.history["total"]


def test_target_choice_and_errors(tiny, image):
    ex = Explainer(tiny, layers=LAYERS, labels=["a", "b", "c", "d"])
    res = ex.explain(image, target=2, progress=False, **fast_options())
    assert res.target == 2 and res.target_name == "c"
    assert ex.explain(image, target="d", progress=False, **fast_options()).target == 3
    with pytest.raises(ValueError, match="out of range"):
        ex.explain(image, target=4, progress=False)
    with pytest.raises(TypeError, match="class index"):
        ex.explain(image, target=1.5, progress=False)


def test_works_under_no_grad_and_inference_mode(tiny, image):
    ex = Explainer(tiny, layers=LAYERS)
    with torch.no_grad():
        a = ex.explain(image, progress=False, **fast_options())
    with torch.inference_mode():
        b = ex.explain(image.clone(), progress=False, **fast_options())
    assert torch.equal(a.mask, b.mask)


def test_pil_and_numpy_inputs_match():
    model = make_tiny()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    ex = Explainer(model, layers=LAYERS)
    a = ex.explain(Image.fromarray(arr), progress=False, **fast_options())
    b = ex.explain(arr, progress=False, **fast_options())
    assert torch.equal(a.input, b.input) and torch.equal(a.mask, b.mask)


def test_bad_layer_names_get_clear_errors(tiny):
    with pytest.raises(ValueError, match="no module named 'featurez'"):
        Explainer(tiny, layers=["featurez"])
    nn = torch.nn
    with pytest.raises(ValueError, match="found no feature map"):  # runs on images, but has no feature map
        Explainer(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="forward failed on a probe batch.*mat1 and mat2"):  # runs on no image
        Explainer(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)))


def test_shared_relu_is_refused_with_advice(image):
    model = tiny_resnet()
    ex = Explainer(model, layers=["layer1.0.relu"])
    with pytest.raises(ValueError, match="more than once"):
        ex.explain(torch.randn(3, 32, 32), progress=False, **fast_options())
    assert hook_count(model) == 0


def test_config_validation():
    with pytest.raises(TypeError, match="valid options"):
        ExplainConfig.from_kwargs(aera=1.0)
    with pytest.raises(ValueError):
        ExplainConfig(area=-1)
    with pytest.raises(ValueError, match="preset"):
        ExplainConfig.preset("turbo")
    assert ExplainConfig.preset("fast").steps < ExplainConfig().steps < ExplainConfig.preset("thorough").steps


def test_keyboard_interrupt_keeps_best_mask_and_cleans_up(image):
    model = make_tiny()
    before = snapshot(model)

    class Interrupt:
        def on_step(self, state):
            if state.step == 4:
                raise KeyboardInterrupt

    ended = {}

    class Recorder:
        def on_end(self, info):
            ended.update(info)

    ex = Explainer(model, layers=LAYERS)
    with pytest.raises(KeyboardInterrupt):
        ex.explain(image, progress=False, callbacks=[Interrupt(), Recorder()], **fast_options(steps=50, min_steps=50))
    assert ended["interrupted"] is True
    partial = ex.last_partial
    assert partial is not None and partial.interrupted and partial.steps == 4
    assert set(partial.mask.unique().tolist()) <= {0.0, 1.0}
    assert hook_count(model) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules())


def test_batch_of_images_matches_independent_runs(tiny):
    torch.manual_seed(0)
    imgs = [torch.randn(3, 32, 32) for _ in range(3)]
    ex = Explainer(tiny, layers=LAYERS)
    results = ex.explain(imgs, progress=False, **fast_options())
    assert [r.target for r in results] == [int(tiny(i[None]).argmax()) for i in imgs]
    assert all(r.mask.shape == (32, 32) for r in results)


def test_stock_resnet18_end_to_end():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    before = snapshot(model)
    ex = Explainer(model)
    assert ex.layers == ["relu", "layer1", "layer2", "layer3", "layer4"]
    res = ex.explain(torch.randn(3, 96, 96), progress=False, steps=4, min_steps=4, mask_resolution=24)
    assert res.mask.shape == (96, 96) and set(res.mask.unique().tolist()) <= {0.0, 1.0}
    assert set(res.activations_explanation) == set(ex.layers)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert hook_count(model) == 0


def test_callbacks_receive_start_steps_and_end(tiny, image):
    seen = {"start": None, "steps": [], "end": None}

    class Cb:
        def on_start(self, info):
            seen["start"] = info

        def on_step(self, state):
            seen["steps"].append(state)

        def on_end(self, info):
            seen["end"] = info

    res = Explainer(tiny, layers=LAYERS).explain(image, progress=False, callbacks=[Cb()], **fast_options())
    assert seen["start"]["total_steps"] == 6 and seen["start"]["image"].shape == (32, 32, 3)
    assert seen["start"]["fill_image"].shape == (32, 32, 3)  # the mean colour, for the live view
    assert [s.step for s in seen["steps"]] == list(range(1, res.steps + 1))
    st = seen["steps"][-1]
    assert st.mask.shape == (16, 16) and set(st.mask.unique().tolist()) <= {0.0, 1.0}
    assert seen["end"]["result"] is res and seen["end"]["interrupted"] is False


def test_the_work_after_the_steps_is_announced_as_phases(tiny, image):
    events = []

    class Cb:
        def on_step(self, state):
            events.append("step")

        def on_phase(self, name):
            events.append(name)

        def on_end(self, info):
            events.append("end")

    Explainer(tiny, layers=LAYERS).explain(image, progress=False, callbacks=[Cb()], **fast_options())
    after = events[len(events) - events[::-1].index("step"):]  # what comes after the last step
    assert after == ["choosing the smallest sufficient cut", "dropping pieces the decision does not need",
                     "scoring the explanation and its random backgrounds", "end"]


@pytest.mark.filterwarnings("ignore:explaining:UserWarning")  # the forced empty mask may keep the tiny model's label
def test_a_run_that_never_kept_the_label_is_retried_from_a_fuller_mask(tiny, image, monkeypatch):
    from nbexplain.core.optimize import MaskOptimizer

    real = MaskOptimizer._optimise
    runs = []

    def first_run_collapses(self):
        real(self)
        runs.append(self.step_offset)
        if self.step_offset == 0:  # as if the mask had emptied and never kept the label
            self.best_rank[0], self.best_loss[0] = 0, float("inf")
            self.best_masks[0] = 0.0

    real_cut = MaskOptimizer.select_cut

    def no_cut_rescues_the_first_run(self, **kwargs):
        if self.step_offset != 0:
            real_cut(self, **kwargs)

    monkeypatch.setattr(MaskOptimizer, "_optimise", first_run_collapses)
    monkeypatch.setattr(MaskOptimizer, "select_cut", no_cut_rescues_the_first_run)
    steps = []

    class Steps:
        def on_step(self, state):
            steps.append(state)

    ex = Explainer(tiny, layers=LAYERS)
    res = ex.explain(image, progress=False, callbacks=[Steps()], **fast_options())
    assert runs == [0, 6]  # one retry, numbered after the first run's six steps
    assert [s.step for s in steps] == list(range(1, res.steps + 1)) and res.steps == 12
    assert len(res.history["total"]) == 12
    assert steps[6].area > 0.8  # the retry starts from a mask that keeps most of the image
    assert res.mask.sum() > 0  # its best mask replaced the collapsed one

    runs.clear()
    res = ex.explain(image, progress=False, retry_area=None, **fast_options())
    assert runs == [0] and res.steps == 6 and res.mask.sum() == 0


def test_robustness_variants_join_every_other_step_and_every_step_when_strict(tiny, image):
    batches, per_step = [], []
    tiny.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))

    class Cb:
        def on_step(self, state):
            per_step.append(batches[-1])  # each step is one forward: e and its variants together

    ex = Explainer(tiny, layers=LAYERS)
    res = ex.explain(image, progress=False, callbacks=[Cb()], **fast_options(n_backgrounds=2, robustness_every=2))
    # e and its mean-colour check every step, two variants every other step (robustness_every=2, as in fast)
    assert per_step == [4, 2, 4, 2, 4, 2]
    rob = res.history["robustness"]
    assert rob[1] == rob[0] and rob[3] == rob[2]  # the curve repeats the latest measured value
    per_step.clear()
    ex.explain(image, progress=False, callbacks=[Cb()], **fast_options(n_backgrounds=2, robustness_every=2, strict_backgrounds=True))
    assert per_step == [4] * 6
    per_step.clear()
    ex.explain(image, progress=False, callbacks=[Cb()], **fast_options(n_backgrounds=2, check_fills=()))
    assert per_step == [3] * 6  # no check fill
    with pytest.raises(ValueError, match="robustness_every"):
        ExplainConfig(robustness_every=0)


def test_for_a_class_the_image_does_not_predict_the_budget_only_shrinks_and_no_retry_runs(tiny, image, monkeypatch):
    from nbexplain.core.optimize import MaskOptimizer

    runs, areas = [], []
    real = MaskOptimizer._optimise

    def record(self):
        runs.append(self.step_offset)
        real(self)

    monkeypatch.setattr(MaskOptimizer, "_optimise", record)

    class Areas:
        def on_step(self, state):
            areas.append(state.area)

    with torch.no_grad():
        least = int(tiny(image[None]).argmin())  # the class the image supports least
    Explainer(tiny, layers=LAYERS).explain(image, target=least, progress=False, callbacks=[Areas()],
                                          **fast_options(steps=12, min_steps=12))
    assert runs == [0]  # more of the image would not help: no retry from a fuller mask
    assert len(areas) == 12 and all(b <= a + 1e-6 for a, b in zip(areas, areas[1:])) and areas[-1] < areas[0]


def test_retry_area_is_validated():
    for bad in (0, -0.5, 1.5, "most"):
        with pytest.raises(ValueError, match="retry_area"):
            ExplainConfig(retry_area=bad)
    assert ExplainConfig(retry_area=None).retry_area is None


def constant_model():
    """Says class 0 whatever it sees: its smallest sufficient explanation is the empty mask."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        for layer in (model[0], model[4]):
            layer.weight.zero_()
        model[4].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    return model.eval()


def test_an_empty_mask_that_keeps_the_label_is_explained_to_the_user(image):
    with pytest.warns(UserWarning, match="fill alone"):
        res = Explainer(constant_model()).explain(image, progress=False, live=False, steps=40, min_steps=1,
                                                  mask_resolution=16, unet_width=4)
    assert res.area == 0.0 and res.label_kept and res.empty_but_kept
    assert "fill alone" in res.summary()

    from nbexplain.widget import ExplanationWidget

    assert "fill alone" in ExplanationWidget.from_result(res).note


def test_a_kept_mask_must_add_evidence_over_the_fill():
    """The model gives class 0 to a blank image (p 0.58) and more to any textured one: keeping
    nothing keeps the label, but the mask must recover half of what the image adds."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 3)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1, 1], [-1, -1, -1]]).view(2, 3, 1, 1))  # |sum of channels|
        model[4].weight.zero_()
        model[4].weight[0] = 4.0
        model[4].bias.copy_(torch.tensor([1.0, 0, 0]))
    torch.manual_seed(0)
    x = torch.randn(3, 32, 32)
    with torch.no_grad():
        p_fill = float(model(torch.zeros(1, 3, 32, 32)).softmax(1)[0, 0])  # the mean colour is 0 in model space
        p_x = float(model(x[None]).softmax(1)[0, 0])
    assert p_fill > 0.5 * p_x
    res = Explainer(model).explain(x, progress=False, live=False, steps=40, min_steps=1, mask_resolution=16,
                                   unet_width=4)
    assert res.area > 0 and not res.empty_but_kept
    assert res.prob_explanation >= p_fill + 0.5 * (p_x - p_fill)


def test_learning_rates_warm_up_then_decay_to_a_tenth():
    from nbexplain.core.optimize import lr_factor

    cfg = ExplainConfig(steps=100, warmup=10)
    ramp = [lr_factor(s, cfg) for s in range(10)]
    assert ramp[0] == pytest.approx(0.1, rel=0.01) and all(a < b for a, b in zip(ramp, ramp[1:]))
    assert ramp[-1] == pytest.approx(1.0, abs=0.03)  # full rate, just past the top of the cosine
    assert lr_factor(100, cfg) == pytest.approx(0.1) and lr_factor(500, cfg) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup"):
        ExplainConfig(warmup=0)


def test_progress_bar_grows_with_a_retried_run():
    from nbexplain.core.optimize import StepState
    from nbexplain.core.progress import ProgressBar

    import io

    bar = ProgressBar(file=io.StringIO())
    bar.on_start({"total_steps": 6, "target_name": "x"})

    def step(n, total):
        return StepState(step=n, total_steps=total, losses={}, mask=torch.zeros(2, 2), prob=0.5, area=0.5,
                         label_kept=True)

    bar.on_step(step(6, 6))
    bar.on_step(step(9, 12))  # the retry numbers its steps after the first run's
    assert (bar.bar.n, bar.bar.total) == (9, 12)
    bar.on_step(step(10, 12))
    bar.on_phase("choosing the smallest sufficient cut")  # stopped early: the bar is full, and says what runs
    assert (bar.bar.n, bar.bar.total) == (10, 10)
    assert bar.bar.desc.startswith("explaining x: choosing the smallest sufficient cut")
    bar.on_end({})


def test_patience_restarts_only_on_a_clear_gain():
    from types import SimpleNamespace

    from nbexplain.core.optimize import MaskOptimizer

    state = SimpleNamespace(best_rank=torch.tensor([2, 2, 0]), best_loss=torch.tensor([0.2, 0.2, 5.0]),
                            best_masks=torch.ones(3, 20, 20))
    hard = torch.zeros(3, 20, 20)
    hard[0].view(-1)[:78] = 1  # area 0.195: smaller than the best (0.2), but by less than 5 %
    hard[1].view(-1)[:60] = 1  # area 0.15: a clear gain
    kept = torch.tensor([True, True, False])
    MaskOptimizer._track_best(state, torch.tensor([1.0, 1.0, 4.0]), hard, kept, kept)
    assert state.best_loss[:2].tolist() == pytest.approx([0.195, 0.15])  # both are kept as the best mask
    assert state._improved.tolist() == [False, True, True]  # a lower loss without sufficiency also counts


def test_compare_scores_every_method_with_the_explanations_own_fill(tiny, image):
    from nbexplain import compare

    res = Explainer(tiny, layers=LAYERS).explain(image, progress=False, **fast_options())
    assert res.fill is not None and res.fill.image.shape == res.input.shape
    kept = res.mask.bool()
    assert torch.allclose(res.explanation[:, ~kept], res.fill.image[:, ~kept])
    c = compare(tiny, image, methods=["nbexplain", "gradcam"], explainer=Explainer(tiny, layers=LAYERS),
                **fast_options())
    assert torch.allclose(c.fill.reshape(res.fill.image.shape), c.explanation.fill.image)


def test_options_from_a_command_line_read_as_keywords():
    from nbexplain.config import parse_options

    opts = parse_options("keep_ratio=0.9, fill='mean', backgrounds=('zeros', 'uniform')")
    assert opts == {"keep_ratio": 0.9, "fill": "mean", "backgrounds": ("zeros", "uniform")}
    assert ExplainConfig(**opts).backgrounds == ("zeros", "uniform") and parse_options("") == {}
    for bad in ("0.9", "keep_ratio=", "fill=mean"):
        with pytest.raises(ValueError):
            parse_options(bad)


def test_the_mask_starts_at_the_smallest_sufficient_cut_of_the_relevance_ranking():
    # One step is enough for a small mask that keeps the label: the run starts from the smallest
    # sufficient cut of the target's relevance, not from half of the image (where, with
    # target_aware=False, these scenes keep masks of a half and one loses its label).
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(6, seed=77)
    ex = Explainer(zm.model, preprocess=zm.preprocess)

    class FirstStep:
        area = None

        def on_step(self, state):
            self.area = state.area if self.area is None else self.area

    for img, label in zip(scenes.images, scenes.labels):
        first = FirstStep()
        res = ex.explain(zm.normalize(img), target=int(label), progress=False, live=False, callbacks=[first],
                         steps=1, min_steps=1, retry_area=None)
        assert res.label_kept and res.area <= 0.15
        assert first.area <= 0.15  # the first step already trains at the start cut's area


def test_on_a_cpu_a_list_of_images_is_explained_in_groups_that_fit_one_pass(tiny):
    # Larger batches outgrow a CPU's caches: each step forwards at most about four 224 px images
    # (here two photos, each with its background variant), so five photos train in three groups.
    from nbexplain.core.batching import images_per_pass

    assert images_per_pass(torch.device("cpu"), 224, 224) == 4
    assert images_per_pass(torch.device("cpu"), 448, 448) == 1
    assert images_per_pass(torch.device("cuda"), 224, 224) == 32

    class Starts:
        n = 0

        def on_start(self, info):
            self.n += 1

    torch.manual_seed(3)
    images = [torch.randn(3, 224, 224) for _ in range(5)]
    starts = Starts()
    # Each step scores e with one background: two images of 224 px fit one pass of four...
    results = Explainer(tiny).explain(images, progress=False, callbacks=[starts],
                                      **fast_options(steps=2, min_steps=2, check_fills=()))
    assert starts.n == 3 and len(results) == 5
    assert all(r.mask.shape == (224, 224) for r in results)
    # ... and with the mean-colour check as well, one.
    starts.n = 0
    Explainer(tiny).explain(images, progress=False, callbacks=[starts], **fast_options(steps=2, min_steps=2))
    assert starts.n == 5


def test_after_a_sufficient_start_the_final_cut_search_costs_no_forward(monkeypatch):
    # The steps' exact budget already probes below the start's sufficient cut; a final search of
    # every smaller cut only cost forwards (1-3 batches of four images per explanation).
    from nbexplain.core.optimize import MaskOptimizer
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(2, seed=77)
    scored = []
    real_search = MaskOptimizer._cut_search

    def counting_search(self, *args, **kwargs):
        real_forward = self.problem.forward
        self.problem.forward = lambda images: scored.append(images.shape[0]) or real_forward(images)
        try:
            return real_search(self, *args, **kwargs)
        finally:
            del self.problem.forward

    real_select = MaskOptimizer.select_cut
    finals = []

    def select(self, **kwargs):
        scored.clear()
        real_select(self, **kwargs)
        finals.append((kwargs.get("unsolved_only"), bool((self.best_rank == 2).all()), sum(scored)))

    monkeypatch.setattr(MaskOptimizer, "_cut_search", counting_search)
    monkeypatch.setattr(MaskOptimizer, "select_cut", select)
    ex = Explainer(zm.model, preprocess=zm.preprocess)
    for img, label in zip(scenes.images, scenes.labels):
        res = ex.explain(zm.normalize(img), target=int(label), progress=False, live=False, retry_area=None)
        assert res.label_kept
    assert finals == [(True, True, 0)] * 2


def test_in_a_batch_a_cut_above_an_images_limit_never_counts_as_its_sufficient_cut(monkeypatch):
    # Cuts are scored while any image of the batch needs them; one scored for another image's sake
    # must not become this image's "smallest sufficient cut" above its own limit (it once replaced
    # a 2.6 % start by a 26 % one when a photo was explained in a batch).
    from nbexplain.core.optimize import MaskOptimizer
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(1, seed=77)
    img, label = zm.normalize(scenes.images[0]), int(scenes.labels[0])
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        least = int(zm.model(noise[None]).argmin())  # no cut of noise makes it the top class: every cut is scored
    seen = {}

    def probe(self):
        no_limit = self._cut_search(backgrounds=False, current=False)
        limited = self._cut_search(backgrounds=False, current=False,
                                   limit=torch.tensor([0.0, 2.0], device=self.x.device))
        seen.update(no_limit=no_limit[2].tolist(), limited=limited[2].tolist())

    monkeypatch.setattr(MaskOptimizer, "_start_at_smallest_cut", probe)
    Explainer(zm.model, preprocess=zm.preprocess).explain([img, noise], target=[label, least], progress=False,
                                                          live=False, steps=1, min_steps=1, retry_area=None)
    assert seen["no_limit"] == [True, False]  # the scene's class has a sufficient cut, the noise's none ...
    assert seen["limited"] == [False, False]  # ... and the scene's does not count once its limit is 0


def test_a_target_no_mask_can_make_sufficient_stops_once_its_best_mask_stalls():
    # Explaining a class the model gives the image last: no mask makes it the top class, so no
    # "smallest sufficient mask" ever ends the run; it ends once no step has lowered the loss for
    # 3 * patience steps (it used to run every step: 5 s instead of 2 on a grid's cell).
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    img = zm.normalize(make_scenes(1, seed=77).images[0])
    with torch.no_grad():
        least = int(zm.model(img[None]).argmin())
    res = Explainer(zm.model, preprocess=zm.preprocess).explain(img, target=least, progress=False, live=False,
                                                               steps=200, min_steps=1, patience=4, retry_area=None)
    assert not res.label_kept
    assert 3 * 4 < res.steps < 200


def test_pieces_are_labelled_at_the_working_resolution():
    from nbexplain.core.pieces import label_pieces, pieces_by_size

    m = torch.zeros(1, 32, 32)
    m[0, 2:6, 2:6] = 1  # 16 pixels
    m[0, 20:30, 20:30] = 1  # 100 pixels
    m[0, 6, 6] = 1  # touches the first blob at a corner: the same piece
    labels = label_pieces(m, (16, 16))
    assert set(labels.unique().tolist()) == {0, int(labels[0, 2, 2]), int(labels[0, 25, 25])}
    assert labels[0, 6, 6] == labels[0, 2, 2] and labels[0, 2, 2] != labels[0, 25, 25]
    assert (labels > 0).float().sum() == m.sum()  # labels only where the mask is on
    assert pieces_by_size(labels, 8) == [[int(labels[0, 25, 25]), int(labels[0, 2, 2])]]  # largest first


def test_a_piece_the_decision_does_not_need_is_dropped(monkeypatch):
    from nbexplain.core.optimize import MaskOptimizer
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(1, seed=5)
    img, label, gt = zm.normalize(scenes.images[0]), int(scenes.labels[0]), scenes.masks[0].bool()
    obj = torch.nn.functional.max_pool2d(gt[None, None].float(), 9, stride=1, padding=4)[0, 0]  # object and a rim
    far = torch.zeros_like(obj)  # a square far from the object
    y0, x0 = (0, 0) if not obj[:40, :40].any() else (88, 88) if not obj[88:, 88:].any() else (0, 88)
    far[y0:y0 + 40, x0:x0 + 40] = 1
    assert not (far.bool() & obj.bool()).any()
    seen = {}

    def run(self):
        self.best_masks[0] = obj.clamp(max=1) + far
        self.best_rank[0], self.best_loss[0] = 2, self.best_masks[0].mean()
        self.drop_unneeded_pieces()
        seen["mask"] = self.best_masks[0].clone()

    monkeypatch.setattr(MaskOptimizer, "run", run)
    res = Explainer(zm.model, preprocess=zm.preprocess).explain(img, target=label, progress=False, live=False)
    assert torch.equal(seen["mask"], obj)  # the far square went, the object stayed
    assert res.label_kept


def test_drop_pieces_false_keeps_every_piece(tiny, image, monkeypatch):
    from nbexplain.core.optimize import MaskOptimizer

    def fail(self):
        raise AssertionError("pieces were dropped")

    monkeypatch.setattr(MaskOptimizer, "drop_unneeded_pieces", fail)
    Explainer(tiny, layers=LAYERS).explain(image, progress=False, **fast_options(drop_pieces=False))
    with pytest.raises(AssertionError, match="pieces were dropped"):
        Explainer(tiny, layers=LAYERS).explain(image, progress=False, **fast_options())


def test_where_the_start_cut_convinces_the_model_fully_the_mask_keeps_that():
    # The smallest sufficient cut of this scene's relevance gives its label more than the scene does;
    # the steps then keep p(e) >= p(x), instead of shrinking the mask until only 80 % of the gain is left.
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(8, seed=77)
    img, label = zm.normalize(scenes.images[7]), int(scenes.labels[7])
    ex = Explainer(zm.model, preprocess=zm.preprocess)
    full = ex.explain(img, target=label, progress=False, live=False)
    assert full.label_kept and full.prob_explanation >= full.prob_original
    loose = ex.explain(img, target=label, progress=False, live=False, keep_free_confidence=False)
    assert loose.prob_explanation < loose.prob_original and loose.area < full.area
