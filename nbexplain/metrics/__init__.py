"""Scores for attributions: faithfulness, minimality, localisation against a ground truth.

Each metric is a small function returning a plain number; every one accepts
an ``nbexplain.attribution.Attribution`` or a bare mask tensor.
"""

from .faithfulness import (
    BACKGROUNDS, Curve, apply_mask, class_probabilities, deletion_curve, insertion_curve, label_kept,
    probability_kept, robustness,
)
from .localisation import iou, mask_precision, pointing_game, top_gt_precision
from .minimality import connected_pieces, kept_fraction
from .summary import METRICS, score_attribution

__all__ = [
    "apply_mask", "class_probabilities", "label_kept", "probability_kept", "robustness", "BACKGROUNDS",
    "Curve", "deletion_curve", "insertion_curve", "kept_fraction", "connected_pieces",
    "pointing_game", "top_gt_precision", "mask_precision", "iou", "METRICS", "score_attribution",
]
