"""Interrupts, several explainers on one model and long sessions: nothing lost, nothing left behind."""

import gc
import os
import random

import pytest
import torch
from torch import nn

from conftest import fast_options, make_tiny
from nbexplain import Explainer, Explanation
from nbexplain.core.optimize import MaskOptimizer

from ._support import TINY_LAYERS, ModelState, hook_count, is_binary

# At 16x16 with mask_resolution=16 the working mask is the full mask, so the
# per-step masks that callbacks see can be compared with the kept best mask.
SIZE = 16
STEPS = 14


def image(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(3, SIZE, SIZE)


def options(**kw):
    # Without the relevance start, forward k + 2 is training step k, and every mask the run keeps
    # is one that the callbacks saw (the start's cut search is tested on its own below).
    return fast_options(steps=STEPS, min_steps=STEPS, **{"target_aware": False, **kw})


class Recorder:
    """Keeps every step's state and the on_end report."""

    def __init__(self):
        self.states, self.end = [], None

    def on_step(self, state):
        self.states.append(state)

    def on_end(self, info):
        self.end = info


def best_so_far(states) -> torch.Tensor:
    """The mask the explainer promises to keep: sufficient masks first (the smallest), then label-keeping
    ones, then the rest (the lowest loss); the earliest on ties."""
    best, best_rank, best_key = None, -1, float("inf")
    for s in states:
        rank = int(s.label_kept) + int(s.sufficient)
        key = s.area if s.sufficient else s.losses["total"]
        if rank > best_rank or (rank == best_rank and key < best_key):
            best, best_rank, best_key = s.mask, rank, key
    return best


class InterruptAt:
    def __init__(self, step):
        self.step = step

    def on_step(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def check_interrupted(ex, model, before, recorder, steps_done):
    partial = ex.last_partial
    assert isinstance(partial, Explanation) and partial.interrupted and partial.steps == steps_done
    assert partial.mask.shape == (SIZE, SIZE) and is_binary(partial.mask)
    expected = best_so_far(recorder.states) if steps_done else torch.ones(SIZE, SIZE)
    assert torch.equal(partial.mask, expected), "the kept mask is not the best one seen so far"
    assert len(partial.history.get("total", [])) == steps_done
    assert recorder.end["interrupted"] is True and recorder.end["result"] is partial
    before.assert_same(model)  # hooks gone, flags and buffers as they were


# Steps drawn once, with a fixed seed, so a failure names a step that reproduces.
RANDOM_STEPS = sorted(random.Random(9).sample(range(1, STEPS), 3))


@pytest.mark.parametrize("step", RANDOM_STEPS)
def test_keyboard_interrupt_between_steps_keeps_the_best_mask_and_propagates(step):
    model = make_tiny().train()
    before = ModelState.of(model)
    ex = Explainer(model, layers=TINY_LAYERS)
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        ex.explain(image(), progress=False, callbacks=[rec, InterruptAt(step)], **options())
    check_interrupted(ex, model, before, rec, steps_done=step)
    # The next run starts clean and gives what a fresh explainer gives.
    again = ex.explain(image(), progress=False, **options())
    fresh = Explainer(make_tiny(), layers=TINY_LAYERS).explain(image(), progress=False, **options())
    assert torch.equal(again.mask, fresh.mask) and ex.last_partial is None
    before.assert_same(model)


class InterruptOnCall(nn.Module):
    """Ctrl-C arriving in the middle of the n-th forward pass (where training spends its time)."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.inner(x)


def forwards_before(event: str, **kw) -> int:
    """Forwards made before the first ``on_start`` (training is set up) or ``on_step`` callback (minus
    that step's own): the image, then each fill of the ladder tried (the tiny random model gives its
    class to most fills, so several are), and for steps the start's cut search."""
    model = make_tiny().train()
    counter = model.features[4] = InterruptOnCall(model.features[4], -1)
    seen = []

    class First:
        def on_start(self, info):
            seen.append(("on_start", counter.calls))

        def on_step(self, state):
            seen.append(("on_step", counter.calls - 1))

    Explainer(model, layers=TINY_LAYERS).explain(image(), progress=False, callbacks=[First()], **options(**kw))
    return next(calls for name, calls in seen if name == event)


@pytest.mark.parametrize("step", [0, 1] + [random.Random(4).randrange(2, STEPS)])
def test_keyboard_interrupt_inside_a_forward_pass(step):
    model = make_tiny().train()
    # Ctrl-C in the forward of training step ``step`` + 1, between two tapped layers.
    model.features[4] = InterruptOnCall(model.features[4], forwards_before("on_step", fill="mean") + step + 1)
    before = ModelState.of(model)
    ex = Explainer(model, layers=TINY_LAYERS)
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        ex.explain(image(), progress=False, callbacks=[rec], **options(fill="mean"))
    check_interrupted(ex, model, before, rec, steps_done=step)


def test_keyboard_interrupt_while_choosing_the_start_keeps_a_partial_result():
    # With the relevance start, the first forward after training is set up scores the first cuts of
    # the starting ranking, before any step.
    model = make_tiny().train()
    start = forwards_before("on_start", fill="mean", target_aware=True)
    model.features[4] = InterruptOnCall(model.features[4], start + 1)
    before = ModelState.of(model)
    ex = Explainer(model, layers=TINY_LAYERS)
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        ex.explain(image(), progress=False, callbacks=[rec], **options(fill="mean", target_aware=True))
    partial = ex.last_partial
    assert isinstance(partial, Explanation) and partial.interrupted and partial.steps == 0 and not rec.states
    assert torch.equal(partial.mask, torch.ones(SIZE, SIZE))  # nothing scored yet: the whole image
    assert rec.end["interrupted"] is True and rec.end["result"] is partial
    before.assert_same(model)


def test_interrupt_before_training_leaves_no_stale_partial():
    model = make_tiny()
    ex = Explainer(model, layers=TINY_LAYERS)
    with pytest.raises(KeyboardInterrupt):
        ex.explain(image(), progress=False, callbacks=[InterruptAt(2)], **options())
    assert ex.last_partial is not None
    for call in (1, 2, 3):  # the image's forward, its relevance, the fill's: all come before training
        model.features[4] = InterruptOnCall(model.features[4] if call == 1 else model.features[4].inner, call)
        before = ModelState.of(model)
        with pytest.raises(KeyboardInterrupt):
            ex.explain(image(2), progress=False, **options(target_aware=True))
        assert ex.last_partial is None  # not the previous image's partial result
        before.assert_same(model)


# -- two explainers on one model ---------------------------------------------------------


def test_two_explainers_alternating_on_one_model_match_their_solo_runs():
    model = make_tiny()
    before = ModelState.of(model)
    a = Explainer(model, layers=["features.2", "features.5"])
    b = Explainer(model, layers=["features.5", "features.7"], config="fast")
    runs = [(ex.explain(image(), progress=False, **options())) for ex in (a, b, a, b)]
    assert torch.equal(runs[0].mask, runs[2].mask) and torch.equal(runs[1].mask, runs[3].mask)
    assert runs[0].layers != runs[1].layers
    before.assert_same(model)


def test_an_explainer_run_inside_another_ones_training_does_not_disturb_either():
    model = make_tiny().train()
    before = ModelState.of(model)
    outer = Explainer(model, layers=["features.2", "features.5"])
    inner = Explainer(model, layers=["features.5", "features.7"])
    nested = {}

    class RunInner:
        def on_step(self, state):
            if state.step == 3:  # e.g. a widget callback explaining another image
                nested["result"] = inner.explain(image(2), progress=False, **options())
                nested["hooks while outer runs"] = hook_count(model)

    res = outer.explain(image(), progress=False, callbacks=[RunInner()], **options())
    solo_outer = outer.explain(image(), progress=False, **options())
    solo_inner = inner.explain(image(2), progress=False, **options())
    assert torch.equal(res.mask, solo_outer.mask) and res.history["total"] == solo_outer.history["total"]
    assert torch.equal(nested["result"].mask, solo_inner.mask)
    assert nested["hooks while outer runs"] == len(outer.layers) + 1  # the outer run's taps, still in place
    before.assert_same(model)


# -- long sessions -----------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _live(kind) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), kind))  # type(): no __class__ lookups


def test_a_hundred_runs_leave_no_hooks_no_growth_and_identical_buffers():
    model = make_tiny().train()  # train mode: a stray train-mode forward would move the BatchNorm buffers
    before = ModelState.of(model)
    ex = Explainer(model, layers=TINY_LAYERS)
    opts = fast_options(steps=1, min_steps=1)
    counts = {}
    for run in range(1, 101):
        res = ex.explain(image(run % 7), progress=False, **opts)
        assert hook_count(model) == 0, f"hooks left after run {run}"
        del res
        if run == 20:  # after warm-up (allocator pools, lazy imports)
            counts["start"] = (_live(torch.Tensor), _live(Explanation), _live(MaskOptimizer), _rss_bytes())
    counts["end"] = (_live(torch.Tensor), _live(Explanation), _live(MaskOptimizer), _rss_bytes())
    (t0, e0, o0, rss0), (t1, e1, o1, rss1) = counts["start"], counts["end"]
    assert (t1, e1, o1) == (t0, e0, o0), "tensors, results or optimisers pile up across runs"
    assert e1 == 0 and o1 == 0
    assert rss1 - rss0 < 8 * 2**20, f"resident memory grew by {(rss1 - rss0) / 2**20:.1f} MiB over 80 runs"
    before.assert_same(model)
