"""Dataset audits: does the most suspicious group find the planted shortcut, at what cost?

    python benchmarks/bench_audit.py                   # every section, every baseline, one run
    python benchmarks/bench_audit.py --sections quality --n 60

Sections (each prints a table):

* ``quality``: the ``shortcut`` zoo model on ``shortcut_mix`` (clean scenes, triangles with the
  corner cue, other classes with the cue). An image is *decided by the cue* when the model calls it
  a triangle and calls the same scene without the cue something else. The most suspicious group's
  precision (share of its images that carry the cue) and recall (share of the cue-decided images
  it holds), against SpRAy (Lapuschkin et al., 2019: spectral clustering of attribution maps
  pooled to 16 x 16, with the same graph, eigengap and k-means) on Captum Grad-CAM maps and on
  occlusion maps. SpRAy leaves the verdict to a person; two readings of it are scored: its own
  (the class with the largest eigengap, that class's largest group) and an oracle pick (the cue
  class's group that best matches the truth: the most a person could get from it). The same
  audit on the ``honest`` model gives the no-false-alarm row. Grouping and the tests are timed
  against the explanations.
* ``wandering``: a cue whose place varies. A model of the zoo's ResNet architecture is trained here
  (cached under ``out/bench_audit/``; ``--wander-steps``) on scenes where 95 % of the triangles carry
  the corner cue in one of the four corners, drawn at random, and no other image does. The same mix
  as ``quality``, with each cue moved to a random corner, is audited; the most suspicious group
  must still hold the cue-decided images (one shortcut, one group, wherever its evidence lies).
* ``engines``: the same audit of ``--engine-n`` scenes on the local engine and on Ray Data (2
  actors of 1 CPU, a local cluster), throughput, Ray's start-up, peak memory, identical rows.
* ``resume``: an audit from the command line killed with SIGKILL half way, then run again: time
  from kill to completion, and no finished image lost.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SECTIONS = ("quality", "wandering", "engines", "resume")
CACHE = Path(__file__).resolve().parents[1] / "out" / "bench_audit"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    p.add_argument("--n", type=int, default=150, help="images of the shortcut mix (default 150)")
    p.add_argument("--seed", type=int, default=3000, help="scene seed (away from the zoo's training seeds)")
    p.add_argument("--engine-n", type=int, default=200, help="images for the engine comparison (default 200)")
    p.add_argument("--resume-n", type=int, default=48, help="images for the kill-and-resume run (default 48)")
    p.add_argument("--config", default="fast", help="explainer preset of the audit (default fast)")
    p.add_argument("--features", default="mask,channels", help="what nbexplain clusters (mask, channels)")
    p.add_argument("--wander-steps", type=int, default=1000, help="training steps of the wandering-cue model")
    p.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    return p.parse_args(argv)


def markdown(df) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join([str(df.index.name or "")] + list(map(str, df.columns))) + " |"
    lines = [head, "|---" * (len(df.columns) + 1) + "|"]
    lines += ["| " + " | ".join([str(i)] + [cell(v) for v in row]) + " |" for i, row in zip(df.index, df.itertuples(index=False))]
    return "\n".join(lines)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- ground truth -------------------------------------------------------------------------
def cue_decided(model, normalize, scenes, plain, cue_class) -> np.ndarray:
    """Images the model calls the cue class only because of the cue (the same scene without it is not)."""
    with torch.no_grad():
        with_cue = model(normalize(scenes.images)).argmax(1)
        without = model(normalize(plain.images)).argmax(1)
    return ((with_cue == cue_class) & (without != cue_class) & scenes.cue).numpy()


def precision_recall(members: np.ndarray, scenes, decided: np.ndarray) -> tuple[float, float]:
    members = np.asarray(members, dtype=np.int64)
    carry = scenes.cue.numpy()[members]
    precision = float(carry.mean()) if len(members) else 0.0
    recall = float(decided[members].sum() / max(1, decided.sum()))
    return precision, recall


# -- SpRAy ----------------------------------------------------------------------------------
def spray_groups(maps: np.ndarray, targets: np.ndarray, seed: int) -> list[tuple[int, np.ndarray, float]]:
    """SpRAy: per class, attribution maps pooled to 16 x 16, clustered like nbexplain's groups.
    Each group comes with its class's eigengap (SpRAy inspects the classes with the largest first)."""
    from nbexplain.audits.grouping import knn_graph, spectral_groups

    out = []
    for t in np.unique(targets):
        ids = np.nonzero(targets == t)[0]
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(maps[ids])[:, None], 16).flatten(1)
        feats = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if len(ids) >= 6:
            labels, lam = spectral_groups(knn_graph(feats.numpy(), 10), 8, seed)
            gap = float(np.diff(lam).max()) if len(lam) > 1 else 0.0
        else:
            labels, gap = np.zeros(len(ids), int), 0.0
        out += [(int(t), ids[labels == g], gap) for g in np.unique(labels)]
    return out


