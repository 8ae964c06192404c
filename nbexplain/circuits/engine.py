"""One circuit engine for every architecture.

A reader says what differs between architectures and nothing else, as a ``Reading``: where the
nodes live (its *sites*, in depth order), how much each node is active (its *energies*), how
strongly a node of one site can drive a node of the next (its *transfer*) and of the logits (its
*head*), and the logits themselves. ``build_circuit`` does the rest, the same way for a CNN's
channels and a transformer's heads and units:

* **selection**: sized by the decision (``CircuitConfig.sizing="decision"`` and an input): nodes
  ranked by their relevance to the target, each site keeping the shortest prefix with which the
  circuit alone keeps the decision (``validate.decision_sizes``); otherwise each site keeps the
  ``CircuitConfig.nodes_for`` nodes of highest energy (a stable sort: ties keep their order);
* **edges** ``u -> v`` between consecutive sites: ``score = T[v, u] * energy(u)``, ``T`` divided by
  its largest entry with ``transfer_norm="max"``, each node keeping its ``edges_per_node``
  strongest inputs (scores of 0 dropped);
* **class edges** ``u -> class:k`` for the target and the ``class_top_k`` classes of highest logit:
  ``score = H[k, u] * activity(u)``, ``edges_per_class`` per class, with ``sign`` where the reader
  has a signed head;
* **nodes**: each selected node with its energy on the explanation and on the original image (and
  its relevance when sized by the decision), then the shown classes with name, logit and probability.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.plumbing import class_name
from .circuit import SOURCES, Circuit
from .config import CircuitConfig, check_choice
from .validate import channel_relevance, decision_sizes

__all__ = ["Head", "Reading", "build_circuit", "check_target"]


@dataclass(frozen=True)
class Head:
    """How the last site's nodes reach the logits: ``transfer`` ``[classes, n]`` (absolute),
    ``signed`` the same with signs (or None where the head is not linear after the site), and
    ``activity`` ``[n]``, what each node sends to the classifier (its pooled value, its class token)."""

    transfer: torch.Tensor
    activity: torch.Tensor
    signed: torch.Tensor | None = None


@dataclass
class Reading:
    """What a reader measured on one forward pass; everything ``build_circuit`` needs.

    ``layers``: the sites in depth order (a CNN's tapped layers; a transformer's head and unit sites).
    ``logits``: ``[classes]``, double, CPU. ``energies`` (and ``energies_other``, on the other image):
    ``{site: [n]}``. ``transfer(prev, cur)``: ``[n_cur, n_prev]``, how strongly each node of ``prev``
    can drive each node of ``cur`` (before normalisation). ``head()``: a ``Head``, or None where
    the reader cannot join the last site to the logits (no class edges then). ``inputs``: the
    ``[C, H, W]`` input of the forward pass (needed to size by the decision and to validate);
    ``sites``: ``{site: Site}`` where nodes are not a module output's channels. ``units``: a node
    kind per site (``"head"``, ``"unit"``) written on its nodes. ``node_maps`` and ``layer_labels``
    pass through to the ``Circuit``.
    """

    model: object
    layers: tuple[str, ...]
    logits: torch.Tensor
    energies: dict
    transfer: Callable[[str, str], torch.Tensor]
    head: Callable[[], Head | None]
    energies_other: dict | None = None
    inputs: torch.Tensor | None = None
    sites: dict | None = None
    units: dict = field(default_factory=dict)
    node_maps: dict | None = None
    layer_labels: dict | None = None


def build_circuit(reading: Reading, target, *, config: CircuitConfig | None = None, labels=None,
                  source: str = "explanation") -> Circuit:
    """The ``Circuit`` of ``reading`` for ``target`` (see the module docstring)."""
    config = CircuitConfig() if config is None else config
    if not isinstance(config, CircuitConfig):
        raise TypeError(f"config must be a CircuitConfig, got {type(config).__name__}.")
    check_choice("source", source, SOURCES)
    layers, logits, energies = reading.layers, reading.logits, reading.energies
    n_classes = logits.numel()
    target = check_target(target, n_classes)
    labels = check_labels(labels, n_classes)

    relevance, sizing, selected = _select(reading, target, config)

    edges = []
    for prev, cur in zip(layers, layers[1:]):
        t = reading.transfer(prev, cur).double()
        if config.transfer_norm == "max" and t.max() > 0:
            t = t / t.max()
        edges += _edges(prev, selected[prev], energies[prev], t, [(v, f"{cur}:{v}") for v in selected[cur]],
                        config.edges_per_node)
    classes = _shown_classes(logits, target, config.class_top_k)
    head = reading.head()
    if head is not None:
        edges += _edges(layers[-1], selected[layers[-1]], head.activity, head.transfer,
                        [(k, f"class:{k}") for k in classes], config.edges_per_class, signed=head.signed)

    nodes = _site_nodes(reading, selected, relevance, source)
    probs = torch.softmax(logits.double(), dim=0)
    for k in classes:
        nodes.append({"id": f"class:{k}", "kind": "class", "class": k, "name": class_name(labels, k),
                      "logit": float(logits[k]), "prob": float(probs[k]), "layer_index": len(layers)})
    return Circuit(target=target, target_name=class_name(labels, target), source=source, layers=layers,
                   nodes=nodes, edges=edges, energies=energies, energies_other=reading.energies_other,
                   config=config, model=reading.model, inputs=reading.inputs, sizing=sizing, sites=reading.sites,
                   node_maps=reading.node_maps, layer_labels=reading.layer_labels)


def check_target(target, n_classes: int) -> int:
    """``target`` as an int class index of a model with ``n_classes`` classes, or a clear error."""
    try:
        if isinstance(target, bool):
            raise TypeError
        target = operator.index(target)
    except TypeError:
        raise TypeError(f"target must be an int class index, got {target!r}.") from None
    if not 0 <= target < n_classes:
        raise ValueError(f"target {target} is out of range for a model with {n_classes} classes.")
    return target


def check_labels(labels, n_classes: int) -> list | None:
    """Class names as a list, one per class, or None."""
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != n_classes:
        raise ValueError(f"labels has {len(labels)} names but the model has {n_classes} classes.")
    return labels


def _select(reading: Reading, target: int, config: CircuitConfig):
    """``(relevance or None, sizing or None, {site: selected nodes})``."""
    layers, energies = reading.layers, reading.energies
    if config.sizing == "decision" and reading.inputs is not None and config.nodes_per_layer is None:
        model, inputs, fill = reading.model, reading.inputs, config.validate_fill
        relevance = channel_relevance(model, layers, inputs, target, fill, sites=reading.sites)
        orders = {name: _top_nodes(relevance[name], len(relevance[name])) for name in layers}
        useful = {name: int((relevance[name] > 0).sum()) for name in layers}
        sizing = decision_sizes(model, layers, orders, inputs, target=target, fill=fill, recover=config.recover,
                                sites=reading.sites, useful=useful)
        return relevance, sizing, {name: orders[name][:sizing.sizes[name]] for name in layers}
    last = layers[-1]
    return None, None, {name: _top_nodes(energies[name], config.nodes_for(name, len(energies[name]), name == last))
                        for name in layers}


def _site_nodes(reading: Reading, selected, relevance, source) -> list[dict]:
    energies, others = reading.energies, reading.energies_other
    nodes = []
    for index, name in enumerate(reading.layers):
        unit = reading.units.get(name)
        for ch in selected[name]:
            mine = float(energies[name][ch])
            other = float(others[name][ch]) if others is not None else None
            on_original, on_explanation = (other, mine) if source == "explanation" else (mine, other)
            node = {"id": f"{name}:{ch}", "kind": "channel"}
            if unit is not None:
                node["unit"] = unit
            node.update({"layer": name, "layer_index": index, "channel": ch, "energy": mine,
                         "energy_original": on_original, "energy_explanation": on_explanation})
            if relevance is not None:
                node["relevance"] = float(relevance[name][ch])
            nodes.append(node)
    return nodes


def _top_nodes(energy: torch.Tensor, k: int) -> list[int]:
    # Stable sort: equal energies keep node order, so readouts are reproducible.
    order = torch.argsort(-energy, stable=True)
    return [int(i) for i in order[:k]]


def _edges(prev, sources, weight, t, targets, keep, signed=None) -> list[dict]:
    """Each target ``(row, id)`` keeps its ``keep`` strongest inputs from the nodes ``sources`` of site
    ``prev``: ``score = t[row, u] * weight[u]``, and ``sign`` from ``signed[row, u]`` where given."""
    src = torch.tensor(sources, dtype=torch.long)
    edges = []
    for row, target_id in targets:
        scores = t[row, src] * weight[src]
        for j in _strongest(scores, keep):
            edge = {"source": f"{prev}:{sources[j]}", "target": target_id, "score": float(scores[j])}
            if signed is not None:
                edge["sign"] = 1 if float(signed[row, sources[j]]) >= 0 else -1
            edges.append(edge)
    return edges


def _strongest(scores: torch.Tensor, keep: int) -> list[int]:
    order = torch.argsort(-scores, stable=True)[:keep]
    return [int(j) for j in order if scores[j] > 0]


def _shown_classes(logits, target, top_k):
    order = [int(k) for k in torch.argsort(-logits.double(), stable=True)]
    return [target] + [k for k in order if k != target][:top_k]
