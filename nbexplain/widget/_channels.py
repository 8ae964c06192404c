"""Answer the browser's "show me this channel" requests.

When a user clicks a channel node of the circuit graph, the browser asks for
that channel's activation map on x and on the explanation. The maps live in
the kernel (``res.activations_original`` / ``res.activations_explanation``);
this module looks them up, normalises them with one shared scale and adds the
node's energies and strongest edges from the circuit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

from ._serialize import channel_maps, json_number, to_numpy

#: Strongest incoming / outgoing edges listed in a channel answer.
TOP_EDGES = 5


class ChannelLookupError(ValueError):
    """A channel request that cannot be answered (unknown layer, channel out of range...)."""


class ChannelSource:
    """The activations and circuits a settled widget answers channel requests from."""

    def __init__(
        self,
        activations_original: Mapping[str, Any] | None,
        activations_explanation: Mapping[str, Any] | None,
        circuits: Mapping[str, Mapping | None],
    ) -> None:
        self.activations_original = dict(activations_original or {})
        self.activations_explanation = dict(activations_explanation or {})
        self.circuits = {k: v for k, v in circuits.items() if v}

    def answer(self, request: Mapping[str, Any]) -> tuple[dict, list[bytes]]:
        """Build the reply (content, buffers) to one ``{"type": "channel", ...}`` request."""
        layer = request.get("layer")
        channel = request.get("channel")
        if not isinstance(layer, str):
            raise ChannelLookupError(f"'layer' must be a layer name; got {layer!r}")
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise ChannelLookupError(f"'channel' must be an integer; got {channel!r}")
        known = sorted(set(self.activations_original) & set(self.activations_explanation))
        if layer not in known:
            raise ChannelLookupError(f"no activations for layer {layer!r}; known layers: {known}")
        act_x = _as_chw(self.activations_original[layer])
        act_e = _as_chw(self.activations_explanation[layer])
        if not 0 <= channel < act_x.shape[0]:
            raise ChannelLookupError(
                f"channel {channel} is out of range for layer {layer!r} ({act_x.shape[0]} channels)"
            )
        buffers, shape, scale = channel_maps(act_x[channel], act_e[channel])
        source = request.get("source")
        circuit = self.circuits.get(source) or self.circuits.get("explanation") or self.circuits.get("original")
        node_id = f"{layer}:{channel}"
        node = _find_node(circuit, node_id)
        content = {
            "type": "channel",
            "request_id": request.get("request_id"),
            "layer": layer,
            "channel": channel,
            "id": node_id,
            "shape": shape,
            "dtype": "uint8",
            "scale": scale,
            # Energies from the circuit when it has the node, else the mean activation.
            "energy_original": _energy(node, "energy_original", act_x[channel]),
            "energy_explanation": _energy(node, "energy_explanation", act_e[channel]),
            "incoming": _strongest(circuit, node_id, incoming=True),
            "outgoing": _strongest(circuit, node_id, incoming=False),
        }
        return content, buffers


def _as_chw(activation: Any):
    arr = to_numpy(activation)
    while arr.ndim > 3 and arr.shape[0] == 1:  # a leftover batch axis
        arr = arr[0]
    if arr.ndim == 1:  # pooled features [C]
        arr = arr[:, None, None]
    elif arr.ndim == 2:  # [C, L] sequences
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise ChannelLookupError(f"activations must be [C, h, w]; got shape {arr.shape}")
    return arr


def _find_node(circuit: Mapping | None, node_id: str) -> Mapping | None:
    for node in (circuit or {}).get("nodes", []):
        if node.get("id") == node_id:
            return node
    return None


def _energy(node: Mapping | None, key: str, activation_map) -> float | None:
    if node is not None and json_number(node.get(key)) is not None:
        return json_number(node.get(key))
    return json_number(to_numpy(activation_map).mean())


def _strongest(circuit: Mapping | None, node_id: str, incoming: bool) -> list[dict]:
    end, other = ("target", "source") if incoming else ("source", "target")
    edges = [e for e in (circuit or {}).get("edges", []) if e.get(end) == node_id]
    edges.sort(key=lambda e: abs(json_number(e.get("score")) or 0.0), reverse=True)
    return [{"node": e.get(other), "score": json_number(e.get("score"))} for e in edges[:TOP_EDGES]]


class SourceRegistry:
    """Keeps the channel data of only the most recent widgets alive.

    Each settled widget needs its result's activations to answer clicks. Widgets
    live until closed, so re-running a cell a hundred times would otherwise keep
    a hundred sets of activations in memory. Older widgets keep their picture
    and numbers but answer clicks with a short "re-run to inspect" message.
    """

    def __init__(self, limit: int = 8) -> None:
        self.limit = int(limit)
        self._sources: OrderedDict[int, ChannelSource] = OrderedDict()

    def put(self, owner_id: int, source: ChannelSource) -> None:
        self._sources[owner_id] = source
        self._sources.move_to_end(owner_id)
        while len(self._sources) > self.limit:
            self._sources.popitem(last=False)

    def get(self, owner_id: int) -> ChannelSource | None:
        return self._sources.get(owner_id)

    def drop(self, owner_id: int) -> None:
        self._sources.pop(owner_id, None)

    def __len__(self) -> int:
        return len(self._sources)
