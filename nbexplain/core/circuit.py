"""Channel-level circuit readout: the graph of channels behind one forward pass.

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
  probability over the empty set, the very test of :meth:`Circuit.validate` (see
  ``circuit_validate.decision_sizes``).
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
  ``l`` (see ``nbexplain.core.circuit_walk``): the sum over every path between the
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

import json
import operator
from collections.abc import Mapping

import networkx as nx
import torch

from ..errors import CircuitUnsupportedError
from .circuit_compare import CircuitComparison, compare_circuits
from .circuit_config import ENERGIES, CircuitConfig, check_choice
from .circuit_validate import (
    CircuitValidation,
    Sizing,
    channel_relevance,
    decision_sizes,
    validate_circuit,
)
from .circuit_walk import (
    evaluate_head,
    head_transfer,
    record,
    trace_model,
    transfer_matrix,
)
from .plumbing import class_name, eval_mode, model_device_dtype

__all__ = [
    "Circuit", "CircuitConfig", "CircuitComparison", "CircuitUnsupportedError", "CircuitValidation",
    "channel_energy", "read_circuit",
]

_SOURCES = ("explanation", "original")


def channel_energy(act: torch.Tensor, measure: str = "l2") -> torch.Tensor:
    """Energy of each channel of a ``[C, h, w]`` map: L2 norm, mean or max over space -> ``[C]``."""
    check_choice("energy", measure, ENERGIES)
    flat = act.detach().double().flatten(1)
    if measure == "l2":
        return flat.norm(dim=1)
    if measure == "mean":
        return flat.mean(dim=1)
    return flat.amax(dim=1)


class Circuit:
    """A channel-level circuit: nodes, scored edges, and the data to compare and check it.

    Build one with :func:`read_circuit`. ``graph`` is a ``networkx.DiGraph`` whose node
    keys are the ids (``"layer:channel"``, ``"class:k"``) and whose attributes are
    scalars (GraphML-safe); ``to_dict()`` follows the project's circuit JSON schema.
    """

    def __init__(self, *, target, target_name, source, layers, nodes, edges, energies,
                 energies_other=None, config=None, model=None, inputs=None, sizing=None, sites=None,
                 node_maps=None, layer_labels=None):
        self.target = int(target)
        self.target_name = target_name
        self.source = source
        self.layers = tuple(layers)
        self.nodes = list(nodes)
        self.edges = list(edges)
        self.energies = dict(energies)
        self.energies_other = dict(energies_other) if energies_other is not None else None
        self.config = config or CircuitConfig()
        self._model = model
        self._inputs = inputs
        self._graph = None
        self.sizing: Sizing | None = sizing
        """How the decision-sized circuit was found (None for a fixed budget)."""
        self.sites = sites  #: where a transformer's nodes (heads, units) live; None for channels
        #: ``{"explanation"|"original": {layer: [n, h, w]}}``: node pictures where they are not the taps' maps
        self.node_maps = dict(node_maps or {})
        self.layer_labels = dict(layer_labels or {})  #: short column titles (a transformer's "block 3 heads")

    @property
    def channels(self) -> dict[str, tuple[int, ...]]:
        """The circuit's channels per tapped layer, most relevant (decision sizing) or energetic first."""
        out = {name: [] for name in self.layers}
        for node in self.nodes:
            if node["kind"] == "channel":
                out[node["layer"]].append(node["channel"])
        return {name: tuple(chs) for name, chs in out.items()}

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(n["class"] for n in self.nodes if n["kind"] == "class")

    @property
    def size(self) -> int:
        """Number of channel nodes."""
        return sum(1 for n in self.nodes if n["kind"] == "channel")

    @property
    def graph(self) -> nx.DiGraph:
        if self._graph is None:
            g = nx.DiGraph(target=self.target, source=self.source)
            if self.target_name is not None:
                g.graph["target_name"] = self.target_name
            for node in self.nodes:
                g.add_node(node["id"], **{k: v for k, v in node.items() if k != "id" and v is not None})
            for edge in self.edges:
                g.add_edge(edge["source"], edge["target"],
                           **{k: v for k, v in edge.items() if k not in ("source", "target")})
            self._graph = g
        return self._graph

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dict in the project's circuit schema."""
        out = {
            "target": self.target,
            "target_name": self.target_name,
            "source": self.source,
            "layers": list(self.layers),
            "nodes": [dict(n) for n in self.nodes],
            "edges": [dict(e) for e in self.edges],
        }
        if self.sizing is not None:
            out["sizing"] = self.sizing.to_dict()
        if self.layer_labels:
            out["layer_labels"] = dict(self.layer_labels)
        return out

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def compare(self, other: Circuit) -> CircuitComparison:
        """What this circuit gained, lost and strengthened relative to ``other`` (same model and layers)."""
        return compare_circuits(self, other)

    def validate(self, inputs: torch.Tensor | None = None, *, fill: str | None = None,
                 repeats: int | None = None, seed: int | None = None) -> CircuitValidation:
        """Causal check: keep only the circuit's channels at every tapped layer, see if the target survives.

        Channels outside the kept set are replaced (forward hooks on the tapped modules)
        by zero or by their own spatial mean (``fill``, default from the config), the
        input is run through, and the target's probability is reported - together with
        the same for ``repeats`` random channel sets of the same size per layer (seeded,
        drawn uniformly from all of the layer's channels),
        the unablated model and the empty set (every channel filled). ``inputs``
        defaults to the tensor that produced the circuit's activations.
        """
        inputs = self._inputs if inputs is None else inputs
        if inputs is None:
            raise ValueError("validate() needs the input that produced the activations: pass inputs=[C, H, W] "
                             "(or give inputs= to read_circuit).")
        if self._model is None:
            raise ValueError("This circuit has no model attached; build it with read_circuit(model, ...).")
        cfg = self.config
        return validate_circuit(
            self._model, self.layers, self.channels, inputs, target=self.target, target_name=self.target_name,
            fill=cfg.validate_fill if fill is None else fill,
            repeats=cfg.validate_repeats if repeats is None else repeats,
            seed=cfg.validate_seed if seed is None else seed, recover=cfg.recover, sites=self.sites,
        )

    def __repr__(self) -> str:
        name = f" {self.target_name!r}" if self.target_name is not None else ""
        per_layer = ", ".join(f"{k}:{len(v)}" for k, v in self.channels.items())
        what = "heads and units" if self.sites else "channels"
        sized = (f", sized by the decision: {self.sizing.share:.1%} of the tapped {'nodes' if self.sites else 'channels'}"
                 if self.sizing is not None else "")
        return (f"Circuit(source={self.source}, target={self.target}{name}, {self.size} {what} "
                f"[{per_layer}]{sized}, {len(self.classes)} classes, {len(self.edges)} edges)")


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
    check_choice("source", source, _SOURCES)
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
    n_classes = logits.numel()
    target = _check_target(target, n_classes)
    sizing, relevance = None, None
    if config.sizing == "decision" and inputs is not None and config.nodes_per_layer is None:
        relevance = channel_relevance(model, layers, inputs, target, config.validate_fill)
        orders = {name: _top_channels(relevance[name], len(relevance[name])) for name in layers}
        sizing = decision_sizes(model, layers, orders, inputs, target=target, fill=config.validate_fill,
                                recover=config.recover)
        selected = {name: orders[name][:sizing.sizes[name]] for name in layers}
    else:
        selected = {
            name: _top_channels(energies[name], config.nodes_for(name, len(energies[name]), name == last))
            for name in layers
        }
    if labels is not None:
        labels = list(labels)
        if len(labels) != n_classes:
            raise ValueError(f"labels has {len(labels)} names but the model has {n_classes} classes.")
    probs = torch.softmax(logits.double(), dim=0)

    edges = []
    for prev, name in zip(layers, layers[1:]):
        t = transfer_matrix(walk, prev, name, len(energies[prev]), fold_bn=config.fold_batchnorm).double()
        _check_channels(t.shape[0], acts[name].shape[0], name)
        if config.transfer_norm == "max" and t.max() > 0:
            t = t / t.max()
        edges += _layer_edges(prev, name, t, energies[prev], selected[prev], selected[name],
                              config.edges_per_node)

    classes = _shown_classes(logits, target, config.class_top_k)
    head = head_transfer(walk, last, acts[last].shape[0], fold_bn=config.fold_batchnorm).double()
    head_signed = head_transfer(walk, last, acts[last].shape[0], fold_bn=config.fold_batchnorm, signed=True)
    _check_channels(head.shape[0], n_classes, "the logits")
    pooled = acts[last].detach().double().flatten(1).mean(dim=1)
    edges += _class_edges(last, classes, head, head_signed, pooled, selected[last], config.edges_per_class)

    def energy_pair(name, ch):
        mine = float(energies[name][ch])
        other = float(energies_other[name][ch]) if energies_other is not None else None
        return (other, mine) if source == "explanation" else (mine, other)  # (original, explanation)

    nodes = []
    for index, name in enumerate(layers):
        for ch in selected[name]:
            on_original, on_explanation = energy_pair(name, ch)
            nodes.append({"id": f"{name}:{ch}", "kind": "channel", "layer": name, "layer_index": index,
                          "channel": ch, "energy": float(energies[name][ch]),
                          "energy_original": on_original, "energy_explanation": on_explanation})
            if relevance is not None:
                nodes[-1]["relevance"] = float(relevance[name][ch])
    for k in classes:
        nodes.append({"id": f"class:{k}", "kind": "class", "class": k,
                      "name": class_name(labels, k),
                      "logit": float(logits[k]), "prob": float(probs[k]), "layer_index": len(layers)})

    return Circuit(target=target, target_name=class_name(labels, target), source=source, layers=layers, nodes=nodes,
                   edges=edges, energies=energies, energies_other=energies_other, config=config, model=model,
                   inputs=inputs, sizing=sizing)


