"""The terms of the objective, as small pure functions.

Each returns one value per image (shape ``[B]``), so a batch of masks is
optimised as a sum of independent problems.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def activation_distance(a_x: torch.Tensor, a_e: torch.Tensor, kind: str,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Scale-free distance between activations [B, C, h, w] (or [B, D]).

    ``weight`` [B, h, w] (mean 1) weights each position, e.g. by its relevance to the target.

    - ``mse``: mean squared error divided by the mean square of ``a_x``;
    - ``std_mse``: squared error of each channel in units of that channel's
      spatial standard deviation under ``x`` (every channel counts the same);
    - ``cosine``: one minus the cosine similarity of the flattened maps.
    """
    b = a_x.shape[0]
    if weight is not None and a_x.dim() == 4:
        if kind == "cosine":
            root = weight.sqrt()[:, None]
            return activation_distance(a_x * root, a_e * root, kind)
        if kind == "mse":
            per_pos = (a_e - a_x).pow(2).mean(1) / (a_x.pow(2).reshape(b, -1).mean(1)[:, None, None] + _EPS)
            return (per_pos * weight).reshape(b, -1).mean(1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(a_x.reshape(b, -1), a_e.reshape(b, -1), dim=1, eps=_EPS)
    if kind == "mse":
        return (a_e - a_x).pow(2).reshape(b, -1).mean(1) / (a_x.pow(2).reshape(b, -1).mean(1) + _EPS)
    if kind == "std_mse":
        if a_x.dim() < 3:
            return activation_distance(a_x, a_e, "mse")
        flat_x = a_x.reshape(b, a_x.shape[1], -1)
        flat_e = a_e.reshape(b, a_e.shape[1], -1)
        std = flat_x.std(dim=2, keepdim=True, unbiased=False)
        # Dead or constant channels get the layer's typical spread, not a division by ~0.
        std = std + std.mean(dim=1, keepdim=True) + _EPS
        per_pos = ((flat_e - flat_x) / std).pow(2).mean(1)
        if weight is not None:
            per_pos = per_pos * weight.reshape(b, -1)
        return per_pos.mean(1)
    raise ValueError(f"unknown activation distance {kind!r}")


def output_kl(logits_x: torch.Tensor, logits_e: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(z_x / T) || softmax(z_e / T)) per image."""
    log_p = F.log_softmax(logits_x / temperature, dim=1)
    log_q = F.log_softmax(logits_e / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def label_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target, reduction="none")


def area(m: torch.Tensor) -> torch.Tensor:
    """Fraction of the mask kept, per image ([B, h, w] -> [B])."""
    return m.flatten(1).mean(1)


def binarization(m: torch.Tensor) -> torch.Tensor:
    """Mean of m - m^2: zero exactly when every value is 0 or 1."""
    return (m - m * m).flatten(1).mean(1)


def total_variation(m: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the 8-neighbourhood (4 directions, each pair once)."""
    diffs = [
        (m[:, 1:, :] - m[:, :-1, :]).abs().flatten(1).mean(1),
        (m[:, :, 1:] - m[:, :, :-1]).abs().flatten(1).mean(1),
        (m[:, 1:, 1:] - m[:, :-1, :-1]).abs().flatten(1).mean(1),
        (m[:, 1:, :-1] - m[:, :-1, 1:]).abs().flatten(1).mean(1),
    ]
    return sum(diffs) / 4.0
