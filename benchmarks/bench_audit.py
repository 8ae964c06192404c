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
  occlusion maps. SpRAy leaves the verdict to a person: its group is the one of the cue class
  that best matches the truth (an oracle pick, the most a person could get from it). The same
  audit on the ``honest`` model gives the no-false-alarm row. Grouping and the tests are timed
  against the explanations.
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

SECTIONS = ("quality", "engines", "resume")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    p.add_argument("--n", type=int, default=150, help="images of the shortcut mix (default 150)")
    p.add_argument("--seed", type=int, default=3000, help="scene seed (away from the zoo's training seeds)")
    p.add_argument("--engine-n", type=int, default=200, help="images for the engine comparison (default 200)")
    p.add_argument("--resume-n", type=int, default=48, help="images for the kill-and-resume run (default 48)")
    p.add_argument("--config", default="fast", help="explainer preset of the audit (default fast)")
    p.add_argument("--features", default="mask,channels", help="what nbexplain clusters (mask, channels)")
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
def spray_groups(maps: np.ndarray, targets: np.ndarray, seed: int) -> list[tuple[int, np.ndarray]]:
    """SpRAy: per class, attribution maps pooled to 16 x 16, clustered like nbexplain's groups."""
    from nbexplain.audit.grouping import knn_graph, spectral_groups

    out = []
    for t in np.unique(targets):
        ids = np.nonzero(targets == t)[0]
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(maps[ids])[:, None], 16).flatten(1)
        feats = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        labels = spectral_groups(knn_graph(feats.numpy(), 10), 8, seed)[0] if len(ids) >= 6 else np.zeros(len(ids), int)
        out += [(int(t), ids[labels == g]) for g in np.unique(labels)]
    return out


def oracle_pick(groups, scenes, decided, cue_class):
    """The cue class's group with the best F1 against the truth."""
    best = (0.0, 0.0, -1.0, 0)
    for t, members in groups:
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
            for method in ("gradcam", "occlusion"):
                maps, targets, seconds = attribution_maps(method, zm.model, zm.normalize, scenes)
                start = time.perf_counter()
                groups = spray_groups(maps, targets, args.seed)
                cluster_s = time.perf_counter() - start
                bp, br, _, size = oracle_pick(groups, scenes, decided, CUE_CLASS)
                rows.append((f"SpRAy on {method} (oracle pick)", "triangle", size, bp, br, float("nan"),
                             seconds, cluster_s, seconds + cluster_s, int(decided.sum())))
        print(f"\n{name}: groups, most suspicious first")
        print(markdown(a.group_table[["target_name", "size", "suspicion", "transplant", "same_place", "off_object",
                                      "accuracy", "mean_area"]].head(8)))
    print("\n| method | top group class | size | precision ↑ | recall ↑ | suspicion | s explaining | s grouping + tests "
          "| s total | cue-decided images |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, cls, size, p, r, s, ex, gr, tot, nd in rows:
        print(f"| {name} | {cls} | {size} | {p:.2f} | {r:.2f} | {s:.2f} | {ex:.1f} | {gr:.1f} ({gr / ex:.0%}) | "
              f"{tot:.1f} | {nd} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-audit-"))
    if "quality" in sections:
        section_quality(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
