"""Explanation quality over generated scenes with ground truth: one table, methods x metrics.

    python benchmarks/bench_quality.py --n 100
    python benchmarks/bench_quality.py --n 20 --methods gradcam,occlusion --preset fast

Each scene is explained by every method for the same target (the true label
by default); continuous maps are binarised at the explanation's area (or the
object's, without nbexplain).  The table holds mean +- standard deviation over
the scenes for every metric of ``nbexplain.metrics.METRICS`` (arrows: which
way is better); ``seconds`` is the time per image of the method itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="number of scenes (default 100)")
    p.add_argument("--methods", default="nbexplain,gradcam,occlusion",
                   help="comma-separated: nbexplain and names of nbexplain.baselines.METHODS")
    p.add_argument("--preset", default="default", help="ExplainConfig preset for nbexplain (fast, default, thorough)")
    p.add_argument("--options", default="", help="ExplainConfig overrides for nbexplain, e.g. 'fill=\"blur\",steps=60'")
    p.add_argument("--model", default="honest", help="zoo model (default honest)")
    p.add_argument("--weights", default=None, help="a weight file written by the zoo's save_model, instead of --model")
    p.add_argument("--size", type=int, default=128, help="scene side in pixels (the zoo models' size)")
    p.add_argument("--seed", type=int, default=1000, help="scene seed (default 1000, away from training seeds)")
    p.add_argument("--target", choices=("label", "prediction"), default="label",
                   help="explain the true label (default) or the model's top-1")
    p.add_argument("--amortized", action="store_true",
                   help="add rows for the zoo model's bundled amortised explainer (one pass, and refine=10; "
                        "each scored at its own area)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None, help="run on this device (e.g. cuda); default: where the model is")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--json", default=None, help="also write per-scene scores to this file (after every scene)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --json instead of restarting")
    return p.parse_args(argv)


#: fill checks beside nbexplain.metrics.METRICS (same form: higher is better?, what it measures)
FILL_METRICS = {
    "kept_mean_colour": (True, "the mask keeps the target as top-1 with the mean colour outside it"),
    "fill_alone_target": (False, "the explanation's fill alone is classified as the target"),
}


def fill_scores(model, c, target) -> dict[str, dict[str, float]]:
    """Per method: does its mask (at the comparison's area) keep the target with the mean colour outside
    it; and does the explanation's fill alone, which every method's mask is scored with, give the target."""
    from nbexplain.core.fills import make_fill
    from nbexplain.metrics import apply_mask

    x = c.input[None]
    mean = make_fill(x, "mean", c.normalization)
    device = next(model.parameters()).device
    with torch.no_grad():
        alone = int(model(c.fill.reshape(x.shape).to(device)).argmax()) == target
        out = {}
        for m in c.methods:
            mask = c.explanation.mask if m == "nbexplain" and c.explanation is not None \
                else c.attributions[m].as_mask(c.area)
            kept = int(model(apply_mask(x, mask, mean).to(device)).argmax()) == target
            out[m] = {"kept_mean_colour": float(kept), "fill_alone_target": float(alone)}
    return out


class _Refined:
    """An amortised explainer whose explain() runs ``refine`` per-image steps (what compare() calls)."""

    def __init__(self, amortized, refine):
        self.amortized, self.refine = amortized, refine

    def __getattr__(self, name):
        return getattr(self.amortized, name)

    def explain(self, *args, **kwargs):
        return self.amortized.explain(*args, refine=self.refine, **kwargs)


def summarise(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """metric -> (mean, standard deviation) over scenes (population std; 0 for one scene)."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        mean = sum(values) / len(values)
        out[key] = (mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))
    return out


