"""The Jupyter widget: live training frames, then the settled explanation and its circuit.

Live frames are custom messages (binary mask + a few numbers); the final result
is synced trait state, so a widget displayed again later comes back whole.
"""

from __future__ import annotations

import base64
import itertools
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import anywidget
import numpy as np
import traitlets

from ._bundle import bundle
from ._channels import ChannelLookupError, ChannelSource, SourceRegistry
from ._serialize import (
    downsample_history,
    frame_message,
    image_to_rgb_uint8,
    json_number,
    json_safe,
    mask_to_uint8,
    masked_image,
    to_numpy,
)
from ._necessary import necessary_state
from ._throttle import FrameThrottle

NECESSARY_PHASE = "finding the necessary evidence"
_ESM, _CSS = bundle("widget", "the widget")

#: Settled widgets whose activations stay in memory to answer channel clicks.
_SOURCES = SourceRegistry(limit=8)
_SERIAL = itertools.count()


class ExplanationWidget(anywidget.AnyWidget):
    """Live view of a mask being trained, then the explanation and its circuit.

    The widget is itself a training callback: pass it in ``callbacks=`` and it
    streams throttled frames while the mask trains and settles on the result
    in ``on_end``. ``ExplanationWidget.from_result(res)`` shows a finished
    ``nbexplain.Explanation``.

    Parameters
    ----------
    labels:
        Class names, used for the target's name when the result has none.
    max_fps:
        Most live frames per second (the first and last frame always go out).
    max_bytes_per_second:
        Budget for frame payloads; large masks lower the frame rate.
    clock:
        Monotonic clock in seconds (tests pass a fake one).
    """

    _esm, _css = _ESM, _CSS

    status = traitlets.Unicode("idle", help="idle | training | done | interrupted").tag(sync=True)
    interrupted = traitlets.Bool(False).tag(sync=True)
    total_steps = traitlets.Int(0).tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    target_name = traitlets.Unicode("").tag(sync=True)
    phase = traitlets.Unicode("", help="what runs now while training (steps, cut, scoring, circuit)").tag(sync=True)
    # Pictures: raw uint8 bytes (RGB row-major for images) plus their [h, w].
    image = traitlets.Bytes(b"").tag(sync=True)
    image_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    #: what removed pixels become (RGB uint8, image-sized), so live frames look like the scored explanation
    fill_image = traitlets.Bytes(b"").tag(sync=True)
    mask = traitlets.Bytes(b"").tag(sync=True)
    mask_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    explanation = traitlets.Bytes(b"").tag(sync=True)
    explanation_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    #: the necessary evidence (``res.necessary``): the region whose removal changes the decision, and its numbers
    necessary_mask = traitlets.Bytes(b"").tag(sync=True)
    necessary_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    necessary = traitlets.Dict().tag(sync=True)
    history = traitlets.Dict().tag(sync=True)
    circuit = traitlets.Dict().tag(sync=True)
    circuit_original = traitlets.Dict().tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)
    note_details = traitlets.Unicode("").tag(sync=True)  # the full text behind a short note, one click away

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        max_fps: float = 10.0,
        max_bytes_per_second: float = 250_000.0,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.labels = list(labels) if labels is not None else None
        self.throttle = FrameThrottle(max_fps, max_bytes_per_second, clock)
        self.clock = clock
        self.frames_sent = 0
        self.frame_bytes_sent = 0
        self._serial = next(_SERIAL)
        self._image_hwc: np.ndarray | None = None
        self._pending = None  # the newest step not yet sent as a frame
        self._frames_failed = False
        self._started_at = 0.0
        self._record: dict[str, list[float]] = {}
        #: IPython DisplayHandle of the output showing this widget (set by ``live_widget``):
        #: once settled, that output also gets the result's static PNG.
        self.display_handle = None
        self.on_msg(self._on_custom_message)

    # ------------------------------------------------------------------ callback
    def on_start(self, info: Mapping[str, Any]) -> None:
        """Training begins: show the image and reset everything from a previous run."""
        self.throttle.reset()
        self._pending = None
        self._frames_failed = False
        self._record = {}
        self._started_at = self.clock()
        _SOURCES.drop(self._serial)
        target = info.get("target")
        with self.hold_sync():
            self.status = "training"
            self.phase = "optimising the mask"
            self.interrupted = False
            self.total_steps = int(info.get("total_steps") or 0)
            self.target = int(target) if target is not None else -1
            self.target_name = str(info.get("target_name") or self._label(target) or "")
            if info.get("image") is not None:
                self._set_image(info["image"])
            self.fill_image = b""
            if info.get("fill_image") is not None:
                fill, shape = image_to_rgb_uint8(info["fill_image"])
                self.fill_image = fill if shape == self.image_shape else b""
            self.mask, self.mask_shape = b"", [0, 0]
            self.explanation, self.explanation_shape = b"", [0, 0]
            self.necessary_mask, self.necessary_shape, self.necessary = b"", [0, 0], {}
            self.history, self.circuit, self.circuit_original = {}, {}, {}
            self.note, self.note_details = "", ""
            # p(target | x) is known before the first step: shown from the start.
            self._prob_original = info.get("prob_original")
            self.summary = json_safe({"prob_original": self._prob_original}) if self._prob_original is not None else {}

    def on_step(self, state: Any) -> None:
        """One optimisation step: record it; send it as a frame if the throttle allows."""
        if getattr(state, "half", "sufficient") == "sufficient":  # the record is the mask's own history
            for name, value in _step_values(state).items():
                self._record.setdefault(name, []).append(value)
        # Steps count from 1 in the core loop; on_end flushes the last frame of a
        # run that stops early (or counts from 0).
        is_last = state.total_steps > 0 and state.step >= state.total_steps
        if self._frames_failed:
            return
        if self.throttle.ready() or is_last:
            self._send_frame(state)
        else:
            self._pending = state

    def on_necessary_step(self, state: Any) -> None:
        """A step of the necessary evidence (after the mask's): the badge says so, the region streams live."""
        if self.phase != NECESSARY_PHASE:
            self.on_phase(NECESSARY_PHASE)
        self.on_step(state)

    def on_phase(self, name: str) -> None:
        """Work after the steps (cut, necessary evidence, scoring): the badge says what it is."""
        self.phase = name
        # The steps before a phase are over: their last frame shows now, not only at the end.
        if self._pending is not None and not self._frames_failed:
            self._send_frame(self._pending)

    def on_end(self, info: Mapping[str, Any]) -> None:
        """Training ended: flush the last frame, then settle on the result (or the best mask).

        Never raises: a display problem must not replace the training's own outcome
        (for instance a KeyboardInterrupt that is propagating).
        """
        interrupted = bool(info.get("interrupted"))
        try:
            if self._pending is not None and not self._frames_failed:
                self._send_frame(self._pending)
            result = info.get("result")
            if result is not None:  # an interrupted run may still hand over its partial result
                # Reading circuits runs the model again: not while an interrupt is propagating.
                self.show_result(result, interrupted=interrupted, read_circuits=not interrupted)
                if not interrupted:
                    self._add_static_fallback(result)
            else:
                self._settle_interrupted(info.get("best_mask"), info.get("error"))
        except Exception as err:
            warnings.warn(f"nbexplain widget could not show the result: {err!r}", RuntimeWarning, stacklevel=2)
            self.note = f"The widget could not show the result: {type(err).__name__}: {err}"
            self.interrupted = interrupted
            self.status = "interrupted" if interrupted else "done"
        finally:
            # The synced traits now hold all that is shown; drop the training-time copies.
            self._record, self._image_hwc, self._pending = {}, None, None

    # ------------------------------------------------------------------ results
    @classmethod
    def from_result(cls, result: Any, labels: Sequence[str] | None = None, **kwargs: Any) -> "ExplanationWidget":
        """A settled widget showing a finished Explanation (no training view)."""
        widget = cls(labels=labels if labels is not None else getattr(result, "labels", None), **kwargs)
        widget.show_result(result)
        return widget

    def show_result(self, result: Any, interrupted: bool | None = None, read_circuits: bool = True) -> None:
        """Settle on ``result`` (an Explanation): pictures, history, circuits and numbers.

        ``read_circuits=False`` skips reading the (lazily computed) circuits.
        """
        if interrupted is None:
            interrupted = bool(getattr(result, "interrupted", False))
        image = _display_image(result)
        if image is None:
            image = self._image_hwc
        circuits, problems, details = {"explanation": {}, "original": {}}, [], []
        node_maps = {"explanation": {}, "original": {}}  # a transformer's heads and units have their own pictures
        if read_circuits and self.status == "training":
            self.phase = "reading the circuits"
        for key, attr in (("explanation", "circuit"), ("original", "circuit_original")):
            if not read_circuits:
                break
            try:
                circuit = getattr(result, attr, None)
                circuits[key] = _circuit_dict(circuit)
                for source, maps in (getattr(circuit, "node_maps", None) or {}).items():
                    node_maps[source].update(maps)
            except Exception as err:  # a failed circuit must not hide the mask
                circuits[key] = {}
                short, full = _circuit_problem(err)
                if short not in problems:  # the same refusal for both images is said once
                    problems.append(short)
                    details.append(full)
        target = int(getattr(result, "target", -1))
        name = (
            self._label(target, result)
            or circuits["explanation"].get("target_name")
            or getattr(result, "target_name", None)
            or str(target)
        )
        history = getattr(result, "history", None) or self._record
        with self.hold_sync():
            if image is not None:
                self._set_image(image)
            self.mask, self.mask_shape = mask_to_uint8(result.mask)
            explanation = _display_explanation(result)
            if explanation is None and image is not None:
                explanation = masked_image(image, result.mask)
            if explanation is not None:
                self.explanation, self.explanation_shape = image_to_rgb_uint8(explanation)
            self.history = downsample_history(history)
            self.circuit = json_safe(circuits["explanation"])
            self.circuit_original = json_safe(circuits["original"])
            self.target, self.target_name = target, name
            steps = getattr(result, "steps", None) or len(next(iter(history.values()), []))
            self.total_steps = max(self.total_steps, int(steps))  # a retried run goes past the first budget
            self.summary = json_safe(
                {
                    "target": target,
                    "target_name": name,
                    "prob_original": getattr(result, "prob_original", None),
                    "prob_explanation": getattr(result, "prob_explanation", None),
                    "area": getattr(result, "area", None),
                    "robustness": _robustness(result),
                    "seconds": getattr(result, "seconds", None),
                    "steps": int(steps),
                    "label_kept": getattr(result, "label_kept", None),
                    "interrupted": interrupted,
                }
            )
            self.necessary_mask, self.necessary_shape, self.necessary = necessary_state(result)
            if interrupted:
                problems.insert(0, "Interrupted: showing the best mask found so far.")
            warning = _warning(result)
            if warning:
                problems.insert(0, warning + ".")
            self.note = "; ".join(problems)
            self.note_details = "\n\n".join(d for d in details if d)
            self.interrupted = interrupted
            self.status = "interrupted" if interrupted else "done"
            self.phase = ""
        _SOURCES.put(
            self._serial,
            ChannelSource(
                {**(getattr(result, "activations_original", None) or {}), **node_maps["original"]},
                {**(getattr(result, "activations_explanation", None) or {}), **node_maps["explanation"]},
                circuits,
            ),
        )

    def _add_static_fallback(self, result: Any) -> None:
        """Put the result's PNG next to the widget in its output (for readers without widgets)."""
        render_png = getattr(result, "_repr_png_", None)
        if self.display_handle is None or render_png is None:
            return
        try:
            png = render_png()
        except Exception as err:  # the widget is already right; the fallback is a bonus
            self.note = "; ".join(filter(None, [self.note, f"static image unavailable: {err}"]))
            return
        bundle, metadata = self._repr_mimebundle_()
        bundle = {**bundle, "image/png": base64.b64encode(png).decode("ascii")}
        self.display_handle.update(bundle, metadata=metadata, raw=True)

    def _settle_interrupted(self, best_mask: Any, error: Any = None) -> None:
        last = {k: v[-1] for k, v in self._record.items() if v}
        with self.hold_sync():
            if best_mask is not None:
                self.mask, self.mask_shape = mask_to_uint8(best_mask)
                if self._image_hwc is not None:
                    self.explanation, self.explanation_shape = image_to_rgb_uint8(
                        masked_image(self._image_hwc, best_mask)
                    )
            self.history = downsample_history(self._record)
            self.summary = json_safe(
                {
                    "target": self.target,
                    "target_name": self.target_name,
                    "prob_original": getattr(self, "_prob_original", None),
                    "prob_explanation": last.get("prob"),
                    "area": float(to_numpy(best_mask).mean()) if best_mask is not None else last.get("mask_area"),
                    "robustness": None,
                    "seconds": self.clock() - self._started_at,
                    "steps": len(self._record.get("prob", [])),
                    "label_kept": None,
                    "interrupted": True,
                }
            )
            self.note = (
                f"Stopped by an error ({error}): showing the best mask found so far."
                if error
                else "Interrupted: showing the best mask found so far."
            )
            self.interrupted = True
            self.status = "interrupted"

    # ------------------------------------------------------------------ messages
    def _on_custom_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Sequence) -> None:
        if not isinstance(content, Mapping) or content.get("type") != "channel":
            return
        source = _SOURCES.get(self._serial)
        try:
            if source is None:
                raise ChannelLookupError(
                    "this widget's activations were released (only the most recent results keep them); "
                    "display the result again to inspect channels"
                    if self.status == "done"
                    else "no result yet: channels can be inspected once training has finished"
                )
            reply, buffers = source.answer(content)
        except ChannelLookupError as err:
            reply, buffers = (
                {
                    "type": "channel_error",
                    "request_id": content.get("request_id"),
                    "layer": content.get("layer"),
                    "channel": content.get("channel"),
                    "message": str(err),
                },
                [],
            )
        self.send(reply, buffers=buffers)

    def _send_frame(self, state: Any) -> None:
        try:
            self._send_frame_unguarded(state)
        except Exception as err:  # a broken frame must not stop the training
            self._frames_failed = True
            self._pending = None
            warnings.warn(f"nbexplain widget stopped live frames: {err!r}", RuntimeWarning, stacklevel=3)

    def _send_frame_unguarded(self, state: Any) -> None:
        content, buffers = frame_message(
            step=state.step,
            total=state.total_steps,
            losses=state.losses,
            prob=state.prob,
            area=state.area,
            label_kept=getattr(state, "label_kept", True),
            mask=state.mask,
            elapsed=self.clock() - self._started_at,
            half=getattr(state, "half", "sufficient"),
            changes_decision=getattr(state, "sufficient", False),
        )
        nbytes = sum(len(b) for b in buffers)
        self.send(content, buffers=buffers)
        self.throttle.sent(nbytes)
        self.frames_sent += 1
        self.frame_bytes_sent += nbytes
        self._pending = None

    # ------------------------------------------------------------------ helpers
    def _set_image(self, image: Any) -> None:
        arr = to_numpy(image).astype(np.float32, copy=False)
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)
        self.image, self.image_shape = image_to_rgb_uint8(arr)
        self._image_hwc = arr

    def _label(self, target: Any, result: Any = None) -> str | None:
        labels = getattr(result, "labels", None) or self.labels
        if labels is not None and isinstance(target, (int, np.integer)) and 0 <= target < len(labels):
            return str(labels[target])
        return None

    def close(self) -> None:
        """Close the widget and release the activations it kept for channel clicks."""
        _SOURCES.drop(self._serial)
        super().close()

    def __repr__(self) -> str:
        s = self.summary or {}
        parts = [f"status={self.status!r}"]
        if self.target_name:
            parts.append(f"target={self.target_name!r}")
        for key, label in (("prob_original", "p(x)"), ("prob_explanation", "p(e)")):
            if s.get(key) is not None:
                parts.append(f"{label}={s[key]:.3f}")
        if s.get("area") is not None:
            parts.append(f"area={100 * s['area']:.1f}%")
        return f"ExplanationWidget({', '.join(parts)})"


