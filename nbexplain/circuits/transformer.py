"""The circuit of a vision transformer: attention heads and MLP units of the tapped blocks.

This reader supplies what differs from a CNN (its sites: the heads and units of each block; their
energies; the virtual weights between them and to the classes) and ``nbexplain.circuits.engine``
builds the circuit from them, as it does a CNN's.

What the graph means
--------------------
* **Nodes** are the heads and the MLP units of each tapped block (``nbexplain.circuits.sites``),
  chosen and sized by the decision exactly as a CNN's channels are: ranked by relevance
  (activation times the gradient of the target's logit, summed over tokens), each site keeping
  the shortest prefix with which the circuit alone - every other head and unit of the tapped
  blocks filled - keeps the target top-1 and recovers half of what they add to it over the
  empty set (``validate.decision_sizes``). ``validate()`` ablates heads and units and
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
* **Swin** (torchvision, channels-last stages): each tapped stage gives the heads and units of each of
  its blocks; window heads are recomputed from the attention's weights (``sites.WindowAttentionSite``).
  Between stages, patch merging changes the stream's width: ``T`` goes through the merging Linear
  (``virtual_weights``), its LayerNorm left out.
* **Class edges** ``u -> class:k``: ``|W_head[k] . W_u|`` times ``u``'s activity at the class
  token (the mean over tokens for models without one).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..core.plumbing import eval_mode, hooks, logits_from, model_device_dtype
from ..errors import CircuitUnsupportedError
from .circuit import SOURCES, Circuit, channel_energy
from .config import CircuitConfig, check_choice
from .engine import Head, Reading, build_circuit, check_target
from .sites import (MultiheadAttentionSite, Site, WindowAttentionSite, block_sites, is_window_attention, never_ran,
                    unsupported)


def read_transformer_circuit(model: nn.Module, layers, views: dict, target: int, inputs: torch.Tensor, *,
                             inputs_other: torch.Tensor | None = None, config: CircuitConfig | None = None,
                             labels=None, source: str = "explanation") -> Circuit:
    """The head/unit circuit of ``inputs`` [C, H, W] for ``target`` (see the module docstring).
    ``layers`` are the tapped transformer blocks, ``views`` their token views; ``inputs_other``
    (the other of image and explanation) gives the nodes' energies and pictures there too."""
    config = CircuitConfig() if config is None else config
    check_choice("source", source, SOURCES)
    sites, labels_of = [], {}
    for layer in layers:
        for block, label in blocks_of(model, layer, views[layer]):
            for site in block_sites(model, block, views[layer]):
                sites.append(site)
                labels_of[site.name] = f"{label} {site.kind}s"
    by_name = {s.name: s for s in sites}
    names = tuple(by_name)
    logits, values = record_sites(model, sites, inputs)
    check_target(target, logits.numel())  # before the other image's forward
    maps = {n: by_name[n].node_maps(values[n][None])[0] for n in names}
    energies = {n: channel_energy(maps[n], config.energy) for n in names}
    node_maps, energies_other = {source: maps}, None
    if inputs_other is not None:
        _, values_other = record_sites(model, sites, inputs_other)
        maps_other = {n: by_name[n].node_maps(values_other[n][None])[0] for n in names}
        energies_other = {n: channel_energy(maps_other[n], config.energy) for n in names}
        node_maps["original" if source == "explanation" else "explanation"] = maps_other
    last = by_name[names[-1]]

    def head():
        weights = class_weights(model, last, logits.numel())
        if weights is None:
            return None
        return Head(transfer=weights, activity=class_token_activity(last, values[last.name]))

    reading = Reading(model=model, layers=names, logits=logits, energies=energies, energies_other=energies_other,
                      transfer=lambda prev, cur: virtual_weights(model, by_name[prev], by_name[cur]), head=head,
                      inputs=inputs.detach(), sites=by_name, units={n: by_name[n].kind for n in names},
                      node_maps=node_maps, layer_labels=labels_of)
    return build_circuit(reading, target, config=config, labels=labels, source=source)


def blocks_of(model: nn.Module, layer: str, view) -> list[tuple[str, str]]:
    """``[(block, column title)]``: the tapped layer itself for a ViT; for a channels-last stage
    (Swin, a sequence of blocks) each of its blocks, ``stage 1.0`` for block 0 of ``features.1``."""
    if view.layout != "channels_last":
        return [(layer, short_block_name(layer))]
    stage = model.get_submodule(layer)
    if any(is_window_attention(m) for m in stage.children()):
        return [(layer, short_block_name(layer))]  # the stage is one block
    blocks = [(f"{layer}.{name}", f"stage {short_block_name(layer).split()[-1]}.{name}")
              for name, m in stage.named_children() if any(is_window_attention(a) for a in m.modules())]
    if not blocks:
        raise unsupported(f"the channels-last stage {layer!r} ({type(stage).__name__}) has no windowed attention "
                          "nbexplain reads (torchvision's ShiftedWindowAttention)")
    return blocks


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
    if isinstance(site, WindowAttentionSite):
        return module.proj.weight.detach()
    return module.weight.detach()


