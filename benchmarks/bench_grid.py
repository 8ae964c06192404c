"""The grid pointing game on real photos with a real pretrained model, and a single-photo table.

    python benchmarks/bench_grid.py                       # 24 grids, every method
    python benchmarks/bench_grid.py --grids 2 --methods nbexplain-fast,gradcam --photos 0
    python benchmarks/bench_grid.py --per-cell            # also GridPG proper: every cell's class

Protocol (Rao, Boehle and Schiele, CVPR 2022): 2x2 grids of four real photos of
different classes, the whole grid at the model's native size (224 px), each cell at
half of it. A photo enters a grid when the model gives it a confident class
(p >= --min-prob) at cell size; the four cells' classes differ. The class explained is
the one the model finds most likely on the grid among the four (``--per-cell`` adds
every cell's class in turn). Score = the share of the explanation inside the target's
cell: kept pixels for a binary mask, positive attribution for a map. Chance is 0.25.

Methods, in one run: nbexplain (default and fast presets; ``--methods`` may add
nbexplain-thorough), Captum Grad-CAM, Captum
occlusion (window 15, stride 8), and TorchRay's extremal perturbation when torchray is
installed (area 5 %, --ep-iterations, default its 800).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import warnings
from typing import NamedTuple

import torch

warnings.filterwarnings("ignore")

SIZE = 224


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grids", type=int, default=24)
    p.add_argument("--methods", default="nbexplain,nbexplain-fast,gradcam,occlusion,extremal")
    p.add_argument("--min-prob", type=float, default=0.5, help="confidence a photo needs at cell size")
    p.add_argument("--per-cell", action="store_true", help="also explain every cell's class (GridPG proper)")
    p.add_argument("--photos", type=int, default=5, help="README photos in the single-photo table (0: none)")
    p.add_argument("--ep-iterations", type=int, default=800)
    p.add_argument("--options", default="", help="ExplainConfig overrides for nbexplain, e.g. 'keep_ratio=0.8,steps=60'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amortized", type=int, default=0, metavar="N",
                   help="also fit an amortised explainer on N augmented images (flipped, cropped photos and grids "
                        "of other arrangements) and add its rows: one pass, and refine=10")
    p.add_argument("--fit-steps", type=int, default=600, help="distillation steps of that fit")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


# -- photos and grids ---------------------------------------------------------------
def cell_photos(zoo, min_prob):
    """(name, cell tensor, class, probability) of each photo confident at cell size, one per class."""
    from nbexplain.datasets import PHOTOS, load_photo
    from nbexplain.zoo.pretrained import PhotoPreprocess

    cell_prep = PhotoPreprocess(zoo.normalize, size=SIZE // 2, resize=SIZE * 8 // 14)
    out, classes = [], set()
    for name in PHOTOS:
        x = cell_prep(load_photo(name))
        with torch.no_grad():
            p = zoo.model(x[None]).softmax(1)[0]
        prob, cls = float(p.max()), int(p.argmax())
        if prob >= min_prob and cls not in classes:
            out.append((name, x, cls, prob))
            classes.add(cls)
    return out


def make_grids(photos, n, seed):
    """``n`` grids [3, 224, 224] of four different photos each, with their cells' classes."""
    combos = list(itertools.combinations(range(len(photos)), 4))
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(combos), generator=g).tolist()
    grids = []
    for k in order[:n]:
        idx = list(combos[k])
        idx = [idx[i] for i in torch.randperm(4, generator=g).tolist()]  # which photo sits where
        cells = [photos[i][1] for i in idx]
        top = torch.cat(cells[:2], 2)
        bottom = torch.cat(cells[2:], 2)
        grids.append((torch.cat([top, bottom], 1), [photos[i][2] for i in idx], [photos[i][0] for i in idx]))
    return grids