def _top_channels(energy: torch.Tensor, k: int) -> list[int]:
    # Stable sort: equal energies keep channel order, so readouts are reproducible.
    order = torch.argsort(-energy, stable=True)
    return [int(i) for i in order[:k]]


def _layer_edges(prev, name, t, energy_prev, sources, targets, keep):
    src = torch.tensor(sources, dtype=torch.long)
    edges = []
    for v in targets:
        scores = t[v, src] * energy_prev[src]
        for j in _strongest(scores, keep):
            edges.append({"source": f"{prev}:{sources[j]}", "target": f"{name}:{v}", "score": float(scores[j])})
    return edges


def _class_edges(last, classes, head, head_signed, pooled, sources, keep):
    src = torch.tensor(sources, dtype=torch.long)
    edges = []
    for k in classes:
        scores = head[k, src] * pooled[src]
        for j in _strongest(scores, keep):
            edge = {"source": f"{last}:{sources[j]}", "target": f"class:{k}", "score": float(scores[j])}
            if head_signed is not None:
                edge["sign"] = 1 if float(head_signed[k, sources[j]]) >= 0 else -1
            edges.append(edge)
    return edges


def _strongest(scores: torch.Tensor, keep: int) -> list[int]:
    order = torch.argsort(-scores, stable=True)[:keep]
    return [int(j) for j in order if scores[j] > 0]


