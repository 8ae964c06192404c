"""Train the amortised explainer shipped for the bundled honest model.

    .venv/bin/python scripts/train_amortized.py [--scenes 500] [--steps 1500] [--out nbexplain/zoo/weights/honest_amortized.pt]

Deterministic (seeded); the training scenes (seed 50_000) are disjoint from
those the tests and notebooks use.
"""

import argparse

import torch

from nbexplain.amortized import AmortizedExplainer
from nbexplain.datasets import make_scenes
from nbexplain.zoo import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="nbexplain/zoo/weights/honest_amortized.pt")
    args = parser.parse_args()
    torch.manual_seed(0)
    zoo = load_model("honest")
    scenes = make_scenes(args.scenes, seed=50_000)
    am = AmortizedExplainer(zoo.model, preprocess=zoo.preprocess, labels=zoo.labels)
    am.fit(zoo.normalize(scenes.images), steps=args.steps, progress=True)
    am.save(args.out)
    info = am.fit_info
    print(f"trained on {args.scenes} scenes in {info['seconds']:.0f} s (teacher {info['teacher_seconds']:.0f} s); "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
