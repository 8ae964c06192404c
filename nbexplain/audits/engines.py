"""Engines only schedule ``nbexplain.audits.rows.AuditWorker``; the driver writes every shard.

``local``: one worker in this process. ``ray``: Ray Data streams the ids through an actor pool,
each actor building its model and worker once; rows come back to the driver, which writes them,
so a cluster needs no shared storage and resuming is the store's business, not Ray's.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from typing import Callable, Iterator, Sequence

import pyarrow as pa

from ..errors import RayEngineError
from .rows import AuditWorker

ENGINES = ("local", "ray")
RAY_EXTRA = "pip install 'nbexplain[ray]'"


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for k in range(0, len(ids), size):
        yield list(ids[k:k + size])


def run_local(make_worker: Callable[[], AuditWorker], ids: Sequence[int], chunk: int) -> Iterator[pa.Table]:
    worker = make_worker()
    for part in chunks(ids, chunk):
        yield worker.rows(part)


_MARK = re.compile(r"<nbexplain-actor-error>(.*?)</nbexplain-actor-error>")


class _ActorFailure(Exception):
    """An actor's own error, marked in its message so that the driver finds it in Ray's text."""

    def __init__(self, err: BaseException):
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        if type(err).__module__.startswith("ray.") and lines:  # Ray's own text ends with the error it wraps
            text = lines[-1]
        else:
            text = " / ".join(lines)
        super().__init__(f"<nbexplain-actor-error>{type(err).__name__}: {text}</nbexplain-actor-error>")


class RayAuditActor:
    """One Ray actor: fetches the model and data once, builds its worker once, explains batches of ids."""

    def __init__(self, refs: list, options: dict, threads: int, use_gpu: bool):
        import ray
        import torch

        torch.set_num_threads(threads)  # its share of the node's CPUs: actors do not oversubscribe
        try:
            model, data = ray.get(refs[0])  # a list keeps the ref unresolved until here: fetched once per actor
            if use_gpu and torch.cuda.is_available():
                model = model.to("cuda")  # this actor's own copy
            self.worker = AuditWorker(model, data, **options)
        except Exception as err:
            raise _ActorFailure(err) from err

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return self.worker.rows(batch["id"].to_pylist())
        except Exception as err:
            raise _ActorFailure(err) from err


def run_ray(model, data, options: dict, ids: Sequence[int], chunk: int, *, actors: int | None = None,
            cpus_per_actor: float = 1, gpus_per_actor: float = 0, address: str | None = None,
            num_cpus: int | None = None) -> Iterator[pa.Table]:
    """Explain ``ids`` of ``data`` with ``model`` on Ray Data (``options``: the rest of
    ``AuditWorker``'s keywords).

    ``address``: a cluster to join (default: the one Ray is connected to, ``RAY_ADDRESS`` as in a
    submitted job, or else a local cluster that ``ray.init()`` starts, with ``num_cpus`` CPUs if
    given); ``actors``: the pool's size (default: what the cluster's CPUs and GPUs allow, at most
    one per chunk of ids). The model and data travel once (``ray.put``); each actor fetches them
    once and explains ``chunk`` ids per call."""
    ray = import_ray()
    from ray.data import ActorPoolStrategy

    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise ValueError(f"cpus_per_actor must be > 0 and gpus_per_actor >= 0, got {cpus_per_actor}, {gpus_per_actor}")
    fixed = init_ray(address=address, num_cpus=num_cpus)
    resources = ray.cluster_resources()
    n_chunks = max(1, math.ceil(len(ids) / chunk))
    if actors is None:
        actors = int(resources.get("CPU", 1) // cpus_per_actor)
        if gpus_per_actor:
            actors = min(actors, int(resources.get("GPU", 0) // gpus_per_actor))
        actors = max(1, actors)
    if actors < 1:
        raise ValueError(f"actors must be at least 1, got {actors}")
    actors = min(actors, n_chunks)  # an actor more than there are chunks would only start up
    need = {"CPU": actors * cpus_per_actor, "GPU": actors * gpus_per_actor}
    short = [f"{need[k]:g} {k}s (it has {resources.get(k, 0):g})" for k in need if need[k] > resources.get(k, 0) + 1e-9]
    if short and fixed:  # Ray would wait for ever for resources that never come
        raise ValueError(f"{actors} actors need {' and '.join(short)} of the local Ray cluster; "
                         "ask for fewer actors or fewer CPUs or GPUs per actor (or start Ray with more)")

    remote = {}
    if fixed:  # actors on this machine import what this process imports (a model's module beside the script)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        remote["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
    refs = [ray.put((model, data))]
    ds = ray.data.from_items([{"id": int(i)} for i in ids], override_num_blocks=n_chunks)
    _quiet(ds.context)
    out = ds.map_batches(
        RayAuditActor, fn_constructor_args=(refs, options, max(1, int(cpus_per_actor)), gpus_per_actor > 0),
        batch_size=chunk, batch_format="pyarrow", zero_copy_batch=True,
        compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor, **remote,
    )
    return _stream(ray, out)  # set up (and checked) now; the actors start as the rows are read


def _stream(ray, out) -> Iterator[pa.Table]:
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(max(level, logging.ERROR))  # no banners and stats lines between the audit's own
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            if batch.num_rows:
                yield batch
    except Exception as err:
        if _is_ray_error(ray, err):
            where = "an actor could not start" if "creation task" in str(err) else "an actor failed"
            raise RayEngineError(f"the Ray engine failed, {where}: {_root_cause(err)}") from err
        raise
    finally:
        data_log.setLevel(level)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray unless connected: to ``address`` (or ``RAY_ADDRESS``, as in a submitted job),
    else start a local cluster (of ``num_cpus`` CPUs if given). True where the cluster is this
    machine's and cannot grow (one started here or found running here), False for one joined by
    address (it may autoscale)."""
    ray = import_ray()
    joining = address is not None or bool(os.environ.get("RAY_ADDRESS"))
    if ray.is_initialized():
        return not joining
    if joining and num_cpus is not None:
        raise ValueError("num_cpus sizes a local Ray cluster; a cluster joined by address has its own")
    kwargs = dict(log_to_driver=False, logging_level="warning")
    if not joining:
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
    ray.init(address=address, **kwargs)
    return not joining


def _quiet(ctx) -> None:
    """No Ray Data progress bars or execution banners: the audit has its own bar."""
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def _is_ray_error(ray, err: BaseException) -> bool:
    from ray.data.exceptions import UserCodeException

    return isinstance(err, (ray.exceptions.RayError, UserCodeException))


def _root_cause(err: BaseException) -> str:
    """What failed inside Ray, in one line. Ray keeps an actor's exception only as the text of its
    remote traceback: the actor marks its own error there (``_ActorFailure``)."""
    found = _MARK.findall(str(err))
    if found:
        return found[-1]
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is an extra of Ray)
    except ImportError as err:
        raise ImportError(f"engine='ray' needs Ray Data: {RAY_EXTRA} (or pip install 'ray[data]')") from err
    return ray
