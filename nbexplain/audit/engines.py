"""Engines only schedule :class:`~nbexplain.audit.rows.AuditWorker`; the driver writes every shard.

``local``: one worker in this process. ``ray``: Ray Data streams the ids through an actor pool,
each actor building its model and worker once; rows come back to the driver, which writes them,
so a cluster needs no shared storage and resuming is the store's business, not Ray's.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

import pyarrow as pa

from .rows import AuditWorker

ENGINES = ("local", "ray")


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for k in range(0, len(ids), size):
        yield list(ids[k:k + size])


def run_local(make_worker: Callable[[], AuditWorker], ids: Sequence[int], chunk: int) -> Iterator[pa.Table]:
    worker = make_worker()
    for part in chunks(ids, chunk):
        yield worker.rows(part)


def run_ray(make_worker: Callable[[], AuditWorker], ids: Sequence[int], chunk: int, *, actors: int | None = None,
            cpus_per_actor: float = 1, gpus_per_actor: float = 0, address: str | None = None) -> Iterator[pa.Table]:
    """Explain ``ids`` on Ray Data. ``address``: a cluster to join (default: the running one, or a
    local cluster that ``ray.init()`` starts); ``actors``: pool size (default: what the cluster's
    CPUs allow)."""
    ray = import_ray()
    from ray.data import ActorPoolStrategy

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
    threads = max(1, int(cpus_per_actor))

    class Actor:
        def __init__(self):
            import torch

            torch.set_num_threads(threads)  # one actor per CPU share: no oversubscription
            self.worker = make_worker()

        def __call__(self, batch: pa.Table) -> pa.Table:
            return self.worker.rows(batch["id"].to_pylist())

    ds = ray.data.from_items([{"id": int(i)} for i in ids], override_num_blocks=max(1, -(-len(ids) // chunk)))
    out = ds.map_batches(Actor, batch_size=chunk, batch_format="pyarrow", compute=ActorPoolStrategy(size=actors),
                         num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)
    for batch in out.iter_batches(batch_size=None, batch_format="pyarrow"):
        if batch.num_rows:
            yield batch


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is an extra of Ray)
    except ImportError as err:
        raise ImportError(
            "engine='ray' needs Ray Data: pip install 'nbexplain[ray]' (or pip install 'ray[data]')"
        ) from err
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    return ray
