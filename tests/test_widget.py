"""The widget's Python side: traits, the message protocol and the throttled training callback.

Messages are captured at the comm (what would go on the wire to the browser),
and browser messages come in through the widget's own comm message handler.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import comm
import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers

from nbexplain.core.optimize import StepState
from nbexplain.widget import ExplanationWidget, live_widget, result_widget, should_use_widget
from nbexplain.widget import _live
from nbexplain.widget import _widget as widget_module
from nbexplain.widget._channels import SourceRegistry
from nbexplain.widget._serialize import downsample_history

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "nbexplain" / "widget" / "static"

# Jupyter server defaults (ServerApp.iopub_msg_rate_limit / iopub_data_rate_limit / rate_limit_window).
IOPUB_MSG_RATE = 1000.0
IOPUB_DATA_RATE = 1e6
RATE_WINDOW = 3.0


# --------------------------------------------------------------------------- helpers
class Clock:
    """A fake monotonic clock the tests move by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@dataclass
class Sent:
    time: float
    method: str
    content: dict
    buffers: list


class RecordingComm(comm.DummyComm):
    """A comm that keeps every message the widget publishes (with the fake time it was sent)."""

    clock = None

    def __init__(self, *args, **kwargs):
        self.messages: list[Sent] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg":
            data = data or {}
            content = data.get("content", data.get("state", {}))
            t = self.clock() if self.clock else 0.0
            self.messages.append(Sent(t, data.get("method"), content, [bytes(b) for b in buffers or []]))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def recording(monkeypatch, clock):
    RecordingComm.clock = clock
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    yield
    RecordingComm.clock = None


def make_widget(clock, **kw):
    return ExplanationWidget(labels=["circle", "square", "star"], clock=clock, **kw)


def frames(w):
    return [m for m in w.comm.messages if m.method == "custom" and m.content.get("type") == "frame"]


def custom(w, kind):
    return [m for m in w.comm.messages if m.method == "custom" and m.content.get("type") == kind]


def from_browser(w, content, buffers=()):
    """Deliver a custom message as the browser sends it (a comm_msg with method 'custom')."""
    w._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": list(buffers)})


def start_info(h=32, w=32, total=100):
    image = np.linspace(0, 1, h * w * 3, dtype=np.float32).reshape(h, w, 3)
    return {"total_steps": total, "input": torch.zeros(3, h, w), "image": image,
            "target": 2, "target_name": "star", "mask_shape": (16, 16)}