def cell_box(k):
    h = SIZE // 2
    return (k // 2) * h, (k % 2) * h, h


def in_cell_share(attr_map: torch.Tensor, k: int) -> float:
    pos = attr_map.clamp_min(0).float()
    total = float(pos.sum())
    if total <= 0:
        return 0.0
    top, left, h = cell_box(k)
    return float(pos[top:top + h, left:left + h].sum()) / total


# -- methods ------------------------------------------------------------------------
class Answer(NamedTuple):
    """What a method returns: its map, and for nbexplain the mask's area, p(target | explanation) and
    whether the label holds on the explanation (scored with the explanation's own fill)."""

    map: torch.Tensor
    area: float | None = None
    p_e: float | None = None
    kept: bool | None = None
    fill: str | None = None  #: the fill nbexplain used, and whether it hides the class alone
    kept_mean: bool | None = None  #: the label holds with the mean colour outside the mask


def answer_of(res) -> Answer:
    """An nbexplain result as the benchmark reads it."""
    mean = [c.label_kept for c in res.checks if c.name == "mean colour"]
    return Answer(res.mask, res.area, res.prob_explanation, res.label_kept,
                  f"{res.fill.name}, {'hides' if res.fill.hides else 'does NOT hide'}", mean[0] if mean else None)


def training_images(photos, n, seed):
    """``n`` augmented model inputs [3, 224, 224] to fit an amortised explainer on: grids of the photos
    in random arrangements (never the benchmark's own, which use another seed) and single photos,
    each randomly flipped and cropped."""
    g = torch.Generator().manual_seed(seed)
    cells = [p[1] for p in photos]

    def augment(img):
        if torch.rand(1, generator=g) < 0.5:
            img = img.flip(-1)
        scale = 0.75 + 0.25 * float(torch.rand(1, generator=g))
        h = int(img.shape[-1] * scale)
        top, left = (int(torch.randint(0, img.shape[-1] - h + 1, (1,), generator=g)) for _ in range(2))
        crop = img[:, top:top + h, left:left + h][None]
        return torch.nn.functional.interpolate(crop, size=img.shape[-2:], mode="bilinear", align_corners=False)[0]

    out = []
    for i in range(n):
        if i % 4 == 3:  # a single photo, at full size
            cell = cells[int(torch.randint(0, len(cells), (1,), generator=g))]
            out.append(augment(torch.nn.functional.interpolate(cell[None], size=(SIZE, SIZE), mode="bilinear",
                                                               align_corners=False)[0]))
        else:
            pick = torch.randperm(len(cells), generator=g)[:4].tolist()
            four = [augment(cells[k]) for k in pick]
            out.append(torch.cat([torch.cat(four[:2], 2), torch.cat(four[2:], 2)], 1))
    return torch.stack(out)


def fit_amortized(zoo, photos, n, steps, seed):
    from nbexplain.amortized import AmortizedExplainer

    am = AmortizedExplainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels)
    am.fit(training_images(photos, n, seed + 1), steps=steps, batch_size=8, progress=False)
    print(f"amortised explainer fitted on {n} augmented images in {am.fit_info['seconds']:.0f} s "
          f"(teacher {am.fit_info['teacher_seconds']:.0f} s)", file=sys.stderr)
    return am


def make_methods(zoo, names, ep_iterations, options=None, amortized=None):
    from nbexplain import Explainer
    from nbexplain.baselines import gradcam, occlusion

    ex = Explainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels)

    def nbexplain(preset):
        def run(x, t):
            return answer_of(ex.explain(x, target=t, config=preset, live=False, progress=False, **(options or {})))
        return run

    table = {
        "nbexplain": nbexplain("default"),
        "nbexplain-fast": nbexplain("fast"),
        "nbexplain-thorough": nbexplain("thorough"),
        "gradcam": lambda x, t: Answer(gradcam(zoo.model, x, t).map),
        "occlusion": lambda x, t: Answer(occlusion(zoo.model, x, t, window=15, stride=8).map),
    }
    if amortized is not None:
        def amortised(refine):
            def run(x, t):
                return answer_of(amortized.explain(x, target=t, refine=refine))
            return run

        table["nbexplain-amortised"] = amortised(0)
        table["nbexplain-amortised-refine10"] = amortised(10)
        names = list(names) + ["nbexplain-amortised", "nbexplain-amortised-refine10"]
    if "extremal" in names:
        try:
            import torchray  # noqa: F401  (optional benchmark-only dependency)

            table["extremal"] = lambda x, t: Answer(extremal(zoo.model, x, t, ep_iterations))
        except ImportError:
            print("torchray is not installed: extremal perturbation skipped (pip install torchray)")
    return {n: table[n] for n in names if n in table}


def extremal(model, x, target, iterations):
    from torchray.attribution.extremal_perturbation import contrastive_reward, extremal_perturbation

    masks, _ = extremal_perturbation(model, x[None], target, areas=[0.05], max_iter=iterations,
                                     reward_func=contrastive_reward, debug=False)
    return masks[0, 0]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# -- the game -----------------------------------------------------------------------
