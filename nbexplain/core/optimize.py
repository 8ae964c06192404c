"""The optimisation loop: train one small U-Net per image so that the masked
image keeps the model's decision and activations.

x's activations are computed once; the explanation and its robustness
variants go through the model together in one batched forward per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ExplainConfig
from . import losses
from .fills import random_background
from .masknet import MaskUNet
from .pieces import label_pieces, pieces_by_size
from .relevance import LayerRelevance, position_weights, start_logits
from .taps import Taps

#: shares of the image at which mask logits are cut: the starting ranking and the final one (``MaskOptimizer._cut_search``)
CUT_AREAS = (0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6)

#: with the exact area budget, each sufficient step multiplies the budget by exp(-BUDGET_RATE * cfg.area)
#: (0.86 at the default area weight 6) and each insufficient one divides it by that
BUDGET_RATE = 0.025
MIN_BUDGET = 0.002
#: a smaller sufficient mask restarts the patience count only if its area is below this share of the best
IMPROVEMENT = 0.95
#: pieces of a sufficient mask scored for removal, the largest first (``drop_unneeded_pieces``)
MAX_PIECES = 8

TERMS = ("activation", "kl", "ce", "area", "binarization", "tv", "robustness")


@dataclass(frozen=True)
class StepState:
    """What callbacks see after each step (for a batch: the first image)."""

    step: int
    total_steps: int
    losses: dict
    mask: torch.Tensor  # float32 [h, w] in {0, 1}, CPU, working resolution
    prob: float
    area: float
    label_kept: bool
    #: the label also holds on this step's random backgrounds, with ``prob_needed`` on the explanation
    #: (such masks compete on area for the result; the others on loss)
    sufficient: bool = False
    #: which half trains: "sufficient" (the kept mask; ``mask`` is kept pixels) or "necessary" (``mask`` is the
    #: removed region, and ``sufficient`` says its removal changes the decision under every fill)
    half: str = "sufficient"


def working_size(h: int, w: int, cfg: ExplainConfig) -> tuple[int, int]:
    """Mask resolution: the input scaled so its longest side is at most cfg.mask_resolution."""
    scale = min(1.0, cfg.mask_resolution / max(h, w))
    floor = 2**cfg.unet_depth
    return max(floor, round(h * scale)), max(floor, round(w * scale))


def images_per_pass(device: torch.device, height: int, width: int) -> int:
    """How many images of this size go through the model at once: about 32 of 224 x 224 pixels on
    an accelerator; on a CPU about 4, since larger batches outgrow its caches (EfficientNet-Lite0:
    16 ms per image in batches of 4, 25 ms in batches of 8)."""
    budget = 4 if device.type == "cpu" else 32
    return max(1, int(budget * 224 * 224 / (height * width)))


def in_chunks(fn, batch: torch.Tensor) -> torch.Tensor:
    """``fn`` over a batch of images in chunks of ``images_per_pass``, concatenated: fast, and
    scoring many masks of large images stays within memory."""
    chunk = images_per_pass(batch.device, *batch.shape[-2:])
    return torch.cat([fn(batch[i:i + chunk]) for i in range(0, batch.shape[0], chunk)])


def _layer_weights(cfg: ExplainConfig, n: int) -> list[float]:
    if cfg.layer_weights is not None:
        if len(cfg.layer_weights) != n:
            raise ValueError(f"config.layer_weights has {len(cfg.layer_weights)} entries but {n} layers are tapped")
        w = list(cfg.layer_weights)
    else:
        # Deeper layers carry the decision: weights 1, 2, 2, 4, 8 for five taps (the authors' ratios).
        base = [1.0, 2.0, 2.0, 4.0, 8.0]
        w = [base[min(len(base) - 1, round(i * 4 / max(1, n - 1)))] for i in range(n)]
    total = sum(w) or 1.0
    return [v / total for v in w]


def _distances(cfg: ExplainConfig, n: int) -> list[str]:
    if isinstance(cfg.distance, str):
        if cfg.distance == "auto":
            return ["cosine" if i < 2 and n > 2 else "std_mse" for i in range(n)]
        return [cfg.distance] * n
    if len(cfg.distance) != n:
        raise ValueError(f"config.distance has {len(cfg.distance)} entries but {n} layers are tapped")
    return ["std_mse" if d == "auto" else d for d in cfg.distance]


@torch.no_grad()
def calibrate_head(net, head: torch.nn.Conv2d, net_input: torch.Tensor, spread: float = 1.5,
                   on_share: float = 0.5) -> None:
    """A neutral start: each copy's logits are shifted so ``on_share`` of its mask is on
    (half by default), and scaled to a spread where pixels are neither undecided (p ~ 0.5,
    where any step flips them) nor saturated (p ~ 0 or 1, where gradients vanish). With
    one copy (an amortised generator) the statistics are pooled over the batch."""
    n = head.groups  # one group per independent copy
    logits = net(net_input).reshape(n, -1)
    scale = spread / logits.std(dim=1).clamp_min(1e-6)
    head.weight.mul_(scale.repeat_interleave(head.weight.shape[0] // n).view(-1, 1, 1, 1))
    head.bias.mul_(scale.repeat_interleave(head.bias.shape[0] // n))
    logits = net(net_input).reshape(n, -1)
    k = int((1.0 - on_share) * (logits.shape[1] - 1)) + 1  # the lower median for on_share = 0.5
    cut = logits.kthvalue(k, dim=1).values
    head.bias.sub_(cut.repeat_interleave(head.bias.shape[0] // n))


def lr_factor(step: int, cfg: ExplainConfig) -> float:
    """A linear warm-up over ``cfg.warmup`` steps, then cosine decay to a tenth over
    ``cfg.steps``: large early moves find the region, small late ones settle it."""
    warm = min(1.0, (step + 1) / cfg.warmup)
    return warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps)))


def total_loss(cfg: ExplainConfig, terms: dict, logits_e: torch.Tensor, target: torch.Tensor,
               prob_fill: torch.Tensor | None = None, prob_needed: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted sum of the terms, per image.

    With ``cfg.area_gate`` the area and TV pressure is scaled (as a constant) by how much
    of the needed probability the explanation recovers: (p(e) - p(fill)) / (p_needed - p(fill)),
    clipped to [0, 1] (without ``prob_needed``: p(e) itself). Masks shrink at full pressure
    while the decision holds and stop pushing once it is lost, so the output terms can win
    the pixels back. Measured against what is needed rather than against 1, the pressure does
    not fade on images the model is unsure of (p(target) of 0.1-0.4 is common on ImageNet photos).
    """
    weights = {t: getattr(cfg, t) for t in TERMS}
    gate = 1.0
    if cfg.area_gate:
        gate = logits_e.detach().softmax(1).gather(1, target[:, None])[:, 0]
        if prob_needed is not None and prob_fill is not None:
            gate = ((gate - prob_fill) / (prob_needed - prob_fill).clamp_min(1e-6)).clamp(0, 1)
    return sum(weights[t] * terms[t] * (gate if t in ("area", "tv") else 1.0) for t in TERMS)