def step_state(step, total=100, size=(16, 16)):
    mask = torch.zeros(size)
    mask[: size[0] // 2] = 1.0
    return StepState(step=step, total_steps=total, losses={"kl": 0.5 / step, "area": 0.3, "total": 1.0 / step},
                     mask=mask, prob=0.8, area=0.5, label_kept=True)


def run_steps(w, clock, n, dt, total=None, size=(16, 16)):
    w.on_start(start_info(total=total or n))
    for step in range(1, n + 1):
        w.on_step(step_state(step, total or n, size))
        clock.now += dt


def toy_circuit(source="explanation", scale=1.0):
    nodes = [
        {"id": f"relu:{c}", "kind": "channel", "layer": "relu", "layer_index": 0, "channel": c,
         "energy": scale * (c + 1), "energy_original": float(c + 1), "energy_explanation": scale * (c + 1)}
        for c in range(4)
    ] + [
        {"id": "layer1:1", "kind": "channel", "layer": "layer1", "layer_index": 1, "channel": 1,
         "energy": 3.0, "energy_original": 2.5, "energy_explanation": 3.0},
        {"id": "class:2", "kind": "class", "class": 2, "name": "star", "logit": 4.0, "prob": 0.9, "layer_index": 2},
    ]
    edges = [{"source": f"relu:{c}", "target": "layer1:1", "score": 0.1 * (c + 1)} for c in range(4)]
    edges += [{"source": "layer1:1", "target": "class:2", "score": 1.5}]
    return {"target": 2, "target_name": "star", "source": source, "layers": ["relu", "layer1"],
            "nodes": nodes, "edges": edges}


class FakeResult:
    """Just what the Explanation contract promises, with tensors of the right shapes."""

    def __init__(self, steps=50, interrupted=False):
        torch.manual_seed(0)
        self.mask = (torch.rand(32, 32) > 0.7).float()
        self.input = torch.randn(3, 32, 32)
        self.explanation = self.input * self.mask
        self.target = 2
        self.prob_original = 0.93
        self.prob_explanation = 0.91
        self.area = float(self.mask.mean())
        self.history = {name: list(np.linspace(1, 0, steps)) for name in
                        ("activation", "kl", "ce", "area", "binarization", "tv", "robustness", "total", "prob", "mask_area")}
        self.layers = ["relu", "layer1"]
        self.activations_original = {"relu": torch.rand(4, 16, 16), "layer1": torch.rand(8, 8, 8)}
        self.activations_explanation = {"relu": torch.rand(4, 16, 16) * 2, "layer1": torch.rand(8, 8, 8)}
        self.labels = ["circle", "square", "star"]
        self.seconds = 1.5
        self.steps = steps
        self.robustness = 0.75
        self.interrupted = interrupted
        self.label_kept = True
        self.circuit = toy_circuit()
        self.circuit_original = toy_circuit("original", scale=0.5)

    def image(self):
        return np.full((32, 32, 3), 0.5, dtype=np.float32)

    def explanation_image(self):
        return self.image() * self.mask.numpy()[:, :, None]


# --------------------------------------------------------------------------- throttled frames
def test_first_frame_goes_out_immediately_and_carries_a_uint8_mask(recording, clock):
    w = make_widget(clock)
    w.on_start(start_info())
    w.on_step(step_state(1))
    (frame,) = frames(w)
    c = frame.content
    assert c["type"] == "frame" and c["step"] == 1 and c["total"] == 100
    assert c["shape"] == [16, 16] and c["dtype"] == "uint8"
    assert set(c) >= {"losses", "prob", "area", "label_kept", "elapsed"}
    assert c["losses"]["kl"] == pytest.approx(0.5)
    (mask,) = frame.buffers
    assert isinstance(mask, bytes) and len(mask) == 16 * 16  # one byte a pixel at working resolution
    assert set(mask) == {0, 255}
    # No base64/PNG/float lists: the content is small JSON, the picture is only in the buffer.
    assert len(json.dumps(c, allow_nan=False)) < 400


@pytest.mark.parametrize("n,dt", [(2000, 0.001), (2000, 0.01), (300, 0.2), (50, 0.0)])
def test_run_of_n_steps_sends_at_most_the_throttled_frames_and_always_the_last(recording, clock, n, dt):
    w = make_widget(clock, max_fps=10)
    run_steps(w, clock, n, dt)
    w.on_end({"interrupted": False, "best_mask": torch.ones(16, 16), "result": None})
    steps = [f.content["step"] for f in frames(w)]
    duration = n * dt
    assert len(steps) <= int(duration * 10) + 2, (len(steps), duration)
    assert steps[0] == 1, "the first frame goes out at once"
    assert steps[-1] == n, "the last step always arrives"
    assert steps == sorted(set(steps)), "no frame twice, none out of order"
    assert w.frames_sent == len(steps)
    if dt >= 0.2:  # slower than the throttle: every step is a frame
        assert len(steps) == n


def test_a_run_that_stops_early_still_sends_its_last_step(recording, clock):
    w = make_widget(clock)
    run_steps(w, clock, 37, 0.001, total=120)  # the core stops early once the mask is stable
    assert frames(w)[-1].content["step"] != 37
    w.on_end({"interrupted": False, "best_mask": torch.ones(16, 16), "result": FakeResult()})
    assert frames(w)[-1].content["step"] == 37


def test_big_masks_lower_the_frame_rate_to_the_byte_budget(recording, clock):
    w = make_widget(clock, max_fps=10, max_bytes_per_second=100_000)
    run_steps(w, clock, 400, 0.025, size=(224, 224))  # 10 s of 50 kB masks
    sent = frames(w)
    assert all(len(f.buffers[0]) == 224 * 224 for f in sent)
    assert sum(len(f.buffers[0]) for f in sent) <= 100_000 * 10 + 224 * 224 * 2
    assert len(sent) < 10 * 10 / 2


@pytest.mark.parametrize("dt", [0.0005, 0.005, 0.05])
def test_a_2000_step_run_stays_far_below_jupyter_iopub_limits(recording, clock, dt):
    w = make_widget(clock)
    run_steps(w, clock, 2000, dt)
    w.on_end({"interrupted": False, "best_mask": torch.ones(16, 16), "result": FakeResult(steps=2000)})
    msgs = w.comm.messages
    times = np.array([m.time for m in msgs])
    sizes = np.array([len(json.dumps(m.content, allow_nan=False)) + sum(len(b) for b in m.buffers) for m in msgs])
    # The server counts messages in a sliding window; check every window.
    worst_rate = worst_bytes = 0.0
    for t0 in times:
        inside = (times >= t0) & (times < t0 + RATE_WINDOW)
        worst_rate = max(worst_rate, inside.sum() / RATE_WINDOW)
        worst_bytes = max(worst_bytes, sizes[inside].sum() / RATE_WINDOW)
    assert worst_rate < IOPUB_MSG_RATE / 50, worst_rate
    assert worst_bytes < IOPUB_DATA_RATE / 4, worst_bytes


def test_non_finite_numbers_travel_as_null(recording, clock):
    w = make_widget(clock)
    w.on_start(start_info())
    w.on_step(StepState(step=1, total_steps=10, losses={"kl": float("nan"), "tv": float("inf")},
                        mask=torch.ones(4, 4), prob=float("nan"), area=1.0, label_kept=False))
    c = frames(w)[0].content
    json.dumps(c, allow_nan=False)  # JSON.parse in the browser rejects NaN
    assert c["losses"] == {"kl": None, "tv": None} and c["prob"] is None


# --------------------------------------------------------------------------- live state and settling
def test_display_problems_never_break_training(recording, clock):
    w = make_widget(clock)
    w.on_start(start_info())
    bad = StepState(step=1, total_steps=10, losses={}, mask=torch.ones(2, 2, 2, 2), prob=0.5, area=1.0,
                    label_kept=True)
    with pytest.warns(RuntimeWarning, match="stopped live frames"):
        w.on_step(bad)  # a 4-D "mask" cannot be a frame
    w.on_step(step_state(2, total=10))  # no more frames this run, and no exception
    assert frames(w) == []
    res = FakeResult()
    res.mask = torch.ones(3, 3, 3, 3)
    with pytest.warns(RuntimeWarning, match="could not show the result"):
        w.on_end({"interrupted": False, "best_mask": None, "result": res})
    assert w.status == "done" and "could not show the result" in w.note


def test_on_start_shows_the_image_and_clears_the_previous_result(recording, clock):
    w = ExplanationWidget.from_result(FakeResult(), clock=clock)
    assert w.status == "done" and w.circuit
    w.on_start(start_info(h=20, w=30))
    assert w.status == "training" and w.total_steps == 100
    assert w.target == 2 and w.target_name == "star"
    assert w.image_shape == [20, 30] and len(w.image) == 20 * 30 * 3
    assert w.mask == b"" and w.circuit == {} and w.summary == {} and not w.interrupted


def test_on_end_settles_on_the_result(recording, clock):
    w = make_widget(clock)
    run_steps(w, clock, 50, 0.01)
    res = FakeResult()
    w.on_end({"interrupted": False, "best_mask": res.mask, "result": res})
    assert w.status == "done" and not w.interrupted
    assert w.mask_shape == [32, 32] and w.mask == (res.mask.numpy() * 255).astype(np.uint8).tobytes()
    assert w.explanation_shape == [32, 32] and len(w.explanation) == 32 * 32 * 3
    assert w.circuit["source"] == "explanation" and w.circuit_original["source"] == "original"
    s = w.summary
    assert s["target_name"] == "star" and s["prob_original"] == pytest.approx(0.93)
    assert s["prob_explanation"] == pytest.approx(0.91) and s["area"] == pytest.approx(res.area)
    assert s["robustness"] == pytest.approx(0.75) and s["interrupted"] is False
    assert set(w.history["terms"]) >= {"kl", "total", "prob", "mask_area"}


def test_the_badge_follows_each_phase_until_the_result_settles(recording, clock):
    w = make_widget(clock)
    w.on_start(start_info())
    assert w.phase == "optimising the mask"
    run_steps(w, clock, 5, 0.01)
    w.on_phase("choosing the smallest sufficient cut")
    assert w.status == "training" and w.phase == "choosing the smallest sufficient cut"
    phases = []
    w.observe(lambda change: phases.append(change["new"]), names="phase")
    res = FakeResult()
    w.on_end({"interrupted": False, "best_mask": res.mask, "result": res})
    assert phases == ["reading the circuits", ""] and w.status == "done"


def test_interrupt_without_result_keeps_the_best_mask(recording, clock):
    w = make_widget(clock)
    run_steps(w, clock, 30, 0.05)
    best = torch.zeros(16, 16)
    best[4:8, 4:8] = 1
    w.on_end({"interrupted": True, "best_mask": best, "result": None})
    assert w.status == "interrupted" and w.interrupted
    assert w.mask_shape == [16, 16] and sum(b == 255 for b in w.mask) == 16
    assert w.summary["interrupted"] is True and w.summary["area"] == pytest.approx(16 / 256)
    assert "nterrupted" in w.note
    assert len(w.history["steps"]) == 30  # the widget's own record of every step
    assert len(w.explanation) == 32 * 32 * 3  # image x best mask


def test_a_run_stopped_by_an_error_says_so(recording, clock):
    w = make_widget(clock)
    run_steps(w, clock, 3, 0.05)
    w.on_end({"interrupted": True, "best_mask": torch.ones(16, 16), "result": None, "error": "ValueError: NaN logits"})
    assert w.status == "interrupted" and "NaN logits" in w.note


def test_interrupt_with_partial_result_does_not_read_circuits(recording, clock):
    class Partial(FakeResult):
        @property
        def circuit(self):
            raise AssertionError("circuits must not be computed while an interrupt propagates")

        @circuit.setter
        def circuit(self, value):
            pass

    w = make_widget(clock)
    run_steps(w, clock, 10, 0.05)
    w.on_end({"interrupted": True, "best_mask": torch.ones(32, 32), "result": Partial(interrupted=True)})
    assert w.status == "interrupted" and w.circuit == {}
    assert w.summary["prob_explanation"] == pytest.approx(0.91)


def test_a_failing_circuit_leaves_the_rest_of_the_result(recording, clock):
    class Broken(FakeResult):
        circuit = property(lambda self: (_ for _ in ()).throw(RuntimeError("unsupported layer")), lambda s, v: None)

    w = ExplanationWidget.from_result(Broken(), clock=clock)
    assert w.status == "done" and w.circuit == {} and w.circuit_original
    assert "unsupported layer" in w.note
    assert w.mask and w.summary["prob_explanation"] == pytest.approx(0.91)


def test_an_unreadable_circuit_is_one_short_line_with_the_details_apart(recording, clock):
    from nbexplain.circuits import CircuitUnsupportedError

    def refuse(self):
        raise CircuitUnsupportedError("Unsupported operation: einsum in module 'mix' (Mixer) lies between tapped layers.")

    class Refused(FakeResult):
        circuit = property(refuse, lambda s, v: None)
        circuit_original = property(refuse, lambda s, v: None)

    w = ExplanationWidget.from_result(Refused(), clock=clock)
    assert w.status == "done" and w.circuit == {} and w.circuit_original == {}
    assert w.note == "No circuit: Unsupported operation: einsum in module 'mix' (Mixer) lies between tapped layers."
    assert w.note_details.count("einsum") == 1 and "torchvision ResNets" in w.note_details
    assert w.mask


def test_from_result_gives_complete_state_that_survives_the_wire(recording, clock):
    res = FakeResult(steps=1500)
    w = ExplanationWidget.from_result(res, clock=clock)
    state, paths, buffers = _remove_buffers(w.get_state())
    json.dumps(state, allow_nan=False)
    assert {tuple(p) for p in paths} == {("image",), ("mask",), ("explanation",), ("fill_image",), ("necessary_mask",)}
    byte_state = dict(zip([p[0] for p in paths], buffers))
    h, wd = state["image_shape"]
    assert len(byte_state["image"]) == h * wd * 3
    assert len(byte_state["mask"]) == np.prod(state["mask_shape"])
    assert len(byte_state["explanation"]) == np.prod(state["explanation_shape"]) * 3
    assert state["status"] == "done" and state["target_name"] == "star"
    assert state["total_steps"] == 1500
    assert len(state["history"]["steps"]) <= 400 and state["history"]["steps"][-1] == 1499
    assert len(state["circuit"]["nodes"]) == 6 and len(state["circuit_original"]["edges"]) == 5
    for key in ("target_name", "prob_original", "prob_explanation", "area", "robustness", "interrupted"):
        assert key in state["summary"]
    assert "star" in repr(w) and "p(x)=0.930" in repr(w)


def test_downsample_history_keeps_first_and_last():
    h = downsample_history({"kl": list(range(1000)), "prob": [0.5] * 1000}, max_points=100)
    assert len(h["steps"]) <= 100 and h["steps"][0] == 0 and h["steps"][-1] == 999
    assert h["terms"]["kl"] == h["steps"]
    assert downsample_history({}) == {"steps": [], "terms": {}}


# --------------------------------------------------------------------------- channel requests
def test_channel_request_is_answered_with_both_maps_on_one_scale(recording, clock):
    res = FakeResult()
    w = ExplanationWidget.from_result(res, clock=clock)
    from_browser(w, {"type": "channel", "layer": "relu", "channel": 3, "source": "explanation", "request_id": 7})
    (answer,) = custom(w, "channel")
    c = answer.content
    assert c["request_id"] == 7 and c["id"] == "relu:3" and c["shape"] == [16, 16] and c["dtype"] == "uint8"
    map_x, map_e = answer.buffers
    assert len(map_x) == len(map_e) == 16 * 16
    # One shared scale: the larger activation (on e, doubled in FakeResult) reaches 255, x does not.
    assert max(map_e) == 255 and max(map_x) < 200
    lo, hi = c["scale"]
    assert lo == 0.0 and hi == pytest.approx(float(res.activations_explanation["relu"][3].max()))
    decoded = np.frombuffer(map_x, np.uint8).reshape(16, 16) / 255 * (hi - lo) + lo
    assert np.allclose(decoded, res.activations_original["relu"][3].numpy(), atol=(hi - lo) / 255)
    # Energies and edges come from the circuit.
    assert c["energy_original"] == 4.0 and c["energy_explanation"] == 4.0
    assert c["incoming"] == [] and c["outgoing"] == [{"node": "layer1:1", "score": pytest.approx(0.4)}]


def test_channel_answer_lists_strongest_incoming_edges_first(recording, clock):
    w = ExplanationWidget.from_result(FakeResult(), clock=clock)
    from_browser(w, {"type": "channel", "layer": "layer1", "channel": 1, "source": "original", "request_id": 1})
    c = custom(w, "channel")[0].content
    assert [e["node"] for e in c["incoming"]] == ["relu:3", "relu:2", "relu:1", "relu:0"]
    assert c["outgoing"] == [{"node": "class:2", "score": 1.5}]
    assert c["shape"] == [8, 8]


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"layer": "layer9", "channel": 0}, "known layers"),
        ({"layer": "relu", "channel": 4}, "out of range"),
        ({"layer": "relu", "channel": "2"}, "integer"),
        ({"layer": "relu", "channel": True}, "integer"),
        ({"channel": 1}, "layer name"),
    ],
)
def test_bad_channel_requests_get_an_error_answer_not_an_exception(recording, clock, request_, message):
    w = ExplanationWidget.from_result(FakeResult(), clock=clock)
    from_browser(w, {"type": "channel", "request_id": 5, **request_})
    (err,) = custom(w, "channel_error")
    assert err.content["request_id"] == 5 and message in err.content["message"]
    assert err.buffers == []


