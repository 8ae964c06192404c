"""Channel-level circuit readout: the graph of channels behind one forward pass.

This reader supplies what a CNN's circuit needs (its sites: the tapped layers; the channels'
energies; the structural transfer between layers and to the logits) and
``nbexplain.circuits.engine`` builds the circuit from them, as it does a transformer's.
``read_circuit`` works from plain inputs (a model, tapped layer names, their
activations), so it serves both the explanation ``e`` and the original image ``x``.

What the graph means
--------------------
* **Nodes**: sized by the decision (``CircuitConfig.sizing="decision"``, the default
  when the input is known): at each tapped layer the channels are ranked by their
  *relevance* to the target (activation times the gradient of the target's logit,
  summed over space: a first-order estimate of what filling the channel costs), and
  each layer keeps the shortest prefix with which the circuit alone - every other
  channel of every tapped layer filled - is sufficient: the target stays the top class
  and recovers ``CircuitConfig.recover`` (half) of what the channels add to its
  probability over the empty set, the very test of ``Circuit.validate`` (see
  ``validate.decision_sizes``).
  ``Circuit.sizing`` records the sizes, the share of the tapped channels and whether
  the target was kept. With ``sizing="fixed"``, a ``nodes_per_layer`` budget, or no
  input, each layer keeps its K channels with the highest *energy* on ``acts``
  instead. Energy is the L2 norm of the channel's map by default
  (``CircuitConfig.energy``: ``"l2"``, ``"mean"`` or ``"max"`` over space). Node
  attributes carry the energy on the explanation and on the original image (and the
  relevance, for a decision-sized circuit).
* **Inter-layer edges** ``u -> v`` (``u`` a node of tap ``l-1``, ``v`` a node of tap
  ``l``): ``score = T[v, u] * energy(u)``, where ``energy(u)`` is the same energy that
  ranks nodes and ``T`` is the structural transfer matrix from tap ``l-1`` to tap
  ``l`` (see ``nbexplain.circuits.walk``): the sum over every path between the
  two channels - every conv of every block, residual identity shortcuts and
  downsample convs included - of the product of the absolute kernel sums ``|W|``
  and, by default, the folded BatchNorm gains ``|gamma| / sqrt(var + eps)``.
  ReLU gating, biases and sign cancellation are ignored, so ``T`` says how strongly
  ``u`` *can* drive ``v``, and the score weighs that capacity by how active ``u`` is.
  Gates (squeeze-and-excitation) and LayerNorm enter ``T`` with their values on this
  input: there ``T`` is a linearisation at the explanation.
  With ``transfer_norm="max"`` (default) each ``T`` is divided by its largest entry,
  so an edge score is at most its source's energy and scores of different layer
  pairs are comparable. Each node keeps its ``edges_per_node`` strongest incoming
  edges from the previous layer's nodes; edges with score 0 are dropped.
* **Class edges** ``u -> class:k``: ``score = H[k, u] * mean(u)``, the pooled
  (global average) activation of ``u`` times ``H``, the absolute transfer from the
  last tap to the logits - exactly ``|fc.weight[k, u]|`` for a ResNet head. They are
  drawn for the target and the ``class_top_k`` classes with the highest logits,
  ``edges_per_class`` per class. When the head is linear after the last tap
  (pooling, flatten, Linear) the edge also carries ``sign`` (+1 excites the class,
  -1 inhibits it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..core.plumbing import eval_mode, model_device_dtype
from ..errors import CircuitUnsupportedError
from .circuit import SOURCES, Circuit, channel_energy
from .config import CircuitConfig, check_choice
from .engine import Head, Reading, build_circuit
from .walk import evaluate_head, head_transfer, record, trace_model, transfer_matrix

__all__ = ["read_circuit"]


def read_circuit(model, layers, acts, target, acts_other=None, config=None, labels=None,
                 source="explanation", inputs=None) -> Circuit:
    """Read the channel circuit of one forward pass (see the module docstring for what scores mean).

    model: the frozen classifier; never modified (eval mode is switched on only while the
        head is evaluated and restored afterwards; no hooks are left).
    layers: tapped module names in forward order, e.g. ``["relu", "layer1", ..., "layer4"]``.
    acts: ``{layer: [C, h, w] tensor}``, the activations nodes are chosen from.
    target: the class explained.
    acts_other: the same for the other image (the original when ``source="explanation"``),
        used only for node attributes and comparisons.
    labels: class names, or None.
    source: ``"explanation"`` or ``"original"``: which image ``acts`` come from.
    inputs: the ``[C, H, W]`` input that produced ``acts``; needed by ``validate()``, and
        used for the logits if the graph after the last tap cannot be run on its own.
    Raises CircuitUnsupportedError for models or taps the structural walk cannot handle.
    """
    config = CircuitConfig() if config is None else config
    if not isinstance(config, CircuitConfig):
        raise TypeError(f"config must be a CircuitConfig, got {type(config).__name__}.")
    check_choice("source", source, SOURCES)
    layers = _check_layers(model, layers)
    _check_feature_maps(acts, layers)
    acts = _check_acts("acts", acts, layers)
    acts_other = _check_acts("acts_other", acts_other, layers, like=acts) if acts_other is not None else None
    if inputs is not None:
        inputs = _check_inputs(inputs)

    walk = record(trace_model(model, layers), inputs=inputs, acts=None if inputs is not None else acts)
    last = layers[-1]
    energies = {name: channel_energy(acts[name], config.energy) for name in layers}
    energies_other = ({name: channel_energy(acts_other[name], config.energy) for name in layers}
                      if acts_other is not None else None)
    logits = _logits(model, walk, last, acts[last], inputs)

    def transfer(prev, name):
        t = transfer_matrix(walk, prev, name, len(energies[prev]), fold_bn=config.fold_batchnorm).double()
        _check_channels(t.shape[0], acts[name].shape[0], name)
        return t

    def head():
        n = acts[last].shape[0]
        absolute = head_transfer(walk, last, n, fold_bn=config.fold_batchnorm).double()
        signed = head_transfer(walk, last, n, fold_bn=config.fold_batchnorm, signed=True)
        _check_channels(absolute.shape[0], logits.numel(), "the logits")
        pooled = acts[last].detach().double().flatten(1).mean(dim=1)
        return Head(transfer=absolute, activity=pooled, signed=signed)

    reading = Reading(model=model, layers=layers, logits=logits, energies=energies, energies_other=energies_other,
                      transfer=transfer, head=head, inputs=inputs)
    return build_circuit(reading, target, config=config, labels=labels, source=source)


def _logits(model, walk, last, act, inputs):
    device, dtype = model_device_dtype(model)
    with eval_mode(model), torch.no_grad():
        logits = evaluate_head(walk, last, act[None].to(device=device, dtype=dtype))
        if logits is None and inputs is not None:
            logits = model(inputs[None].to(device=device, dtype=dtype))
    if logits is None:
        raise CircuitUnsupportedError(
            f"The logits cannot be computed from layer {last!r} alone; pass inputs= (the [C, H, W] input that "
            "produced the activations)."
        )
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        raise CircuitUnsupportedError("The model's forward must return a logits tensor of shape [batch, classes].")
    logits = logits[0].detach().double().cpu()
    if not torch.isfinite(logits).all():
        raise ValueError("The model's logits contain NaN or inf for these activations.")
    return logits


def _check_layers(model, layers):
    if isinstance(layers, str) or not layers:
        raise ValueError(f"layers must be a non-empty list of module names, got {layers!r}.")
    layers = tuple(layers)
    names = dict(model.named_modules())
    missing = [n for n in layers if n not in names or n == ""]
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"No module named {missing} in {type(model).__name__}; its top-level modules are {top}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has duplicates: {list(layers)}.")
    return layers


def _check_acts(what, acts, layers, like=None):
    if not isinstance(acts, Mapping):
        raise TypeError(f"{what} must be a dict {{layer name: [C, h, w] tensor}}, got {type(acts).__name__}.")
    out = {}
    for name in layers:
        if name not in acts:
            raise ValueError(f"{what} has no activation for layer {name!r} (it has {sorted(acts)}).")
        a = _one_image(acts[name], f"{what}[{name!r}]", "[C, h, w]").float().cpu()
        if not torch.isfinite(a).all():
            raise ValueError(f"{what}[{name!r}] contains NaN or inf.")
        if like is not None and a.shape[0] != like[name].shape[0]:
            raise ValueError(f"{what}[{name!r}] has {a.shape[0]} channels, acts has {like[name].shape[0]}.")
        out[name] = a
    return out


def _check_feature_maps(acts, layers):
    """Channels need [C, h, w] maps: token or vector outputs are a property of the model, not a mistake."""
    for name in layers:
        a = acts.get(name) if isinstance(acts, Mapping) else None
        if isinstance(a, torch.Tensor) and a.dim() in (1, 2):
            raise CircuitUnsupportedError(
                f"Layer {name!r} outputs {list(a.shape)} per image, not a [C, h, w] feature map (tokens or "
                "a pooled vector): the circuit readout follows channels of convolutional maps. Tap "
                "convolutional layers (layers=[...]) to read a circuit."
            )


def _check_inputs(inputs):
    return _one_image(inputs, "inputs", "[C, H, W]")


def _one_image(t, what: str, shape: str) -> torch.Tensor:
    """One image's 3-D tensor (a batch of one is unwrapped), detached; a clear error otherwise."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a {shape} tensor, got {type(t).__name__}.")
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"{what} must have shape {shape}, got {list(t.shape)}.")
    return t.detach()


def _check_channels(found, expected, where):
    if found != expected:
        raise ValueError(f"The model's structure gives {found} channels at {where} but its activations have "
                         f"{expected}: the activations do not match this model.")
