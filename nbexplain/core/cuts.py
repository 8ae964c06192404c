"""Cuts of a ranking of pixels, and pieces of a mask: the searches that turn the mask generator's logits
into the smallest sufficient mask.

The steps rank pixels well before their own threshold settles, so the logits are cut at several areas
and the smallest sufficient cut of that ranking is kept (the start, and the result when it beats the
steps' best mask); and since a mask is judged as a whole, a separate piece that nothing needs is dropped.

Each search is written against a ``judge(rows, masks, eligible=None) -> (prob, sufficient)``: the
target's probability on masks [n, H, W] of the images ``rows`` [n] and whether each is sufficient
(``SufficiencyProblem.judge`` with its ``backgrounds`` chosen).
"""

from __future__ import annotations

import torch

from .pieces import label_pieces, pieces_by_size

#: shares of the image at which mask logits are cut (the starting ranking and the final one)
CUT_AREAS = (0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6)

#: pieces of a mask scored for removal, the largest first (``drop_unneeded_pieces``)
MAX_PIECES = 8


def smallest_sufficient_cut(z: torch.Tensor, judge, prob_fill: torch.Tensor, prob_needed: torch.Tensor,
                            limit: torch.Tensor | None = None, current: bool = True, chunk: int = 4):
    """Per image, the smallest sufficient cut of the logits z [B, H, W], its threshold, whether it is
    sufficient and its target probability; rows with no sufficient cut get the most probable cut scored.

    Cuts are scored from the smallest up, ``chunk`` areas per forward, and only while some image
    has no sufficient cut yet, and below its ``limit`` (an area) if given. ``current`` adds the cut at
    the logits' own threshold. The empty mask is the fill alone, whose probability is known (``prob_fill``):
    it is scored only for images whose fill already has the probability needed (``prob_needed``)."""
    ranked = z.flatten(1).sort(dim=1, descending=True).values
    pixels = ranked.shape[1]
    counts = [(ranked > 0).sum(1)] if current else []
    counts += [torch.full_like(ranked[:, 0], a * pixels).long() for a in CUT_AREAS]
    thresholds = torch.cat([ranked[:, :1] + 1.0]  # the empty mask: for a model that needs nothing
                           + [ranked.gather(1, (c.clamp(1, pixels) - 1)[:, None]) for c in counts], 1)
    masks = torch.stack([(z >= thresholds[:, j, None, None]).float() for j in range(thresholds.shape[1])], 1)
    b, k = masks.shape[:2]
    area = masks.flatten(2).mean(2)
    limit = torch.full((b,), 2.0, device=z.device) if limit is None else limit
    ok = torch.zeros(b, k, dtype=torch.bool, device=z.device)
    probs = torch.zeros(b, k, device=z.device)
    probs[:, 0] = prob_fill
    scored = torch.zeros(b, k, dtype=torch.bool, device=z.device)
    scored[:, 0] = prob_fill < prob_needed  # the empty mask cannot suffice there
    # A cut counts for an image only below its limit, also when scored for another image of the batch.
    allowed = area < limit[:, None]
    pending = [0] + (1 + area[:, 1:].mean(0).argsort()).tolist()  # smallest first
    rows = torch.arange(b, device=z.device)
    while pending:
        found = (ok & scored).any(1)
        pending = [j for j in pending if bool((~found & ~scored[:, j] & allowed[:, j]).any())]
        cols, pending = pending[:chunk], pending[chunk:]
        if not cols:
            break
        p, good = judge(rows.repeat_interleave(len(cols)), masks[:, cols].flatten(0, 1),
                        eligible=allowed[:, cols].flatten())
        probs[:, cols], ok[:, cols], scored[:, cols] = p.view(b, -1), good.view(b, -1), True
    # Smallest sufficient cut: rank them by area, the others after them by probability.
    key = torch.where(ok, area, torch.where(scored, 2.0 - probs, torch.full_like(probs, 9.0)))
    choice = key.argmin(1)
    rows = torch.arange(b, device=masks.device)
    return masks[rows, choice], thresholds[rows, choice], ok[rows, choice], probs[rows, choice]


def smallest_start_cut(rankings: list[torch.Tensor], logits_of, judge, prob_fill: torch.Tensor,
                       prob_needed: torch.Tensor):
    """The start of the steps: per image, the smallest sufficient cut of several rankings (mask logit
    offsets [B, h, w]; ``logits_of(ranking)`` gives the mask logits at the input's size they make).

    Returns the ranking to start from, its cut, whether that cut is sufficient and its probability.
    The first ranking is cut as ``smallest_sufficient_cut`` does (without the current threshold); the
    others only up to and including the first's sufficient cut, and a sufficient one of theirs replaces
    it (it is no larger; at equal area it wins). Where the first ranking has no sufficient cut, its most
    probable cut is the start: the others rarely do better there, and scoring every cut again would
    double the start's cost (on noise, say)."""
    chosen, found, start = None, None, rankings[0].clone()
    for ranking in rankings:
        # Up to and including the first's sufficient cut (hence the crumb above its area).
        limit = None if found is None else torch.where(found, chosen.flatten(1).mean(1) + 1e-6, 0.0)
        masks, _, ok, prob = smallest_sufficient_cut(logits_of(ranking), judge, prob_fill, prob_needed,
                                                     limit=limit, current=False)
        if chosen is None:
            chosen, found, chosen_prob = masks, ok, prob
            continue
        # Its cuts were scored only up to a sufficient cut of the first: a sufficient one is no larger.
        chosen[ok], start[ok], chosen_prob[ok] = masks[ok], ranking[ok], prob[ok]
    return start, chosen, found, chosen_prob


def drop_unneeded_pieces(masks: torch.Tensor, rows: torch.Tensor, size: tuple[int, int], judge) -> dict:
    """Of the masks ``masks[rows]`` that pass ``judge`` (sufficient, or whose removal changes the
    decision), each without the pieces the test does not need: ``{image: mask}`` for the images that
    lose one (pieces are labelled at the working ``size``).

    The steps and cuts judge a mask as a whole, so a mask may carry a separate piece (a patch of
    background, a second object) that nothing needs. Every piece is scored removed on its own (the
    ``MAX_PIECES`` largest, one batched pass); all pieces that can go alone are then dropped
    together if the rest still passes, else the largest of them."""
    if not len(rows):
        return {}
    labels = label_pieces(masks[rows], size)
    owner, piece = [], []
    for j, ids in enumerate(pieces_by_size(labels, MAX_PIECES)):
        if len(ids) > 1:
            owner += [j] * len(ids)
            piece += ids
    if not owner:
        return {}
    owner, piece = torch.tensor(owner, device=rows.device), torch.tensor(piece, device=rows.device)
    without = masks[rows[owner]] * (labels[owner] != piece[:, None, None])
    _, removable = judge(rows[owner], without)
    chosen = {}
    for j in owner[removable].unique().tolist():
        mine = removable & (owner == j)
        largest = int(mine.nonzero()[0, 0])  # pieces come largest first
        all_gone = masks[rows[j]] * ~torch.isin(labels[j], piece[mine])
        chosen[j] = [without[largest]] if int(mine.sum()) == 1 else [all_gone, without[largest]]
    joint = [j for j, c in chosen.items() if len(c) == 2]
    if joint:
        _, ok = judge(rows[joint], torch.stack([chosen[j][0] for j in joint]))
        for j, good in zip(joint, ok.tolist()):
            chosen[j] = chosen[j][:1] if good else chosen[j][1:]
    return {int(rows[j]): mask for j, (mask,) in chosen.items()}
