"""The circuit of a vision transformer: attention heads and MLP units of the tapped blocks.

What the graph means
--------------------
* **Nodes** are the heads and the MLP units of each tapped block (``nbexplain.core.sites``),
  chosen and sized by the decision exactly as a CNN's channels are: ranked by relevance
  (activation times the gradient of the target's logit, summed over tokens), each site keeping
  the shortest prefix with which the circuit alone - every other head and unit of the tapped
  blocks filled - keeps the target top-1 and recovers half of what they add to it over the
  empty set (``circuit_validate.decision_sizes``). ``validate()`` ablates heads and units and
  compares with random sets of equal size. A node's picture is its output at each patch: the
  norm of a head's output, a unit's activation.
* **Edges** ``u -> v`` join a site to the next one in depth (a block's heads to its units, its
  units to the next tapped block's heads). Blocks add their output to the residual stream and
  read it back, so ``u`` can drive ``v`` only along the directions that ``u`` writes and ``v``
  reads. ``T[v, u]`` is the norm of that *virtual weight* ``R_v W_u``: ``W_u`` is ``u``'s
  columns of its output projection (a head's ``W_O``, a unit's column of the MLP's output
  layer), ``R_v`` is what ``v`` reads (a unit's row of the MLP's input layer; for a head, its
  value projection ``W_V``: the value path, not the attention pattern). It is the direct path
  only (blocks in between also read and write the stream), and LayerNorm's gain and
  per-token scaling are left out. As for CNNs, ``score = T[v, u] * energy(u)`` with ``T``
  divided by its largest entry, and each node keeps its ``edges_per_node`` strongest inputs.
* **Class edges** ``u -> class:k``: ``|W_head[k] . W_u|`` times ``u``'s activity at the class
  token (the mean over tokens for models without one).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .circuit_config import CircuitConfig, check_choice
from .circuit_validate import channel_relevance, decision_sizes
from .plumbing import class_name, eval_mode, hooks, logits_from, model_device_dtype
from .sites import MultiheadAttentionSite, Site, block_sites, never_ran, unsupported


def read_transformer_circuit(model: nn.Module, layers, views: dict, target: int, inputs: torch.Tensor, *,
                             inputs_other: torch.Tensor | None = None, config: CircuitConfig | None = None,
                             labels=None, source: str = "explanation"):
    """The head/unit circuit of ``inputs`` [C, H, W] for ``target`` (see the module docstring).
    ``layers`` are the tapped transformer blocks, ``views`` their token views; ``inputs_other``
    (the other of image and explanation) gives the nodes' energies and pictures there too."""
    from .circuit import Circuit, _check_target, _class_edges, _layer_edges, _shown_classes, _top_channels, \
        channel_energy

    config = CircuitConfig() if config is None else config
    check_choice("source", source, ("explanation", "original"))
    stages = [n for n in layers if views[n].layout == "channels_last"]
    if stages:  # Swin: say what stops the heads from being read, if anything does, else what is missing
        record_sites(model, [site for n in stages for site in block_sites(model, n, views[n])], inputs)
        raise unsupported("the heads of windowed attention over channels-last stages (Swin) are not read yet; "
                          "nbexplain reads ViT-style blocks over tokens")
    sites, labels_of = [], {}
    for block in layers:
        for site in block_sites(model, block, views[block]):
            sites.append(site)
            labels_of[site.name] = f"{short_block_name(block)} {site.kind}s"
    by_name = {s.name: s for s in sites}
    names = tuple(by_name)
    logits, values = record_sites(model, sites, inputs)
    target = _check_target(target, logits.numel())
    maps = {n: by_name[n].node_maps(values[n][None])[0] for n in names}
    energies = {n: channel_energy(maps[n], config.energy) for n in names}
    maps_other, energies_other = None, None
    if inputs_other is not None:
        _, values_other = record_sites(model, sites, inputs_other)
        maps_other = {n: by_name[n].node_maps(values_other[n][None])[0] for n in names}
        energies_other = {n: channel_energy(maps_other[n], config.energy) for n in names}

    sizing, relevance = None, None
    if config.sizing == "decision" and config.nodes_per_layer is None:
        relevance = channel_relevance(model, names, inputs, target, config.validate_fill, sites=by_name)
        orders = {n: _top_channels(relevance[n], len(relevance[n])) for n in names}
        sizing = decision_sizes(model, names, orders, inputs, target=target, fill=config.validate_fill,
                                recover=config.recover, sites=by_name)
        selected = {n: orders[n][:sizing.sizes[n]] for n in names}
    else:
        selected = {n: _top_channels(energies[n], config.nodes_for(n, len(energies[n]), n == names[-1]))
                    for n in names}

    edges = []
    for prev, cur in zip(names, names[1:]):
        t = virtual_weights(model, by_name[prev], by_name[cur])
        if config.transfer_norm == "max" and t.max() > 0:
            t = t / t.max()
        edges += _layer_edges(prev, cur, t, energies[prev], selected[prev], selected[cur], config.edges_per_node)
    last = by_name[names[-1]]
    classes = _shown_classes(logits, target, config.class_top_k)
    head = class_weights(model, last, logits.numel())
    if head is not None:
        activity = class_token_activity(last, values[last.name])
        edges += _class_edges(last.name, classes, head, None, activity, selected[last.name], config.edges_per_class)

    if labels is not None:
        labels = list(labels)
    probs = torch.softmax(logits, dim=0)

    nodes = []
    for index, n in enumerate(names):
        site = by_name[n]
        for ch in selected[n]:
            mine = float(energies[n][ch])
            other = float(energies_other[n][ch]) if energies_other is not None else None
            on_original, on_explanation = (other, mine) if source == "explanation" else (mine, other)
            node = {"id": f"{n}:{ch}", "kind": "channel", "unit": site.kind, "layer": n, "layer_index": index,
                    "channel": ch, "energy": mine, "energy_original": on_original,
                    "energy_explanation": on_explanation}
            if relevance is not None:
                node["relevance"] = float(relevance[n][ch])
            nodes.append(node)
    for k in classes:
        nodes.append({"id": f"class:{k}", "kind": "class", "class": k, "name": class_name(labels, k),
                      "logit": float(logits[k]), "prob": float(probs[k]), "layer_index": len(names)})
    node_maps = {source: maps}
    if maps_other is not None:
        node_maps["original" if source == "explanation" else "explanation"] = maps_other
    return Circuit(target=target, target_name=class_name(labels, target), source=source, layers=names, nodes=nodes,
                   edges=edges, energies=energies, energies_other=energies_other, config=config, model=model,
                   inputs=inputs.detach(), sizing=sizing, sites=by_name, node_maps=node_maps, layer_labels=labels_of)