def test_channel_request_before_any_result_says_why(recording, clock):
    w = make_widget(clock)
    w.on_start(start_info())
    from_browser(w, {"type": "channel", "layer": "relu", "channel": 0, "request_id": 1})
    assert "once training has finished" in custom(w, "channel_error")[0].content["message"]


def test_unknown_messages_are_ignored(recording, clock):
    w = ExplanationWidget.from_result(FakeResult(), clock=clock)
    before = len(w.comm.messages)
    from_browser(w, {"type": "something-else"})
    from_browser(w, {"no": "type"})
    assert len(w.comm.messages) == before


def test_only_recent_widgets_keep_activations(recording, clock, monkeypatch):
    monkeypatch.setattr(widget_module, "_SOURCES", SourceRegistry(limit=3))
    widgets = [ExplanationWidget.from_result(FakeResult(), clock=clock) for _ in range(5)]
    assert len(widget_module._SOURCES) == 3
    for w in widgets:
        from_browser(w, {"type": "channel", "layer": "relu", "channel": 0, "request_id": 1})
    assert custom(widgets[0], "channel_error") and "released" in custom(widgets[0], "channel_error")[0].content["message"]
    assert custom(widgets[-1], "channel")
    widgets[-1].close()
    assert len(widget_module._SOURCES) == 2