def own_pick(groups, scenes, decided):
    """SpRAy's own reading, automated: the class with the largest eigengap, its largest group."""
    t, members, _ = max(groups, key=lambda g: (g[2], len(g[1])))
    p, r = precision_recall(members, scenes, decided)
    return p, r, len(members), t


def oracle_pick(groups, scenes, decided, cue_class):
    """The cue class's group with the best F1 against the truth (the most a person could find)."""
    best = (0.0, 0.0, -1.0, 0)
    for t, members, _ in groups:
        if t != cue_class:
            continue
        p, r = precision_recall(members, scenes, decided)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best[2]:
            best = (p, r, f1, len(members))
    return best


def attribution_maps(method, model, normalize, scenes) -> tuple[np.ndarray, np.ndarray, float]:
    from nbexplain.baselines import run_method

    maps, targets, start = [], [], time.perf_counter()
    for i in range(len(scenes)):
        x = normalize(scenes.images[i:i + 1])
        attr = run_method(method, model, x)
        maps.append(attr.map.numpy().astype(np.float32))
        targets.append(attr.target)
    return np.stack(maps), np.array(targets), time.perf_counter() - start


def section_quality(args, work: Path) -> None:
    from nbexplain import audit
    from nbexplain.datasets import CUE_CLASS, shortcut_mix
    from nbexplain.zoo import load_model

    scenes = shortcut_mix(args.n, seed=args.seed)
    plain = shortcut_mix(args.n, seed=args.seed, cue=False)
    features = tuple(args.features.split(","))
    rows, suspicions = [], {}
    for name in ("shortcut", "honest"):
        zm = load_model(name)
        decided = cue_decided(zm.model, zm.normalize, scenes, plain, CUE_CLASS)
        start = time.perf_counter()
        a = audit(zm, scenes, out=work / f"quality-{name}", config=args.config, progress=False, gallery=False,
                  features=features)
        total = time.perf_counter() - start
        explain_s = float(a.table["seconds"].sum())
        top = a.groups[0]
        p, r = precision_recall(top.indices, scenes, decided)
        suspicions[name] = a.groups
        rows.append((f"nbexplain audit ({name})", top.target_name, top.size, p, r, top.suspicion,
                     explain_s, a.grouping_seconds, total, int(decided.sum())))
        if name == "shortcut":
            for variant in (("mask",), ("channels",)):  # what to cluster, chosen by measurement
                start = time.perf_counter()
                g = a.regroup(features=variant)[0]
                vp, vr = precision_recall(g.indices, scenes, decided)
                rows.append((f"nbexplain audit, clustering {' + '.join(variant)} only", g.target_name, g.size, vp, vr,
                             g.suspicion, explain_s, time.perf_counter() - start, float("nan"), int(decided.sum())))
            a.regroup(features=features)
            for method in ("gradcam", "occlusion"):
                maps, targets, seconds = attribution_maps(method, zm.model, zm.normalize, scenes)
                start = time.perf_counter()
                groups = spray_groups(maps, targets, args.seed)
                cluster_s = time.perf_counter() - start
                op, orr, size, t = own_pick(groups, scenes, decided)
                rows.append((f"SpRAy on {method} (its own pick)", zm.labels[t], size, op, orr, float("nan"),
                             seconds, cluster_s, seconds + cluster_s, int(decided.sum())))
                bp, br, _, size = oracle_pick(groups, scenes, decided, CUE_CLASS)
                rows.append((f"SpRAy on {method} (oracle pick)", "triangle", size, bp, br, float("nan"),
                             seconds, cluster_s, seconds + cluster_s, int(decided.sum())))
        print(f"\n{name}: groups, most suspicious first")
        print(markdown(a.group_table[["target_name", "size", "suspicion", "transplant", "transplant_control", "same_place", "off_object",
                                      "accuracy", "mean_area"]].head(8)))
    print("\n| method | top group class | size | precision ↑ | recall ↑ | suspicion | s explaining | s grouping + tests "
          "| s total | cue-decided images |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, cls, size, p, r, s, ex, gr, tot, nd in rows:
        total = "" if np.isnan(tot) else f"{tot:.1f}"
        print(f"| {name} | {cls} | {size} | {p:.2f} | {r:.2f} | {s:.2f} | {ex:.1f} | {gr:.1f} ({gr / ex:.0%}) | "
              f"{total} | {nd} |")


# -- a cue whose place varies -----------------------------------------------------------------
def in_corners(images: torch.Tensor, cued: torch.Tensor, gen: torch.Generator):
    """``images`` (without any cue) with the corner cue painted in a random corner of each ``cued`` one;
    also the cue masks."""
    from nbexplain.datasets.cue import cue_geometry, cue_pattern

    images, size = images.clone(), images.shape[-1]
    offset, side = cue_geometry(size)
    starts = (offset, size - offset - side)
    masks = torch.zeros(len(images), size, size, dtype=torch.bool)
    corners = torch.randint(0, 4, (len(images),), generator=gen)
    for i in cued.nonzero()[:, 0].tolist():
        r, c = starts[int(corners[i]) // 2], starts[int(corners[i]) % 2]
        images[i, :, r:r + side, c:c + side] = cue_pattern(size)
        masks[i, r:r + side, c:c + side] = True
    return images, masks


def wandering_model(steps: int):
    """The zoo's ResNet trained on scenes whose triangles carry the cue in a random corner (cached)."""
    import math

    import torch.nn.functional as F

    from nbexplain.datasets import CLASS_NAMES, CUE_CLASS, make_scenes
    from nbexplain.zoo import load_model
    from nbexplain.zoo.loading import build_model, load_weights_file, save_model

    path = CACHE / f"wandering_cue_{steps}.pt"
    if path.exists():
        return load_weights_file(path, name="wandering")
    base = load_model("shortcut").meta
    meta = {k: base[k] for k in ("size", "mean", "std", "widths", "blocks", "cue_class")}
    meta.update(name="wandering", labels=list(CLASS_NAMES), arch="resnet", shortcut="wandering", cue_rate=0.95,
                steps=steps, batch=64, lr=6e-3, optimizer="adamw", weight_decay=1e-4, seed=0)
    torch.manual_seed(0)
    model = build_model(meta)
    opt = torch.optim.AdamW(model.parameters(), lr=meta["lr"], weight_decay=meta["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    model.train()
    start, step = time.perf_counter(), 0
    while step < steps:
        pool = make_scenes(512, seed=2 * 10**6 + step, size=meta["size"])  # training seeds: away from every bench
        cued = (pool.labels == CUE_CLASS) & (torch.rand(len(pool), generator=gen) < meta["cue_rate"])
        images, _ = in_corners(pool.images, cued, gen)
        order = torch.randperm(len(pool), generator=gen)
        for k in range(0, len(order), meta["batch"]):
            idx = order[k:k + meta["batch"]]
            loss = F.cross_entropy(model((images[idx] - mean) / std), pool.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
    print(f"trained the wandering-cue model: {steps} steps, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    save_model(model.eval(), path, meta)
    return load_weights_file(path, name="wandering")


def section_wandering(args, work: Path) -> None:
    import dataclasses

    from nbexplain import audit
    from nbexplain.datasets import CUE_CLASS, shortcut_mix

    zm = wandering_model(args.wander_steps)
    plain = shortcut_mix(args.n, seed=args.seed, cue=False)
    carry = shortcut_mix(args.n, seed=args.seed).cue
    images, masks = in_corners(plain.images, carry, torch.Generator().manual_seed(args.seed))
    scenes = dataclasses.replace(plain, images=images, cue_masks=masks, cue=carry)
    decided = cue_decided(zm.model, zm.normalize, scenes, plain, CUE_CLASS)
    start = time.perf_counter()
    a = audit(zm, scenes, out=work / "wandering", config=args.config, progress=False, gallery=False,
              features=tuple(args.features.split(",")))
    total = time.perf_counter() - start
    print(f"\nwandering cue: {int(decided.sum())} images decided by the cue, in any corner; audit {total:.0f} s")
    print("\n| group | class | size | precision ↑ | recall ↑ | suspicion |")
    print("|---|---|---|---|---|---|")
    for g in a.groups[:6]:
        p, r = precision_recall(g.indices, scenes, decided)
        print(f"| per-class #{g.index} | {g.target_name} | {g.size} | {p:.2f} | {r:.2f} | {g.suspicion:.2f} |")
    for art in a.artifacts[:3]:
        p, r = precision_recall(art.indices, scenes, decided) if art.size else (0.0, 0.0)
        print(f"| across classes #{art.index} (carried by {len(art.carriers)}) | {', '.join(list(art.classes)[:2])} | "
              f"{art.size} | {p:.2f} | {r:.2f} | {art.suspicion:.2f} |")


class MemoryWatch:
    """Peak resident memory of this process and all its descendants (Ray's workers among them)."""

    def __init__(self, every: float = 0.25):
        import threading

        self.peak, self.every, self._stop = 0.0, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me] + me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total / 2**20)
            self._stop.wait(self.every)


def same_rows(a, b) -> tuple[int, int]:
    """(images whose rows agree, images compared): masks, predictions, targets and areas."""
    ta, tb = a._rows, b._rows
    cols = ["pred", "target", "mask_bits", "label_kept"]
    agree = sum(all(ta.loc[i, c] == tb.loc[i, c] for c in cols) and abs(ta.loc[i, "area"] - tb.loc[i, "area"]) < 1e-6
                for i in ta.index)
    return int(agree), len(ta)


def section_engines(args, work: Path) -> None:
    import ray

    from nbexplain import audit
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("honest")
    scenes = make_scenes(args.engine_n, seed=args.seed + 7)
    common = dict(config=args.config, progress=False, gallery=False, chunk=8)
    results = {}
    with MemoryWatch() as mem:
        start = time.perf_counter()
        local = audit(zm, scenes, out=work / "engine-local", **common)
        results["local"] = (time.perf_counter() - start, mem.peak, 0.0)
    mem_base = mem.peak
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        with MemoryWatch() as mem:
            start = time.perf_counter()
            remote = audit(zm, scenes, out=work / "engine-ray", engine="ray", actors=2, cpus_per_actor=1, **common)
            results["ray"] = (time.perf_counter() - start, mem.peak, ray_start)
    finally:
        ray.shutdown()
    agree, total = same_rows(local, remote)
    print(f"\nEngines: {args.engine_n} scenes, honest model, {args.config} preset, 2 CPUs "
          f"(local: one process, torch on 2 threads; Ray: 2 actors of 1 CPU)")
    print("| engine | seconds | images / s | x local | Ray start-up s | peak MB (with workers) | rows identical to local |")
    print("|---|---|---|---|---|---|---|")
    base = results["local"][0]
    for name, (sec, peak, startup) in results.items():
        same = "" if name == "local" else f"{agree}/{total}"
        up = "" if name == "local" else f"{startup:.1f}"
        print(f"| {name} | {sec:.1f} | {args.engine_n / sec:.2f} | {base / sec:.2f} | {up} | {peak:.0f} | {same} |")
    print(f"(local peak {mem_base:.0f} MB; Ray's seconds include its actors' start-up, not ray.init)")


def section_resume(args, work: Path) -> None:
    out = work / "resume"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "nbexplain", "audit", "shortcut", f"shortcut-mix:n={args.resume_n},seed={args.seed}",
           "--out", str(out), "--chunk", "4", "--config", args.config]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    shards = out / "rows"
    half = args.resume_n // 2
    while proc.poll() is None:
        if shards.is_dir() and 4 * len(list(shards.glob("*.parquet"))) >= half:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - start
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    leftovers = [p.name for p in shards.iterdir() if p.suffix == ".tmp"]
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    resumed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the resumed audit failed:\n{done.stderr[-2000:]}")
    from nbexplain.audits import Audit

    a = Audit.load(out)
    ids = a._rows.index.tolist()
    kept = all(out.joinpath("rows", name).stat().st_mtime_ns == t for name, t in before.items())
    print(f"\nKill and resume: {args.resume_n} images from the command line, SIGKILL once "
          f"{4 * len(before)} were stored")
    print("| killed after s | images stored at the kill | half-written files left | seconds from kill to done "
          "| images at the end (each once) | stored shards untouched |")
    print("|---|---|---|---|---|---|")
    print(f"| {killed_after:.1f} | {4 * len(before)} | {len(leftovers)} | {resumed:.1f} | "
          f"{len(set(ids))}/{args.resume_n} ({'yes' if len(ids) == len(set(ids)) else 'NO'}) | {'yes' if kept else 'NO'} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-audit-"))
    if "quality" in sections:
        section_quality(args, work)
    if "wandering" in sections:
        section_wandering(args, work)
    if "engines" in sections:
        section_engines(args, work)
    if "resume" in sections:
        section_resume(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
