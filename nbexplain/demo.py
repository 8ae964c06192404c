"""``python -m nbexplain.demo``: explain a bundled scene with a bundled model, offline.

Prints the explanation's summary and its circuit, and writes figures to a folder.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/demo", help="folder for the figures")
    parser.add_argument("--model", default="honest", choices=["honest", "shortcut"])
    parser.add_argument("--seed", type=int, default=7, help="which generated scene to explain")
    parser.add_argument("--preset", default="default", choices=["fast", "default", "thorough"])
    args = parser.parse_args(argv)

    from . import Explainer
    from .datasets import make_scenes
    from .zoo import load_model

    zoo = load_model(args.model)
    scenes = make_scenes(1, seed=args.seed, shortcut=args.model == "shortcut")
    image = scenes.pil(0)
    print(f"model: bundled '{args.model}' ResNet ({zoo.labels}); scene {args.seed}: a {scenes.class_names[int(scenes.labels[0])]}")

    explainer = Explainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels, config=args.preset)
    res = explainer.explain(image, live=False)
    print(res.summary())
    gt = scenes.masks[0].float()
    inside = float((res.mask * gt).sum() / res.mask.sum().clamp_min(1))
    print(f"{inside:.0%} of the kept pixels lie on the object that defines the class")

    os.makedirs(args.out, exist_ok=True)
    paths = [res.save(os.path.join(args.out, "explanation.png"))]
    try:
        circuit = res.circuit
        print(circuit)
        from .circuit_plot import save_circuit_figure

        paths.append(save_circuit_figure(res, os.path.join(args.out, "circuit.png")))
    except ImportError:
        pass
    for p in paths:
        print(f"wrote {os.path.abspath(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