def _shown_classes(logits, target, top_k):
    order = [int(k) for k in torch.argsort(-logits.double(), stable=True)]
    shown = [target] + [k for k in order if k != target][:top_k]
    return shown


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
        a = acts[name]
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{what}[{name!r}] must be a tensor, got {type(a).__name__}.")
        if a.dim() == 4 and a.shape[0] == 1:
            a = a[0]
        if a.dim() != 3:
            raise ValueError(f"{what}[{name!r}] must have shape [C, h, w], got {list(a.shape)}.")
        a = a.detach().float().cpu()
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
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a [C, H, W] tensor, got {type(inputs).__name__}.")
    if inputs.dim() == 4 and inputs.shape[0] == 1:
        inputs = inputs[0]
    if inputs.dim() != 3:
        raise ValueError(f"inputs must have shape [C, H, W], got {list(inputs.shape)}.")
    return inputs.detach()


def _check_target(target, n_classes):
    try:
        if isinstance(target, bool):
            raise TypeError
        target = operator.index(target)
    except TypeError:
        raise TypeError(f"target must be an int class index, got {target!r}.") from None
    if not 0 <= target < n_classes:
        raise ValueError(f"target {target} is out of range for a model with {n_classes} classes.")
    return target


def _check_channels(found, expected, where):
    if found != expected:
        raise ValueError(f"The model's structure gives {found} channels at {where} but its activations have "
                         f"{expected}: the activations do not match this model.")
