"""Dataset audits: the data kinds, the run folder (whole shards, resume, manifest), grouping,
suspicion and the command line. Small models, few images and few steps: these are about the
machinery, not the quality of the masks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import make_tiny
from nbexplain.config import ExplainConfig

from nbexplain.audits import pipeline as audit_mod
from nbexplain.audits import data as data_mod
from nbexplain.audits import store as store_mod
from nbexplain.audits import rows as rows_mod
from nbexplain.audits import grouping as grouping
from nbexplain.audits import suspicion as suspicion
from nbexplain import __main__ as cli

audit, Audit = audit_mod.audit, audit_mod.Audit
ManifestMismatch = store_mod.ManifestMismatch

#: the fast preset, cut further: these tests check the machinery, not the masks
TINY = ExplainConfig.preset("fast", steps=4, min_steps=4, warmup=2, mask_resolution=16, unet_width=4,
                            robustness_draws=0, retry_area=None)
TINY_CLI = "fast,steps=4,min_steps=4,warmup=2,mask_resolution=16,unet_width=4,robustness_draws=0,retry_area=None"
REPO = Path(__file__).resolve().parents[1]


def tiny_images(n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 32, 32, generator=g) for _ in range(n)]  # model space: normalised


def tiny_pairs() -> list:
    """DATA for the command line's module:function (this module is importable under pytest)."""
    return [(x, k % 2) for k, x in enumerate(tiny_images(4))]


def run(out, model=None, data=None, **kw):
    kw = {"config": TINY, "circuits": False, "chunk": 2, "progress": False, "gallery": False, **kw}
    return audit(make_tiny() if model is None else model, tiny_images() if data is None else data, out=out, **kw)


def shard_files(out) -> list[Path]:
    return sorted(Path(out, "rows").glob("part-*.parquet"))


@pytest.fixture
def count_rows(monkeypatch):
    """Records the ids every AuditWorker.rows call explains."""
    calls: list[list[int]] = []
    original = rows_mod.AuditWorker.rows

    def rows(self, ids):
        calls.append([int(i) for i in ids])
        return original(self, ids)

    monkeypatch.setattr(rows_mod.AuditWorker, "rows", rows)
    return calls


# -- data -------------------------------------------------------------------------------------
def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)


def test_data_lists_of_images_and_pairs():
    pil = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    arr = np.ones((8, 8, 3), dtype=np.uint8)
    d = data_mod.as_audit_data([pil, arr, torch.rand(3, 8, 8)])
    assert len(d) == 3 and d.label(0) is None and d.image(1) is arr and d.class_names is None
    pairs = data_mod.as_audit_data([(pil, 1), (arr, torch.tensor(2))])
    assert [pairs.label(i) for i in range(2)] == [1, 2] and pairs.image(0) is pil
    with pytest.raises(IndexError, match="out of range"):
        pairs.image(2)


def test_data_tensor_dataset_and_scenes():
    from torch.utils.data import Dataset, TensorDataset

    from nbexplain.datasets import make_scenes

    t = torch.rand(5, 3, 8, 8)
    d = data_mod.as_audit_data(t)
    assert len(d) == 5 and torch.equal(d.image(4), t[4]) and d.label(0) is None

    ds = data_mod.as_audit_data(TensorDataset(t, torch.tensor([0, 1, 0, 1, 2])))
    assert len(ds) == 5 and [ds.label(i) for i in range(5)] == [0, 1, 0, 1, 2]

    class Named(Dataset):
        classes = ["a", "b"]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return t[i], i

    named = data_mod.as_audit_data(Named())
    assert named.class_names == ["a", "b"] and named.label(1) == 1 and named.source == "Named"

    class Lists(Named):  # [image, label] items, as some datasets give
        def __getitem__(self, i):
            return [t[i], i]

    lists = data_mod.as_audit_data(Lists())
    assert lists.label(1) == 1 and torch.equal(lists.image(1), t[1])

    scenes = make_scenes(3, seed=0, size=32)
    sd = data_mod.as_audit_data(scenes)
    assert sd.label(2) == int(scenes.labels[2]) and sd.class_names == scenes.class_names
    assert sd.has_masks and np.array_equal(sd.object_mask(1), scenes.masks[1].numpy())
    assert sd.image(0).shape == (32, 32, 3)


