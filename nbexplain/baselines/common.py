"""What every baseline needs: one model-space batch, a checked target, gradients on demand."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..attribution import as_class_index
from ..core.plumbing import borrowed, logits_from, model_device


def model_batch(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A model-space tensor [C, H, W] or [1, C, H, W] -> a fresh float [1, C, H, W] on the model's device.

    The copy is made outside inference mode, so a tensor created under
    ``torch.inference_mode()`` can still take part in autograd.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"x must be a model-space torch tensor [C, H, W] or [1, C, H, W], got {type(x).__name__}; "
            "preprocess the image first (e.g. explainer.preprocess(img))"
        )
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be [C, H, W] or [1, C, H, W] (one image), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float model-space tensor, got dtype {x.dtype}")
    with torch.inference_mode(False):
        batch = x.detach().to(model_device(model), torch.float32).clone()
    if not torch.isfinite(batch).all():
        raise ValueError("x contains NaN or infinite values")
    return batch


@torch.no_grad()
def logits_of(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The model's outputs [N, K] for a batch, in eval mode, leaving the model as it was."""
    with borrowed(model):
        return logits_from(model(batch))


def resolve_target(model: nn.Module, batch: torch.Tensor, target) -> int:
    """The target class: the model's top-1 on ``batch`` when None, else a checked class index."""
    logits = logits_of(model, batch)
    if target is None:
        return int(logits[0].argmax())
    target = as_class_index(target, "target")
    n = logits.shape[1]
    if not 0 <= target < n:
        raise ValueError(f"target {target} is out of range: the model has {n} classes (0..{n - 1})")
    return target


@contextlib.contextmanager
def gradients_on():
    """Autograd available even under an outer ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
