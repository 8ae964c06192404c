"""The bundled models and what their explanations and circuits show, on fresh scenes.

    python benchmarks/bench_zoo.py --n 40

Three tables:

1. accuracy: both zoo models on fresh scenes (clean, several instances, with
   the planted cue, and the shortcut model's triangles without the cue);
2. explanations: per model, the share of scenes whose kept pixels fall mostly
   (more than half) on the deciding object, and, on scenes with the planted
   cue, the share where the mask keeps more of the cue than of the object;
3. circuits: size, and the share of scenes where only the circuit's channels are
   sufficient for the target (``Circuit.validate``: top-1 and half of what the channels
   add over none), against random channel sets of equal size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="scenes explained per row (default 40)")
    p.add_argument("--n-accuracy", type=int, default=1000, help="scenes per accuracy row (default 1000)")
    p.add_argument("--seed", type=int, default=2000, help="scene seed (default 2000, away from training seeds)")
    p.add_argument("--preset", default="default", help="ExplainConfig preset (fast, default, thorough)")
    p.add_argument("--repeats", type=int, default=20, help="random channel sets per circuit check (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--families", default="resnet,vit", help="zoo pairs to run: resnet (honest, shortcut), vit "
                   "(vit_honest, vit_shortcut); default both")
    return p.parse_args(argv)


FAMILIES = {"resnet": ("honest", "shortcut"), "vit": ("vit_honest", "vit_shortcut")}


def accuracy_table(n: int, seed: int, families) -> list[list[str]]:
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import accuracy, load_model, shortcut_report

    rows = []
    for name in (m for f in families for m in FAMILIES[f]):
        zm = load_model(name)
        report = shortcut_report(zm, n=n, seed=seed)
        several = accuracy(zm, make_scenes(n, seed=seed + 1, instances=3))
        rows.append([name, _pct(report["clean"]), _pct(several), _pct(report["train"]),
                     _pct(report["cue_class_with_cue"]), _pct(report["cue_class_without_cue"]),
                     _pct(report["others_with_cue_to_cue_class"])])
    return rows


def explain_scenes(zm, scenes, preset: str, repeats: int) -> list[dict]:
    """Per scene: where the kept pixels fall, and the circuit check on the explanation."""
    from nbexplain import Explainer

    ex = Explainer(zm.model, preprocess=zm.preprocess, labels=zm.labels, config=preset)
    out = []
    for i in range(len(scenes)):
        start = time.perf_counter()
        res = ex.explain(zm.preprocess(scenes.images[i]),
                         target=int(scenes.labels[i]), progress=False, live=False)
        kept = res.mask.bool()
        n_kept = max(int(kept.sum()), 1)
        check = res.circuit.validate(repeats=repeats)
        row = {
            "seconds": time.perf_counter() - start,
            "label_kept": res.label_kept,
            "area": res.area,
            "on_object": int((kept & scenes.masks[i]).sum()) / n_kept,
            "circuit_size": res.circuit.size,
            "channels_total": sum(check.total_channels),
            "circuit_kept": check.sufficient_circuit,
            "random_kept": check.random_sufficient_rate,
            "random_beaten": 1.0 - check.random_at_least_as_good,
        }
        cue = scenes.cue_masks[i] if scenes.cue_masks is not None else None
        if cue is not None and bool(cue.any()):
            # The cue is a few dozen pixels: ask whether the mask keeps more of it than of the object.
            row["cue_over_object"] = _share_kept(kept, cue) > _share_kept(kept, scenes.masks[i])
        out.append(row)
        print(f"[{zm.name} {i + 1}/{len(scenes)}] {row['seconds']:.1f} s  area {row['area']:.3f}  "
              f"object {row['on_object']:.2f}  circuit kept {row['circuit_kept']}", file=sys.stderr, flush=True)
    return out


def _share_kept(kept: torch.Tensor, region: torch.Tensor) -> float:
    return int((kept & region).sum()) / int(region.sum())


def explanation_rows(name: str, scenes_name: str, rows: list[dict]) -> list[str]:
    cue = _pct(statistics.fmean(r["cue_over_object"] for r in rows)) if "cue_over_object" in rows[0] else ""
    return [name, scenes_name, str(len(rows)), _pct(statistics.fmean(r["label_kept"] for r in rows)),
            f"{statistics.fmean(r['area'] for r in rows):.3f}",
            _pct(statistics.fmean(r["on_object"] > 0.5 for r in rows)), cue,
            f"{statistics.fmean(r['seconds'] for r in rows):.2f}"]


def circuit_rows(name: str, scenes_name: str, rows: list[dict]) -> list[str]:
    return [name, scenes_name, str(len(rows)),
            f"{statistics.fmean(r['circuit_size'] for r in rows):.0f} / {rows[0]['channels_total']}",
            _pct(statistics.fmean(r["circuit_kept"] for r in rows)),
            _pct(statistics.fmean(r["random_kept"] for r in rows)),
            _pct(statistics.fmean(r["random_beaten"] for r in rows))]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    families = [f for f in args.families.split(",") if f]
    print(f"Accuracy on {args.n_accuracy} fresh scenes per column (seed {args.seed}):\n")
    print(markdown(["model", "clean", "3 instances", "training mix", "triangles with cue",
                    "triangles without cue", "others + cue called triangle"],
                   accuracy_table(args.n_accuracy, args.seed, families)))

    clean = make_scenes(args.n, seed=args.seed + 2)
    cued = make_scenes(args.n, seed=args.seed + 3, shortcut="all", classes=["triangle"])
    runs = []
    for family in families:
        honest_name, shortcut_name = FAMILIES[family]
        honest, shortcut = load_model(honest_name), load_model(shortcut_name)
        runs += [(honest_name, "clean", explain_scenes(honest, clean, args.preset, args.repeats)),
                 (shortcut_name, "clean", explain_scenes(shortcut, clean, args.preset, args.repeats)),
                 (shortcut_name, "triangles with cue", explain_scenes(shortcut, cued, args.preset, args.repeats))]

    print(f"\nExplanations (preset {args.preset!r}, target: the true label; 'mostly on the object': more than "
          "half of the kept pixels; 'cue over object': a larger share of the cue kept than of the object):\n")
    print(markdown(["model", "scenes", "n", "label kept", "mean area", "mostly on the object", "cue over object",
                    "s / image"], [explanation_rows(*run) for run in runs]))
    print(f"\nCircuits of the explanations ('sufficient': with only these channels the target is still top-1 "
          f"and recovers half of what the channels add over none; random: {args.repeats} sets of equal size "
          f"per scene):\n")
    print(markdown(["model", "scenes", "n", "circuit channels", "circuit sufficient", "random sets sufficient",
                    "random sets beaten"], [circuit_rows(*run) for run in runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
