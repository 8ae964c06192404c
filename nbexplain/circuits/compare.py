"""Comparison of two circuits read from the same model and layers (e.g. explanation vs original)."""

from __future__ import annotations

from dataclasses import dataclass

_SHOWN = 5  # items per list in the text summary


@dataclass(frozen=True)
class CircuitComparison:
    """What ``this`` circuit has that ``other`` has not, and how channel energies moved.

    nodes_*/edges_*: ids (``"layer:channel"``, ``"class:k"``) and ``(source, target)`` pairs;
        *gained* are in this circuit only, *lost* in the other only, *kept* in both.
    energy_change: ``{channel node id: energy in this - energy in other}`` for every channel
        node of either circuit, largest absolute change first (energies are on each
        circuit's own source image, so for explanation vs original: e minus x).
    layer_overlap: Jaccard overlap of the two channel sets at each tapped layer.
    """

    source: str
    other_source: str
    target: int
    other_target: int
    layers: tuple[str, ...]
    nodes_kept: tuple[str, ...]
    nodes_gained: tuple[str, ...]
    nodes_lost: tuple[str, ...]
    edges_kept: tuple[tuple[str, str], ...]
    edges_gained: tuple[tuple[str, str], ...]
    edges_lost: tuple[tuple[str, str], ...]
    energy_change: dict
    layer_overlap: dict

    @property
    def strengthened(self) -> list[tuple[str, float]]:
        """Channel nodes whose energy rose, strongest rise first."""
        return sorted(((k, d) for k, d in self.energy_change.items() if d > 0), key=lambda kd: -kd[1])

    @property
    def weakened(self) -> list[tuple[str, float]]:
        """Channel nodes whose energy fell, strongest fall first."""
        return sorted(((k, d) for k, d in self.energy_change.items() if d < 0), key=lambda kd: kd[1])

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "source": self.source, "other_source": self.other_source,
            "target": self.target, "other_target": self.other_target, "layers": list(self.layers),
            "nodes": {"kept": list(self.nodes_kept), "gained": list(self.nodes_gained),
                      "lost": list(self.nodes_lost)},
            "edges": {key: [list(e) for e in value] for key, value in
                      (("kept", self.edges_kept), ("gained", self.edges_gained), ("lost", self.edges_lost))},
            "energy_change": dict(self.energy_change), "layer_overlap": dict(self.layer_overlap),
        }

    def __repr__(self) -> str:
        def listed(items):
            head = ", ".join(items[:_SHOWN])
            return head + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")

        def changes(items):
            return listed([f"{k} {d:+.3g}" for k, d in items]) or "none"

        overlap = " | ".join(f"{k} {v:.2f}" for k, v in self.layer_overlap.items())
        lines = [
            f"CircuitComparison({self.source} vs {self.other_source}, target {self.target}"
            + (f" vs {self.other_target}" if self.other_target != self.target else "") + ")",
            f"  nodes: {len(self.nodes_kept)} shared, {len(self.nodes_gained)} gained, {len(self.nodes_lost)} lost",
            f"  channel overlap per layer (Jaccard): {overlap}",
            f"  edges: {len(self.edges_kept)} shared, {len(self.edges_gained)} gained, {len(self.edges_lost)} lost",
            f"  gained: {listed(list(self.nodes_gained)) or 'none'}",
            f"  lost: {listed(list(self.nodes_lost)) or 'none'}",
            f"  strengthened: {changes(self.strengthened)}",
            f"  weakened: {changes(self.weakened)}",
        ]
        return "\n".join(lines)


def compare_circuits(this, other) -> CircuitComparison:
    """Compare two ``nbexplain.core.circuit.Circuit`` objects over the same layers."""
    if tuple(this.layers) != tuple(other.layers):
        raise ValueError(f"Circuits over different layers cannot be compared: {list(this.layers)} vs "
                         f"{list(other.layers)}.")
    for name in this.layers:
        if len(this.energies[name]) != len(other.energies[name]):
            raise ValueError(f"Layer {name!r} has {len(this.energies[name])} channels in one circuit and "
                             f"{len(other.energies[name])} in the other: they come from different models.")
    mine = [n["id"] for n in this.nodes]
    theirs = [n["id"] for n in other.nodes]
    my_edges = [(e["source"], e["target"]) for e in this.edges]
    their_edges = [(e["source"], e["target"]) for e in other.edges]

    channel_nodes = {n["id"]: (n["layer"], n["channel"]) for n in [*this.nodes, *other.nodes]
                     if n["kind"] == "channel"}
    change = {node: float(this.energies[layer][ch] - other.energies[layer][ch])
              for node, (layer, ch) in channel_nodes.items()}
    change = dict(sorted(change.items(), key=lambda kv: -abs(kv[1])))

    my_channels, their_channels = this.channels, other.channels
    overlap = {}
    for name in this.layers:
        a, b = set(my_channels[name]), set(their_channels[name])
        overlap[name] = len(a & b) / len(a | b) if a | b else 1.0

    return CircuitComparison(
        source=this.source, other_source=other.source, target=this.target, other_target=other.target,
        layers=tuple(this.layers),
        nodes_kept=_common(mine, theirs), nodes_gained=_only(mine, theirs), nodes_lost=_only(theirs, mine),
        edges_kept=_common(my_edges, their_edges), edges_gained=_only(my_edges, their_edges),
        edges_lost=_only(their_edges, my_edges), energy_change=change, layer_overlap=overlap,
    )


def _common(a, b):
    bs = set(b)
    return tuple(x for x in a if x in bs)


def _only(a, b):
    bs = set(b)
    return tuple(x for x in a if x not in bs)
