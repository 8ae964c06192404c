"""Save an ``nbexplain.explanation.Explanation`` to one file and load it back, without the model.

>>> res.save("cat.nbx")                  # doctest: +SKIP
>>> res = nbexplain.load("cat.nbx")      # doctest: +SKIP  (another kernel, no model needed)

The file is written by ``torch.save`` and holds only plain data: tensors, numbers, strings, lists
and dicts. It is read with ``torch.load(weights_only=True)``, which refuses anything else, so
loading a file runs no code from it. What it holds is everything the figure, the summary (and
repr) and the widget show: the mask, the input and the explanation, the target and the class
names, the probabilities and logits, the loss history, the fill and its checks, the necessary
evidence (``res.necessary``), the tapped activations (for the widget's channel maps), the
configuration, and the circuits where they were read (``res.circuit``, ``res.circuit_original``).

It does not hold the model: a loaded result has ``model = None``. Its circuits are those that
were saved; reading one that was not (or ``circuit.validate()``) needs the model, so explain the
image again. Each file records the nbexplain version and a format number; a format this version
does not know is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "nbexplain-explanation"
FORMAT_VERSION = 1  #: bump when the layout changes; older numbers stay readable


def save_explanation(res, path, *, circuits: bool | None = None, activations: bool = True) -> str:
    """Write ``res`` (an ``nbexplain.explanation.Explanation``) to ``path``; returns the path.

    Args:
        res: the explanation to save.
        path: the file to write (its folder is made if needed); ``.nbx`` is a good suffix.
        circuits: ``None`` (default) saves the circuits already read (``res.circuit``,
            ``res.circuit_original``); ``True`` reads both first (this needs the model); ``False``
            saves none.
        activations: keep the tapped activations, which the widget's channel maps show
            (``False`` makes the file smaller; the widget then cannot show a channel's map).
    """
    from . import __version__

    fields = {
        "mask": res.mask, "explanation": res.explanation, "input": res.input, "target": int(res.target),
        "prob_original": float(res.prob_original), "prob_explanation": float(res.prob_explanation),
        "area": float(res.area), "history": {str(k): [float(v) for v in vs] for k, vs in res.history.items()},
        "layers": [str(n) for n in res.layers],
        "activations_original": _tensors(res.activations_original) if activations else {},
        "activations_explanation": _tensors(res.activations_explanation) if activations else {},
        "logits_original": res.logits_original, "logits_explanation": res.logits_explanation,
        "labels": None if res.labels is None else [str(v) for v in res.labels],
        "seconds": float(res.seconds), "steps": int(res.steps), "config": _config_dict(res.config),
        "normalization": _normalization_dict(res.normalization), "robustness": res.robustness,
        "fill": _fill_dict(res.fill), "checks": [dataclasses.asdict(c) for c in res.checks],
        "sufficient": res.sufficient, "interrupted": bool(res.interrupted),
        "views": {name: {"layout": v.layout, "grid": None if v.grid is None else list(v.grid), "prefix": v.prefix}
                  for name, v in res.views.items()},
        "necessary": _necessary_dict(res.necessary),
    }
    saved_circuits = {}
    for attr in ("circuit", "circuit_original"):
        if circuits or (circuits is None and attr in vars(res)):  # a cached_property lives in the instance dict
            saved_circuits[attr] = circuit_dict(getattr(res, attr))
    model = res._network if res._network is not None else res.model
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "nbexplain": __version__,
               "model_class": None if model is None else type(model).__name__,
               "explanation": _plain_tensors(fields), "circuits": saved_circuits}
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    torch.save(payload, path)
    return path


def read_explanation(path) -> tuple[dict, dict]:
    """What ``res.save(path)`` wrote: the ``nbexplain.explanation.Explanation``'s fields (its
    constructor's keywords; ``model`` None) and its saved circuits by attribute (``circuit``,
    ``circuit_original``). ``Explanation.load`` builds the result from them, so this module needs
    no Explanation. Raises ``ValueError`` for a file that is not an nbexplain explanation or was
    written in a format this version does not know, and ``FileNotFoundError`` for a missing file.
    """
    from . import __version__

    path = os.fspath(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, a truncated one, or one that holds more than plain data
        raise ValueError(f"{path} is not an nbexplain explanation file (it does not load as plain data: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        hint = (" (it is an amortised generator: AmortizedExplainer.load(path, model))"
                if isinstance(saved, dict) and str(saved.get("format", "")).startswith("nbexplain-amortized") else "")
        raise ValueError(f"{path} is not an nbexplain explanation file{hint}; write one with res.save(path)")
    version = saved.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by nbexplain {saved.get('nbexplain', '?')} in explanation format {version!r}; "
            f"this nbexplain ({__version__}) reads formats 1 to {FORMAT_VERSION}: upgrade nbexplain to load it"
        )
    f = saved["explanation"]
    fields = dict(
        mask=f["mask"], explanation=f["explanation"], input=f["input"], target=f["target"],
        prob_original=f["prob_original"], prob_explanation=f["prob_explanation"], area=f["area"],
        history={k: list(v) for k, v in f["history"].items()}, layers=list(f["layers"]),
        activations_original=dict(f["activations_original"]), activations_explanation=dict(f["activations_explanation"]),
        logits_original=f["logits_original"], logits_explanation=f["logits_explanation"], model=None,
        labels=f["labels"], seconds=f["seconds"], steps=f["steps"], config=_config_from(f["config"]),
        normalization=_normalization_from(f["normalization"]), robustness=f["robustness"], fill=_fill_from(f["fill"]),
        checks=tuple(_fill_check(c) for c in f["checks"]), sufficient=f["sufficient"], interrupted=f["interrupted"],
        views={name: _view_from(v) for name, v in f["views"].items()}, necessary=_necessary_from(f["necessary"]),
    )
    inputs = {"circuit": fields["explanation"], "circuit_original": fields["input"]}
    circuits = {attr: circuit_from(data, inputs[attr]) for attr, data in saved.get("circuits", {}).items()
                if attr in inputs}
    return fields, circuits


# -- circuits ---------------------------------------------------------------------------------
def circuit_dict(circuit) -> dict:
    """A ``nbexplain.circuits.Circuit`` as plain data (its graph, energies, node pictures,
    sizing and settings; not its model, input or the sites' modules)."""
    cfg = circuit.config
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)} if dataclasses.is_dataclass(cfg) else {}
    if config.get("nodes_per_layer") is not None and not isinstance(config["nodes_per_layer"], int):
        config["nodes_per_layer"] = dict(config["nodes_per_layer"])  # a read-only mapping: not plain data
    return _plain_tensors({
        "graph": circuit.to_dict(), "energies": _tensors(circuit.energies),
        "energies_other": None if circuit.energies_other is None else _tensors(circuit.energies_other),
        "config": config, "node_maps": {s: _tensors(maps) for s, maps in circuit.node_maps.items()},
        "sites": None if not circuit.sites else sorted(circuit.sites),
    })


