"""A published shortcut of a real ImageNet model: does the explanation find the ImageNet-W watermark?

    python benchmarks/bench_real_shortcut.py                  # every photo view, every method
    python benchmarks/bench_real_shortcut.py --photos rocket,hopper --no-occlusion

Protocol. The pretrained EfficientNet-Lite0 (``nbexplain.zoo``) sees scikit-image's, scikit-learn's and
matplotlib's photos (``nbexplain.datasets.PHOTOS``), each whole, as three crops and all of them mirrored
(``photo_views``), at 224 px, clean and with the published watermark (``imagenet-w``'s ``AddWatermark``:
its font, text and opacity 0.5 at 40 % of the height). The images whose top-1 class the watermark changes
are explained with the model's decision on the watermarked image as the target.

Per method, the share of its region that lies within 3 px of the watermark's strokes (chance: the share
of the image that does):
- nbexplain necessary: ``res.necessary.mask``, the smallest region whose removal (each pixel filled in from
  its surroundings) changes the decision to one of the image's next five classes, checked by a forward
  pass; images where none is found up to 30 % are counted apart;
- nbexplain sufficient: ``res.mask``;
- Captum Grad-CAM and Captum occlusion (window 16, stride 16, mean colour), each cut at the necessary
  region's area of the same image (5 % where none was found): their top pixels.
Also: whether removing each method's region (filled in from its surroundings) changes the decision.

Then the audit of the mix (every view clean and watermarked; ``nbexplain.audit`` with its ``fast``
preset, no circuits): its patterns across classes (``Audit.artifacts``: images that carry the same
pattern where the necessary evidence of all images gathers; the group is the carriers whose decision
removing the pattern's footprint changes), the most suspicious first. The truth is the set of
watermarked views whose top-1 the watermark changed. Scores: the top group's precision and recall of
that set and the share of its footprint within 3 px of the strokes. Beside it, SpRAy on Grad-CAM (Lapuschkin et al. 2019): the
Grad-CAM maps of every image, pooled, clustered by the same spectral clustering; SpRAy ranks no group,
so its best group by F1 is reported (a choice that favours it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=None, help="comma-separated names (default: every photo)")
    p.add_argument("--no-occlusion", action="store_true")
    p.add_argument("--within", type=int, default=3, help="pixels from the strokes that count as on the watermark")
    p.add_argument("--config", default="default")
    p.add_argument("--skip-per-image", action="store_true")
    p.add_argument("--skip-audit", action="store_true")
    return p.parse_args(argv)


def top_share(attr: torch.Tensor, area: float) -> torch.Tensor:
    """The top ``area`` share of an attribution map's pixels, as a bool mask."""
    flat = attr.flatten()
    k = max(1, int(area * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.argsort(descending=True)[:k]] = True
    return keep.view_as(attr)


def share_on(region: torch.Tensor, band: torch.Tensor) -> float | None:
    region = region.bool()
    return None if not bool(region.any()) else float((region & band).sum() / region.sum())


def removal_changes(model, x, region, target) -> bool:
    """Whether removing ``region``, filled in from its surroundings (as ``res.necessary`` is judged), changes
    the top-1 class."""
    from nbexplain.core.fills import surroundings

    with torch.no_grad():
        return bool(model(surroundings(x[None], region.float()[None, None])).argmax(1)[0] != target)


def main(argv=None) -> int:
    args = parse_args(argv)
    from nbexplain.datasets.photos import PHOTOS
    from nbexplain.datasets.watermark import add_watermark, photo_views, watermark_strokes
    from nbexplain.zoo.pretrained import load_efficientnet_lite0

    zoo = load_efficientnet_lite0()
    model, norm = zoo.model, zoo.normalize
    names = args.photos.split(",") if args.photos else list(PHOTOS)
    views = [v for n in names for v in photo_views(n)]
    clean = torch.stack([norm(u) for _, u in views])
    marked = torch.stack([norm(add_watermark(u)) for _, u in views])
    with torch.no_grad():
        before, after = model(clean).argmax(1), model(marked).argmax(1)
    changed = (before != after).nonzero()[:, 0].tolist()
    band = watermark_strokes(224, within=args.within)
    print(f"{len(views)} views of {len(names)} photos; the watermark changes the top-1 class of {len(changed)} "
          f"({len(changed) / len(views):.0%}); to 'carton' on {int((after[changed] == 478).sum())}. "
          f"Chance (share of the image within {args.within} px of the strokes): {float(band.float().mean()):.3f}")

    decided = set(changed)
    if not args.skip_per_image:
        per_image(args, zoo, views, marked, before, after, changed, band)
    if not args.skip_audit:
        audit_mix(args, zoo, clean, marked, decided, band)
    return 0


def per_image(args, zoo, views, marked, before, after, changed, band):
    from nbexplain import Explainer
    from nbexplain.baselines.gradcam import gradcam
    from nbexplain.baselines.occlusion import occlusion
    model = zoo.model
    explainer = Explainer(model, preprocess=zoo.preprocess, labels=zoo.labels, config=args.config)
    rows = {m: [] for m in ("necessary", "sufficient", "gradcam", "occlusion")}
    changes = {m: [] for m in rows}
    areas, seconds, none_found = [], {"nbexplain (both halves)": [], "of which necessary": [], "gradcam": [],
                                      "occlusion": []}, 0
    for i in changed:
        x = marked[i]
        target = int(after[i])
        res = explainer.explain(x, progress=False, live=False)
        nec = res.necessary
        seconds["nbexplain (both halves)"].append(res.seconds)
        seconds["of which necessary"].append(nec.seconds)
        area = nec.area if nec.found else 0.05
        if nec.found:
            areas.append(nec.area)
            rows["necessary"].append(share_on(nec.mask, band))
            changes["necessary"].append(removal_changes(model, x, nec.mask, target))
        else:
            none_found += 1
        rows["sufficient"].append(share_on(res.mask, band))
        t0 = time.perf_counter()
        cam = gradcam(model, x, target=target).map
        seconds["gradcam"].append(time.perf_counter() - t0)
        region = top_share(cam, area)
        rows["gradcam"].append(share_on(region, band))
        changes["gradcam"].append(removal_changes(model, x, region, target))
        if not args.no_occlusion:
            t0 = time.perf_counter()
            occ = occlusion(model, x, target=target, window=16, stride=16).map
            seconds["occlusion"].append(time.perf_counter() - t0)
            region = top_share(occ, area)
            rows["occlusion"].append(share_on(region, band))
            changes["occlusion"].append(removal_changes(model, x, region, target))
        print(f"  {views[i][0]:28s} {zoo.labels[int(before[i])]!r} -> {zoo.labels[target]!r}: necessary "
              f"{'%.1f%%' % (100 * nec.area) if nec.found else 'none'}, on the watermark "
              f"{rows['necessary'][-1] if nec.found else float('nan'):.2f}", flush=True)

    print(f"\nWatermark-changed images: {len(changed)}; necessary region found on {len(changed) - none_found}, "
          f"median area {statistics.median(areas) if areas else float('nan'):.1%}\n")
    print("| method | images | share on the watermark (median) | mean | >= 0.5 | removal changes the decision |")
    print("|---|---|---|---|---|---|")
    for m, shares in rows.items():
        shares = [s for s in shares if s is not None]
        if not shares:
            continue
        ch = changes[m]
        changed_txt = f"{sum(ch)}/{len(ch)}" if ch else "(not a deletion)"
        print(f"| {m} | {len(shares)} | {statistics.median(shares):.2f} | {statistics.mean(shares):.2f} | "
              f"{sum(s >= 0.5 for s in shares)}/{len(shares)} | {changed_txt} |")
    print(f"| chance | | {float(band.float().mean()):.2f} | | | |")
    print("\n| seconds per image | median |\n|---|---|")
    for k, v in seconds.items():
        if v:
            print(f"| {k} | {statistics.median(v):.2f} |")


def audit_mix(args, zoo, clean, marked, decided, band):
    import numpy as np

    from nbexplain import audit
    from nbexplain.audits.grouping import knn_graph, mask_features, spectral_groups
    from nbexplain.audits.suspicion import pooled_masks
    from nbexplain.baselines.gradcam import gradcam

    n = len(clean)
    data = list(clean) + list(marked)  # ids n + i are the watermarked views
    truth = {n + i for i in decided}
    t0 = time.perf_counter()
    result = audit(zoo, data, circuits=False, features=("mask",), progress=False, gallery=False)
    seconds = time.perf_counter() - t0
    print(f"\nAudit of the mix: {len(data)} images ({len(truth)} decided by the watermark), {seconds:.0f} s; "
          f"necessary region found on {int(result.table['necessary_found'].sum())}")
    print("\n| method | group | size | precision | recall | shared region on the watermark | suspicion |")
    print("|---|---|---|---|---|---|---|")
    for a in result.artifacts[:3]:
        members = set(a.indices.tolist())
        hit = len(members & truth)
        on = float((a.footprint & band.numpy()).sum() / a.footprint.sum()) if a.footprint.any() else float("nan")
        print(f"| nbexplain artifacts (necessary, across classes) | #{a.index}, carried by {len(a.carriers)} | {a.size} | "
              f"{hit / max(1, a.size):.2f} | {hit / len(truth):.2f} | {on:.2f} | {a.suspicion:.2f} |")
    per_class = result.groups[0]
    hit = len(set(per_class.indices.tolist()) & truth)
    print(f"| nbexplain per-class groups (sufficient) | #0 | {per_class.size} | {hit / per_class.size:.2f} | "
          f"{hit / len(truth):.2f} | | {per_class.suspicion:.2f} |")
    t0 = time.perf_counter()
    cams = [gradcam(zoo.model, x).map.clamp_min(0) for x in data]
    pooled = pooled_masks([(c / c.max().clamp_min(1e-12)).numpy() for c in cams])
    feats = mask_features(pooled)
    labels = spectral_groups(knn_graph(feats, 10), 8, 0)[0]
    best = None
    for g in np.unique(labels):
        members = set(np.nonzero(labels == g)[0].tolist())
        hit = len(members & truth)
        p, r = hit / len(members), hit / len(truth)
        f1 = 0 if hit == 0 else 2 * p * r / (p + r)
        if best is None or f1 > best[0]:
            best = (f1, g, len(members), p, r)
    _, g, size, p, r = best
    print(f"| SpRAy on Grad-CAM (best of {len(np.unique(labels))} groups by F1) | #{g} | {size} | {p:.2f} | {r:.2f} | | |")
    print(f"\nSpRAy: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
