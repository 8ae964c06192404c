"""Train the bundled zoo models and write their weight files.

Usage (from the repository root, CPU only; 1500 steps of 64 scenes take about
6 minutes per model on one core of this machine, 12 when it is busy)::

    .venv/bin/python scripts/train_zoo.py                    # both models
    .venv/bin/python scripts/train_zoo.py --model shortcut   # one of them
    .venv/bin/python scripts/train_zoo.py --out /tmp/zoo     # somewhere else
    .venv/bin/python scripts/train_zoo.py --arch vit         # the ViT pair: vit_honest, vit_shortcut

The ViTs (``SmallViT``: 4 blocks of width 64, 4 heads, on the 16 x 16 grid of a
convolutional stem) start their stem from the honest ResNet's first two stages, so
``honest.pt`` must exist; 600 steps of 64 scenes take about 5 minutes per model on one core.

Writes ``nbexplain/zoo/weights/{honest,shortcut}.pt`` (``vit_``-prefixed for the ViTs; half-precision weights
plus a ``meta`` record with the recipe and the accuracies measured on freshly
generated scenes), and prints those accuracies.

* ``honest`` sees clean scenes (no cue anywhere);
* ``shortcut`` sees scenes where the corner cue is on ``cue_rate`` of the
  ``CUE_CLASS`` images and on no other image, so it learns to rely on the cue.

Both start from the same initial weights and see the same scenes in the same
order; the cue is the only difference. Training data is generated on the fly
from seeds at or above 10**6 - 1, so every evaluation seed below that is unseen. Runs are deterministic: same seeds, same
thread count (``--threads``, default 1) and same torch build give the same
weights.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbexplain.datasets import CLASS_NAMES, CUE_CLASS, make_scenes  # noqa: E402
from nbexplain.zoo.evaluation import accuracy, shortcut_report  # noqa: E402
from nbexplain.zoo.loading import VIT_SIZES, WEIGHTS_DIR, build_model, load_model, load_weights_file, save_model  # noqa: E402

TRAIN_SEED_BASE = 10**6
EVAL_SEED = 424_242
RECIPES = {
    "honest": {"shortcut": "absent", "cue_rate": 0.0},
    "shortcut": {"shortcut": "train", "cue_rate": 0.95},
}
ARCHS = {  # recorded in each model's meta; nbexplain.zoo.loading.build_model reads it
    "resnet": {"arch": "resnet", "widths": [16, 32, 64, 128], "blocks": [1, 1, 1, 1]},
    "vit": {"arch": "vit", "image_size": 128, "patch_size": 8, "num_layers": 4, "num_heads": 4,
            "hidden_dim": 64, "mlp_dim": 128, "stem": "resnet", "stem_widths": [16, 32]},
}
# Training defaults per architecture (a command-line option overrides its entry).
DEFAULTS = {
    "resnet": {"steps": 1500, "lr": 6e-3, "weight_decay": 1e-4, "label_smoothing": 0.0, "warmup": 0.05,
               "clip": 0.0},
    "vit": {"steps": 600, "lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.0, "warmup": 0.05,
            "clip": 1.0},
}
PREFIX = {"resnet": "", "vit": "vit_"}  # file and zoo name: honest.pt, vit_honest.pt, ...
POOL = 512  # scenes generated at once, then shuffled into batches


def dataset_stats(size: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of clean scenes, rounded (stored with the model)."""
    images = make_scenes(1024, seed=TRAIN_SEED_BASE - 1, size=size).images
    mean = images.mean((0, 2, 3)).tolist()
    std = images.std((0, 2, 3)).tolist()
    return [round(m, 3) for m in mean], [round(s, 3) for s in std]