class MaskOptimizer:
    """Optimises binary masks for a batch of images against a frozen model.

    After ``run()`` (or after it was interrupted) ``best_masks`` holds, per
    image, the best mask of the start's cut search or of any step (see ``_track_best``).

    ``start_share`` is the share of the mask that is on at the start (``run()`` then moves the
    budget to the smallest sufficient cut of the relevance ranking, when relevance is given);
    ``checks`` [n, B, C, H, W] are other neutral fills: a mask counts as sufficient only if the label
    also holds with each of them outside it (they judge, and are not in the loss).
    ``step_offset`` shifts the step numbers that callbacks see, and ``prob_fill``
    (the target's probability on the fill alone, computed if not given) saves a
    forward pass (both for a retry that continues a run).
    """

    def __init__(self, model, taps: Taps, layers, x, target, acts_x, logits_x, fill, cfg, seed, callbacks=(),
                 net=None, start_share: float = 0.5, step_offset: int = 0, prob_fill=None, relevance=None,
                 checks=None, prefix_x=None, patch_grid=None):
        self.model, self.taps, self.layers = model, taps, layers
        # Other neutral fills [n, B, C, H, W] under which a sufficient mask must keep the label too.
        self.checks = x.new_zeros((0, *x.shape)) if checks is None else checks
        self.x, self.target, self.fill, self.cfg = x, target, fill, cfg
        self.acts_x, self.logits_x = acts_x, logits_x
        self.prob_x = logits_x.softmax(1).gather(1, target[:, None])[:, 0]
        if prob_fill is None:
            with torch.no_grad():
                prob_fill = model(fill).softmax(1).gather(1, target[:, None])[:, 0]
                taps.reset()  # the fill's activations are not needed
        self.prob_fill = prob_fill
        # A kept mask must recover at least keep_ratio of what the image adds to the target's
        # probability over the fill alone. Measured from zero instead, a model that already
        # gives the target to a blank image would be "explained" by an empty mask.
        self.prob_needed = prob_fill + cfg.keep_ratio * (self.prob_x - prob_fill)
        # Whether x itself keeps the label. If it does not (explaining a class the model does not
        # predict, e.g. one cell of a grid), more of x brings the mask no closer to sufficiency.
        self.x_sufficient = logits_x.argmax(1) == target
        self.callbacks = list(callbacks)
        b, c, h, w = x.shape
        # A transformer sees patches: its mask is one on/off value per patch (``patch_grid``), never a
        # pixel that cuts a patch in half, which would show the model a patch it never saw.
        self.patch_grid = tuple(patch_grid) if patch_grid is not None and min(patch_grid) >= 2**cfg.unet_depth \
            else None
        self.size = self.patch_grid or working_size(h, w, cfg)
        self.layer_weights = _layer_weights(cfg, len(layers))
        self.distances = _distances(cfg, len(layers))
        self.seed, self.step_offset = seed, step_offset
        self.gen = torch.Generator(device=x.device).manual_seed(seed + 1)
        self.net_input = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        # Target-aware matching: each tapped position weighted by its relevance to the target.
        self.relevance = relevance if isinstance(relevance, LayerRelevance) else LayerRelevance(relevance or {})
        self.act_weights = {n: position_weights(r) for n, r in self.relevance.items()}
        # A token layer's prefix tokens (a ViT's class token) are matched too, weighted by their share of
        # the layer's relevance: at the last block the head reads only them.
        self.prefix_x = prefix_x or {}
        self.prefix_share = {n: s for n in self.prefix_x if (s := self.relevance.prefix_share(n)) is not None}
        start = start_logits(self.relevance, self.size, start_share) if self.relevance else None
        if net is None:
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(seed)
                self.net = MaskUNet(c, n=b, width=cfg.unet_width, depth=cfg.unet_depth).to(x.device)
            # With a relevance start the U-Net adds image-aligned detail around it, not its own guess.
            calibrate_head(self.net, self.net.head.conv, self.net_input, on_share=0.5 if start is not None else start_share,
                           spread=0.5 if start is not None else 1.5)
        else:
            self.net = net  # e.g. an amortised generator to refine; it maps net_input to mask logits
        # A free per-pixel logit offset beside the U-Net: the network gives image-aligned,
        # smooth masks; the offset lets each region be carved independently (Adam moves
        # every cell at its own pace, so weak but consistent pressure still acts).
        self.offset = torch.zeros(b, *self.size, device=x.device)
        if start is not None and net is None:
            self.offset += start
        self.offset.requires_grad_(True)
        # The per-image U-Net keeps an exact area budget (see ``masks``); a given generator (amortised)
        # keeps its own threshold, and the area term prices pixels instead.
        self.budget = torch.full((b,), float(start_share), device=x.device) if net is None else None
        self._budget_cfg = cfg.replace(area=0.0, area_gate=False)
        groups = [{"params": list(self.net.parameters())}]
        if cfg.pixel_lr > 0:
            groups.append({"params": [self.offset], "lr": cfg.pixel_lr})
        self.optim = torch.optim.Adam(groups, lr=cfg.lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: lr_factor(s, cfg))
        self.best_masks = torch.ones(b, h, w, device=x.device)
        self.best_loss = torch.full((b,), math.inf, device=x.device)
        self.best_rank = torch.zeros(b, dtype=torch.long, device=x.device)
        self.history: list[dict[str, list[float]]] = [{} for _ in range(b)]
        self.steps_run = 0
        self._every = 1 if cfg.strict_backgrounds else cfg.robustness_every
        # The curves show the latest measured robustness term (steps without variants repeat it).
        self._shown_robustness = torch.zeros(b, device=x.device)
        self._starts_at_a_cut = start is not None and self.budget is not None
        self._start_share = start_share

    @torch.no_grad()
    def _start_at_smallest_cut(self) -> None:
        """Start the area budget at the smallest sufficient cut of the starting ranking (the
        target's relevance), and keep that cut as the best mask so far.

        From half the image the start has usually lost the label: half of a grid of four photos
        holds other objects, and the budget would then grow towards the whole image instead of
        shrinking onto the target.

        Two rankings are cut: the relevance as it is, which keeps fine detail (thin or textured
        evidence), and the relevance smoothed along the image's edges, which fills an object and
        stops at its outline instead of keeping a halo of background. The second ranking's cuts are
        scored only up to the first's sufficient cut, and the smaller sufficient cut wins; at equal
        area the smoothed one, whose pixels follow the object. Where the
        first ranking has none, its most probable cut is the start: its smoothed copy rarely does
        better there, and scoring every cut again would double the start's cost (on noise, say)."""
        smoothed = start_logits(self.relevance, self.size, self._start_share, guide=self.net_input)
        rankings = [self.offset.detach().clone(), smoothed]
        chosen, found, start = None, None, rankings[0].clone()
        for ranking in rankings:
            self.offset.copy_(ranking)
            # Up to and including the first's sufficient cut (hence the crumb above its area).
            limit = None if found is None else torch.where(found, chosen.flatten(1).mean(1) + 1e-6, 0.0)
            masks, _, ok, prob = self._cut_search(backgrounds=False, limit=limit, current=False)
            if chosen is None:
                chosen, found, chosen_prob = masks, ok, prob
                continue
            # Its cuts were scored only up to a sufficient cut of the first: a sufficient one is no larger.
            chosen[ok], start[ok], chosen_prob[ok] = masks[ok], ranking[ok], prob[ok]
        self.offset.copy_(start)
        if self.cfg.keep_free_confidence:
            # Where the smallest sufficient cut convinces the model as much as x does (on a grid of photos,
            # dropping the other objects drops the target's competitors), smaller masks must keep that:
            # all of what x adds, not only keep_ratio of it; else the steps shrink the mask to 80 % of it.
            free = found & (chosen_prob >= self.prob_x)
            self.prob_needed = torch.where(free, self.prob_x, self.prob_needed)
        self.budget = chosen.flatten(1).mean(1).clamp(MIN_BUDGET, 1.0)
        self._keep_smaller_sufficient(chosen, found)

    @torch.no_grad()
    def adopt_current(self) -> None:
        """Take the generator's mask as the result, without optimisation steps.

        A generator's threshold is a guess that may keep nothing, everything, or
        too little for the label, but its ranking of pixels is informative. So the
        smallest sufficient cut of its logits wins (see ``select_cut``), else the one
        with the highest target probability. The offset moves so that ``run()`` would
        continue from that cut.
        """
        chosen, thresholds, ok, _ = self._cut_search(backgrounds=False)
        self.best_masks = chosen
        self.best_loss = torch.where(ok, chosen.flatten(1).mean(1), self.best_loss)
        self.best_rank = torch.where(ok, torch.full_like(self.best_rank, 2), self.best_rank)
        self.offset -= thresholds[:, None, None]

    @torch.no_grad()
    def select_cut(self, unsolved_only: bool = False) -> None:
        """Cut the final mask logits at several areas and keep, per image, the smallest cut that is
        sufficient (label kept with ``prob_needed``, and on random backgrounds), if it beats the best
        mask the steps found. The steps rank pixels well before their own threshold settles; the cut
        makes the result the smallest sufficient mask of that ranking, at the cost of one batched forward.

        ``unsolved_only`` searches only the images with no sufficient mask yet: after a start at the
        smallest sufficient cut, the steps' exact budget already probes below it, and a final search
        found a smaller mask in 2 of 129 runs (photos, grids, scenes), by under 0.5 % of the image."""
        # Only cuts smaller than a sufficient mask already found can win: larger ones are not scored.
        solved = self.best_rank == 2
        limit = torch.where(solved, 0.0 if unsolved_only else self.best_loss, torch.full_like(self.best_loss, 2.0))
        chosen, _, found, _ = self._cut_search(backgrounds=self.cfg.strict_backgrounds and self.cfg.n_backgrounds > 0,
                                               limit=limit)
        self._keep_smaller_sufficient(chosen, found)

    def _keep_smaller_sufficient(self, masks: torch.Tensor, sufficient: torch.Tensor) -> None:
        """Make each sufficient mask the best one if none was sufficient yet or it is smaller."""
        area = masks.flatten(1).mean(1)
        better = sufficient & ((self.best_rank < 2) | (area < self.best_loss))
        self.best_masks[better] = masks[better]
        self.best_loss = torch.where(better, area, self.best_loss)
        self.best_rank = torch.where(better, torch.full_like(self.best_rank, 2), self.best_rank)

    def _cut_search(self, backgrounds: bool, limit: torch.Tensor | None = None, current: bool = True, chunk: int = 4):
        """Per image, the smallest sufficient cut of the current logits, its threshold, whether it is
        sufficient and its target probability; rows with no sufficient cut get the most probable cut scored.

        Cuts are scored from the smallest up, ``chunk`` areas per forward, and only while some image
        has no sufficient cut yet, and below its ``limit`` (an area) if given. ``current`` adds the cut at
        the logits' own threshold. The empty mask is the fill alone, whose probability is known: it is
        scored only for images whose fill already has the probability needed."""
        z = self.net(self.net_input) + self.offset
        z = self.to_input_size(z)
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
        probs[:, 0] = self.prob_fill
        scored = torch.zeros(b, k, dtype=torch.bool, device=z.device)
        scored[:, 0] = self.prob_fill < self.prob_needed  # the empty mask cannot suffice there
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
            p, good = self._score(rows.repeat_interleave(len(cols)), masks[:, cols].flatten(0, 1), backgrounds,
                                  eligible=allowed[:, cols].flatten())
            probs[:, cols], ok[:, cols], scored[:, cols] = p.view(b, -1), good.view(b, -1), True
        # Smallest sufficient cut: rank them by area, the others after them by probability.
        key = torch.where(ok, area, torch.where(scored, 2.0 - probs, torch.full_like(probs, 9.0)))
        choice = key.argmin(1)
        rows = torch.arange(b, device=masks.device)
        return masks[rows, choice], thresholds[rows, choice], ok[rows, choice], probs[rows, choice]

    def _score(self, rows: torch.Tensor, masks: torch.Tensor, backgrounds: bool, eligible: torch.Tensor | None = None):
        """The target's probability on masks [n, H, W] of the images ``rows`` [n], and whether each is
        sufficient (label kept with ``prob_needed``; with ``backgrounds``, also on random backgrounds).
        ``eligible`` [n]: masks that may count as sufficient at all (the others are scored, never sufficient)."""
        m, target = masks[:, None], self.target[rows]
        logits = self._forward(m * self.x[rows] + (1 - m) * self.fill[rows])
        p = logits.softmax(1).gather(1, target[:, None])[:, 0]
        good = (logits.argmax(1) == target) & (p >= self.prob_needed[rows])
        if eligible is not None:
            good &= eligible
        for check in self.checks:
            todo = good.nonzero()[:, 0]
            if len(todo):
                mt = m[todo]
                held = self._forward(mt * self.x[rows[todo]] + (1 - mt) * check[rows[todo]]).argmax(1) == target[todo]
                good[todo] &= held
        if backgrounds and bool(good.any()):
            kinds = self.cfg.backgrounds
            for j in range(self.cfg.n_backgrounds):
                bg = random_background(kinds[j % len(kinds)], self.x, self.gen)[rows]
                good &= self._forward(m * self.x[rows] + (1 - m) * bg).argmax(1) == target
        return p, good

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of scoring forwards (``in_chunks``); their activations are not the result's."""
        logits = in_chunks(self.model, images)
        self.taps.reset()
        return logits

    @torch.no_grad()
    def drop_unneeded_pieces(self) -> None:
        """Drop the pieces of each sufficient mask that the decision does not need.

        The steps and cuts judge a mask as a whole, so a sufficient mask may carry a separate piece
        (a patch of background, a second object) that nothing needs. Every piece is scored removed
        on its own (the ``MAX_PIECES`` largest, one batched pass); all pieces that can go alone are
        then dropped together if the rest still suffices, else the largest of them."""
        strict = self.cfg.strict_backgrounds and self.cfg.n_backgrounds > 0
        rows = (self.best_rank == 2).nonzero()[:, 0]
        if not len(rows):
            return
        labels = label_pieces(self.best_masks[rows], self.size)
        owner, piece = [], []
        for j, ids in enumerate(pieces_by_size(labels, MAX_PIECES)):
            if len(ids) > 1:
                owner += [j] * len(ids)
                piece += ids
        if not owner:
            return
        owner, piece = torch.tensor(owner, device=rows.device), torch.tensor(piece, device=rows.device)
        without = self.best_masks[rows[owner]] * (labels[owner] != piece[:, None, None])
        _, removable = self._score(rows[owner], without, strict)
        chosen = {}
        for j in owner[removable].unique().tolist():
            mine = removable & (owner == j)
            largest = int(mine.nonzero()[0, 0])  # pieces come largest first
            all_gone = self.best_masks[rows[j]] * ~torch.isin(labels[j], piece[mine])
            chosen[j] = [without[largest]] if int(mine.sum()) == 1 else [all_gone, without[largest]]
        joint = [j for j, c in chosen.items() if len(c) == 2]
        if joint:
            _, ok = self._score(rows[joint], torch.stack([chosen[j][0] for j in joint]), strict)
            for j, good in zip(joint, ok.tolist()):
                chosen[j] = chosen[j][:1] if good else chosen[j][1:]
        for j, (mask,) in chosen.items():
            i = int(rows[j])
            self.best_masks[i] = mask
            self.best_loss[i] = mask.mean()

    def masks(self):
        """Probabilities at working resolution; the binary mask there and at full resolution,
        each with a straight-through gradient; and the exact 0/1 full-resolution mask.

        The straight-through backward is that of the logits scaled by sigmoid'(0) = 1/4,
        not of the sigmoid: a pixel whose probability has saturated still receives the
        gradient that would flip it back (through the sigmoid it would vanish, and a mask
        that once filled or emptied would stay so).
        """
        z = self.net(self.net_input) + self.offset
        if self.budget is not None:
            # Exact area: keep the top ``budget`` share of the logits. A uniform shift of every logit
            # then changes nothing, so the optimiser can only change which pixels are kept, by how
            # much each one serves the decision; the budget itself follows sufficiency (``_optimise``).
            flat = z.detach().flatten(1)
            k = (flat.shape[1] - (self.budget * flat.shape[1]).round().long()).clamp(1, flat.shape[1])
            cut = flat.sort(dim=1).values.gather(1, (k - 1)[:, None])
            z = z - cut[:, :, None] - 1e-4
        p = torch.sigmoid(z)
        z_full = self.to_input_size(z)
        hard = (z_full > 0).float()
        m_full = hard + 0.25 * (z_full - z_full.detach())
        m_work = (z > 0).float() + 0.25 * (z - z.detach())
        return p, m_work, hard, m_full

    def to_input_size(self, z: torch.Tensor) -> torch.Tensor:
        """Mask logits [B, h, w] at the input's size: smoothly, or patch by patch on a patch grid."""
        if self.patch_grid is not None:
            return F.interpolate(z[:, None], size=self.x.shape[-2:], mode="nearest")[:, 0]
        return F.interpolate(z[:, None], size=self.x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def _layer_distance(self, name: str, kind: str, acts: dict, b: int) -> torch.Tensor:
        d = losses.activation_distance(self.acts_x[name], acts[name][:b], kind, self.act_weights.get(name))
        share = self.prefix_share.get(name)
        if share is None:
            return d
        tokens = losses.activation_distance(self.prefix_x[name], self.taps.prefix[name][:b],
                                            "mse" if kind == "std_mse" else kind)
        return (1 - share) * d + share * tokens

    def variants_at(self, step: int) -> int:
        """Random-background variants in this step's batch (``robustness_every``; every step when strict)."""
        return self.cfg.n_backgrounds if step % self._every == 0 else 0

    def loss_terms(self, step: int):
        cfg, x, b = self.cfg, self.x, self.x.shape[0]
        p, m_work, hard, m = self.masks()
        m4 = m[:, None]
        batch = [m4 * x + (1 - m4) * self.fill] + [m4 * x + (1 - m4) * check for check in self.checks]
        n_checks = len(self.checks)
        kinds, n_var = cfg.backgrounds, self.variants_at(step)
        for j in range(n_var):
            kind = kinds[(step // self._every * cfg.n_backgrounds + j) % len(kinds)]
            batch.append(m4 * x + (1 - m4) * random_background(kind, x, self.gen))
        logits = self.model(torch.cat(batch))
        acts = self.taps.collect()
        logits_e, logits_c = logits[:b], logits[b:(1 + n_checks) * b].reshape(n_checks, b, logits.shape[1])
        act = sum(w * self._layer_distance(name, d, acts, b)
                  for name, w, d in zip(self.layers, self.layer_weights, self.distances))
        terms = {
            "activation": act,
            "kl": losses.output_kl(self.logits_x, logits_e, cfg.temperature),
            # Only the mask's own fill: through the check fills' gradients the mask learns outlines that read
            # as the class against a flat colour (precision on the scenes 0.81 -> 0.77); they only judge.
            "ce": losses.label_ce(logits_e, self.target),
            # Area and TV of the binary mask itself, so they measure what is really kept.
            "area": losses.area(m_work),
            "binarization": losses.binarization(p),
            "tv": losses.total_variation(m_work),
        }
        if n_var:  # on steps without variants the term is 0, and its weight doubles on the others
            variants = logits[(1 + n_checks) * b:].reshape(n_var, b, -1)
            ce = torch.stack([losses.label_ce(v, self.target) for v in variants]).mean(0)
            terms["robustness"] = ce * self._every
            self._shown_robustness = ce.detach()
        else:
            terms["robustness"] = torch.zeros(b, device=x.device)
        return terms, hard, logits_e.detach(), logits_c.detach(), logits[(1 + n_checks) * b:].detach()

    def run(self) -> None:
        """Optimise (from the smallest sufficient cut of the relevance ranking, when there is one);
        then, if ``cfg.retry_area`` is set, train the images whose masks never kept the label once
        more, from a mask that keeps most of the image.

        Some runs never keep the label: the starting mask has already lost it, and the mask empties
        or stalls instead of finding the object. From a nearly full mask the label holds at the start
        and the mask shrinks only while it holds (the area pressure is gated by the label).
        """
        if self._starts_at_a_cut:
            self._start_at_smallest_cut()
        self._optimise()
        self.phase("choosing the smallest sufficient cut")
        self.select_cut(unsolved_only=self._starts_at_a_cut)
        # A start from most of the image helps only where the image itself keeps the label.
        failed = ((self.best_rank < 2) & self.x_sufficient).nonzero()[:, 0]
        if self.cfg.retry_area is not None and len(failed):
            self._retry(failed)
        if self.cfg.drop_pieces:
            self.phase("dropping pieces the decision does not need")
            self.drop_unneeded_pieces()

    def phase(self, name: str) -> None:
        """Tell the callbacks what runs now, between or after the steps (``on_phase(name)``)."""
        for cb in self.callbacks:
            fn = getattr(cb, "on_phase", None)
            if fn is not None:
                fn(name)

    def _retry(self, rows: torch.Tensor) -> None:
        shows_first = bool(rows[0] == 0)  # callbacks follow the batch's first image
        if shows_first:
            self.phase("no sufficient mask yet: retrying from a fuller one")
        again = MaskOptimizer(
            self.model, self.taps, self.layers, self.x[rows], self.target[rows],
            {k: v[rows] for k, v in self.acts_x.items()}, self.logits_x[rows], self.fill[rows], self.cfg,
            self.seed + 1_000_003, self.callbacks if shows_first else (), start_share=self.cfg.retry_area,
            step_offset=self.steps_run, prob_fill=self.prob_fill[rows],
            relevance=self.relevance.rows(rows), checks=self.checks[:, rows],
            prefix_x={k: v[rows] for k, v in self.prefix_x.items()}, patch_grid=self.patch_grid,
        )
        try:
            again._optimise()
            again.select_cut()
        finally:  # also when interrupted: the better of both runs so far is kept
            better = (again.best_rank > self.best_rank[rows]) | (
                (again.best_rank == self.best_rank[rows]) & (again.best_loss < self.best_loss[rows]))
            for j, i in enumerate(rows.tolist()):
                for name, values in again.history[j].items():
                    self.history[i].setdefault(name, []).extend(values)
                if better[j]:
                    self.best_masks[i] = again.best_masks[j]
                    self.best_loss[i], self.best_rank[i] = again.best_loss[j], again.best_rank[j]
            self.steps_run += again.steps_run

    def _optimise(self) -> None:
        cfg, b = self.cfg, self.x.shape[0]
        stable = torch.zeros(b, dtype=torch.long, device=self.x.device)
        since_best = torch.zeros(b, dtype=torch.long, device=self.x.device)
        previous = None
        for step in range(cfg.steps):
            terms, hard, logits_e, logits_c, logits_v = self.loss_terms(step)
            if self.budget is None:
                total = total_loss(cfg, terms, logits_e, self.target, self.prob_fill, self.prob_needed)
            else:  # the budget sets the area: no price per pixel, and TV at full weight
                total = total_loss(self._budget_cfg, terms, logits_e, self.target)
            self.optim.zero_grad(set_to_none=True)
            total.sum().backward()
            self.optim.step()
            self.schedule.step()
            self.steps_run = step + 1

            with torch.no_grad():
                probs = logits_e.softmax(1).gather(1, self.target[:, None])[:, 0]
                kept = logits_e.argmax(1) == self.target
                if logits_v.numel():
                    kept_v = (logits_v.argmax(1) == self.target.repeat(logits_v.shape[0] // b)).reshape(-1, b).all(0)
                else:
                    kept_v = torch.ones_like(kept)
                kept_c = (logits_c.argmax(2) == self.target).all(0)
                confident = probs >= self.prob_needed
                sufficient = kept & confident & kept_c & (kept_v if cfg.strict_backgrounds else True)
                self._track_best(total.detach(), hard, kept, sufficient)
                if previous is not None:
                    flipped = (hard != previous).float().flatten(1).mean(1)
                    stable = torch.where(flipped <= cfg.stable_tol, stable + 1, torch.zeros_like(stable))
                previous = hard
                # Curves show the latest measured robustness term, not its every-other-step zigzag.
                shown = {**terms, "robustness": self._shown_robustness}
                total = total - cfg.robustness * (terms["robustness"] - self._shown_robustness)
                self._record(shown, total, probs, hard)
                self._notify(step, shown, total, probs, hard, kept, sufficient)
                # Done when the mask has settled with the label safe, or when the best mask
                # has not improved for a while (e.g. a mask stuck empty wastes no more steps).
                since_best = torch.where(self._improved, torch.zeros_like(since_best), since_best + 1)
                done = ((stable >= cfg.patience) & kept & kept_c & kept_v) | (since_best >= 3 * cfg.patience)
                if self.budget is not None:
                    # Shrink the budget after a sufficient mask, grow it after an insufficient one;
                    # done once no smaller sufficient mask has come for `patience` steps, or (with none
                    # sufficient yet) no lower loss for three times as long.
                    # For a class x itself does not predict, more of x is no nearer to sufficiency: the
                    # budget only shrinks, towards the positions that carry the class.
                    rate = math.exp(-BUDGET_RATE * cfg.area)
                    grow = ~sufficient & self.x_sufficient
                    self.budget = torch.where(grow, self.budget / rate, self.budget * rate).clamp(MIN_BUDGET, 1.0)
                    # Never above the best sufficient mask: larger ones cannot win.
                    self.budget = torch.where(self.best_rank == 2, self.budget.minimum(self.best_loss), self.budget)
                    done = ((since_best >= cfg.patience) & (self.best_rank == 2)) | (since_best >= 3 * cfg.patience)
                if step + 1 >= cfg.min_steps and bool(done.all()):
                    break

    def _track_best(self, total, hard, kept, valid):
        """The method's goal decides which mask is best: among masks that keep the label on
        the explanation (with ``prob_needed``) and on this step's random backgrounds, the
        smallest; failing that, the lowest-loss mask that keeps the label; failing that,
        the lowest loss."""
        rank = kept.long() + valid.long()
        key = torch.where(valid, hard.flatten(1).mean(1), total)
        better = (rank > self.best_rank) | ((rank == self.best_rank) & (key < self.best_loss))
        # Patience restarts only on a clear gain: a sufficient mask 5 % smaller, or a better rank.
        # Crumbs of area are not worth more steps (the final cut search still takes the smallest cut).
        self._improved = (rank > self.best_rank) | (better & (~valid | (key < IMPROVEMENT * self.best_loss)))
        self.best_masks[better] = hard[better]
        self.best_loss = torch.where(better, key, self.best_loss)
        self.best_rank = torch.maximum(self.best_rank, rank)

    def _record(self, terms, total, probs, hard):
        area = hard.flatten(1).mean(1)
        for i, hist in enumerate(self.history):
            for name, value in terms.items():
                hist.setdefault(name, []).append(float(value[i]))
            hist.setdefault("total", []).append(float(total[i]))
            hist.setdefault("prob", []).append(float(probs[i]))
            hist.setdefault("mask_area", []).append(float(area[i]))

    def _notify(self, step, terms, total, probs, hard, kept, sufficient):
        if not self.callbacks:
            return
        small = F.interpolate(hard[:1, None], size=self.size, mode="nearest")[0, 0]
        state = StepState(
            step=self.step_offset + step + 1,
            total_steps=self.step_offset + self.cfg.steps,
            losses={**{k: float(v[0]) for k, v in terms.items()}, "total": float(total[0])},
            mask=small.cpu(),
            prob=float(probs[0]),
            area=float(hard[0].mean()),
            label_kept=bool(kept[0]),
            sufficient=bool(sufficient[0]),
        )
        for cb in self.callbacks:
            fn = getattr(cb, "on_step", None)
            if fn is not None:
                fn(state)
