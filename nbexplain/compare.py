"""``compare(model, img)``: nbexplain beside the baselines, scored by the same metrics.

Every method explains the same target on the same model input.  Continuous
maps (Grad-CAM, occlusion, ...) are binarised at one reference area, the
explanation's by default, so the mask metrics compare like with like.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
import dataclasses
import html
from dataclasses import dataclass, field

import numpy as np
import torch

from .attribution import Attribution
from .baselines import METHODS, run_method
from .baselines.common import model_batch, resolve_target
from .baselines.external import resolve_methods, run_external
from .config import ExplainConfig
from .core.inputs import DefaultPreprocess, find_normalization, to_model_input
from .core.plumbing import class_name, input_channels, unwrap_model
from .core.fills import make_fill
from .types import ConfigLike, ImageLike, Labels, Preprocess, Target
from .metrics import METRICS, apply_mask, class_probabilities, score_attribution

DEFAULT_AREA = 0.2  #: binarisation area when there is neither an explanation nor a ground truth


@dataclass(eq=False)
class Comparison:
    """Attributions of several methods for one image and target, with their scores.

    ``attributions``: method -> ``Attribution``; ``scores``: method ->
    metric -> float (see ``nbexplain.metrics.METRICS``); ``area``: where
    continuous maps were binarised; ``explanation``: the nbexplain
    ``Explanation`` when that method ran.
    """

    input: torch.Tensor
    target: int
    attributions: dict
    scores: dict
    area: float
    fill: torch.Tensor
    prob: float
    gt_mask: torch.Tensor | None = None
    explanation: object | None = None
    labels: list | None = None
    normalization: object | None = None
    #: method -> {"area", "decision_changed", "prob_after"}: each method's top pixels *removed*, at the area
    #: of the explanation's necessary region (nbexplain: that region itself); empty when none was found
    necessary: dict = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.attributions)

    @property
    def target_name(self) -> str:
        return class_name(self.labels, self.target)

    def image(self) -> np.ndarray:
        """The input as an HxWx3 float array in [0, 1]."""
        from .explanation import to_display

        return to_display(self.input, self.normalization)

    def masked_input(self, method: str) -> torch.Tensor:
        """What the model sees of ``method``'s mask: kept pixels of x, the rest filled ([C, H, W])."""
        if method == "nbexplain" and self.explanation is not None:
            return self.explanation.explanation
        mask = self.attributions[method].as_mask(self.area)
        return apply_mask(self.input[None], mask, self.fill.cpu())[0]

    # -- tables ------------------------------------------------------------
    def columns(self) -> list[str]:
        present = {k for row in self.scores.values() for k in row}
        return [k for k in METRICS if k in present]

    def table(self) -> str:
        """The scores as a fixed-width text table (arrows: which way is better)."""
        cols = self.columns()
        head = ["method"] + [name + _arrow(name) for name in cols]
        rows = [[m] + [_fmt(self.scores[m].get(c)) for c in cols] for m in self.scores]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
                 for r in [head] + rows]
        return "\n".join(lines)

    def necessary_table(self) -> str:
        """Each method's top pixels removed at the necessary region's area, as that region was judged (filled in
        from their surroundings by default): does the decision change, and what is p(target) after?"""
        if not self.necessary:
            return "no necessary region: nothing to compare at its area"
        lines = ["method  decision changed  p(target) after  (removed: top pixels at {:.1%})".format(
            next(iter(self.necessary.values()))["area"])]
        for m, row in self.necessary.items():
            lines.append(f"{m}  {'yes' if row['decision_changed'] else 'no'}  {row['prob_after']:.3f}")
        return "\n".join(lines)

    def to_frame(self):
        """The scores as a pandas DataFrame (methods as rows); needs pandas."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_frame() needs pandas (pip install pandas); .scores is a plain dict") from err
        return pd.DataFrame.from_dict(self.scores, orient="index")[self.columns()]

    # -- display -----------------------------------------------------------
    def figure(self):
        """A matplotlib Figure: top row the image and each method's map, bottom row what each mask keeps."""
        from matplotlib.figure import Figure

        from .display import overlay
        from .explanation import to_display

        methods = self.methods
        cols = len(methods) + 1
        fig = Figure(figsize=(2.6 * cols, 5.7), layout="constrained")
        axes = np.asarray(fig.subplots(2, cols, squeeze=False))
        image = self.image()
        gt = None if self.gt_mask is None else self.gt_mask.float().numpy()

        axes[0, 0].imshow(image)
        axes[0, 0].set_title(f"input: p({self.target_name}) = {self.prob:.2f}", fontsize=9)
        if gt is not None:
            axes[1, 0].imshow(overlay(image, gt))
            axes[1, 0].set_title(f"ground truth: {gt.mean():.1%}", fontsize=9)
        else:
            axes[1, 0].text(0.5, 0.5, f"masks at\n{self.area:.1%}\nof the pixels", ha="center", va="center", fontsize=10)
        for j, name in enumerate(methods, start=1):
            a, s = self.attributions[name], self.scores[name]
            top, bottom = axes[0, j], axes[1, j]
            if a.binary:
                top.imshow(overlay(image, a.map.numpy()))
            else:
                top.imshow(image)
                top.imshow(a.display_map(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            timing = "precomputed" if a.info.get("precomputed") else f"{a.seconds:.2g} s"
            top.set_title(f"{name}\n{timing}", fontsize=9)
            bottom.imshow(to_display(self.masked_input(name), self.normalization))
            kept = "label kept" if s.get("label_kept") else "label LOST"
            line = f"{s['area']:.1%} kept, {kept}"
            if "iou" in s:
                line += f"\nIoU {s['iou']:.2f}, pointing {'hit' if s['pointing'] else 'miss'}"
            bottom.set_title(line, fontsize=8)
        for ax in axes.ravel():
            if gt is not None:
                ax.contour(gt, levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        if gt is None:
            axes[1, 0].set_axis_off()
        fig.suptitle(f"{self.target_name}: maps (top) and what each keeps at equal area (bottom)", fontsize=10)
        return fig

    def save(self, path) -> str:
        """Write the figure to ``path`` (PNG, PDF, SVG... by extension) without any GUI; returns the path."""
        from .display import save_figure

        return save_figure(self.figure(), path)

    def _repr_png_(self) -> bytes:
        from .display import figure_png

        return figure_png(self.figure())

    def _repr_html_(self) -> str:
        png = base64.b64encode(self._repr_png_()).decode("ascii")
        cols = self.columns()
        head = "".join(f"<th title='{html.escape(METRICS[c][1])}'>{html.escape(c + _arrow(c))}</th>" for c in cols)
        body = "".join(
            f"<tr><th>{html.escape(m)}</th>" + "".join(f"<td>{_fmt(self.scores[m].get(c))}</td>" for c in cols) + "</tr>"
            for m in self.scores
        )
        return (
            f"<div><img src='data:image/png;base64,{png}' style='max-width:100%'/>"
            f"<table><thead><tr><th>method</th>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        text = f"<Comparison of {', '.join(self.methods)} for {self.target_name!r} (masks at {self.area:.1%})>\n{self.table()}"
        if self.necessary:
            text += f"\n\nRemoved instead of kept, at the necessary region's area:\n{self.necessary_table()}"
        return text


def compare(
    model: torch.nn.Module, img: ImageLike, methods: Sequence | Mapping = ("nbexplain", "gradcam", "occlusion"),
    gt_mask: torch.Tensor | np.ndarray | None = None, target: Target = None, explainer=None,
    preprocess: Preprocess = None, save: str | None = None, *, area: float | None = None,
    fill: str | torch.Tensor | None = None, labels: Labels = None, method_options: Mapping[str, dict] | None = None,
    **explain_kwargs,
) -> Comparison:
    """Explain one image with several methods and score them all on the same target.

    ``methods``: a list of ``"nbexplain"``, names from ``nbexplain.baselines.METHODS`` and the
    methods Captum and pytorch-grad-cam users bring, or a dict ``{name: method}``. A method may be a
    callable ``fn(model, x, target) -> map``, a Captum attribution object
    (``IntegratedGradients(model)``, ``LayerGradCam(model, layer)``...), a pytorch-grad-cam CAM
    object (``GradCAM(model, target_layers=[...])``), or, in the dict form, a precomputed map
    (tensor or numpy array). Each map is brought to one value per input pixel (Captum's channels
    summed, then their absolute value; lower resolutions resized bilinearly) and scored like the
    built-ins, under its name; see ``nbexplain.baselines.external`` for the rules.
    ``gt_mask`` ([H, W], at the model-input size) adds localisation scores.
    ``target``: default the model's top-1.  ``explainer``: an ``Explainer`` to
    reuse (default: ``Explainer(model, preprocess=preprocess, labels=labels)``).
    ``area``: where continuous maps are binarised (default: the explanation's
    area, else the ground truth's, else 20%).  ``fill``: what removed pixels
    become in model space (default: the explainer's fill, a blur of x).
    ``method_options``: ``{"occlusion": {"window": 8}, ...}``, by method name (for a Captum object
    they go to ``attribute()``, for a CAM to its call, for a callable to it as keywords; ``sign=``
    picks how several channels are reduced).  Other keywords
    go to ``explainer.explain`` (``seed``, ``config``, ``steps``...).
    ``save``: also write the figure there.
    """
    chosen = resolve_methods(methods, METHODS)
    methods = list(chosen)
    method_options = dict(method_options or {})
    stray = sorted(set(method_options) - set(methods))
    if stray:
        raise ValueError(f"method_options given for {stray}, which are not among methods={methods}")

    ex = explainer
    if ex is None and "nbexplain" in methods:
        from .explainer import Explainer

        ex = Explainer(model, preprocess=preprocess, labels=labels)
    labels = labels if labels is not None else getattr(ex, "labels", None)
    prep = next((p for p in (getattr(ex, "preprocess", None), preprocess) if p is not None), None) or DefaultPreprocess()
    attributions, res = {}, None
    if "nbexplain" in methods:
        explain_kwargs.setdefault("progress", False)
        explain_kwargs.setdefault("live", False)
        res = ex.explain(img, target=target, **explain_kwargs)
        x, target = res.input[None], res.target
        attributions["nbexplain"] = Attribution.from_explanation(res)
    else:
        if explain_kwargs:
            raise TypeError(f"options {sorted(explain_kwargs)} are for the explainer, but 'nbexplain' is not among methods")
        x = to_model_input(img, prep, find_normalization(prep), input_channels(unwrap_model(model)))
        if isinstance(target, str) and labels and target in labels:
            target = list(labels).index(target)
    normalization = getattr(res, "normalization", None) or find_normalization(prep)

    target = resolve_target(model, model_batch(x, model), target)
    for name, method in chosen.items():
        if name == "nbexplain":
            continue
        options = dict(method_options.get(name, {}))
        if isinstance(method, str):
            a = run_method(method, model, x, target, **options)
            attributions[name] = a if a.method == name else dataclasses.replace(a, method=name)
        else:
            attributions[name] = run_external(method, model, model_batch(x, model), target, name, **options)

    fill_tensor = _fill(x, fill, res, normalization)
    gt = _ground_truth(gt_mask, x.shape[-2:])
    if area is None:
        area = res.area if res is not None else float(gt.float().mean()) if gt is not None else DEFAULT_AREA
    scores = {name: score_attribution(model, x, a, area, gt_mask=gt, fill=fill_tensor, target=target)
              for name, a in attributions.items()}
    for name, a in attributions.items():
        if a.info.get("precomputed"):
            scores[name]["seconds"] = None  # not measured: the table shows "-"
    prob = float(class_probabilities(model, model_batch(x, model))[0, target])
    result = Comparison(
        input=x[0].detach().cpu(), target=target, attributions=attributions, scores=scores, area=float(area),
        fill=fill_tensor, prob=prob, gt_mask=gt, explanation=res, labels=labels, normalization=normalization,
        necessary=_removal_scores(model, x, attributions, res, fill_tensor, normalization, target),
    )
    if save is not None:
        result.save(save)
    return result


def _removal_scores(model, x, attributions, res, fill, normalization, target) -> dict:
    """The deletion test that fits necessary evidence: remove each method's top pixels at the necessary
    region's area (nbexplain's: the region), the way that region was judged: filled in from its surroundings,
    or under the fill and the mean colour; the decision changed when the target is the top class under none."""
    nec = getattr(res, "necessary", None)
    if nec is None or not nec.found:
        return {}
    from .core.fills import make_fill, surroundings

    if nec.removal == "surroundings":
        removals = [lambda m: surroundings(x, m)]
    else:
        fills = (fill.expand_as(x), make_fill(x, "mean", normalization))
        removals = [lambda m, f=f: (1 - m) * x + m * f for f in fills]
    out = {}
    for name, a in attributions.items():
        region = nec.mask if name == "nbexplain" else a.as_mask(nec.area)
        m = region.to(x.dtype).to(x.device)[None, None]
        with torch.no_grad():
            probs = class_probabilities(model, torch.cat([remove(m) for remove in removals]))
        out[name] = {"area": float(region.float().mean()),
                     "decision_changed": bool((probs.argmax(1) != target).all()),
                     "prob_after": float(probs[:, target].max())}
    return out


def _fill(x, fill, res, normalization) -> torch.Tensor:
    """Removed pixels' values in model space, broadcastable to x: given, or the explainer's own fill."""
    if fill is not None:
        return torch.as_tensor(fill, dtype=x.dtype).to(x.device).expand_as(x).clone()
    if getattr(res, "fill", None) is not None:  # the explanation's own fill (its blur may be stronger)
        return res.fill.image.to(x.device, x.dtype).expand_as(x).clone()
    kind = res.config.fill if res is not None and hasattr(res, "config") else ExplainConfig().fill
    return make_fill(x, kind, normalization)


def _ground_truth(gt_mask, size) -> torch.Tensor | None:
    if gt_mask is None:
        return None
    gt = torch.as_tensor(np.asarray(gt_mask) if not isinstance(gt_mask, torch.Tensor) else gt_mask).detach().cpu()
    while gt.dim() > 2 and gt.shape[0] == 1:
        gt = gt[0]
    if tuple(gt.shape) != tuple(size):
        raise ValueError(
            f"gt_mask is {tuple(gt.shape)} but the model input is {tuple(size)}; "
            "give the ground truth at the model-input resolution"
        )
    return gt.bool() if gt.dtype == torch.bool else gt > 0.5


def _arrow(metric: str) -> str:
    better = METRICS.get(metric, (None, ""))[0]
    return "" if better is None else (" ↑" if better else " ↓")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.3g}"


__all__ = ["compare", "Comparison", "DEFAULT_AREA"]