# --------------------------------------------------------------------------- with the real explainer
def test_real_explainer_drives_the_widget(recording, clock):
    from conftest import fast_options, tiny_resnet

    from nbexplain import Explainer

    torch.manual_seed(0)
    ex = Explainer(tiny_resnet(), labels=list("abcde"))
    w = ExplanationWidget(labels=ex.labels)  # the real clock
    res = ex.explain(torch.randn(3, 32, 32), callbacks=[w], live=False, progress=False, **fast_options())
    assert w.status == "done" and w.summary["steps"] == res.steps
    sent = frames(w)
    assert sent and sent[0].content["step"] == 1 and sent[-1].content["step"] == res.steps
    assert all(len(f.buffers[0]) == np.prod(f.content["shape"]) for f in sent)
    assert w.mask_shape == list(res.mask.shape)
    # Then the necessary half: its own frames, numbered on after the mask's steps, and its line.
    assert custom(w, "necessary")[-1].content["step"] == res.steps + ex.config.necessary_steps
    assert w.necessary["text"].startswith("necessary: ") and w.necessary_shape == list(res.necessary.mask.shape)
    node = next(n for n in w.circuit["nodes"] if n["kind"] == "channel")
    from_browser(w, {"type": "channel", "layer": node["layer"], "channel": node["channel"], "request_id": 1})
    answer = custom(w, "channel")[0]
    h, wd = answer.content["shape"]
    assert (node["channel"], h, wd) <= tuple(res.activations_original[node["layer"]].shape)
    assert len(answer.buffers[0]) == h * wd


