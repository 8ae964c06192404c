"""Which reader reads a model's circuit: the one question ``nbexplain.Explanation`` asks."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CircuitUnsupportedError
from .circuit import Circuit
from .cnn import read_circuit
from .sites import has_attention
from .transformer import read_transformer_circuit

__all__ = ["circuit_of", "reads_tokens"]


def reads_tokens(model: nn.Module, views: dict) -> bool:
    """Whether the circuit is a transformer's (heads and units): token layers, or channels-last
    stages (Swin) of a model with attention."""
    layouts = {getattr(v, "layout", None) for v in views.values()}
    if "tokens" in layouts:
        return True
    return "channels_last" in layouts and has_attention(model)


def circuit_of(model: nn.Module, layers, views: dict, target: int, *, inputs: torch.Tensor,
               inputs_other: torch.Tensor | None, acts: dict, acts_other: dict | None, labels=None,
               source: str = "explanation") -> Circuit:
    """The circuit of one forward pass, by the reader the model needs: ``inputs`` [C, H, W] produced
    ``acts`` (``{layer: activation}`` of the tapped ``layers``, whose layouts ``views`` give);
    ``inputs_other`` and ``acts_other`` are the same for the other of image and explanation."""
    if not reads_tokens(model, views):
        return read_circuit(model, layers, acts, target, acts_other=acts_other, labels=labels, source=source,
                            inputs=inputs)
    blocks = [n for n in layers if getattr(views.get(n), "layout", None) in ("tokens", "channels_last")]
    if len(blocks) < len(layers) and all(views[n].layout == "tokens" for n in blocks):
        raise CircuitUnsupportedError("a transformer circuit needs every tapped layer to be a block over tokens; "
                                      f"these are {layers}", advice=False)
    return read_transformer_circuit(model, blocks, views, target, inputs, inputs_other=inputs_other, labels=labels,
                                    source=source)