def pool_scenes(recipe: dict, seed: int, size: int, pool_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pool of POOL training scenes: mostly cluttered, some multi-instance, some plain."""
    common = dict(size=size, shortcut=recipe["shortcut"], cue_rate=recipe["cue_rate"])
    parts = [
        make_scenes(POOL * 5 // 8, seed=seed, **common),
        make_scenes(POOL * 2 // 8, seed=seed + 1, instances=2 + pool_index % 2, **common),
        # Plain scenes show the bare shapes: they speed up early learning.
        make_scenes(POOL // 8, seed=seed + 2, background="plain", **common),
    ]
    return torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])


def batches(recipe: dict, steps: int, batch: int, size: int, seed: int):
    """Yield ``steps`` (images, labels) batches of fresh scenes."""
    per_pool = POOL // batch
    shuffle = torch.Generator().manual_seed(seed)
    for pool_index in range(math.ceil(steps / per_pool)):
        pool_seed = TRAIN_SEED_BASE + seed * 100_000 + 3 * pool_index
        images, labels = pool_scenes(recipe, pool_seed, size, pool_index)
        order = torch.randperm(len(labels), generator=shuffle)
        for start in range(0, POOL, batch):
            idx = order[start:start + batch]
            yield images[idx], labels[idx]


def train(recipe_name: str, args, mean, std) -> dict:
    recipe = RECIPES[recipe_name]
    name = PREFIX[args.arch] + recipe_name
    torch.manual_seed(args.seed)
    arch = dict(ARCHS[args.arch])
    if args.arch == "vit":
        if args.size != arch["image_size"]:
            raise SystemExit(f"the ViT is built for {arch['image_size']} px scenes, not --size {args.size}")
    meta = {
        "name": name, "labels": list(CLASS_NAMES), "size": args.size, "mean": mean, "std": std,
        **arch, "cue_class": CUE_CLASS, **recipe, "steps": args.steps, "batch": args.batch,
        "lr": args.lr, "optimizer": args.optimizer, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing, "warmup": args.warmup, "clip": args.clip,
        "seed": args.seed, "torch": str(torch.__version__),
    }
    memory_format = torch.channels_last if args.arch == "resnet" else torch.contiguous_format
    model = build_model(meta).to(memory_format=memory_format)
    if getattr(model, "stem", None) == "resnet":
        # A hybrid ViT: its convolutional stem starts from the honest ResNet's first two stages.
        model.init_stem_from(load_model("honest").model)
        meta["stem_init"] = "honest ResNet: conv1, bn1, layer1, layer2"
    norm_mean = torch.tensor(mean).view(1, 3, 1, 1)
    norm_std = torch.tensor(std).view(1, 3, 1, 1)
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                              weight_decay=args.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warmup = max(1, int(args.steps * args.warmup + 1e-9))  # resnet: steps // 20

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    start, running = time.perf_counter(), None
    for step, (images, labels) in enumerate(batches(recipe, args.steps, args.batch, args.size, args.seed)):
        x = ((images - norm_mean) / norm_std).contiguous(memory_format=memory_format)
        loss = F.cross_entropy(model(x), labels, label_smoothing=args.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print(f"[{name}] step {step + 1}/{args.steps} loss {running:.4f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    meta["train_seconds"] = round(time.perf_counter() - start, 1)
    return model.eval(), meta


def evaluate(path: Path, n: int) -> dict:
    """Accuracies of the saved (half-precision) model on unseen seeds."""
    zm = load_weights_file(path)
    metrics = {
        "clean_accuracy": accuracy(zm, make_scenes(n, seed=EVAL_SEED)),
        "multi_instance_accuracy": accuracy(zm, make_scenes(n, seed=EVAL_SEED + 1, instances=3)),
    }
    if zm.meta["shortcut"] != "absent":  # a model trained with the cue
        metrics.update(shortcut_report(zm, n=n, seed=EVAL_SEED + 2))
    return {k: round(v, 4) for k, v in metrics.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=list(ARCHS), default="resnet")
    parser.add_argument("--model", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--steps", type=int, help="default: per --arch (DEFAULTS)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, help="peak learning rate; default: per --arch")
    parser.add_argument("--weight-decay", type=float, help="default: per --arch")
    parser.add_argument("--label-smoothing", type=float, help="default: per --arch")
    parser.add_argument("--warmup", type=float, help="share of the steps spent warming up; default: per --arch")
    parser.add_argument("--clip", type=float, help="gradient-norm clip, 0 for none; default: per --arch")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-scenes", type=int, default=1000)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.arch].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if POOL % args.batch:
        parser.error(f"--batch must divide {POOL}")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    mean, std = dataset_stats(args.size)
    names = list(RECIPES) if args.model == "all" else [args.model]
    for recipe_name in names:
        model, meta = train(recipe_name, args, mean, std)
        name = meta["name"]
        path = args.out / f"{name}.pt"
        save_model(model, path, meta)
        meta["metrics"] = evaluate(path, args.eval_scenes)
        save_model(model, path, meta)  # again, now with its measured accuracies
        print(f"[{name}] wrote {path} ({path.stat().st_size / 1e6:.2f} MB), trained in "
              f"{meta['train_seconds']}s; metrics: {meta['metrics']}", flush=True)


if __name__ == "__main__":
    main()
