"""Does an attribution land on the object?  Scores against a ground-truth mask.

Pixels of equal value are ordered by the fixed tie permutation of
``nbexplain.attribution``, so a binary mask's "top pixel" is one of its
kept pixels chosen without spatial bias.
"""

from __future__ import annotations

import torch

from ..attribution import Attribution, as_attribution


def pointing_game(attribution, gt_mask) -> bool:
    """Whether the attribution's top-ranked pixel lies inside the ground truth."""
    a, gt = _pair(attribution, gt_mask)
    return bool(gt.reshape(-1)[a.ranking()[0]])


def top_gt_precision(attribution, gt_mask) -> float:
    """Share of the map's top-|GT| pixels (as many as the object has) that lie inside the ground truth."""
    a, gt = _pair(attribution, gt_mask)
    k = int(gt.sum())
    if k == 0:
        raise ValueError("the ground-truth mask is empty")
    return float(gt.reshape(-1)[a.ranking()[:k]].float().mean())


def mask_precision(attribution, gt_mask, area=None) -> float:
    """Share of the kept pixels inside the ground truth (0 for an empty mask).

    A continuous map is binarised at ``area`` (default: the ground truth's area).
    """
    m, gt = _mask_pair(attribution, gt_mask, area)
    kept = int(m.sum())
    return float((m & gt).sum()) / kept if kept else 0.0


def iou(attribution, gt_mask, area=None) -> float:
    """Intersection over union of the mask and the ground truth.

    A binary map is used as it is; a continuous one is binarised at ``area``
    (default: the ground truth's area, i.e. IoU at equal area).
    """
    m, gt = _mask_pair(attribution, gt_mask, area)
    union = int((m | gt).sum())
    return float((m & gt).sum()) / union if union else 0.0


def _pair(attribution, gt_mask) -> tuple[Attribution, torch.Tensor]:
    a = as_attribution(attribution)
    gt = torch.as_tensor(gt_mask).detach().cpu()
    while gt.dim() > 2 and gt.shape[0] == 1:
        gt = gt[0]
    if tuple(gt.shape) != a.shape:
        raise ValueError(f"ground-truth mask is {tuple(gt.shape)} but the attribution is {a.shape}")
    return a, gt.bool() if gt.dtype == torch.bool else gt > 0.5


def _mask_pair(attribution, gt_mask, area) -> tuple[torch.Tensor, torch.Tensor]:
    a, gt = _pair(attribution, gt_mask)
    if area is None:
        area = float(gt.float().mean())
    return a.as_mask(area), gt


__all__ = ["pointing_game", "top_gt_precision", "mask_precision", "iou"]