# --------------------------------------------------------------------------- environment
def test_should_use_widget_only_inside_a_kernel(monkeypatch):
    monkeypatch.delenv("NBEXPLAIN_WIDGET", raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert should_use_widget() is False  # plain Python: IPython not even imported

    shell = types.SimpleNamespace()
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert should_use_widget() is False  # terminal IPython: no kernel
    shell.kernel = object()
    assert should_use_widget() is True  # ipykernel
    monkeypatch.setenv("NBEXPLAIN_WIDGET", "0")
    assert should_use_widget() is False
    fake.get_ipython = lambda: None
    monkeypatch.setenv("NBEXPLAIN_WIDGET", "1")
    assert should_use_widget() is True


class FakeHandle:
    def __init__(self):
        self.updates = []

    def update(self, obj, **kw):
        self.updates.append((obj, kw))


def test_live_widget_displays_and_returns_the_callback(recording, monkeypatch):
    import IPython.display

    shown, handle = [], FakeHandle()
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)) or handle)
    w = live_widget(labels=["a", "b"], max_fps=5)
    assert shown == [(w, {"display_id": True})] and isinstance(w, ExplanationWidget)
    assert w.labels == ["a", "b"] and w.throttle.max_fps == 5
    assert callable(w.on_start) and callable(w.on_step) and callable(w.on_end)
    assert w.display_handle is handle