def short_block_name(block: str) -> str:
    """``blocks.3``, ``encoder.layers.encoder_layer_3`` -> ``block 3``: a column title."""
    tail = block.rsplit(".", 1)[-1]
    number = re.search(r"(\d+)$", tail)
    return f"block {number.group(1)}" if number else tail


def record_sites(model: nn.Module, sites: list[Site], inputs: torch.Tensor):
    """One forward of ``inputs`` [C, H, W]: the logits [classes] (double, CPU) and each site's tensor
    (batch removed, CPU)."""
    device, dtype = model_device_dtype(model)
    x = (inputs[0] if inputs.dim() == 4 else inputs).detach().to(device=device, dtype=dtype)[None]
    values = {}

    def keep(name):
        def fn(z):
            values[name] = z.detach()[0].float().cpu()
        return fn

    with hooks() as held:
        for site in sites:
            held.append(site.attach(model, keep(site.name)))
        with eval_mode(model), torch.no_grad():
            logits = logits_from(model(x))
    silent = [s for s in sites if s.name not in values]
    if silent:
        raise never_ran(model, silent[0])
    return logits[0].detach().double().cpu(), values


def write_weight(model: nn.Module, site: Site) -> torch.Tensor:
    """``[D, C]``: what each entry of the site's tensor adds to the residual stream."""
    module = model.get_submodule(site.module_name)
    if isinstance(site, MultiheadAttentionSite):
        return module.out_proj.weight.detach()
    return module.weight.detach()


def read_weight(model: nn.Module, site: Site) -> torch.Tensor:
    """``[C, D]``: how each entry of the site's tensor is computed from the residual stream (a head's
    value projection, a unit's row of the MLP's input layer)."""
    if isinstance(site, MultiheadAttentionSite):
        return model.get_submodule(site.module_name).in_proj_weight.detach().chunk(3)[2]
    out = model.get_submodule(site.module_name)
    width, entries = out.out_features, out.in_features
    for name, m in model.get_submodule(site.scope).named_modules():
        last = name.rsplit(".", 1)[-1]
        if not isinstance(m, nn.Linear) or m.in_features != width:
            continue
        if site.kind == "unit" and m.out_features == entries:
            return m.weight.detach()
        if site.kind == "head" and last in ("qkv", "in_proj") and m.out_features == 3 * entries:
            return m.weight.detach()[2 * entries:]
        if site.kind == "head" and last in ("value", "v_proj", "v") and m.out_features == entries:
            return m.weight.detach()
    what = "input layer of the MLP" if site.kind == "unit" else "value projection of the heads"
    raise unsupported(f"cannot find the {what} before {site.module_name!r} in {site.scope!r}")


def _group_norm(m: torch.Tensor, rows: int, row_group: int, cols: int, col_group: int) -> torch.Tensor:
    return m.reshape(rows, row_group, cols, col_group).double().pow(2).sum((1, 3)).sqrt()


def virtual_weights(model: nn.Module, prev: Site, cur: Site) -> torch.Tensor:
    """``[n_cur, n_prev]``: the norm of ``R_v W_u`` for every node pair (see the module docstring)."""
    m = read_weight(model, cur).float() @ write_weight(model, prev).float()
    return _group_norm(m, cur.n, cur.group, prev.n, prev.group).cpu()


def class_weights(model: nn.Module, last: Site, n_classes: int) -> torch.Tensor | None:
    """``[classes, n]``: ``|W_head[k] . W_u|`` through the classifier (the last Linear to the classes),
    or None where the model has none."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    write = write_weight(model, last)
    if not heads or heads[-1].in_features != write.shape[0]:
        return None
    m = heads[-1].weight.detach().float() @ write.float()
    return _group_norm(m, n_classes, 1, last.n, last.group).cpu()


def class_token_activity(site: Site, z: torch.Tensor) -> torch.Tensor:
    """``[n]``: each node's activity where the classifier reads: the class token, else the mean over tokens."""
    per_token = site.node_values(z[None])[0]  # [n, N, group]
    if site.view.prefix:
        per_token = per_token[:, :1]
    act = per_token.double().norm(dim=2) if site.group > 1 else per_token[..., 0].double().abs()
    return act.mean(1)

