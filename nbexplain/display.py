"""Static figures (matplotlib, no pyplot state) for results."""

from __future__ import annotations

import io
import os

import numpy as np

LOSS_TERMS = ("activation", "kl", "ce", "area", "binarization", "tv", "robustness")


def explanation_figure(res, show_losses: bool = True):
    """Image | mask over the image | explanation | necessary region (if any) | training curves.

    The curves are in two panels, on honest axes: the mask's area and p(target | explanation) on a
    fixed 0..1 axis (what a user watches fall into place), and the loss (total, and each term
    unweighted) on a log axis. No curve is rescaled to its own range."""
    from matplotlib.figure import Figure

    necessary = getattr(res, "necessary", None)
    pictures = 3 + (necessary is not None)
    n = pictures + show_losses
    fig = Figure(figsize=(3.2 * pictures + 4.6 * show_losses, 3.7 if show_losses else 3.4), layout="constrained")
    grid = fig.add_gridspec(1, n, width_ratios=[1.0] * pictures + [1.45] * show_losses)
    axes = [fig.add_subplot(grid[0, i]) for i in range(pictures)]
    image = res.image()
    mask = res.mask.numpy()
    axes[0].imshow(image)
    axes[0].set_title(f"input: p({res.target_name}) = {res.prob_original:.2f}", fontsize=9)
    axes[1].imshow(overlay(image, mask))
    axes[1].set_title(f"mask: {res.area:.1%} of pixels kept", fontsize=9)
    axes[2].imshow(res.explanation_image())
    kept = "" if res.label_kept else " (label lost)"
    axes[2].set_title(f"explanation: p = {res.prob_explanation:.2f}{kept}", fontsize=9)
    if necessary is not None:
        axes[3].imshow(removal_overlay(image, necessary.mask.numpy()))
        if necessary.found:
            title = (f"necessary: removing {necessary.area:.1%}\nturns it into {res.class_name(necessary.turns_into)!r} "
                     f"(p {necessary.prob_turns_into_after:.2f})")
        else:
            title = "necessary: none found\n(res.necessary.note says why)"
        axes[3].set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if show_losses:
        top, bottom = grid[0, -1].subgridspec(2, 1, height_ratios=[1.0, 1.15], hspace=0.08).subplots(sharex=True)
        draw_training_curves(top, bottom, res)
    title = f"nbexplain: {res.target_name}" + (" (interrupted)" if res.interrupted else "")
    fig.suptitle(title, fontsize=10)
    return fig


#: colours of the curves (matplotlib's tab10, as the widget's categorical palette)
AREA_COLOUR, PROB_COLOUR, TOTAL_COLOUR = "0.15", "tab:blue", "0.1"
TERM_COLOURS = {"activation": "tab:purple", "kl": "tab:orange", "ce": "tab:green", "area": "tab:brown",
                "binarization": "tab:pink", "tv": "tab:olive", "robustness": "tab:cyan"}
#: the log axis spans at most this many decades below the largest loss value
LOG_DECADES = 6


