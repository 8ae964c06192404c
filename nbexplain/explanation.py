"""The result of one explanation, and how it shows itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from .config import ExplainConfig
from .core.fills import Fill, FillCheck
from .core.necessity import Necessary
from .core.inputs import Normalization
from .core.plumbing import class_name


EMPTY_NOTE = (
    "The mask is empty because the model gives this class to the fill alone (no pixel of the image "
    "is needed for it); explain another class, or compare with another fill (fill='mean')"
)
NO_HIDING_FILL_NOTE = (
    "No fill hides this class: the model gives it to the fill alone ({fill}, p={prob:.3f}; tried {tried}), "
    "so the mask shows at most what the image adds to it, not what the model needs for it; explain another class"
)


@dataclass(eq=False)
class Explanation:
    """A binary mask that keeps the model's decision, and everything measured on the way.

    ``mask`` is float32 [H, W] with values exactly 0.0 or 1.0 at the model-input
    resolution; ``explanation`` is the masked model input that was scored.
    ``res.save("cat.nbx")`` keeps it in one file and ``nbexplain.load("cat.nbx")`` brings it
    back without the model (``model`` is then None; see ``nbexplain.persist``).
    """

    mask: torch.Tensor
    explanation: torch.Tensor
    input: torch.Tensor
    target: int
    prob_original: float
    prob_explanation: float
    area: float
    history: dict
    layers: list
    activations_original: dict
    activations_explanation: dict
    logits_original: torch.Tensor
    logits_explanation: torch.Tensor
    model: nn.Module | None  #: None for a result loaded from a file
    labels: list | None
    seconds: float
    steps: int
    config: ExplainConfig
    normalization: Normalization | None = None
    robustness: float | None = None  #: share of random backgrounds (outside the mask) that keep the label
    #: what the removed pixels became (``fill.image`` [C, H, W], model space), and whether it hides the class
    fill: Fill | None = None
    #: the mask under the other neutral fills of ``config.check_fills``
    checks: tuple[FillCheck, ...] = ()
    #: the method's own verdict: label kept with the probability needed under the fill, and under every check
    sufficient: bool | None = None
    interrupted: bool = False
    #: how each tapped layer's output was read as a map (token layers of a transformer, channels-last maps)
    views: dict = field(default_factory=dict)
    #: the smallest region whose removal changes the decision (``nbexplain.core.necessity.Necessary``);
    #: None when ``necessary=False`` or the run was interrupted
    necessary: "Necessary | None" = None
    _network: nn.Module | None = field(default=None, repr=False)

    # -- derived numbers ---------------------------------------------------
    @property
    def label_kept(self) -> bool:
        """Whether the model's top-1 on the explanation is the target."""
        return int(self.logits_explanation.argmax()) == self.target

    @property
    def target_name(self) -> str:
        return self.class_name(self.target)

    @property
    def predicted_original(self) -> int:
        return int(self.logits_original.argmax())

    def class_name(self, k: int) -> str:
        return class_name(self.labels, k)

    def image(self) -> np.ndarray:
        """The input as a displayable HxWx3 float array in [0, 1]."""
        return to_display(self.input, self.normalization)

    def explanation_image(self) -> np.ndarray:
        return to_display(self.explanation, self.normalization)

    # -- circuits (computed on first use) ---------------------------------
    @cached_property
    def circuit(self):
        """The channel-level circuit read from the explanation's forward pass (for a transformer: its
        attention heads and MLP units, ``nbexplain.circuits.transformer``)."""
        self._require_model("its circuit")
        return self._circuit("explanation")

    @cached_property
    def circuit_original(self):
        """The same readout on the original image, for comparison."""
        self._require_model("the circuit of the original image")
        return self._circuit("original")

    def _require_model(self, what: str) -> None:
        if self.model is None and self._network is None:
            raise ValueError(
                f"this explanation was loaded from a file without {what} and has no model to read it: explain the "
                "image again with the model (or read res.circuit before res.save(path), which then keeps it)"
            )

    def _circuit(self, source: str):
        from .circuits import circuit_of

        images = (self.explanation, self.input)
        acts = (self.activations_explanation, self.activations_original)
        if source == "original":
            images, acts = images[::-1], acts[::-1]
        return circuit_of(self._network or self.model, self.layers, self.views, self.target, inputs=images[0],
                          inputs_other=images[1], acts=acts[0], acts_other=acts[1], labels=self.labels, source=source)

    # -- display -----------------------------------------------------------
    def summary(self) -> str:
        status = "INTERRUPTED, best mask so far; " if self.interrupted else ""
        kept = "kept" if self.label_kept else "NOT kept"
        checks = "".join(f"; {'also' if c.label_kept else 'NOT'} kept under the {c.name}" for c in self.checks)
        robust = f"; robust to {self.robustness:.0%} of random backgrounds" if self.robustness is not None else ""
        text = (
            f"Explanation of {self.target_name!r} ({status}{self.steps} steps, {self.seconds:.1f} s): "
            f"keeps {self.area:.1%} of the pixels; p({self.target_name}) {self.prob_original:.3f} on the image, "
            f"{self.prob_explanation:.3f} on the explanation (label {kept}{checks}{robust})"
        )
        if self.fill is not None:
            text += f"; {self.fill.describe(self.target_name)}"
        if self.necessary is not None:
            text += f". Sufficient: the kept pixels alone keep the decision; {self.necessary.describe(self.class_name)}"
        note = self.warning()
        if note:
            text += f". {note}"
        return text

    def warning(self) -> str | None:
        """What the user must know before trusting this mask, or None."""
        fill = self.fill
        if fill is not None and not fill.hides:
            return NO_HIDING_FILL_NOTE.format(fill=fill.name, prob=fill.prob, tried=", ".join(fill.tried) or "none")
        if self.empty_but_kept:
            return EMPTY_NOTE
        return None

    @property
    def empty_but_kept(self) -> bool:
        """No pixel kept, and still the target: the model gives this class to the fill alone."""
        return self.area == 0.0 and self.label_kept

    def __repr__(self) -> str:
        return f"<{self.summary()}>"

    def figure(self, **kwargs):
        """A matplotlib Figure: image, mask, explanation and the loss curves."""
        from .display import explanation_figure

        return explanation_figure(self, **kwargs)

    def save(self, path, *, circuits: bool | None = None, activations: bool = True) -> str:
        """Write this result to ``path``; returns the path.

        An image suffix (``.png``, ``.pdf``, ``.svg``, ``.jpg``... whatever matplotlib writes) saves
        the figure. Any other path (``cat.nbx``, say) saves the result itself, which
        ``nbexplain.load(path)`` brings back without the model: its figure, summary and widget as
        here. ``circuits``: save the circuits already read (None, default), read and save both
        (True; needs the model), or none (False). ``activations=False`` leaves out the tapped
        activations (a smaller file; the widget then shows no channel maps). See
        ``nbexplain.persist``.
        """
        from .display import save_figure

        if is_figure_path(path):
            return save_figure(self.figure(), path)
        from .persist import save_explanation

        return save_explanation(self, path, circuits=circuits, activations=activations)

    @classmethod
    def load(cls, path) -> "Explanation":
        """The result saved at ``path`` by ``save`` (``nbexplain.load``), without a model: its
        figure, summary and widget are those of the saved result. Raises ``ValueError`` for a file
        that is not an nbexplain explanation or was written in a format this version does not
        know, and ``FileNotFoundError`` for a missing file."""
        from .persist import read_explanation

        fields, circuits = read_explanation(path)
        res = cls(**fields)
        vars(res).update(circuits)  # what the cached properties would have computed
        return res

    def _repr_png_(self) -> bytes:
        from .display import figure_png

        return figure_png(self.figure())

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": repr(self), "image/png": self._repr_png_()}
        try:
            from .widget import result_widget, should_use_widget
        except ImportError:
            return bundle
        if should_use_widget():
            widget_bundle = result_widget(self)._repr_mimebundle_(include=include, exclude=exclude)
            if isinstance(widget_bundle, tuple):
                widget_bundle = widget_bundle[0]
            bundle.update({k: v for k, v in (widget_bundle or {}).items() if k != "text/plain"})
        return bundle


def is_figure_path(path) -> bool:
    """Whether ``path``'s suffix is an image format matplotlib writes (then ``save`` writes the figure)."""
    import os

    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return bool(suffix) and suffix in FigureCanvasBase.get_supported_filetypes()


def to_display(t: torch.Tensor, normalization: Normalization | None) -> np.ndarray:
    """Model-space [C, H, W] -> HxWx3 float array in [0, 1] for showing."""
    t = t.detach().float().cpu()
    if normalization is not None and len(normalization.mean) == t.shape[0]:
        t = normalization.denormalize(t)
    else:
        lo, hi = t.amin(dim=(1, 2), keepdim=True), t.amax(dim=(1, 2), keepdim=True)
        t = (t - lo) / (hi - lo).clamp_min(1e-8)
    t = t.clamp(0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t[:3].permute(1, 2, 0).numpy()


def load(path) -> Explanation:
    """Load an ``Explanation`` saved by ``res.save(path)`` (see ``Explanation.load``)."""
    return Explanation.load(path)