def test_settled_live_output_gets_a_static_png_beside_the_widget(recording, clock):
    png = b"\x89PNG\r\n\x1a\nfake"
    res = FakeResult()
    res._repr_png_ = lambda: png
    w = make_widget(clock)
    w.display_handle = handle = FakeHandle()
    run_steps(w, clock, 5, 0.1)
    w.on_end({"interrupted": False, "best_mask": res.mask, "result": res})
    ((bundle, kw),) = handle.updates
    assert kw["raw"] is True
    assert base64.b64decode(bundle["image/png"]) == png
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert "done" in bundle["text/plain"] and "star" in bundle["text/plain"]


def test_no_static_png_while_an_interrupt_propagates(recording, clock):
    res = FakeResult(interrupted=True)
    res._repr_png_ = lambda: pytest.fail("no figure is drawn while an interrupt propagates")
    w = make_widget(clock)
    w.display_handle = handle = FakeHandle()
    run_steps(w, clock, 5, 0.1)
    w.on_end({"interrupted": True, "best_mask": res.mask, "result": res})
    assert handle.updates == [] and w.status == "interrupted"


def _open_explanation_widgets():
    from ipywidgets.widgets.widget import _instances

    return [w for w in list(_instances.values()) if isinstance(w, ExplanationWidget)]


def test_rerunning_a_cell_closes_the_widgets_of_its_previous_run(recording, monkeypatch):
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: None)
    monkeypatch.setattr(_live, "_CELLS", _live.CellWidgets())
    for w in _open_explanation_widgets():
        w.close()
    run = {"id": 0}
    monkeypatch.setattr(_live, "current_cell", lambda: ("cell-a", f"run-{run['id']}"))
    for run["id"] in range(100):  # one cell, run 100 times; each run shows a live and a result widget
        live = live_widget()
        shown = result_widget(FakeResult())
    assert _open_explanation_widgets() == [live, shown]
    assert live.comm is not None and shown.comm is not None
    # Several widgets from one run (a loop over images) all stay open.
    run["id"] = 100
    several = [live_widget() for _ in range(3)]
    assert _open_explanation_widgets() == several
    # Another cell does not close this one's widgets.
    monkeypatch.setattr(_live, "current_cell", lambda: ("cell-b", "run-x"))
    other = live_widget()
    assert _open_explanation_widgets() == [*several, other]