def draw_training_curves(top, bottom, res) -> None:
    """The training history of ``res`` on two axes sharing the step axis.

    ``top``: area kept (fraction of pixels) and p(target | explanation) per step on 0..1, with
    p(target | x) dashed and the result's own area and p as diamonds at the last step (the result
    is the best mask found, which need not be the last step's). ``bottom``: the total loss (thick)
    and each term, unweighted (thin), on a log axis; values <= 0 cannot be drawn there and are
    left out, and the legend says which terms had any."""
    history = res.history or {}
    steps = np.arange(1, 1 + max((len(v) for v in history.values()), default=0))

    def series(name):
        return _padded(history.get(name), steps.size)

    area, prob = series("mask_area"), series("prob")
    if np.isfinite(area).any():
        top.plot(steps, area, color=AREA_COLOUR, lw=1.3, label="area kept")
    if np.isfinite(prob).any():
        top.plot(steps, prob, color=PROB_COLOUR, lw=1.3, label="p(target | explanation)")
    prob_x = getattr(res, "prob_original", None)
    if prob_x is not None:
        top.axhline(prob_x, color=PROB_COLOUR, lw=1, ls="--", alpha=0.6, label=f"p(target | x) = {prob_x:.2f}")
    end = steps[-1] if steps.size else 1
    result = [(getattr(res, "area", None), AREA_COLOUR), (getattr(res, "prob_explanation", None), PROB_COLOUR)]
    for value, colour in result:
        if value is not None:
            top.plot([end], [value], "D", color=colour, ms=4.5, mec="white", mew=0.6, clip_on=False, zorder=4)
    if any(value is not None for value, _ in result):
        top.plot([], [], "D", color="0.55", ms=4.5, mec="white", mew=0.6, ls="none", label="the result (best mask)")
    top.set_ylim(0, 1)
    top.set_yticks([0, 0.25, 0.5, 0.75, 1])
    top.set_yticklabels(["0", "", "0.5", "", "1"])
    top.grid(axis="y", lw=0.5, alpha=0.4)
    top.set_title("area kept and p(target)", fontsize=9)
    top.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, handlelength=1.5)

    drawn, omitted = [], []
    for name in (*LOSS_TERMS, "total"):
        values = series(name)
        if not np.isfinite(values).any():
            continue
        positive = np.where(values > 0, values, np.nan)  # a log axis has no place for values <= 0
        total = name == "total"
        colour = TOTAL_COLOUR if total else TERM_COLOURS.get(name)
        if not np.isfinite(positive).any():  # nothing to draw: the legend still says so
            bottom.plot([], [], lw=0.9, color=colour, label=f"{name}: \u2264 0 throughout")
            continue
        some_left_out = np.isfinite(values).sum() > np.isfinite(positive).sum()
        if some_left_out:
            omitted.append(name)
        bottom.plot(steps, positive, lw=1.8 if total else 0.9, alpha=1.0 if total else 0.75, zorder=3 if total else 2,
                    color=colour, label=name + (" *" if some_left_out else ""))
        drawn.append(positive)
    bottom.set_yscale("log")
    if drawn:
        hi = float(np.nanmax([np.nanmax(v) for v in drawn]))
        lo = float(np.nanmin([np.nanmin(v) for v in drawn]))
        bottom.set_ylim(max(lo, hi * 10.0 ** -LOG_DECADES) / 1.5, hi * 1.5)
    bottom.grid(axis="y", which="major", lw=0.5, alpha=0.4)
    bottom.set_title("loss, log scale (terms unweighted)", fontsize=9)
    handles, labels = bottom.get_legend_handles_labels()
    if handles:  # the total first
        order = sorted(range(len(labels)), key=lambda i: not labels[i].startswith("total"))
        bottom.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=6.5, loc="center left",
                      bbox_to_anchor=(1.01, 0.5), frameon=False, handlelength=1.5,
                      title="* \u2264 0 at some steps:\nnot drawn there" if omitted else None, title_fontsize=5.5)
    bottom.set_xlabel("step", fontsize=8)
    first = steps[0] if steps.size else 0
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
        ax.set_xlim(first, end if end > first else first + 1)


def _padded(values, n: int) -> np.ndarray:
    """A history series as floats of length ``n`` (missing steps and non-numbers are NaN)."""
    out = np.full(n, np.nan)
    if values is None:
        return out
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)[:n]
    out[:arr.size] = arr
    return out


def overlay(image: np.ndarray, mask: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """The image with removed pixels dimmed, so the kept region stands out."""
    keep = mask[..., None] > 0.5
    return np.where(keep, image, image * dim)


def removal_overlay(image: np.ndarray, region: np.ndarray, colour=(1.0, 0.15, 0.1), alpha: float = 0.6) -> np.ndarray:
    """The image with a removed region tinted: necessary evidence is what the decision cannot lose."""
    tint = np.asarray(colour, dtype=image.dtype)
    on = region[..., None] > 0.5
    return np.where(on, (1 - alpha) * image + alpha * tint, image)


def figure_png(fig, dpi: int = 96) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig, path, dpi: int = 120) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
