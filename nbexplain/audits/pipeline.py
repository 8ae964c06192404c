"""``nbexplain.audit(model, data)``: explain every image, group them by evidence, test each group."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from ..config import resolve_config
from ..types import ConfigLike, Labels, Preprocess
from .analysis import find_groups
from .artifacts import Artifact, find_artifacts
from .data import as_audit_data
from .engines import ENGINES, import_ray, run_local, run_ray
from .grouping import FEATURES
from .rows import AuditWorker, unpack_mask
from .store import AuditStore
from .suspicion import Group

logger = logging.getLogger(__name__)
_HEAVY = ("mask_bits", "necessary_bits", "thumb")
GROUP_COLUMNS = ["group", "target", "target_name", "size", "suspicion", "transplant", "transplant_control", "same_place", "off_object",
                 "accuracy", "mean_area", "transplants", "representative", "channels"]


def audit(model: torch.nn.Module, data, *, out: str | None = None, target: str | int = "predicted",
          config: ConfigLike = "fast", layers: list[str] | None = None, preprocess: Preprocess = None,
          labels: Labels = None, masks: torch.Tensor | None = None, circuits: bool = True, seed: int = 0, engine: str = "local", chunk: int = 16,
          actors: int | None = None, cpus_per_actor: float = 1, gpus_per_actor: float = 0, address: str | None = None,
          num_cpus: int | None = None, features=FEATURES, progress: bool = True, gallery: bool | None = None) -> "Audit":
    """Explain every image of ``data``, group the images decided by the same evidence, and test
    each group for a shortcut.

    ``model``: an ``nn.Module`` (or a ``nbexplain.zoo`` model, which brings its preprocessing and
    class names). ``data``: a list of images or ``(image, label)`` pairs, a tensor, a torch
    ``Dataset``, a ``DataLoader`` of batches ``(images, labels)`` or of images alone (unbatched in
    its order; a shuffling loader is refused, since ids must name the same images on every run),
    ``nbexplain.datasets.Scenes`` or a folder of images (class sub-folders give labels).
    ``target``: ``"predicted"`` (default), ``"label"`` or a class index. ``out``: the run
    folder; run again with the same ``out`` and a killed audit resumes where it stopped
    (default: a new temporary folder). ``config``: the explainer's preset or options
    (``"fast"`` by default). ``masks``: bool object masks [N, H, W], if known (``Scenes`` bring
    theirs). ``engine="ray"`` explains on Ray Data (``actors``, ``cpus_per_actor``,
    ``gpus_per_actor``, ``address``; ``num_cpus``: the CPUs of the local Ray cluster it starts when
    Ray is not running and no address is given). ``gallery``: show the gallery filling in (default: in Jupyter).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray":
        import_ray()  # before any work: without Ray installed, say how to install it
    model, preprocess, labels = _unpack_zoo(model, preprocess, labels)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (or a nbexplain.zoo model), got {type(model).__name__}")
    if not (target in ("predicted", "label") or isinstance(target, (int, np.integer)) and not isinstance(target, bool)):
        raise ValueError(f"target must be 'predicted', 'label' or a class index, got {target!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    cfg = resolve_config(config)
    audit_data = as_audit_data(data, masks)
    if target == "label" and audit_data.label(0) is None:
        raise ValueError("target='label' needs labelled data ((image, label) items, a Dataset with labels or class sub-folders)")
    labels = labels if labels is not None else audit_data.class_names
    store = AuditStore(out if out is not None else tempfile.mkdtemp(prefix="nbexplain-audit-"))
    if out is None:
        logger.info("auditing %d images into the temporary folder %s (pass out= to keep and resume a run)",
                    len(audit_data), store.root)
    options = {"target": target, "config": dataclasses.asdict(cfg), "layers": layers, "circuits": circuits,
               "seed": seed, "preprocess": _describe(preprocess)}
    store.open(_manifest(model, audit_data, options, labels))
    store.clean()

    worker_options = dict(preprocess=preprocess, labels=labels, layers=layers, config=cfg, seed=seed, target=target,
                          circuits=circuits)

    def make_worker():
        return AuditWorker(model, audit_data, **worker_options)

    done = store.done_ids()
    todo = [i for i in range(len(audit_data)) if i not in done]
    if done:
        logger.info("resuming the audit in %s: %d of %d images already explained, %d to go", store.root,
                    len(audit_data) - len(todo), len(audit_data), len(todo))
    view = _live_gallery(gallery, labels)
    if view is not None:
        view.total = len(audit_data)
        view.add_rows(store.read_rows())
    if todo:
        if engine == "ray":
            shards = run_ray(model, audit_data, worker_options, todo, chunk, actors=actors,
                             cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, address=address,
                             num_cpus=num_cpus)
        else:
            shards = run_local(make_worker, todo, chunk)
        _drain(shards, store, len(done), len(audit_data), progress and view is None, view)  # the gallery counts too
    result = Audit(store, model=model, data=audit_data, labels=labels, preprocess=preprocess, worker=make_worker)
    result.regroup(features=features, seed=seed)
    if view is not None:
        view.show_audit(result)
        result._gallery = view
    return result


def _drain(shards, store, n_done, n_all, progress, view) -> None:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_all, initial=n_done, desc="auditing", unit="image")
    try:
        for table in shards:
            store.write_rows(table)
            if bar is not None:
                bar.update(table.num_rows)
            if view is not None:
                view.add_rows(table)
    finally:
        if bar is not None:
            bar.close()