def play(zoo, grids, methods, per_cell):
    rows = {name: [] for name in methods}
    cells = {name: [] for name in methods}
    for g, (grid, classes, names) in enumerate(grids):
        with torch.no_grad():
            p_grid = zoo.model(grid[None]).softmax(1)[0]
        k = max(range(4), key=lambda i: float(p_grid[classes[i]]))
        print(f"grid {g}: {names}, explaining {zoo.labels[classes[k]]!r} (cell {k}, p={float(p_grid[classes[k]]):.2f})",
              file=sys.stderr)
        for name, fn in methods.items():
            answer, sec = timed(fn, grid, classes[k])
            amap = answer.map
            rows[name].append({"share": in_cell_share(amap, k), "area": answer.area, "seconds": sec,
                               "p_grid": float(p_grid[classes[k]]), "p_e": answer.p_e, "kept_mean": answer.kept_mean,
                               "fill_hides": None if answer.fill is None else "does NOT" not in answer.fill})
            if per_cell:
                for j in range(4):
                    amap_j = amap if j == k else fn(grid, classes[j]).map
                    cells[name].append(in_cell_share(amap_j, j))
    return rows, cells


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def fmt(v, pattern="{:.2f}"):
    return "" if v is None else pattern.format(v)


def grid_table(rows, cells, per_cell):
    head = ("| method | in-cell share ↑ (min) | area kept | p(target): explanation ≥ grid | fill hides the class | "
            "label kept under the mean colour | seconds per grid |")
    if per_cell:
        head += " GridPG, every cell ↑ |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name, rs in rows.items():
        share = [r["share"] for r in rs]
        ok = [r["p_e"] >= r["p_grid"] for r in rs if r["p_e"] is not None]
        kept = f"{sum(ok)}/{len(ok)}" if ok else ""

        def count(key):
            known = [r[key] for r in rs if r.get(key) is not None]
            return f"{sum(known)}/{len(known)}" if known else ""

        line = (f"| {name} | {mean(share):.2f} ({min(share):.2f}) | {fmt(mean([r['area'] for r in rs]))} | {kept} | "
                f"{count('fill_hides')} | {count('kept_mean')} | {mean([r['seconds'] for r in rs]):.2f} |")
        if per_cell:
            line += f" {mean(cells[name]):.2f} |"
        lines.append(line)
    return "\n".join(lines)


def photo_table(zoo, methods, n_photos):
    """Single photos: area, label kept (on the explanation as scored with its own fill), deletion and
    insertion AUC (fill: mean colour, the same for every method), seconds."""
    from nbexplain.attribution import as_attribution
    from nbexplain.datasets import README_PHOTOS, load_photo
    from nbexplain.metrics import deletion_curve, insertion_curve

    lines = ["| photo | class | method | area kept | label kept | fill (does it hide the class alone?) | "
             "label kept under the mean colour | deletion AUC ↓ | insertion AUC ↑ | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for photo in README_PHOTOS[:n_photos]:
        x = zoo.preprocess(load_photo(photo))
        with torch.no_grad():
            t = int(zoo.model(x[None]).argmax())
        for name, fn in methods.items():
            answer, sec = timed(fn, x, t)
            amap, area, kept = answer.map, answer.area, answer.kept
            attr = as_attribution(amap, target=t, method=name)
            dele = deletion_curve(zoo.model, x, attr, target=t).auc
            ins = insertion_curve(zoo.model, x, attr, target=t).auc
            kept = "" if kept is None else ("yes" if kept else "no")
            mean_kept = "" if answer.kept_mean is None else ("yes" if answer.kept_mean else "no")
            lines.append(f"| {photo} | {zoo.labels[t]} | {name} | {fmt(area, '{:.1%}')} | {kept} | {answer.fill or ''} | "
                         f"{mean_kept} | {dele:.3f} | {ins:.3f} | {sec:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from nbexplain.config import parse_options
    from nbexplain.zoo import load_model

    zoo = load_model("efficientnet_lite0")
    photos = cell_photos(zoo, args.min_prob)
    print(f"photos confident at cell size: {[(n, zoo.labels[c], round(p, 2)) for n, _, c, p in photos]}")
    if len(photos) < 4:
        print("fewer than four photos of different classes are confident at cell size; lower --min-prob")
        return 1
    grids = make_grids(photos, args.grids, args.seed)
    amortized = fit_amortized(zoo, photos, args.amortized, args.fit_steps, args.seed) if args.amortized else None
    methods = make_methods(zoo, [m.strip() for m in args.methods.split(",") if m.strip()], args.ep_iterations,
                           parse_options(args.options), amortized)
    rows, cells = play(zoo, grids, methods, args.per_cell)
    print(f"\nGrid pointing game, EfficientNet-Lite0, {len(grids)} grids of 2x2 real photos at {SIZE} px "
          "(chance 0.25)\n")
    print(grid_table(rows, cells, args.per_cell))
    if args.photos:
        print("\nSingle photos at 224 px (the model's top-1 explained)\n")
        print(photo_table(zoo, methods, args.photos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
