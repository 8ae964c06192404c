"""Seconds per image and peak memory of every method, side by side in one process.

    python benchmarks/bench_speed.py                   # EfficientNet-Lite0 on photos, stock ResNet-18/50 and ViT-B/16 at 224, the zoo models
    python benchmarks/bench_speed.py --n 3 --skip-extremal

Models: the pretrained EfficientNet-Lite0 on the five README photos at 224 px (plus one
448 px grid of four of them), a stock ResNet-18 at 224 and the bundled honest model.
Methods: nbexplain's presets (fast, default), batched nbexplain (8 and 32
images at once), the bundled amortised explainer (one pass; trained by
scripts/train_amortized.py on scenes disjoint from these), Captum Grad-CAM, Captum occlusion
(window 15, stride 8 at 224), and TorchRay's extremal perturbation (optional:
``pip install torchray``; at its default 800 iterations and at 100).

On the bundled model the scenes' ground truth gives quality columns:
``gt_precision`` (share of the map's top-|GT| pixels on the object) and
``pointing`` (the map's top pixel on the object), so speed is never bought
with silent quality loss. The stock models have random weights (no
download is possible here), so only their timings mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def reset_peak_memory() -> None:
    """Linux: reset the process's peak resident set size (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def extremal(model, x, target, iterations):
    from torchray.attribution.extremal_perturbation import contrastive_reward, extremal_perturbation

    masks, _ = extremal_perturbation(model, x[None], target, reward_func=contrastive_reward, debug=False,
                                     areas=[0.12], max_iter=iterations)
    return masks[0, 0]


def methods_for(model, preprocess, labels, skip_extremal: bool, amortized):
    from nbexplain import Explainer
    from nbexplain.baselines import gradcam, occlusion

    ex = {p: Explainer(model, preprocess=preprocess, labels=labels, config=p) for p in ("fast", "default")}
    table = {
        "nbexplain fast": lambda x, t: ex["fast"].explain(x, target=t, progress=False, live=False).mask,
        "nbexplain default": lambda x, t: ex["default"].explain(x, target=t, progress=False, live=False).mask,
        "gradcam (captum)": lambda x, t: gradcam(model, x, t).map,
        "occlusion (captum)": lambda x, t: occlusion(model, x, t).map,
    }
    if amortized is not None:
        table["nbexplain amortised"] = lambda x, t: amortized.explain(x, target=t).mask
    table["model forward + backward (reference)"] = lambda x, t: forward_backward(model, x, t)
    if not skip_extremal:
        try:
            import torchray  # noqa: F401  (optional benchmark-only dependency)

            table["extremal perturbation 100 it"] = lambda x, t: extremal(model, x, t, 100)
            table["extremal perturbation 800 it (default)"] = lambda x, t: extremal(model, x, t, 800)
        except ImportError:
            print("torchray is not installed: extremal perturbation skipped (pip install torchray)")
    return table, ex["default"]


def forward_backward(model, x, target):
    """One forward and backward pass of the model on one image: the unit an explanation's cost is made of
    (a map of zeros: it says nothing about quality)."""
    batch = x[None].clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(batch)
        out[0, target].backward()
    model.zero_grad(set_to_none=True)
    return torch.zeros(x.shape[-2:])


def quality(attr_map, gt):
    from nbexplain.attribution import Attribution
    from nbexplain.metrics.localisation import pointing_game, top_gt_precision

    a = Attribution(attr_map.float(), method="x", target=None)
    return top_gt_precision(a, gt), float(pointing_game(a, gt))