def read_weight(model: nn.Module, site: Site) -> torch.Tensor:
    """``[C, D]``: how each entry of the site's tensor is computed from the residual stream (a head's
    value projection, a unit's row of the MLP's input layer)."""
    if isinstance(site, MultiheadAttentionSite):
        return model.get_submodule(site.module_name).in_proj_weight.detach().chunk(3)[2]
    if isinstance(site, WindowAttentionSite):
        return model.get_submodule(site.module_name).qkv.weight.detach().chunk(3)[2]
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
    products = stream_products(model, read_weight(model, cur), write_weight(model, prev), prev.module_name,
                               cur.module_name)
    return _slot_norm(products, cur.n, cur.group, prev.n, prev.group)


def class_weights(model: nn.Module, last: Site, n_classes: int) -> torch.Tensor | None:
    """``[classes, n]``: ``|W_head[k] . W_u|`` through the classifier (the last Linear to the classes),
    or None where the model has none."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not names:
        return None
    try:
        products = stream_products(model, model.get_submodule(names[-1]).weight.detach(), write_weight(model, last),
                                   last.module_name, names[-1])
    except CircuitUnsupportedError:
        return None
    return _slot_norm(products, n_classes, 1, last.n, last.group)


def stream_products(model: nn.Module, read: torch.Tensor, write: torch.Tensor, after: str, before: str):
    """``[R W]``: what is read (``read`` [rows, D']) of what is written (``write`` [D, cols]) at a
    later point of the stream; one product, or one per slot across a patch merging.

    Across a patch merging (Swin, between stages) the stream's width changes: the next stage's stream
    is reduction(LayerNorm(concat of a 2 x 2 neighbourhood)), so what a node writes at a patch enters the
    reduction in one of its four slots, by the patch's position, and ``R W_red,s W`` is its path through
    slot ``s``. Exact for the linear path; the merge's LayerNorm (its gain and its per-token scaling,
    which mixes the four slots) is left out, as LayerNorm is everywhere in this reader. A stage between
    (its blocks read and write the stream too) is left out as blocks in between are for a ViT."""
    read, write = read.float(), write.float()
    if read.shape[1] == write.shape[0]:
        return [read @ write]
    merge = merging_weight(model, after, before, write.shape[0], read.shape[1]).float()
    return [read @ part @ write for part in merge.chunk(merge.shape[1] // write.shape[0], dim=1)]


def merging_weight(model: nn.Module, after: str, before: str, width_in: int, width_out: int) -> torch.Tensor:
    """``[width_out, k * width_in]``: the weight of the Linear that merges ``k`` patches of a
    ``width_in`` stream into a ``width_out`` one (Swin's ``PatchMerging.reduction``), the first
    between the modules ``after`` and ``before`` (in module order) whose widths fit."""
    names = [n for n, _ in model.named_modules()]
    for name in names[names.index(after):names.index(before)]:
        m = model.get_submodule(name)
        if isinstance(m, nn.Linear) and m.in_features % width_in == 0 and m.in_features > width_in \
                and m.out_features == width_out:
            return m.weight.detach()
    raise unsupported(f"cannot find how {after!r} ({width_in} wide) reaches {before!r} ({width_out} wide): no "
                      "merging Linear between them")


def _slot_norm(products, rows: int, row_group: int, cols: int, col_group: int) -> torch.Tensor:
    """The group norm of one product, or of the products of all slots together."""
    if len(products) == 1:
        return _group_norm(products[0], rows, row_group, cols, col_group).cpu()
    return torch.stack([_group_norm(m, rows, row_group, cols, col_group) for m in products]) \
        .pow(2).sum(0).sqrt().cpu()


def class_token_activity(site: Site, z: torch.Tensor) -> torch.Tensor:
    """``[n]``: each node's activity where the classifier reads: the class token, else the mean over tokens."""
    per_token = site.node_values(z[None])[0]  # [n, N, group]
    if site.view.prefix:
        per_token = per_token[:, :1]
    act = per_token.double().norm(dim=2) if site.group > 1 else per_token[..., 0].double().abs()
    return act.mean(1)