def test_current_cell_reads_the_execute_request(monkeypatch):
    parent = {"header": {"msg_id": "m1"}, "metadata": {"cellId": "c1"}}
    kernel = types.SimpleNamespace(get_parent=lambda: parent)
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=kernel)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert _live.current_cell() == ("c1", "m1")
    parent["metadata"] = {}
    assert _live.current_cell() is None  # a front end that does not send cell ids
    monkeypatch.delitem(sys.modules, "IPython")
    assert _live.current_cell() is None


# --------------------------------------------------------------------------- the built front end
def _node_or_fail():
    if os.environ.get("NBEXPLAIN_SKIP_JS_CHECKS") == "1":
        pytest.skip("NBEXPLAIN_SKIP_JS_CHECKS=1: the JavaScript checks were switched off on purpose")
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "Node.js is needed to check the widget's JavaScript (install node >= 18, then `npm ci` in js/); "
            "set NBEXPLAIN_SKIP_JS_CHECKS=1 to skip these checks deliberately."
        )
    if not (ROOT / "js" / "node_modules" / "esbuild").is_dir():
        pytest.fail("js/node_modules is missing: run `npm ci` in js/ (it installs esbuild).")
    return node


def test_committed_bundle_is_built_from_the_current_sources(tmp_path):
    node = _node_or_fail()
    subprocess.run([node, str(ROOT / "js" / "build.mjs"), "--outdir", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    for name in ("widget.js", "widget.css", "gallery.js", "gallery.css"):  # the explanation widget and the gallery
        fresh = (tmp_path / name).read_bytes()
        committed = (STATIC / name).read_bytes()
        assert fresh == committed, f"nbexplain/widget/static/{name} is stale: run `node js/build.mjs`"


def test_javascript_unit_tests_pass():
    node = _node_or_fail()
    tests = sorted(str(p) for p in (ROOT / "js" / "test").glob("*.test.mjs"))
    assert tests
    done = subprocess.run([node, "--test", *tests], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_widget_ships_its_bundle():
    assert (STATIC / "widget.js").is_file() and (STATIC / "widget.css").is_file()
    esm = str(ExplanationWidget._esm)
    assert "export" in esm and "render" in esm and "bundle is missing" not in esm
    cdn = re.findall(r"""(?:\bfrom|\bimport)\s*\(?\s*["']https?://""", esm)
    assert not cdn, "no CDN imports: users are often offline"


def test_live_frames_get_the_fill_so_they_look_like_the_scored_explanation(clock):
    w = make_widget(clock)
    info = start_info(h=4, w=6)
    w.on_start({**info, "fill_image": np.full((4, 6, 3), 0.5, dtype=np.float32)})
    assert len(w.fill_image) == 4 * 6 * 3 and set(w.fill_image) == {128}
    w.on_start({**info, "fill_image": np.zeros((5, 5, 3), dtype=np.float32)})  # not the image's size: unused
    assert w.fill_image == b""
    w.on_start(info)  # no fill known (unknown normalisation): the front end draws removed pixels black
    assert w.fill_image == b""


def test_probability_on_the_image_is_shown_from_the_start():
    w = ExplanationWidget()
    w.on_start({**start_info(), "prob_original": 0.42})
    assert w.status == "training" and w.summary == {"prob_original": 0.42}
    w.on_start(start_info())  # a run that does not know it shows a dash, not the last run's value
    assert w.summary == {}


# --------------------------------------------------------------------------- the necessary half
def necessary(found=True, contrastive=False, size=32):
    from nbexplain.core.necessity import Necessary

    mask = torch.zeros(size, size)
    if found:
        mask[:4, :8] = 1.0  # 32 of 1024 pixels: 3.1%
    return Necessary(
        mask=mask, found=found, area=float(mask.mean()), target=2, turns_into=1 if found else None,
        prob_before=0.93, prob_after=0.2 if found else 0.8, prob_turns_into_before=0.01 if found else None,
        prob_turns_into_after=0.41 if found else None, fills=("blur", "mean colour"), foils=(1, 0),
        contrastive=contrastive, max_area=0.3,
        note=None if found else "no region of up to 30% of the image changes the decision to another likely class",
    )


class NecessaryResult(FakeResult):
    def __init__(self, nec=None, **kw):
        super().__init__(**kw)
        self.necessary = necessary() if nec is None else nec

    def class_name(self, k):
        return self.labels[k]


def necessary_step(step, total, changes=False):
    cells = torch.zeros(4, 4)
    cells[0, :2] = 1.0
    return StepState(step=step, total_steps=total, losses={"total": 0.3}, mask=cells, prob=0.4,
                     area=float(cells.mean()), label_kept=not changes, sufficient=changes, half="necessary")


def test_the_necessary_region_and_its_line_travel_with_the_result(recording, clock):
    w = ExplanationWidget.from_result(NecessaryResult(), clock=clock)
    state, paths, buffers = _remove_buffers(w.get_state())
    json.dumps(state, allow_nan=False)
    region = dict(zip([p[0] for p in paths], buffers))["necessary_mask"]
    assert state["necessary_shape"] == [32, 32] and len(region) == 32 * 32
    assert sum(b == 255 for b in region) == 32 and set(region) == {0, 255}
    nec = state["necessary"]
    assert nec["text"] == "necessary: removing 3.1% turns it into 'square' (p 0.41)"
    assert nec["found"] is True and nec["turns_into"] == 1 and nec["turns_into_name"] == "square"
    assert nec["area"] == pytest.approx(32 / 1024) and nec["foils"] == ["square", "circle"]
    assert nec["prob_before"] == pytest.approx(0.93) and nec["prob_turns_into_after"] == pytest.approx(0.41)
    assert nec["note"] is None and nec["contrastive"] is False
    assert "p(star) 0.930 -> 0.200" in nec["details"]  # the full numbers, on hover


def test_a_named_foil_is_said_to_overtake_the_target(recording, clock):
    w = ExplanationWidget.from_result(NecessaryResult(necessary(contrastive=True)), clock=clock)
    assert w.necessary["text"] == "necessary: removing 3.1% makes 'square' overtake 'star' (p 0.41)"


def test_no_necessary_region_shows_the_note_and_an_empty_region(recording, clock):
    w = ExplanationWidget.from_result(NecessaryResult(necessary(found=False)), clock=clock)
    assert w.necessary["found"] is False and w.necessary["turns_into"] is None
    assert w.necessary["text"].startswith("necessary: none. no region of up to 30% of the image changes the decision")
    assert w.necessary_shape == [32, 32] and set(w.necessary_mask) == {0}


def test_a_result_without_the_necessary_half_sends_none(recording, clock):
    w = ExplanationWidget.from_result(FakeResult(), clock=clock)  # necessary=False, or an older result
    assert w.necessary == {} and w.necessary_mask == b"" and w.necessary_shape == [0, 0]


def test_the_necessary_half_streams_its_own_frames_after_the_masks(recording, clock):
    w = ExplanationWidget.from_result(NecessaryResult(), clock=clock)
    w.on_start(start_info(total=20))
    assert w.necessary == {} and w.necessary_mask == b"", "a new run clears the last result's region"
    for step in range(1, 11):  # the mask's steps, faster than the throttle
        w.on_step(step_state(step, total=20))
        clock.now += 0.001
    w.on_phase("finding the necessary evidence")
    assert frames(w)[-1].content["step"] == 10, "the mask's last step shows before the necessary half starts"
    for step in range(11, 15):  # each takes longer than the throttle's interval
        clock.now += 0.2
        w.on_step(necessary_step(step, total=14, changes=step >= 13))
    sent = custom(w, "necessary")
    assert [m.content["step"] for m in sent] == [11, 12, 13, 14]
    assert [m.content["changes_decision"] for m in sent] == [False, False, True, True]
    assert sent[0].content["shape"] == [4, 4] and sent[0].buffers[0][:2] == b"\xff\xff"
    assert all("changes_decision" not in f.content for f in frames(w))
    res = NecessaryResult(steps=10)
    w.on_end({"interrupted": False, "best_mask": res.mask, "result": res})
    assert len(w.history["steps"]) == 10, "the necessary half's steps are not the mask's history"
    assert w.necessary["found"] and len(w.necessary_mask) == 32 * 32


def test_the_results_own_warning_is_the_note(recording, clock):
    res = FakeResult()
    res.warning = lambda: "No fill hides this class: explain another class"
    w = ExplanationWidget.from_result(res, clock=clock)
    assert w.note == "No fill hides this class: explain another class."
