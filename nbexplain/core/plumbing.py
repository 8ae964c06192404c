"""Borrowing the user's model: eval mode, frozen weights, device, logits, hooks, class names.

Every module that runs a model it does not own takes these from here, so that each
restores the model in the same way and refuses a non-logits output with the same words.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Iterator

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The eager module behind DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        else:
            return model


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration of the block; every module's own flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def borrowed(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with frozen parameters, both restored afterwards.

    Eval mode matters: BatchNorm must use its running statistics (a train-mode
    forward would update the user's buffers and mix the explanation with the
    robustness variants in one batch).
    """
    grads = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for p, _ in grads:
                p.requires_grad_(False)
            yield model
        finally:
            for p, flag in grads:
                p.requires_grad_(flag)


@contextlib.contextmanager
def hooks() -> Iterator[list]:
    """A list for hook handles: every handle in it is removed on exit, also after an error
    (a failing registration half-way included), so no hook outlives the block."""
    handles: list = []
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU without one)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU float32 without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def input_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first convolution (None without one)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def logits_from(out) -> torch.Tensor:
    """The logits [batch, classes] in a model's output (a tensor, a tuple's first, or an output
    object's ``logits``), as they are; anything else is refused with what to do about it."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits") and not isinstance(out, torch.Tensor):
        out = out.logits
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape [batch, classes]; it returned {shape}")
    if out.shape[1] < 2:
        raise ValueError(
            "the model returns one logit per image; nbexplain explains the softmax over two or more classes. "
            "For a sigmoid classifier wrap it so it returns torch.cat([torch.zeros_like(z), z], 1)"
        )
    if not out.is_floating_point():
        raise ValueError(f"the model must return float logits; it returned {out.dtype} (class ids?)")
    if not torch.isfinite(out).all():
        raise ValueError("the model returned NaN or infinite logits for this image")
    return out


class LogitsOf:
    """Calls the network and keeps only its logits, as float32 (the losses' precision)."""

    def __init__(self, net: nn.Module):
        self.net = net

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return logits_from(self.net(x)).float()


def class_name(labels, k: int) -> str:
    """The name of class ``k`` in ``labels`` (a sequence, or a dict by id), or "class k" without one."""
    known = k in labels if isinstance(labels, Mapping) else labels is not None and 0 <= k < len(labels)
    return str(labels[k]) if known else f"class {k}"
