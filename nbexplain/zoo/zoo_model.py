"""``ZooModel``: a classifier of the zoo with everything needed to feed it (bundled or pretrained)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torchvision.transforms import Normalize

from .preprocess import Preprocess


@dataclass(frozen=True)
class ZooModel:
    """A bundled classifier with everything needed to feed it."""

    name: str
    model: nn.Module  # eval mode
    preprocess: Preprocess  # picture -> normalised [3, H, W] tensor
    normalize: Normalize  # dataset mean/std, also usable on [N, 3, H, W] batches
    labels: list[str]
    meta: dict = field(default_factory=dict, repr=False)  # training recipe and measured accuracies
