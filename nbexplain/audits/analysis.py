"""From stored rows to groups, most suspicious first: cluster each class, then test each group.

Pure over the rows (masks, channels, labels), except the transplant test, which asks the
worker's model; rerunnable on a stored audit without explaining again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.plumbing import class_name
from .grouping import FEATURES, channel_features, combine, knn_graph, mask_features, merge_alike, spectral_groups
from .suspicion import Group, pooled_masks, same_place, transplant_rate


def find_groups(table: pd.DataFrame, masks_of, *, worker=None, labels=None, features=FEATURES,
                neighbours: int = 10, max_groups: int = 8, min_size: int = 3, seed: int = 0) -> list[Group]:
    """Groups of every class in ``table`` (rows by id), ordered by suspicion, highest first.

    ``masks_of(id)`` gives an image's bool mask; ``worker`` runs the transplant test (without it,
    ``transplant`` is nan and suspicion 0)."""
    unknown = set(features) - set(FEATURES)
    if unknown or not features:
        raise ValueError(f"features must be a non-empty subset of {FEATURES}, got {features!r}")
    ok = table[table["error"].isna()] if "error" in table else table
    groups: list[Group] = []
    for target in sorted(ok["target"].dropna().astype(int).unique()):
        rows = ok[ok["target"] == target]
        ids = rows.index.to_numpy()
        pooled_all = pooled_masks([masks_of(int(i)) for i in ids])
        feats = _features(rows, pooled_all, features)
        labels_of_class = np.zeros(len(ids), dtype=np.int64)
        if len(ids) >= 2 * min_size:
            labels_of_class = merge_alike(feats, spectral_groups(knn_graph(feats, neighbours), max_groups, seed)[0])
            if "channels" in features and rows["channels"].map(len).sum() > 0:
                # One kind of evidence in several places (a cue in any corner) is one group: groups
                # whose circuits agree are joined, wherever their masks lie.
                labels_of_class = merge_alike(channel_features(list(rows["channels"])), labels_of_class)
        recipients = _recipients(ok, target)
        for g in np.unique(labels_of_class):
            sel = labels_of_class == g
            rng = np.random.default_rng([seed, int(target), int(g)])  # a group's draws do not depend on others
            groups.append(_group(rows[sel], feats[sel], pooled_all[sel], target, labels, worker, recipients,
                                 masks_of, rng))
    groups.sort(key=lambda g: (-g.suspicion, -g.size, g.target))
    for k, g in enumerate(groups):
        g.index = k
    return groups


def _features(rows, pooled, features) -> np.ndarray:
    parts, weights = [], []
    if "mask" in features:
        parts.append(mask_features(pooled))
        weights.append(1.0)
    if "channels" in features and rows["channels"].map(len).sum() > 0:
        parts.append(channel_features(list(rows["channels"])))
        weights.append(1.0)
    return combine(parts, weights)


def _group(rows, feats, pooled, target, labels, worker, recipients, masks_of, rng) -> Group:
    shared, place = same_place(pooled)
    centre = feats.mean(0)
    representative = int(rows.index[np.argmin(((feats - centre) ** 2).sum(1))])
    counts = pd.Series([c for chans in rows["channels"] for c in chans], dtype=object).value_counts()
    channels = sorted(counts[counts >= len(rows) / 2].index.tolist())
    on = rows["on_object"].dropna()
    labelled = rows["correct"].dropna()
    if worker is not None:
        rate, control, n = transplant_rate(worker, rows.index.to_numpy(), recipients, masks_of, target, rng)
    else:
        rate, control, n = float("nan"), float("nan"), 0
    return Group(
        index=0, target=int(target), target_name=class_name(labels, target), indices=rows.index.to_numpy().copy(),
        shared_map=shared, representative=representative, channels=channels, transplant=rate, same_place=place,
        off_object=float(1 - on.mean()) if len(on) else float("nan"),
        accuracy=float(labelled.astype(float).mean()) if len(labelled) else float("nan"),
        mean_area=float(rows["area"].mean()), transplants=n, transplant_control=control,
    )


def _recipients(table, target) -> np.ndarray:
    """Images the model gives another class (and, where labelled, are of another class)."""
    other = table["pred"] != target
    if table["label"].notna().any():
        other &= table["label"].fillna(-1) != target
    return table.index[other].to_numpy()
