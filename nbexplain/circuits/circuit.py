"""The circuit a reader returns: nodes, scored edges, and the data to compare, check and save it.

The graph's meaning is the reader's: channels of convolutional maps (``nbexplain.circuits.cnn``) or a
transformer's heads and MLP units (``nbexplain.circuits.transformer``); ``nbexplain.circuits.engine``
builds both.
"""

from __future__ import annotations

import json

import networkx as nx
import torch

from .compare import CircuitComparison, compare_circuits
from .config import ENERGIES, CircuitConfig, check_choice
from .validate import CircuitValidation, Sizing, validate_circuit

__all__ = ["Circuit", "SOURCES", "channel_energy"]

SOURCES = ("explanation", "original")


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

    Build one with ``nbexplain.circuits.read_circuit`` (or ``circuit_of``). ``graph`` is a
    ``networkx.DiGraph`` whose node keys are the ids (``"layer:channel"``, ``"class:k"``) and whose
    attributes are scalars (GraphML-safe); ``to_dict()`` follows the project's circuit JSON schema.
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