def bench_model(name, model, preprocess, labels, images, targets, gts, args, amortized=None):
    table, default_ex = methods_for(model, preprocess, labels, args.skip_extremal, amortized)
    if args.methods:
        table = {k: v for k, v in table.items() if any(k.startswith(m) for m in args.methods)}
    rows = []
    for method, fn in table.items():
        n = len(images) if "800" not in method else min(len(images), args.n_slow)
        fn(images[0], targets[0])  # warm-up (allocator, one-off set-up)
        reset_peak_memory()
        times, quals = [], []
        for x, t, gt in list(zip(images, targets, gts))[:n]:
            start = time.perf_counter()
            m = fn(x, t)
            times.append(time.perf_counter() - start)
            if gt is not None and not method.startswith("model"):
                quals.append(quality(m, gt))
        rows.append(dict(model=name, method=method, n=n, seconds=statistics.mean(times),
                         spread=statistics.pstdev(times), peak=peak_memory_mb(),
                         gt_precision=statistics.mean(q[0] for q in quals) if quals else None,
                         pointing=statistics.mean(q[1] for q in quals) if quals else None))
    for size in args.batches:
        batch = (images * (size // len(images) + 1))[:size]
        tgt = (targets * (size // len(targets) + 1))[:size]
        reset_peak_memory()
        start = time.perf_counter()
        default_ex.explain(batch, target=tgt, progress=False, live=False)
        per = (time.perf_counter() - start) / size
        rows.append(dict(model=name, method=f"nbexplain default, batch of {size}", n=size, seconds=per, spread=0.0,
                         peak=peak_memory_mb(), gt_precision=None, pointing=None))
    return rows


def large_input_row(zoo, targets):
    """The default preset on a 448 px grid of four 224 px photos (the first photo's class explained)."""
    from nbexplain import Explainer
    from nbexplain.datasets import README_PHOTOS, load_photo

    images = [zoo.preprocess(load_photo(p)) for p in README_PHOTOS[:4]]
    grid = torch.cat([torch.cat(images[0:2], 2), torch.cat(images[2:4], 2)], 1)
    ex = Explainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels)
    reset_peak_memory()
    start = time.perf_counter()
    ex.explain(grid, target=targets[0], progress=False, live=False)
    return dict(model="lite0", method="nbexplain default, 448 px grid of 4", n=1, seconds=time.perf_counter() - start,
                spread=0.0, peak=peak_memory_mb(), gt_precision=None, pointing=None)


STOCK = ("resnet18", "resnet50", "vit_b_16")


def stock_model(name):
    """A torchvision model with random weights (no download is possible here): timings only. The ViT's
    head starts at zero (constant logits), so it is drawn at random like the others' heads."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    if name.startswith("vit"):
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def print_table(rows):
    base = {r["model"]: r["seconds"] for r in rows if r["method"] == "nbexplain default"}
    head = f"| {'model':10} | {'method':40} | {'n':>3} | {'s / image':>14} | {'x default':>9} | {'peak MB':>8} | {'gt_precision':>12} | {'pointing':>8} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ratio = r["seconds"] / base[r["model"]] if base.get(r["model"]) else float("nan")
        gp = "" if r["gt_precision"] is None else f"{r['gt_precision']:.3f}"
        pt = "" if r["pointing"] is None else f"{r['pointing']:.2f}"
        secs = f"{r['seconds']:.3f} ± {r['spread']:.3f}"
        print(f"| {r['model']:10} | {r['method']:40} | {r['n']:>3} | {secs:>14} | {ratio:>9.2f} | {r['peak']:>8.0f} | {gp:>12} | {pt:>8} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5, help="images per model and method")
    parser.add_argument("--n-slow", type=int, default=2, help="images for the 800-iteration extremal run")
    parser.add_argument("--batches", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--skip-extremal", action="store_true")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="only methods whose names start with these (e.g. 'nbexplain' 'gradcam')")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--models", nargs="*", default=["lite0", "resnet18", "resnet50", "vit_b_16", "honest",
                                                         "vit_honest"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")

    rows = []
    if "lite0" in args.models:
        from nbexplain.datasets import README_PHOTOS, load_photo
        from nbexplain.zoo import load_model

        zoo = load_model("efficientnet_lite0")
        images = [zoo.preprocess(load_photo(p)) for p in README_PHOTOS][: args.n]
        with torch.no_grad():
            targets = [int(zoo.model(x[None]).argmax()) for x in images]
        rows += bench_model("lite0", zoo.model, zoo.preprocess, zoo.labels, images, targets, [None] * len(images), args)
        rows.append(large_input_row(zoo, targets))
    for name in (m for m in STOCK if m in args.models):
        model = stock_model(name)
        images = [torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(i)) for i in range(args.n)]
        with torch.no_grad():
            targets = [int(model(x[None]).argmax()) for x in images]
        rows += bench_model(name, model, None, None, images, targets, [None] * args.n, args)
    for name in (m for m in ("honest", "vit_honest") if m in args.models):
        from nbexplain.datasets import make_scenes
        from nbexplain.zoo import load_amortized, load_model

        zoo = load_model(name)
        scenes = make_scenes(args.n, seed=2024)
        images = [zoo.normalize(img) for img in scenes.images]
        targets = [int(t) for t in scenes.labels]
        amortized = load_amortized(name) if name == "honest" else None  # trained by scripts/train_amortized.py
        rows += bench_model(name, zoo.model, zoo.preprocess, zoo.labels, images, targets,
                            list(scenes.masks), args, amortized)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
