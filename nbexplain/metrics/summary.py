"""All the scores of one attribution in one dict, as ``compare()`` and the benchmark report them."""

from __future__ import annotations

from ..attribution import Attribution
from .faithfulness import deletion_curve, insertion_curve, label_kept, probability_kept, robustness
from .localisation import iou, mask_precision, pointing_game, top_gt_precision
from .minimality import connected_pieces, kept_fraction

#: name -> (True if higher is better, False if lower is, None if neither; what it measures)
METRICS: dict[str, tuple[bool | None, str]] = {
    "seconds": (False, "wall time of the method"),
    "area": (None, "share of pixels kept by the mask"),
    "pieces": (False, "connected pieces of the mask (4-connectivity)"),
    "label_kept": (True, "the mask alone (rest filled) keeps the target as top-1"),
    "prob_kept": (True, "target probability on the mask alone / on the image"),
    "robustness": (True, "share of random backgrounds outside the mask that keep the target"),
    "deletion_auc": (False, "area under the deletion curve (map order)"),
    "insertion_auc": (True, "area under the insertion curve (map order)"),
    "pointing": (True, "top pixel of the map inside the ground truth"),
    "gt_precision": (True, "share of the map's top-|GT| pixels inside the ground truth"),
    "precision": (True, "share of the mask's pixels inside the ground truth"),
    "iou": (True, "IoU of the mask with the ground truth"),
}


def score_attribution(
    model, x, attribution: Attribution, area: float, gt_mask=None, fill=0.0, target=None,
    curve_steps: int = 20, draws: int = 12, seed: int = 0,
) -> dict[str, float]:
    """Every metric of ``METRICS`` for one attribution, as plain floats.

    Mask metrics (area, pieces, label_kept, prob_kept, robustness, precision,
    iou) use the binary map as it is, or a continuous map binarised at
    ``area`` (the explanation's area, for a like-for-like comparison).  Map
    metrics (curves, pointing, gt_precision) use the ranking of the map.
    Ground-truth metrics appear only when ``gt_mask`` is given.
    """
    target = attribution.target if target is None else target
    mask = attribution.as_mask(area)
    scores = {
        "seconds": attribution.seconds,
        "area": kept_fraction(mask),
        "pieces": float(connected_pieces(mask)),
        "label_kept": float(label_kept(model, x, mask, target, fill)),
        "prob_kept": probability_kept(model, x, mask, target, fill),
        "robustness": robustness(model, x, mask, target, draws=draws, seed=seed),
        "deletion_auc": deletion_curve(model, x, attribution, target, curve_steps, fill).auc,
        "insertion_auc": insertion_curve(model, x, attribution, target, curve_steps, fill).auc,
    }
    if gt_mask is not None:
        scores.update(
            pointing=float(pointing_game(attribution, gt_mask)),
            gt_precision=top_gt_precision(attribution, gt_mask),
            precision=mask_precision(mask, gt_mask),
            iou=iou(mask, gt_mask),
        )
    return scores
