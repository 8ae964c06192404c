"""The Ray engine against the local one, on a local Ray cluster of 2 CPUs.

Ray is a test requirement (``pip install -e '.[test]'`` brings ``ray[data]``): these tests fail,
rather than skip, where it is missing."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import ray  # no importorskip: CI installs the test extra, and a missing Ray must show
import torch

from nbexplain.datasets import make_scenes
from nbexplain.zoo import load_model

from nbexplain.audits import pipeline as audit_mod
from nbexplain.audits import engines as engines
from nbexplain import __main__ as cli
from test_audit import TINY, TINY_CLI  # noqa: E402  (the same cut-down preset)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's notes on its own options

SCENES = dict(n=8, seed=0, size=48, shortcut=True)
ROW_FIELDS = ["id", "key", "label", "pred", "target", "correct", "prob_original", "prob_explanation", "area",
              "label_kept", "empty_but_kept", "robustness", "on_object", "mask_h", "mask_w", "mask_bits", "error"]


@pytest.fixture(scope="module")
def local_ray():
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    logging.getLogger("ray").setLevel(logging.ERROR)
    print(f"Ray started in {time.perf_counter() - start:.1f} s")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def shortcut():
    return load_model("shortcut")


def test_ray_rows_equal_local_rows(tmp_path, local_ray, shortcut):
    """The same seeds give the same masks on both engines: per-image seeds, not per-worker state."""
    scenes = make_scenes(**SCENES)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor (1 CPU): the same arithmetic, to the last bit
    try:
        local = audit_mod.audit(shortcut, scenes, out=tmp_path / "local", config=TINY, circuits=False, chunk=2,
                                progress=False, gallery=False)
    finally:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    # The Ray side as a user submits it: the command line, on the cluster it finds running.
    spec = "scenes:" + ",".join(f"{k}={v}" for k, v in SCENES.items())
    status = cli.main(["audit", "shortcut", spec, "--out", str(tmp_path / "ray"), "--engine", "ray", "--actors", "2",
                       "--cpus-per-actor", "1", "--chunk", "2", "--config", TINY_CLI, "--no-circuits", "--quiet"])
    print(f"Ray audit of {SCENES['n']} images: {time.perf_counter() - start:.1f} s")
    assert status == 0
    remote = audit_mod.Audit.load(tmp_path / "ray")
    assert remote.manifest["fingerprints"] == local.manifest["fingerprints"]
    a = local.store.read_rows(columns=ROW_FIELDS).to_pandas()
    b = remote.store.read_rows(columns=ROW_FIELDS).to_pandas()
    assert list(b["id"]) == list(range(SCENES["n"]))
    assert a.equals(b), a.compare(b)
    for i in range(SCENES["n"]):
        assert np.array_equal(local.mask(i), remote.mask(i))
    assert [g.indices.tolist() for g in remote.groups] == [g.indices.tolist() for g in local.groups]


def test_ray_resumes_what_the_local_engine_began(tmp_path, local_ray, shortcut):
    """One store, two engines: the Ray run explains only what is missing."""
    scenes = make_scenes(**{**SCENES, "n": 4})
    out = tmp_path / "run"
    kw = dict(out=out, config=TINY, circuits=False, chunk=2, progress=False, gallery=False)
    audit_mod.audit(shortcut, scenes, **kw)  # all four, locally
    first = sorted(p.name for p in (out / "rows").glob("part-*.parquet"))
    (out / "rows" / first[1]).unlink()  # lose the second shard (ids 2, 3)
    a = audit_mod.audit(shortcut, scenes, engine="ray", actors=2, **kw)
    shards = sorted(p.name for p in (out / "rows").glob("part-*.parquet"))
    assert first[0] in shards and len(shards) == 2  # the first shard kept, one new one for the 2 lost ids
    assert sorted(a.table["id"]) == [0, 1, 2, 3]


class Boom(torch.nn.Module):
    """Works on single images, fails on the batches the explainer scores."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("boom in forward")
        return self.net(x)


def test_a_failure_inside_an_actor_surfaces_clearly(tmp_path, local_ray, shortcut):
    scenes = make_scenes(2, seed=0, size=48)
    with pytest.raises(engines.RayEngineError, match="an actor failed: RuntimeError: boom in forward"):
        audit_mod.audit(Boom(shortcut.model), scenes, preprocess=shortcut.preprocess, out=tmp_path / "run",
                        config=TINY, circuits=False, chunk=1, engine="ray", actors=1, progress=False, gallery=False)
    assert not list((tmp_path / "run" / "rows").glob("part-*"))  # nothing half-stored


def test_a_pool_larger_than_the_local_cluster_is_refused(tmp_path, local_ray, shortcut):
    scenes = make_scenes(4, seed=0, size=48)
    with pytest.raises(ValueError, match=r"3 actors need 3 CPUs \(it has 2\)"):
        audit_mod.audit(shortcut, scenes, out=tmp_path / "run", config=TINY, circuits=False, chunk=1, engine="ray",
                        actors=3, progress=False, gallery=False)
    with pytest.raises(ValueError, match="GPUs"):
        audit_mod.audit(shortcut, scenes, out=tmp_path / "run", config=TINY, circuits=False, chunk=1, engine="ray",
                        actors=1, gpus_per_actor=1, progress=False, gallery=False)