def _step_values(state: Any) -> dict[str, float]:
    values = {str(k): json_number(v) for k, v in dict(state.losses).items()}
    # Same names as the core's history: "area" there is the area loss term.
    values["prob"] = json_number(state.prob)
    values["mask_area"] = json_number(state.area)
    return values


def _warning(result: Any) -> str | None:
    """What the result itself says the user must know before trusting its mask (``res.warning()``)."""
    fn = getattr(result, "warning", None)
    return fn() if callable(fn) else None


def _circuit_problem(err: Exception) -> tuple[str, str]:
    """One short line naming what failed, and the full message for the details."""
    reason = getattr(err, "reason", None) or (str(err).strip().splitlines() or [""])[0]
    kind = "" if getattr(err, "reason", None) else f"{type(err).__name__}: "
    short = f"No circuit: {kind}{reason}"
    full = f"{type(err).__name__}: {err}"
    return short, (full if full.strip() != short.strip() else "")


def _circuit_dict(circuit: Any) -> dict:
    if circuit is None:
        return {}
    if isinstance(circuit, Mapping):
        return dict(circuit)
    if hasattr(circuit, "to_dict"):
        return dict(circuit.to_dict())
    raise TypeError(f"expected a circuit with .to_dict(); got {type(circuit).__name__}")


