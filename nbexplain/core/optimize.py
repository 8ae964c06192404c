"""The loop: train one small U-Net per image (beside a free per-pixel logit offset) so that its mask
solves the sufficiency problem (``core.sufficiency``: the masked image keeps the model's decision and
activations), and keep the best mask found.

The steps move an exact area budget after sufficiency; around them the cut searches of the generator's
ranking (``core.cuts``) pick the start, the final smallest sufficient cut, and the pieces to drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from ..config import ExplainConfig
from . import cuts
from .masknet import MaskUNet
from .relevance import start_logits
from .sufficiency import SufficiencyProblem, total_loss
from .taps import Taps

#: with the exact area budget, each sufficient step multiplies the budget by exp(-BUDGET_RATE * cfg.area)
#: (0.86 at the default area weight 6) and each insufficient one divides it by that
BUDGET_RATE = 0.025
MIN_BUDGET = 0.002
#: a smaller sufficient mask restarts the patience count only if its area is below this share of the best
IMPROVEMENT = 0.95


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


def _problem_attribute(name: str) -> property:
    """A read-only attribute of the optimiser that is its problem's: callers read the inputs from the optimiser."""
    return property(lambda self: getattr(self.problem, name))


class MaskOptimizer:
    """Optimises binary masks for a batch of images against a frozen model: the loop that trains the
    mask generator on the sufficiency problem (``problem``) and keeps the best mask of each image.

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

    # The problem's inputs, where the explainer reads them (``opt.fill``, ``opt.checks``, ``opt.gen`` ...); ``gen``
    # draws the random backgrounds of the loss terms, of the check and of the explainer's robustness scores.
    taps = _problem_attribute("taps")
    x = _problem_attribute("x")
    target = _problem_attribute("target")
    fill = _problem_attribute("fill")
    checks = _problem_attribute("checks")
    prob_x = _problem_attribute("prob_x")
    gen = _problem_attribute("gen")

    def __init__(self, model, taps: Taps, layers, x, target, acts_x, logits_x, fill, cfg, seed, callbacks=(),
                 net=None, start_share: float = 0.5, step_offset: int = 0, prob_fill=None, relevance=None,
                 checks=None, prefix_x=None, patch_grid=None):
        # What a sufficient mask must satisfy; everything else here trains the generator towards it.
        self.problem = SufficiencyProblem(model, taps, layers, x, target, acts_x, logits_x, fill, cfg, seed,
                                          prob_fill=prob_fill, relevance=relevance, checks=checks, prefix_x=prefix_x)
        self.cfg = cfg
        self.callbacks = list(callbacks)
        b, c, h, w = x.shape
        # A transformer sees patches: its mask is one on/off value per patch (``patch_grid``), never a
        # pixel that cuts a patch in half, which would show the model a patch it never saw.
        self.patch_grid = tuple(patch_grid) if patch_grid is not None and min(patch_grid) >= 2**cfg.unet_depth \
            else None
        self.size = self.patch_grid or working_size(h, w, cfg)
        self.seed, self.step_offset = seed, step_offset
        self.net_input = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        start = start_logits(self.problem.relevance, self.size, start_share) if self.problem.relevance else None
        if net is None:
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(seed)
                self.net = MaskUNet(c, n=b, width=cfg.unet_width, depth=cfg.unet_depth).to(x.device)
            # With a relevance start the U-Net adds image-aligned detail around it, not its own guess.
            calibrate_head(self.net, self.net.head.conv, self.net_input,
                           on_share=0.5 if start is not None else start_share, spread=0.5 if start is not None else 1.5)
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
        # The curves show the latest measured robustness term (steps without variants repeat it).
        self._shown_robustness = torch.zeros(b, device=x.device)
        self._starts_at_a_cut = start is not None and self.budget is not None
        self._start_share = start_share

    # -- the generator's masks ------------------------------------------------------------------
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

    def _input_logits(self) -> torch.Tensor:
        """The generator's mask logits at the input's size as they stand (no area budget): what cuts cut."""
        return self.to_input_size(self.net(self.net_input) + self.offset)

    def _input_logits_with_offset(self, offset: torch.Tensor) -> torch.Tensor:
        """``_input_logits`` with ``offset`` as the pixel offset (which it keeps)."""
        self.offset.copy_(offset)
        return self._input_logits()

    def loss_terms(self, step: int):
        """The problem's loss terms of the generator's current mask (``SufficiencyProblem.loss_terms``);
        also the exact 0/1 mask at the input's size, and the logits (detached) of the explanation, under
        each check fill and of this step's random-background variants."""
        p, m_work, hard, m = self.masks()
        terms, logits_e, logits_c, logits_v, measured = self.problem.loss_terms(p, m_work, m, step)
        if measured is not None:
            self._shown_robustness = measured
        return terms, hard, logits_e, logits_c, logits_v

    # -- the loop -------------------------------------------------------------------------------
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
        failed = ((self.best_rank < 2) & self.problem.x_sufficient).nonzero()[:, 0]
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
        problem = self.problem  # the same problem for these rows, from a fuller start
        again = MaskOptimizer(
            problem.model, problem.taps, problem.layers, problem.x[rows], problem.target[rows],
            {k: v[rows] for k, v in problem.acts_x.items()}, problem.logits_x[rows], problem.fill[rows], self.cfg,
            self.seed + 1_000_003, self.callbacks if shows_first else (), start_share=self.cfg.retry_area,
            step_offset=self.steps_run, prob_fill=problem.prob_fill[rows],
            relevance=problem.relevance.rows(rows), checks=problem.checks[:, rows],
            prefix_x={k: v[rows] for k, v in problem.prefix_x.items()}, patch_grid=self.patch_grid,
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
                total = total_loss(cfg, terms, logits_e, self.target, self.problem.prob_fill, self.problem.prob_needed)
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
                confident = probs >= self.problem.prob_needed
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
                    grow = ~sufficient & self.problem.x_sufficient
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

    def _keep_smaller_sufficient(self, masks: torch.Tensor, sufficient: torch.Tensor) -> None:
        """Make each sufficient mask the best one if none was sufficient yet or it is smaller."""
        area = masks.flatten(1).mean(1)
        better = sufficient & ((self.best_rank < 2) | (area < self.best_loss))
        self.best_masks[better] = masks[better]
        self.best_loss = torch.where(better, area, self.best_loss)
        self.best_rank = torch.where(better, torch.full_like(self.best_rank, 2), self.best_rank)

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

    # -- cuts of the generator's ranking (``core.cuts``) -------------------------------------------
    def _judge(self, backgrounds: bool):
        """The problem's check as the cut searches take it, with random backgrounds or without."""
        return partial(self.problem.judge, backgrounds=backgrounds)

    def _cut_search(self, backgrounds: bool, limit: torch.Tensor | None = None, current: bool = True, chunk: int = 4):
        """``cuts.smallest_sufficient_cut`` of the generator's current logits."""
        return cuts.smallest_sufficient_cut(self._input_logits(), self._judge(backgrounds), self.problem.prob_fill,
                                            self.problem.prob_needed, limit=limit, current=current, chunk=chunk)

    @torch.no_grad()
    def _start_at_smallest_cut(self) -> None:
        """Start the area budget at the smallest sufficient cut of the starting ranking (the
        target's relevance), and keep that cut as the best mask so far.

        From half the image the start has usually lost the label: half of a grid of four photos
        holds other objects, and the budget would then grow towards the whole image instead of
        shrinking onto the target.

        Two rankings are cut (``cuts.smallest_start_cut``): the relevance as it is, which keeps fine
        detail (thin or textured evidence), and the relevance smoothed along the image's edges, which
        fills an object and stops at its outline instead of keeping a halo of background; at equal
        area the smoothed one wins, whose pixels follow the object."""
        smoothed = start_logits(self.problem.relevance, self.size, self._start_share, guide=self.net_input)
        start, chosen, found, chosen_prob = cuts.smallest_start_cut(
            [self.offset.detach().clone(), smoothed], self._input_logits_with_offset, self._judge(backgrounds=False),
            self.problem.prob_fill, self.problem.prob_needed)
        self.offset.copy_(start)
        if self.cfg.keep_free_confidence:
            # Where the smallest sufficient cut convinces the model as much as x does (on a grid of photos,
            # dropping the other objects drops the target's competitors), smaller masks must keep that:
            # all of what x adds, not only keep_ratio of it; else the steps shrink the mask to 80 % of it.
            free = found & (chosen_prob >= self.prob_x)
            self.problem.prob_needed = torch.where(free, self.prob_x, self.problem.prob_needed)
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

    @torch.no_grad()
    def drop_unneeded_pieces(self) -> None:
        """Drop the pieces of each sufficient mask that the decision does not need (``cuts.drop_unneeded_pieces``)."""
        strict = self.cfg.strict_backgrounds and self.cfg.n_backgrounds > 0
        rows = (self.best_rank == 2).nonzero()[:, 0]
        for i, mask in cuts.drop_unneeded_pieces(self.best_masks, rows, self.size, self._judge(strict)).items():
            self.best_masks[i] = mask
            self.best_loss[i] = mask.mean()