def test_data_folders(tmp_path):
    for cls, names in {"cat": ["a.png", "b.png"], "dog": ["c.png"]}.items():
        for k, name in enumerate(names):
            _png(tmp_path / "labelled" / cls / name, k)
    d = data_mod.as_audit_data(tmp_path / "labelled")
    assert len(d) == 3 and d.class_names == ["cat", "dog"]
    assert [d.key(i) for i in range(3)] == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert [d.label(i) for i in range(3)] == [0, 0, 1]
    assert d.image(2).mode == "RGB" and d.image(2).size == (24, 24)

    for k in range(2):
        _png(tmp_path / "flat" / f"{k}.png", k)
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    flat = data_mod.as_audit_data(str(tmp_path / "flat"))
    assert len(flat) == 2 and flat.label(0) is None and flat.class_names is None


def test_data_refused_with_clear_errors(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.rand(2, 3, 8, 8)), shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        data_mod.as_audit_data(loader)
    with pytest.raises(ValueError, match="no images"):
        data_mod.as_audit_data([])
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        data_mod.as_audit_data(torch.rand(3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        data_mod.as_audit_data(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        data_mod.as_audit_data(tmp_path / "missing")
    with pytest.raises(TypeError, match="cannot audit a int"):
        data_mod.as_audit_data(3)


def test_audit_of_a_labelled_folder(tmp_path):
    for k in range(4):
        _png(tmp_path / "imgs" / ("even" if k % 2 == 0 else "odd") / f"{k}.png", k)
    a = run(tmp_path / "run", data=tmp_path / "imgs", target="label", model=make_tiny(classes=2))
    t = a.table
    assert sorted(t["id"]) == [0, 1, 2, 3] and list(t["key"]) == ["even/0.png", "even/2.png", "odd/1.png", "odd/3.png"]
    assert list(t["target"]) == list(t["label"]) == [0, 0, 1, 1]
    assert a.labels == ["even", "odd"] and t["error"].isna().all()
    assert a.mask(0).shape == (24, 24) and a.thumbnail(0)[:2] == b"\xff\xd8"  # a JPEG


# -- the run folder ---------------------------------------------------------------------------
def test_a_shard_is_whole_or_absent(tmp_path, monkeypatch):
    a = run(tmp_path / "run", data=tiny_images(2))
    store = a.store
    table = store.read_rows()

    def crash(src, dst):  # killed between writing and moving into place
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_rows(table)
    monkeypatch.undo()
    assert len(shard_files(tmp_path / "run")) == 1  # the half-written shard never became one
    assert list((tmp_path / "run" / "rows").glob("*.tmp"))
    assert [p.name for p in store.clean()][0].endswith(".tmp")
    assert not list((tmp_path / "run" / "rows").glob("*.tmp"))
    with pytest.raises(ValueError, match="empty"):
        store.write_rows(table.slice(0, 0))


def test_resume_removes_broken_shards_and_redoes_their_images(tmp_path, count_rows):
    out = tmp_path / "run"
    run(out)  # 6 images, 3 shards of 2
    shards = shard_files(out)
    assert len(shards) == 3 and sorted(i for call in count_rows for i in call) == list(range(6))
    truncated, garbled, kept = shards
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbled.write_bytes(b"\0" * 64 + garbled.read_bytes()[64:-16] + b"garbage!" * 2)
    stray = out / "rows" / "part-000000099-deadbeef.parquet.tmp"
    stray.write_bytes(b"half a shard")
    redo = sorted(pq.read_table(kept, columns=["id"])["id"].to_pylist())
    kept_mtime = kept.stat().st_mtime_ns

    count_rows.clear()
    a = run(out)
    explained = sorted(i for call in count_rows for i in call)
    assert explained == sorted(set(range(6)) - set(redo))  # only the broken shards' images again
    assert not stray.exists() and not truncated.exists() and not garbled.exists()
    assert kept.stat().st_mtime_ns == kept_mtime
    assert sorted(a.table["id"]) == list(range(6)) and len(a) == 6


def test_duplicate_rows_count_once(tmp_path):
    out = tmp_path / "run"
    run(out, data=tiny_images(4))
    first = shard_files(out)[0]
    copy = first.with_name(first.name.replace(".parquet", "-copy.parquet"))
    copy.write_bytes(first.read_bytes())  # two runs wrote the same images
    assert len(shard_files(out)) == 3
    a = Audit.load(out)
    assert sorted(a.table["id"]) == [0, 1, 2, 3] and len(a) == 4
    assert a.store.read_rows().num_rows == 4


def test_manifest_mismatch_is_refused_naming_what_differs(tmp_path):
    out = tmp_path / "run"
    run(out, data=tiny_images(2))
    with pytest.raises(ManifestMismatch, match=r"another model \(model: "):
        run(out, data=tiny_images(2), model=make_tiny(seed=1))
    with pytest.raises(ManifestMismatch, match=r"another config \(config: "):
        run(out, data=tiny_images(2), seed=1)
    with pytest.raises(ManifestMismatch, match=r"another data \(data: "):
        run(out, data=tiny_images(2, seed=5))
    with pytest.raises(ManifestMismatch, match="another model and config"):
        run(out, data=tiny_images(2), model=make_tiny(seed=1), config=TINY.replace(steps=5))


def test_an_audit_of_another_method_is_not_resumed_but_another_version_of_the_same_method_is(tmp_path, monkeypatch):
    import nbexplain
    from nbexplain import fingerprint

    out = tmp_path / "run"
    run(out, data=tiny_images(2))
    made_by = re.escape(nbexplain.__version__)  # the version that wrote the audit
    monkeypatch.setattr(nbexplain, "__version__", "9.9.9")
    assert len(run(out, data=tiny_images(2)).table) == 2  # only the version moved: the same method resumes
    monkeypatch.setattr(fingerprint, "method_fingerprint", lambda: "0123456789ab")
    with pytest.raises(ManifestMismatch, match=rf"made by nbexplain {made_by} \(method [0-9a-f]{{12}}\), "
                                               r"this is 9\.9\.9 \(method 0123456789ab\)"):
        run(out, data=tiny_images(2))
    manifest = json.loads((out / "manifest.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{12}", manifest["method"])
    assert "method fingerprint" in manifest["refuses"]


def test_a_function_preprocess_resumes(tmp_path):
    """The manifest records a preprocess function by name, not by its address in one process."""
    pixels = [np.full((16, 16, 3), 40 * k, dtype=np.uint8) for k in range(2)]

    def to_tensor():  # a new function object (at a new address) for each run
        return lambda im: torch.from_numpy(im).permute(2, 0, 1).float() / 255

    run(tmp_path / "run", data=pixels, preprocess=to_tensor())
    a = run(tmp_path / "run", data=pixels, preprocess=to_tensor())  # resumes: no ManifestMismatch
    assert len(a) == 2 and " at 0x" not in a.manifest["options"]["preprocess"]


def test_load_reopens_without_a_model_and_explains_again_with_one(tmp_path):
    out = tmp_path / "run"
    model, data = make_tiny(), tiny_images(4)
    a = run(out, model=model, data=data, chunk=4)
    b = Audit.load(out)
    cols = ["id", "pred", "target", "area", "prob_original", "group"]
    assert b.table[cols].equals(a.table[cols])
    assert [g.indices.tolist() for g in b.groups] == [g.indices.tolist() for g in a.groups]
    assert not b.group_table.empty and "suspicion" in b.group_table
    with pytest.raises(ValueError, match=r"Audit\.load\(out, model=\.\.\., data=\.\.\.\)"):
        b.explain(0)
    with pytest.raises(ValueError, match="not those audited"):
        Audit.load(out, model=make_tiny(seed=3), data=data)

    c = Audit.load(out, model=model, data=data)
    res = c.explain(1, progress=False, live=False)
    assert np.array_equal(res.mask.numpy() > 0.5, a.mask(1))  # the same seed gives the stored mask
    assert res.target == int(a.table.loc[1, "target"])


def test_load_of_a_folder_without_an_audit(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no audit"):
        Audit.load(tmp_path)


# -- resume -----------------------------------------------------------------------------------
def test_an_interrupted_audit_resumes_without_redoing_finished_images(tmp_path, monkeypatch, count_rows):
    out = tmp_path / "run"
    original = store_mod.AuditStore.write_rows
    written = []

    def write_then_die(self, table):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(table["id"].to_pylist())
        return original(self, table)

    monkeypatch.setattr(store_mod.AuditStore, "write_rows", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(out, data=tiny_images(8))
    monkeypatch.setattr(store_mod.AuditStore, "write_rows", original)
    finished = sorted(i for ids in written for i in ids)
    assert len(shard_files(out)) == 2 and len(finished) == 4

    count_rows.clear()
    a = run(out, data=tiny_images(8))
    redone = sorted(i for call in count_rows for i in call)
    assert redone == sorted(set(range(8)) - set(finished))
    ids = a.store.read_rows(columns=["id"])["id"].to_pylist()
    assert ids == list(range(8))  # every id exactly once
    again = [pq.read_table(p, columns=["id"])["id"].to_pylist() for p in shard_files(out)]
    assert sorted(i for s in again for i in s) == list(range(8))  # and in no two shards


def test_kill_9_then_resume(tmp_path):
    """A real SIGKILL in the middle of the command line's audit; the rerun finishes it."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nbexplain", "audit", "shortcut", "scenes:n=24,seed=0,size=48", "--out", str(out),
           "--chunk", "4", "--config", TINY_CLI, "--no-circuits", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(shard_files(out)) < 2:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no two shards in 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in shard_files(out)}
    assert 2 <= len(before) < 6, "the audit ended before it was killed"

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "most suspicious first" in done.stdout and str(out.resolve()) in done.stdout
    after = {p.name: p.stat().st_mtime_ns for p in shard_files(out)}
    assert all(after.get(name) == mtime for name, mtime in before.items())  # earlier shards untouched
    ids = [i for p in shard_files(out) for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]
    assert sorted(ids) == list(range(24))  # every id exactly once


# -- grouping ---------------------------------------------------------------------------------
def _blobs(seed=0, n=30, dim=16, spread=0.05):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, spread, (n, dim)) + np.eye(dim)[0]
    b = rng.normal(0, spread, (n, dim)) + np.eye(dim)[1]
    return np.vstack([a, b]).astype(np.float32)


def test_two_blobs_make_two_groups_one_blob_one():
    labels, lam = grouping.spectral_groups(grouping.knn_graph(_blobs(), 10), max_groups=8, seed=0)
    assert len(np.unique(labels)) == 2
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1 and labels[0] != labels[30]
    assert lam[1] < 1e-6 < lam[2]  # two components: two zero eigenvalues, then the gap
    one = np.random.default_rng(1).normal(size=(60, 16)).astype(np.float32)
    labels, _ = grouping.spectral_groups(grouping.knn_graph(one, 10), max_groups=8, seed=0)
    assert len(np.unique(labels)) == 1


def test_knn_graph_is_sparse_and_symmetric():
    x = np.random.default_rng(2).normal(size=(200, 8)).astype(np.float32)
    k = 10
    a = grouping.knn_graph(x, k, block=64)  # several blocks
    assert a.shape == (200, 200) and a.nnz <= 200 * k * 2
    assert abs(a - a.T).max() == 0
    assert a.diagonal().max() == 0 and (a.data > 0).all() and (a.data <= 1).all()


def test_group_labels_are_deterministic_for_a_seed():
    x = np.vstack([_blobs(seed=3, spread=0.3), np.random.default_rng(4).normal(size=(20, 16))]).astype(np.float32)
    a = grouping.knn_graph(x, 10)
    first = grouping.spectral_groups(a, seed=7)[0]
    assert np.array_equal(first, grouping.spectral_groups(a, seed=7)[0])
    emb = np.random.default_rng(5).normal(size=(50, 3))
    assert np.array_equal(grouping.kmeans(emb, 3, seed=1), grouping.kmeans(emb, 3, seed=1))
    sizes = np.bincount(grouping.kmeans(emb, 3, seed=1))
    assert list(sizes) == sorted(sizes, reverse=True)  # numbered by size, largest first


def test_mask_features_are_unit_rows():
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[0, :4, :4] = True
    masks[1, -4:, -4:] = True
    f = grouping.mask_features(masks, grid=8)
    assert f.shape == (3, 64)
    assert np.allclose(np.linalg.norm(f[:2], axis=1), 1) and np.allclose(f[2], 0)


# -- suspicion --------------------------------------------------------------------------------
def test_same_place_near_one_for_a_corner_near_zero_for_moving_objects():
    rng = np.random.default_rng(0)
    corner = np.zeros((12, 128, 128), dtype=bool)
    corner[:, :12, :12] = True  # every member keeps the same corner pixels
    corner[np.arange(12), rng.integers(30, 120, 12), rng.integers(30, 120, 12)] = True  # and a stray pixel
    shared, place = suspicion.same_place(suspicion.pooled_masks(list(corner)))
    assert place > 0.95 and shared.shape == (suspicion.MAP_SIDE, suspicion.MAP_SIDE)

    moving = np.zeros((12, 128, 128), dtype=bool)
    for k in range(12):  # an object of the same size at a random place in each image
        y, x = rng.integers(0, 100, 2)
        moving[k, y:y + 20, x:x + 20] = True
    _, place = suspicion.same_place(suspicion.pooled_masks(list(moving)))
    assert place < 0.1


def test_same_place_leaves_each_member_out():
    # Two members at different places: each keeps pixels only it keeps. Counting the member itself,
    # each of its pixels would be kept by half the group, and the pair would look pinned to the frame.
    apart = np.zeros((2, 128, 128), dtype=bool)
    apart[0, 10:30, 10:30] = True
    apart[1, 90:110, 90:110] = True
    assert suspicion.same_place(suspicion.pooled_masks(list(apart)))[1] == 0.0
    together = np.zeros((2, 128, 128), dtype=bool)
    together[:, 10:30, 10:30] = True
    assert suspicion.same_place(suspicion.pooled_masks(list(together)))[1] == pytest.approx(1.0)
    assert np.isnan(suspicion.same_place(suspicion.pooled_masks(list(apart[:1])))[1])  # a group of one


def test_suspicion_is_transplant_times_place():
    g = suspicion.Group(index=0, target=1, target_name="x", indices=np.arange(3), shared_map=np.zeros((2, 2)),
                        representative=0, channels=[], transplant=0.5, same_place=0.2, off_object=0.8,
                        accuracy=1.0, mean_area=0.1)
    assert g.suspicion == pytest.approx(0.4)
    untested = suspicion.Group(index=0, target=1, target_name="x", indices=np.arange(3), shared_map=np.zeros((2, 2)),
                               representative=0, channels=[], transplant=float("nan"), same_place=1.0,
                               off_object=float("nan"), accuracy=float("nan"), mean_area=0.1)
    assert untested.suspicion == 0.0
    by_size = suspicion.Group(index=0, target=1, target_name="x", indices=np.arange(3), shared_map=np.zeros((2, 2)),
                              representative=0, channels=[], transplant=0.5, same_place=0.2, off_object=0.8,
                              accuracy=1.0, mean_area=0.5, transplant_control=0.4)
    assert by_size.suspicion == pytest.approx(0.1 * 0.8)  # what moved pixels transplant as well is not the evidence


def test_same_place_discounts_what_large_masks_share_by_chance():
    big = np.zeros((2, 128, 128), dtype=bool)
    big[0, :, :100] = True  # two masks of most of the frame overlap whatever they keep
    big[1, :, 28:] = True
    share = suspicion.same_place(suspicion.pooled_masks(list(big)))[1]
    assert share < 0.5


# -- engines ----------------------------------------------------------------------------------
def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'nbexplain\[ray\]'"):
        run(tmp_path / "run", engine="ray")
    assert not (tmp_path / "run").exists()  # refused before any work
    with pytest.raises(ValueError, match="engine must be one of"):
        run(tmp_path / "run", engine="spark")


# -- command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("model, data, message", [
    ("nosuchmodel", "scenes:n=2", "unknown MODEL_SPEC 'nosuchmodel'"),
    ("missing/model.pt", "scenes:n=2", "does not exist"),
    ("nosuchmodule_xyz:build", "scenes:n=2", "cannot import nosuchmodule_xyz"),
    ("os:getcwd", "scenes:n=2", "returned a str, not an nn.Module"),
    ("{state}", "scenes:n=2", "holds a state_dict"),
    ("shortcut", "nowhere", "unknown DATA 'nowhere'"),
    ("shortcut", "scenes:n=2,colour=1", "unexpected keyword argument 'colour'"),
    ("shortcut", "scenes:n=", "must read like keyword arguments"),
    ("shortcut", "test_audit:empty_data", "the data holds no images"),
])
def test_cli_bad_specs_exit_2_with_one_line(tmp_path, capsys, model, data, message):
    if model == "{state}":
        model = str(tmp_path / "state.pt")
        torch.save(make_tiny().state_dict(), model)
    status = cli.main(["audit", model, data, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def empty_data():
    return []


def test_cli_bad_options_exit_2(tmp_path, capsys):
    for extra in (["--config", "turbo"], ["--config", "fast,stepz=3"], ["--target", "best"], ["--chunk", "0"]):
        assert cli.main(["audit", "shortcut", "scenes:n=2", "--out", str(tmp_path), *extra]) == 2
        assert capsys.readouterr().err.startswith("nbexplain audit: ")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "shortcut"])  # no DATA: argparse's usage error
    assert exit_.value.code == 2


def test_cli_config_and_target_parsing():
    assert cli.parse_config("fast") == ExplainConfig.preset("fast")
    assert cli.parse_config("default,steps=7") == ExplainConfig.preset("default", steps=7)
    assert cli.parse_config("steps=7,fill='mean'") == ExplainConfig.preset("fast", steps=7, fill="mean")
    assert cli.parse_target("label") == "label" and cli.parse_target("3") == 3


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notes
def test_cli_model_specs(tmp_path):
    from nbexplain.zoo import ZooModel

    assert isinstance(cli.load_model_spec("shortcut"), ZooModel)
    whole = tmp_path / "whole.pt"
    torch.save(make_tiny(), whole)
    loaded = cli.load_model_spec(str(whole))
    assert isinstance(loaded, torch.nn.Module) and not loaded.training
    assert audit_mod.model_fingerprint(loaded) == audit_mod.model_fingerprint(make_tiny())
    assert isinstance(cli.load_model_spec("conftest:make_tiny"), torch.nn.Module)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(make_tiny()), scripted)
    with pytest.raises(cli.SpecError, match="TorchScript"):
        cli.load_model_spec(str(scripted))
    mix = cli.load_data_spec("shortcut-mix:n=6,seed=1,size=32")
    assert len(mix) == 6 and mix.images.shape[-1] == 32


def test_cli_tiny_run_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["audit", "shortcut", "scenes:n=6,seed=0,size=48", "--out", str(out), "--chunk", "3", "--config", TINY_CLI,
            "--no-circuits", "--quiet"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "6 images (0 could not be explained)" in printed and "most suspicious first" in printed
    assert "suspicion" in printed and f"store: {out.resolve()}" in printed
    assert len(shard_files(out)) == 2
    before = {p.name for p in shard_files(out)}
    assert cli.main(args) == 0  # nothing left to explain: the same groups again
    assert {p.name for p in shard_files(out)} == before and "6 images" in capsys.readouterr().out
    assert cli.main(["audit", "honest", *args[2:]]) == 2  # another model into the same folder
    assert "holds an audit of another model" in capsys.readouterr().err


def test_cli_function_data_and_label_target(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["audit", "conftest:make_tiny", "test_audit:tiny_pairs", "--out", str(out), "--target", "label",
                     "--config", TINY_CLI, "--no-circuits", "--quiet", "--chunk", "4"]) == 0
    t = Audit.load(out).table
    assert list(t["target"]) == [0, 1, 0, 1] == list(t["label"])
    assert cli.main(["audit", "conftest:make_tiny", "test_audit:tiny_images", "--out", str(tmp_path / "b"),
                     "--target", "label"]) == 2
    assert "needs labelled data" in capsys.readouterr().err