def _robustness(result: Any) -> float | None:
    value = getattr(result, "robustness", None)
    if callable(value):  # a method would compute it; the widget only shows what is known
        return None
    if isinstance(value, Mapping):
        value = value.get("score", value.get("robustness"))
    return json_number(value) if value is not None else None


def _denormalizer(result: Any) -> Callable | None:
    for owner in (result, getattr(result, "explainer", None)):
        fn = getattr(owner, "denormalize", None)
        if callable(fn):
            return fn
    return None


def _display_image(result: Any) -> np.ndarray | None:
    """The input as a displayable [H, W, 3] image in [0, 1], as best we can."""
    image = getattr(result, "image", None)
    if image is not None:
        return to_numpy(image() if callable(image) else image)
    x = getattr(result, "input", None)
    if x is None:
        return None
    fn = _denormalizer(result)
    arr = to_numpy(fn(x)) if fn is not None else _stretch(to_numpy(x))
    return np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr


def _display_explanation(result: Any) -> np.ndarray | None:
    """The explanation (kept pixels + fill) as a displayable image, if it can be denormalised."""
    image = getattr(result, "explanation_image", None)
    if image is not None:
        return to_numpy(image() if callable(image) else image)
    fn = _denormalizer(result)
    e = getattr(result, "explanation", None)
    if fn is None or e is None:
        return None
    arr = to_numpy(fn(e))
    return np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr


def _stretch(x: np.ndarray) -> np.ndarray:
    """Min-max stretch per channel: a last resort for an input we cannot denormalise."""
    x = x.astype(np.float32)
    lo = x.reshape(x.shape[0], -1).min(axis=1)[:, None, None]
    hi = x.reshape(x.shape[0], -1).max(axis=1)[:, None, None]
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)
