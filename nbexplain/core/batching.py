"""How many images go through the model at once, and running a model over a batch in such chunks.

Shared by the steps' scoring forwards (``core.sufficiency``) and the explainer's final checks.
"""

from __future__ import annotations

import torch


def images_per_pass(device: torch.device, height: int, width: int) -> int:
    """How many images of this size go through the model at once: about 32 of 224 x 224 pixels on
    an accelerator; on a CPU about 4, since larger batches outgrow its caches (EfficientNet-Lite0:
    16 ms per image in batches of 4, 25 ms in batches of 8)."""
    budget = 4 if device.type == "cpu" else 32
    return max(1, int(budget * 224 * 224 / (height * width)))


def in_chunks(fn, batch: torch.Tensor) -> torch.Tensor:
    """``fn`` over a batch of images in chunks of ``images_per_pass``, concatenated: fast, and
    scoring many masks of large images stays within memory."""
    chunk = images_per_pass(batch.device, *batch.shape[-2:])
    return torch.cat([fn(batch[i:i + chunk]) for i in range(0, batch.shape[0], chunk)])
