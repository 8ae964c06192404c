"""Measuring the zoo models on freshly generated scenes."""

from __future__ import annotations

import torch

from ..datasets import CUE_CLASS, make_scenes


@torch.no_grad()
def predict(zoo_model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes, int64 [N], for images [N, 3, H, W] in [0, 1]."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = zoo_model.normalize(images[start:start + batch_size])
        out.append(zoo_model.model(batch).argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(zoo_model, scenes) -> float:
    """Share of ``scenes`` whose label ``zoo_model`` predicts."""
    return (predict(zoo_model, scenes.images) == scenes.labels).float().mean().item()


def shortcut_report(zoo_model, n: int = 600, seed: int = 123_456, cue_class: int = CUE_CLASS) -> dict:
    """How much a model leans on the planted cue, on ``n`` fresh scenes per condition.

    Returns:
        ``clean``: accuracy with no cue anywhere;
        ``train``: accuracy on the training distribution (cue on the cue class);
        ``cue_class_with_cue`` / ``cue_class_without_cue``: accuracy on cue-class
        scenes with the cue and on the same scenes without it;
        ``others_with_cue_to_cue_class``: share of other-class scenes that the
        model assigns to the cue class once the cue is painted on them;
        ``others_accuracy_with_cue``: their accuracy with the cue.
    """
    base = dict(seed=seed, cue_class=cue_class)
    own = make_scenes(n, classes=[cue_class], shortcut="all", **base)
    own_bare = make_scenes(n, classes=[cue_class], shortcut="absent", **base)
    others = [c for c in range(len(own.class_names)) if c != cue_class]
    moved = make_scenes(n, classes=others, shortcut="all", **base)
    pred_moved = predict(zoo_model, moved.images)
    return {
        "clean": accuracy(zoo_model, make_scenes(n, shortcut="absent", **base)),
        "train": accuracy(zoo_model, make_scenes(n, shortcut="train", **base)),
        "cue_class_with_cue": accuracy(zoo_model, own),
        "cue_class_without_cue": accuracy(zoo_model, own_bare),
        "others_with_cue_to_cue_class": (pred_moved == cue_class).float().mean().item(),
        "others_accuracy_with_cue": (pred_moved == moved.labels).float().mean().item(),
    }