class Audit:
    """A finished (or reopened) audit: one row per image, and groups, most suspicious first."""

    def __init__(self, store: AuditStore, *, model=None, data=None, labels=None, preprocess=None, worker=None):
        self.store = store
        self.manifest = store.manifest()
        self.model, self.data, self.preprocess = model, data, preprocess
        self.labels = labels if labels is not None else self.manifest.get("labels")
        self._make_worker = worker
        self._worker = None
        rows = store.read_rows()
        self._rows = rows.to_pandas().set_index("id", drop=False)
        self._rows.index.name = None
        self.groups: list[Group] = _groups_from_table(store.read_groups(), self.labels)
        #: groups across classes by where their necessary evidence lies, most suspicious first (``regroup``)
        self.artifacts: list[Artifact] = []
        self._gallery = None

    @classmethod
    def load(cls, out, model=None, data=None, preprocess=None, labels=None) -> "Audit":
        """Reopen the audit in ``out``; give the model and data to transplant, regroup and open circuits."""
        model, preprocess, labels = _unpack_zoo(model, preprocess, labels)
        store = AuditStore(out)
        audit_data = None if data is None else as_audit_data(data)
        worker = None
        if model is not None and audit_data is not None:
            m = store.manifest()
            if m["fingerprints"]["data"] != audit_data.fingerprint() or m["fingerprints"]["model"] != model_fingerprint(model):
                raise ValueError(f"the model or data given are not those audited in {out}")
            opts = m["options"]

            def worker():
                return AuditWorker(model, audit_data, preprocess=preprocess, labels=labels or m.get("labels"),
                                   layers=opts["layers"], config=opts["config"], seed=opts["seed"],
                                   target=opts["target"], circuits=opts["circuits"])
        return cls(store, model=model, data=audit_data, labels=labels, preprocess=preprocess, worker=worker)

    # -- rows -------------------------------------------------------------------------------
    @property
    def rows(self) -> pd.DataFrame:
        """Every stored row by image id, heavy columns (masks, thumbnails) included: what the gallery
        and the contact sheet draw from; ``table`` is the light view with the groups."""
        return self._rows

    @property
    def table(self) -> pd.DataFrame:
        """One row per image (by id, its position in the data), with its group and the group's suspicion."""
        t = self._rows.drop(columns=list(_HEAVY))
        group = pd.Series(-1, index=t.index, dtype="int64")
        suspicion = pd.Series(np.nan, index=t.index)
        for g in self.groups:
            group[g.indices] = g.index
            suspicion[g.indices] = g.suspicion
        return t.assign(group=group, suspicion=suspicion)

    def __len__(self) -> int:
        return len(self._rows)

    def mask(self, image_id: int) -> np.ndarray:
        """The explanation's bool mask of image ``image_id``, at the model input's size."""
        r = self._rows.loc[int(image_id)]
        if r["mask_bits"] is None:
            raise ValueError(f"image {image_id} was not explained: {r['error']}")
        return unpack_mask(r["mask_bits"], int(r["mask_h"]), int(r["mask_w"]))

    def necessary(self, image_id: int) -> np.ndarray:
        """The bool region whose removal changes image ``image_id``'s decision (all False where none was found)."""
        r = self._rows.loc[int(image_id)]
        if "necessary_bits" not in r or r["necessary_bits"] is None:
            raise ValueError(f"image {image_id} has no necessary region stored (audited with necessary=False?)")
        return unpack_mask(r["necessary_bits"], int(r["mask_h"]), int(r["mask_w"]))

    def thumbnail(self, image_id: int) -> bytes:
        """A small JPEG of image ``image_id``."""
        return self._rows.loc[int(image_id), "thumb"]

    def explain(self, image_id: int, **kwargs):
        """Explain image ``image_id`` again, in full (the same seed gives the stored mask), for its
        circuit and widget."""
        from .rows import image_seed

        worker = self._require_worker("open an image's explanation")
        x = worker.model_input(int(image_id))
        target = int(self._rows.loc[int(image_id), "target"])
        kwargs.setdefault("seed", image_seed(self.manifest["options"]["seed"], int(image_id)))
        return worker.explainer.explain(x, target=target, **kwargs)

    # -- groups -----------------------------------------------------------------------------
    def regroup(self, features=FEATURES, neighbours: int = 10, max_groups: int = 8, seed: int = 0) -> list[Group]:
        """Group and test again (other features, say) without explaining again."""
        worker = self.worker_or_none()
        start = time.perf_counter()
        self.groups = find_groups(self._rows, self.mask, worker=worker, labels=self.labels, features=tuple(features),
                                  neighbours=neighbours, max_groups=max_groups, seed=seed)
        if worker is not None and "necessary_found" in self._rows:
            self.artifacts = find_artifacts(self._rows, self.necessary, worker, self.labels, max_groups=max_groups,
                                            seed=seed)
        self.grouping_seconds = time.perf_counter() - start
        self.store.write_groups(_groups_to_table(self.groups))
        return self.groups

    @property
    def artifact_table(self) -> pd.DataFrame:
        """One row per artifact group (across classes), most suspicious first."""
        cols = ["size", "carriers", "classes", "area", "suspicion", "removal", "removal_moved", "paste", "paste_moved"]
        rows = [{"artifact": a.index, **{c: getattr(a, c) for c in cols}, "carriers": len(a.carriers)}
                for a in self.artifacts]
        return pd.DataFrame(rows, columns=["artifact", *cols]).set_index("artifact")

    @property
    def group_table(self) -> pd.DataFrame:
        """One row per group, most suspicious first, with the figures of its test."""
        return _groups_to_table(self.groups).to_pandas().drop(columns=["indices", "shared_map"]).set_index("group")

    def group_of(self, image_id: int) -> Group | None:
        for g in self.groups:
            if int(image_id) in set(g.indices.tolist()):
                return g
        return None

    # -- display ----------------------------------------------------------------------------
    def gallery(self, **kwargs):
        """The gallery widget (groups as rows of thumbnails; clicks open explanations)."""
        from ..widget.gallery import gallery_of

        return gallery_of(self, **kwargs)  # displayed, it brings its detail panel along

    def contact_sheet(self, group: int | Group = 0, **kwargs):
        """A matplotlib figure of one group: its shared evidence map and members with their masks."""
        from .sheet import contact_sheet

        return contact_sheet(self, group if isinstance(group, Group) else self.groups[group], **kwargs)

    def summary(self) -> str:
        n = len(self._rows)
        errors = int(self._rows["error"].notna().sum())
        lines = [f"Audit of {n} images ({errors} could not be explained), {len(self.groups)} groups, in {self.store.root}"]
        for g in self.groups[:5]:
            lines.append(f"  {g!r}")
        if self.artifacts:
            lines.append(f"Across classes, patterns where the necessary evidence gathers: {len(self.artifacts)} groups")
            lines += [f"  {a!r}" for a in self.artifacts[:3]]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_png_(self):
        if not self.groups:
            return None
        from ..display import figure_png

        return figure_png(self.contact_sheet(0))

    # -- the model again --------------------------------------------------------------------
    def worker_or_none(self):
        """The worker that runs the model on the audit's images (made on first use), or None when the
        audit was opened without its model and data."""
        if self._worker is None and self._make_worker is not None:
            self._worker = self._make_worker()
        return self._worker

    def _require_worker(self, what: str):
        worker = self.worker_or_none()
        if worker is None:
            raise ValueError(f"to {what}, reopen the audit with its model and data: Audit.load(out, model=..., data=...)")
        return worker


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the model's class and every parameter and buffer."""
    from ..core.plumbing import unwrap_model

    net = unwrap_model(model)
    h = hashlib.sha256(type(net).__qualname__.encode())
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]


