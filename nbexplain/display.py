"""Static figures (matplotlib, no pyplot state) for results."""

from __future__ import annotations

import io
import os

import numpy as np

LOSS_TERMS = ("activation", "kl", "ce", "area", "binarization", "tv", "robustness")


def explanation_figure(res, show_losses: bool = True):
    """Image | mask over the image | explanation | necessary region (if any) | loss curves."""
    from matplotlib.figure import Figure

    necessary = getattr(res, "necessary", None)
    n = 3 + (necessary is not None) + show_losses
    fig = Figure(figsize=(3.2 * n, 3.4), layout="constrained")
    axes = fig.subplots(1, n)
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
    for ax in axes[:3 + (necessary is not None)]:
        ax.set_xticks([])
        ax.set_yticks([])
    if show_losses:
        ax = axes[-1]
        for name in LOSS_TERMS:
            values = np.asarray(res.history.get(name, []), dtype=float)
            if values.size and np.ptp(values) > 0:
                ax.plot((values - values.min()) / np.ptp(values), label=name, lw=1)
        ax.set_title("loss terms (each scaled to [0, 1])", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
    title = f"nbexplain: {res.target_name}" + (" (interrupted)" if res.interrupted else "")
    fig.suptitle(title, fontsize=10)
    return fig


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
