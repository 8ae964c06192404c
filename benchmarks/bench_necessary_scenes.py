"""Necessary evidence where the truth is known: the planted corner cue of the bundled ``shortcut`` model.

    python benchmarks/bench_necessary_scenes.py            # 30 cued triangles
    python benchmarks/bench_necessary_scenes.py --n 10

Protocol. Fresh scenes of triangles that carry the corner cue (``make_scenes(shortcut="all")``; the
same scenes with ``shortcut="absent"`` are the triangles without it). A
triangle is *cue-decided* when the model calls it a triangle with the cue and not without it (the same
scene with the cue painted over, ``shortcut_report``'s test per image). Each is explained with the
default preset; per image: whether a necessary region was found, its area, the share of its pixels on
the cue (``on_cue``: the cue's pixels grown by one necessary cell, since the region is made of cells;
``on_cue_pixels``: the cue's own pixels), the share of the cue it removes, and its share on the
triangle; beside it the sufficient mask's share on the cue (grown the same way).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    from nbexplain import Explainer
    from nbexplain.datasets import make_scenes
    from nbexplain.zoo import load_model

    zm = load_model("shortcut")
    with_cue = make_scenes(args.n, seed=args.seed, shortcut="all", classes=["triangle"])
    without = make_scenes(args.n, seed=args.seed, shortcut="absent", classes=["triangle"])
    ex = Explainer(zm.model, preprocess=zm.preprocess, labels=zm.labels)
    tri = zm.labels.index("triangle")
    rows = []
    for i in range(args.n):
        x_cue, x_plain = ex_input(ex, with_cue.pil(i)), ex_input(ex, without.pil(i))
        with torch.no_grad():
            if int(zm.model(x_cue).argmax()) != tri or int(zm.model(x_plain).argmax()) == tri:
                continue  # not decided by the cue
        res = ex.explain(with_cue.pil(i), progress=False, live=False)
        nec = res.necessary
        cue = torch.as_tensor(with_cue.cue_masks[i]).bool()
        shape = torch.as_tensor(with_cue.masks[i]).bool()
        cell = max(1, round(max(cue.shape) / res.config.necessary_cells))
        cue_cells = F.max_pool2d(cue.float()[None, None], 2 * cell + 1, 1, cell)[0, 0] > 0
        kept = res.mask.bool()
        rows.append({
            "found": nec.found, "area": nec.area,
            "on_cue": float((nec.mask.bool() & cue_cells).sum() / nec.mask.sum()) if nec.found else None,
            "on_cue_pixels": float((nec.mask.bool() & cue).sum() / nec.mask.sum()) if nec.found else None,
            "cue_removed": float((nec.mask.bool() & cue).sum() / cue.sum()) if nec.found else None,
            "on_shape": float((nec.mask.bool() & shape).sum() / nec.mask.sum()) if nec.found else None,
            "sufficient_on_cue": float((kept & cue_cells).sum() / kept.sum()) if kept.any() else None,
        })
    found = [r for r in rows if r["found"]]
    print(f"{len(rows)} cue-decided triangles of {args.n}; necessary region found on {len(found)}\n")
    print("| measure | median | mean | images >= 0.9 |\n|---|---|---|---|")
    for key in ("on_cue", "on_cue_pixels", "cue_removed", "on_shape", "sufficient_on_cue"):
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            print(f"| {key} | {statistics.median(vals):.2f} | {statistics.mean(vals):.2f} | "
                  f"{sum(v >= 0.9 for v in vals)}/{len(vals)} |")
    if found:
        print(f"| necessary area | {statistics.median(r['area'] for r in found):.1%} | | |")
    return 0


def ex_input(ex, img):
    from nbexplain.core.inputs import to_model_input

    return to_model_input(img, ex.preprocess, ex.normalization, 3)


if __name__ == "__main__":
    sys.exit(main())
