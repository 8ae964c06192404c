"""Static drawing of a circuit (matplotlib), for figures and the no-widget fallback."""

from __future__ import annotations

from collections import defaultdict


def layout(circuit_dict: dict) -> dict[str, tuple[float, float]]:
    """Node id -> (x, y): layers left to right, classes last; within a column the most
    energetic (or most probable) node on top."""
    columns = defaultdict(list)
    for node in circuit_dict["nodes"]:
        columns[node.get("layer_index", 0)].append(node)
    pos = {}
    for col, nodes in columns.items():
        key = (lambda n: -n.get("prob", 0.0)) if nodes[0].get("kind") == "class" else (lambda n: -n.get("energy", 0.0))
        nodes = sorted(nodes, key=key)
        for rank, node in enumerate(nodes):
            y = 1.0 - (rank + 0.5) / len(nodes)
            pos[node["id"]] = (float(col), y)
    return pos


def strongest(circuit_dict: dict, per_layer: int | None) -> tuple[dict, dict[str, int]]:
    """The circuit with at most ``per_layer`` channels a layer (by relevance to the target when
    known, else energy), and how many each layer leaves out.

    A shown node whose incoming edges all come from channels left out would look cut off from
    the layer before it: from the last layer back, its strongest source is shown too."""
    if per_layer is None:
        return circuit_dict, {}
    groups = defaultdict(list)
    for n in circuit_dict["nodes"]:
        if n.get("kind") == "channel":
            groups[n["layer"]].append(n)
    keep = set()
    for name, nodes in groups.items():
        nodes = sorted(nodes, key=lambda n: -n.get("relevance", n.get("energy", 0.0)))
        keep.update(n["id"] for n in nodes[:per_layer])
    incoming = defaultdict(list)
    for e in sorted(circuit_dict["edges"], key=lambda e: -e["score"]):
        incoming[e["target"]].append(e["source"])
    for name in reversed(circuit_dict.get("layers", [])):
        for n in groups.get(name, []):
            sources = incoming.get(n["id"], [])
            if n["id"] in keep and sources and not keep.intersection(sources):
                keep.add(sources[0])
    more = {name: len(nodes) - sum(n["id"] in keep for n in nodes) for name, nodes in groups.items()}
    nodes = [n for n in circuit_dict["nodes"] if n.get("kind") != "channel" or n["id"] in keep]
    ids = {n["id"] for n in nodes}
    edges = [e for e in circuit_dict["edges"] if e["source"] in ids and e["target"] in ids]
    return dict(circuit_dict, nodes=nodes, edges=edges), more


def draw_circuit(circuit_dict: dict, ax, title: str | None = None, per_layer: int | None = 16) -> None:
    """Draw nodes sized by energy and edges shaded by score on a matplotlib Axes.

    At most ``per_layer`` channels a layer are drawn (None: all); a layer with more says
    "+ N more" under its column.
    """
    circuit_dict, more = strongest(circuit_dict, per_layer)
    pos = layout(circuit_dict)
    edges = circuit_dict["edges"]
    top = max((e["score"] for e in edges), default=1.0) or 1.0
    for e in sorted(edges, key=lambda e: e["score"]):
        if e["source"] in pos and e["target"] in pos:
            (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
            w = e["score"] / top
            ax.plot([x0, x1], [y0, y1], color="#3b6ea5", alpha=0.15 + 0.75 * w, lw=0.4 + 2.0 * w, zorder=1)
    energies = defaultdict(float)
    for n in circuit_dict["nodes"]:
        if n.get("kind") == "channel":
            energies[n["layer"]] = max(energies[n["layer"]], n.get("energy", 0.0))
    target = circuit_dict.get("target")
    fed = {e["target"] for e in edges}
    cut_off = [n for n in circuit_dict["nodes"]
               if n.get("kind") == "channel" and n.get("layer_index", 0) > 0 and n["id"] not in fed]
    for n in circuit_dict["nodes"]:
        x, y = pos[n["id"]]
        if n.get("kind") == "class":
            colour = "#d1495b" if n.get("class") == target else "#999999"
            ax.scatter([x], [y], s=90, marker="s", color=colour, zorder=2)
            ax.text(x + 0.08, y, f"{n.get('name', n['id'])} {n.get('prob', 0):.2f}", va="center", fontsize=7)
        else:
            rel = n.get("energy", 0.0) / (energies[n["layer"]] or 1.0)
            hollow = n in cut_off  # no path from the previous layer's circuit channels (T = 0 there)
            ax.scatter([x], [y], s=8 + 60 * rel, color="white" if hollow else "#edae49", edgecolors="#8a6d1f",
                       linewidths=0.4, zorder=2)
    if cut_off:
        ax.text(0, 1.04, f"hollow: {len(cut_off)} channel(s) with no structural path from the previous "
                "layer's circuit channels", fontsize=6, color="#666666", va="bottom")
    layers = circuit_dict.get("layers", [])
    for col, name in enumerate(layers):
        if more.get(name):
            ax.text(col, -0.04, f"+ {more[name]} more", ha="center", va="top", fontsize=6, color="#666666")
    ax.set_ylim(-0.1, 1.02)
    ax.set_xticks(range(len(layers) + 1))
    titles = circuit_dict.get("layer_labels", {})
    # A transformer's "block 3 heads" on two lines, so neighbouring columns do not overlap.
    ax.set_xticklabels([titles[n].replace(" heads", "\nheads").replace(" units", "\nunits") if n in titles else n
                        for n in layers] + ["classes"], fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.4, len(layers) + 1.0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def circuit_figure(res):
    """The circuits of the original image and of the explanation, side by side."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    draw_circuit(res.circuit_original.to_dict(), left, "circuit on the original image")
    draw_circuit(res.circuit.to_dict(), right, "circuit on the explanation")
    what = "head and unit" if res.circuit.sites else "channel"
    fig.suptitle(f"{what} circuits for '{res.target_name}'", fontsize=10)
    return fig


def save_circuit_figure(res, path) -> str:
    from .display import save_figure

    return save_figure(circuit_figure(res), path)