def circuit_from(data: dict, inputs: torch.Tensor | None = None):
    """The ``nbexplain.circuits.Circuit`` saved by ``circuit_dict``, without a model:
    its graph, repr and comparisons work; ``validate()`` says it needs the model. ``inputs``: the
    [C, H, W] input whose forward pass it read (the explanation's or the image)."""
    from .circuits.circuit import Circuit
    from .circuits.config import CircuitConfig
    from .circuits.validate import Sizing

    graph = data["graph"]
    sizing = graph.get("sizing")
    if sizing is not None:
        sizing = Sizing(sizes=dict(sizing["sizes"]), totals=dict(sizing["totals"]), kept=sizing["kept"],
                        forwards=sizing["forwards"], recover=sizing.get("recover", 0.5))
    known = {f.name for f in dataclasses.fields(CircuitConfig)}
    config = CircuitConfig(**{k: v for k, v in data.get("config", {}).items() if k in known})
    # The sites (a transformer's heads and units) are modules of the model: only their names are kept,
    # so the circuit still says what its nodes are.
    sites = {name: None for name in data["sites"]} if data.get("sites") else None
    return Circuit(target=graph["target"], target_name=graph["target_name"], source=graph["source"],
                   layers=graph["layers"], nodes=graph["nodes"], edges=graph["edges"], energies=data["energies"],
                   energies_other=data["energies_other"], config=config, model=None, inputs=inputs, sizing=sizing,
                   sites=sites, node_maps=data.get("node_maps"), layer_labels=graph.get("layer_labels"))


# -- the parts of an explanation ----------------------------------------------------------------
def _tensors(mapping) -> dict:
    return {str(k): v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in (mapping or {}).items()}


def _plain_tensors(obj: Any) -> Any:
    """Tensors detached, on the CPU and contiguous (a view of a larger tensor would save all of it)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone().contiguous()
    if isinstance(obj, dict):
        return {k: _plain_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_tensors(v) for v in obj]
    return obj


def _config_dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _config_from(d: dict):
    from .config import ExplainConfig

    known = {f.name: f for f in dataclasses.fields(ExplainConfig)}
    # Options a later nbexplain added are left out: this version would not know what to do with them.
    return ExplainConfig.from_kwargs(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def _normalization_dict(norm) -> dict | None:
    return None if norm is None else {"mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std]}


def _normalization_from(d):
    from .core.inputs import Normalization

    return None if d is None else Normalization(tuple(d["mean"]), tuple(d["std"]))


def _fill_dict(fill) -> dict | None:
    if fill is None:
        return None
    return {"image": fill.image, "kind": fill.kind.kind, "blur": fill.kind.blur, "prob": float(fill.prob),
            "predicted": int(fill.predicted), "bound": float(fill.bound), "hides": bool(fill.hides),
            "tried": list(fill.tried)}


def _fill_from(d):
    from .core.fills import Fill, FillKind

    if d is None:
        return None
    return Fill(image=d["image"], kind=FillKind(d["kind"], d["blur"]), prob=d["prob"], predicted=d["predicted"],
                bound=d["bound"], hides=d["hides"], tried=tuple(d["tried"]))


def _fill_check(d):
    from .core.fills import FillCheck

    return FillCheck(**d)


def _view_from(d):
    from .core.views import MapView

    return MapView(d["layout"], None if d["grid"] is None else tuple(d["grid"]), d["prefix"])


def _necessary_dict(nec) -> dict | None:
    if nec is None:
        return None
    return {f.name: list(v) if isinstance(v := getattr(nec, f.name), tuple) else v for f in dataclasses.fields(nec)}


def _necessary_from(d):
    from .core.necessity import Necessary

    if d is None:
        return None
    d = dict(d)
    # Files written before the record said how it removed pixels: surroundings were the only single fill.
    d.setdefault("removal", "surroundings" if list(d["fills"]) == ["surroundings"] else "fills")
    return Necessary(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


__all__ = ["FORMAT", "FORMAT_VERSION", "save_explanation", "read_explanation", "circuit_dict", "circuit_from"]