def markdown_table(summary: dict[str, dict], metrics: dict) -> str:
    cols = [m for m in metrics if any(m in s for s in summary.values())]
    arrow = {m: "" if metrics[m][0] is None else (" ↑" if metrics[m][0] else " ↓") for m in cols}
    lines = ["| method | " + " | ".join(c + arrow[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for method, stats in summary.items():
        cells = [_cell(*stats[c], seconds=c == "seconds") if c in stats else "-" for c in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(mean: float, std: float, seconds: bool) -> str:
    return f"{mean:.3g} ± {std:.2g}" if seconds else f"{mean:.3f} ± {std:.3f}"


def write_json(path: str, args, summary: dict, per_scene: list) -> None:
    with open(path, "w") as f:
        json.dump({"args": vars(args), "summary": summary, "scenes": per_scene}, f, indent=1)


def load_previous(args) -> list:
    """Per-scene records of an interrupted run with the same settings."""
    if not args.json:
        raise SystemExit("--resume needs --json (the file the interrupted run wrote)")
    try:
        with open(args.json) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return []
    same = ("methods", "preset", "options", "model", "weights", "size", "seed", "target", "amortized")
    changed = [k for k in same if saved["args"].get(k) != getattr(args, k)]
    if changed:
        raise SystemExit(f"--resume: {args.json} was written with different {changed}")
    return saved["scenes"][: args.n]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.amortized and (args.weights or args.device):
        raise SystemExit("--amortized uses the bundled generator of --model on the CPU: drop --weights / --device")
    if args.threads:
        torch.set_num_threads(args.threads)
    from nbexplain import ExplainConfig, Explainer
    from nbexplain.config import parse_options
    from nbexplain.compare import compare
    from nbexplain.datasets import make_scenes
    from nbexplain.metrics import METRICS
    from nbexplain.zoo import load_amortized, load_model
    from nbexplain.zoo.loading import load_weights_file

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    zm = load_weights_file(args.weights) if args.weights else load_model(args.model)
    model = zm.model.to(args.device) if args.device else zm.model
    scenes = make_scenes(args.n, seed=args.seed, size=args.size)
    config = ExplainConfig.preset(args.preset, **parse_options(args.options))
    explainer = Explainer(model, preprocess=zm.preprocess, labels=zm.labels, config=config) \
        if "nbexplain" in methods else None

    amortized = load_amortized(args.model) if args.amortized else None
    amortised_rows = {"nbexplain amortised, one pass": 0, "nbexplain amortised, refine=10": 10} if amortized else {}
    rows_for = methods + list(amortised_rows)
    per_scene = load_previous(args) if args.resume else []
    rows: dict[str, list[dict]] = {m: [s["scores"][m] for s in per_scene] for m in rows_for}
    correct = sum(s["label"] == s["prediction"] for s in per_scene)
    start = time.perf_counter()
    for i in range(len(per_scene), args.n):
        x = zm.preprocess(scenes.images[i])
        label = int(scenes.labels[i])
        with torch.no_grad():
            pred = int(model(x[None].to(next(model.parameters()).device)).argmax())
        correct += pred == label
        target = label if args.target == "label" else pred
        c = compare(model, x, methods=methods, gt_mask=scenes.masks[i], target=target, explainer=explainer)
        for m, extra in fill_scores(model, c, target).items():
            c.scores[m].update(extra)
        for row, refine in amortised_rows.items():
            a = compare(model, x, methods=["nbexplain"], gt_mask=scenes.masks[i], target=target,
                        explainer=_Refined(amortized, refine))
            a.scores["nbexplain"].update(fill_scores(model, a, target)["nbexplain"])
            c.scores[row] = a.scores["nbexplain"]
        for m in rows_for:
            rows[m].append(c.scores[m])
        per_scene.append({"index": i, "label": label, "prediction": pred, "area": c.area, "scores": c.scores})
        if args.json:  # rewritten after every scene, so an interrupted run keeps what it measured
            write_json(args.json, args, {m: summarise(rows[m]) for m in rows_for}, per_scene)
        elapsed = time.perf_counter() - start
        print(f"[{i + 1}/{args.n}] {elapsed:.0f} s  " + "  ".join(
            f"{m}: iou {c.scores[m]['iou']:.2f} kept {c.scores[m]['label_kept']:.0f}" for m in rows_for),
            file=sys.stderr, flush=True)

    summary = {m: summarise(rows[m]) for m in rows_for}
    reference = f"the explanation's area (nbexplain preset {args.preset!r})" if explainer else "the object's area"
    header = (f"{args.n} scenes (seed {args.seed}, {args.size} px), zoo model {args.weights or args.model!r} "
              f"(top-1 accuracy on them {correct / args.n:.1%}), target: {args.target}; "
              f"continuous maps binarised at {reference}; mean ± std over scenes")
    table = markdown_table(summary, {**METRICS, **FILL_METRICS})
    if amortized is not None:
        info = amortized.fit_info
        header += (f"; the amortised generator was fitted on {info.get('images')} other scenes in "
                   f"{info.get('seconds', float('nan')):.0f} s (teacher {info.get('teacher_seconds', float('nan')):.0f} s)")
    print(header)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