def _manifest(model, data, options, labels) -> dict:
    from .. import __version__, fingerprint

    config_fp = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "nbexplain": __version__,
        "method": fingerprint.method_fingerprint(),
        "refuses": "rows of another model, data, configuration or method fingerprint (nbexplain.about()); "
                   "a version that kept the method fingerprint resumes",
        "fingerprints": {"model": model_fingerprint(model), "data": data.fingerprint(), "config": config_fp},
        "n_images": len(data), "data_source": data.source, "model_class": type(model).__name__,
        "options": options, "labels": list(labels) if labels is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _describe(obj) -> str:
    """A repr that is the same in every process (a function's has its memory address)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _unpack_zoo(model, preprocess, labels):
    from ..zoo import ZooModel

    if isinstance(model, ZooModel):
        return model.model, preprocess or model.preprocess, labels or model.labels
    return model, preprocess, labels


def _live_gallery(gallery, labels):
    if gallery is None:
        from ..explainer import in_notebook

        gallery = in_notebook()
    if not gallery:
        return None
    from ..widget.gallery import live_gallery

    return live_gallery(labels)  # displayed with a handle: the end of the audit adds its static PNG


def _groups_to_table(groups: list[Group]) -> pa.Table:
    return pa.Table.from_pylist([{
        "group": g.index, "target": g.target, "target_name": g.target_name, "size": g.size,
        "suspicion": g.suspicion, "transplant": g.transplant, "transplant_control": g.transplant_control,
        "same_place": g.same_place,
        "off_object": g.off_object, "accuracy": g.accuracy, "mean_area": g.mean_area, "transplants": g.transplants,
        "representative": g.representative, "channels": g.channels, "indices": g.indices.tolist(),
        "shared_map": g.shared_map.astype(np.float32).ravel().tolist(),
    } for g in groups]) if groups else pa.table({c: [] for c in GROUP_COLUMNS + ["indices", "shared_map"]})


def _groups_from_table(table: pa.Table | None, labels) -> list[Group]:
    if table is None or table.num_rows == 0:
        return []
    out = []
    for r in table.to_pylist():
        side = int(round(len(r["shared_map"]) ** 0.5))
        g = Group(index=r["group"], target=r["target"], target_name=r["target_name"],
                  indices=np.array(r["indices"], dtype=np.int64),
                  shared_map=np.asarray(r["shared_map"], dtype=np.float32).reshape(side, side),
                  representative=r["representative"], channels=list(r["channels"]), transplant=r["transplant"],
                  same_place=r["same_place"], off_object=r["off_object"], accuracy=r["accuracy"],
                  mean_area=r["mean_area"], transplants=r["transplants"],
                  transplant_control=r.get("transplant_control", float("nan")))
        out.append(g)
    return out
