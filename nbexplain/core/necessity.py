"""Necessary evidence: the smallest region whose removal changes the decision.

The sufficient mask answers "what is enough for this class?"; a shortcut that only *tips* a decision
(a watermark that turns a rocket into a candle) is not enough on its own, so that mask need not show it.
The necessary region answers "what, removed, makes the model decide otherwise?".

A smallest deleting region is easy to find and often meaningless: a fragile decision flips when almost
any few pixels are removed, to a class the image does not show (adversarial deletion, Dabkowski and
Gal 2017). Three guards, each measured in ``benchmarks/bench_real_shortcut.py`` and ``docs/method.md``:

- a removed pixel becomes what its kept surroundings predict (``fills.surroundings``,
  ``necessary_removal="surroundings"``), so a removal paints no new edges or colours that could
  themselves sway the model: a thin added pattern (a watermark's text) removed gives back the photo
  beneath it, while part of an object removed leaves that object's colours. With
  ``necessary_removal="fills"`` the change must hold under the explanation's own fill and each check
  fill instead;
- the decision must change to a *foil*: with ``foil=k``, class k must overtake the target ("why this
  class rather than k?"); by default, one of the image's next ``necessary_foils`` classes, alternatives
  the image already supports, must become the top class.

The region is a union of cells (``necessary_cells`` along the longest side, or a transformer's patches).
The search is the sufficient mask's, mirrored: a relevance start (how fast removing each cell lowers the
target's lead over its foils, averaged over the image whole and ``necessary_draws`` random partial
removals, so cells that act together count), a few gradient steps on the cell logits, a cut search
over the ranking they give (the smallest cut whose removal changes the decision), then piece
dropping (pieces whose return keeps the decision changed go back); the result is checked by a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import losses
from .cuts import drop_unneeded_pieces

#: areas (shares of the image) at which the necessary ranking is cut, smallest first
NECESSARY_CUTS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45)
#: shares of cells removed at random in the relevance start's draws, in turn
DRAW_SHARES = (0.1, 0.3, 0.5)


@dataclass(frozen=True)
class Necessary:
    """The necessary evidence of one explanation (``res.necessary``).

    ``mask`` is float32 [H, W] in {0, 1}: the pixels whose removal changes the decision. Where no
    region up to ``max_area`` does (``found`` False) it is all zeros and ``note`` says why."""

    mask: torch.Tensor
    found: bool
    area: float
    target: int
    #: the top class once the region is removed, under the explanation's own fill (None if not found)
    turns_into: int | None
    prob_before: float  #: p(target) on the image
    #: p(target) with the region removed, the highest over the removal fills (at the largest cut tried if not found)
    prob_after: float
    prob_turns_into_before: float | None  #: p(turns_into) on the image
    prob_turns_into_after: float | None  #: p(turns_into) with the region removed (own fill)
    #: the fills under each of which the decision changed (or was tried): ``("surroundings",)``, or the
    #: explanation's fill and its check fills
    fills: tuple[str, ...]
    foils: tuple[int, ...]  #: the classes the decision had to change to
    contrastive: bool  #: True when the user named the foil (``explain(img, foil=k)``)
    max_area: float
    seconds: float = 0.0
    note: str | None = None
    #: how removed pixels were replaced: ``"surroundings"`` or ``"fills"`` (``ExplainConfig.necessary_removal``)
    removal: str = "surroundings"

    def describe(self, name) -> str:
        """One line for the summary; ``name(k)`` gives a class's name."""
        if not self.found:
            return f"necessary evidence: none. {self.note}"
        how = removal_phrase(self.removal, self.fills)
        if self.contrastive:
            change = f"makes {name(self.foils[0])!r} overtake {name(self.target)!r} {how}"
        else:
            change = (f"turns it into {name(self.turns_into)!r} (one of its next {len(self.foils)} classes) "
                      f"{how}")
        return (f"necessary evidence: removing {self.area:.1%} of the pixels {change}; p({name(self.target)}) "
                f"{self.prob_before:.3f} -> {self.prob_after:.3f}, p({name(self.turns_into)}) "
                f"{self.prob_turns_into_before:.3f} -> {self.prob_turns_into_after:.3f}")


def removal_phrase(removal: str, fills: tuple[str, ...]) -> str:
    """How a region was removed, for messages: "filled in from its surroundings" or "under every fill"."""
    if removal == "surroundings":
        return "filled in from its surroundings"
    return "under every fill" if len(fills) > 1 else f"under the {fills[0]} fill"


def default_foils(logits_x: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] the image's k most likely classes other than the target."""
    masked = logits_x.clone()
    masked.scatter_(1, target[:, None], -torch.inf)
    return masked.topk(min(k, masked.shape[1] - 1), dim=1).indices


def removal_gain(logits: torch.Tensor, target: torch.Tensor, foils: torch.Tensor) -> torch.Tensor:
    """How far the target leads its foils: logit(target) - logsumexp(logit(foils)); below 0 a foil leads."""
    return logits.gather(1, target[:, None])[:, 0] - logits.gather(1, foils).logsumexp(1)


def changed(logits: torch.Tensor, target: torch.Tensor, foils: torch.Tensor, contrastive: bool) -> torch.Tensor:
    """Whether the decision changed to a foil: the top class is one of them (a named foil need only
    overtake the target)."""
    if contrastive:
        return logits.gather(1, foils[:, :1])[:, 0] > logits.gather(1, target[:, None])[:, 0]
    return (logits.argmax(1)[:, None] == foils).any(1)


class NecessarySearch:
    """Finds the necessary region for a batch of images (see the module's docstring).

    ``logits_of(images)`` -> logits, leaving no activations behind; ``removals`` are the ways pixels are
    removed, each ``removal(x, m, rows)`` -> the images x (rows ``rows`` of the batch) with the pixels of
    m [n, 1, H, W] removed (the decision must change under every one); ``foils`` [B, K] the classes the
    decision must change to. ``grid`` is the cells' grid (h, w); ``patches`` says they are a
    transformer's patches (upsampled without smoothing)."""

    def __init__(self, logits_of, x, target, logits_x, removals, foils, cfg, grid, patches=False, contrastive=False,
                 callbacks=(), step_offset=0):
        self.logits_of, self.x, self.target, self.removals, self.foils = logits_of, x, target, list(removals), foils
        self.removal = cfg.necessary_removal
        self.cfg, self.grid, self.patches, self.contrastive = cfg, tuple(grid), patches, contrastive
        self.callbacks, self.step_offset = list(callbacks), step_offset
        self.logits_x = logits_x
        self.prob_x = logits_x.softmax(1)
        # Only a decision the model makes can change: for a class it does not predict, nothing to find.
        self.decided = ~changed(logits_x, target, foils, contrastive) & (logits_x.argmax(1) == target)
        self.steps_run = 0

    # -- masks ------------------------------------------------------------
    def upsample(self, z: torch.Tensor, smooth: bool = True) -> torch.Tensor:
        """Cell values [B, h, w] at the input's size (patches, and cells with ``smooth`` off, stay whole)."""
        mode = dict(mode="nearest") if self.patches or not smooth else dict(mode="bilinear", align_corners=False)
        return F.interpolate(z[:, None], size=self.x.shape[-2:], **mode)[:, 0]

    def removed(self, m: torch.Tensor, rows=None) -> torch.Tensor:
        """Each image with the pixels of m [n, H, W] removed, by every removal: [n_removals * n, C, H, W]."""
        rows = torch.arange(self.x.shape[0], device=self.x.device) if rows is None else rows
        m4, x = m[:, None], self.x[rows]
        return torch.cat([removal(x, m4, rows) for removal in self.removals])

    def judge(self, m: torch.Tensor, rows: torch.Tensor):
        """Per mask [n, H, W] of images ``rows``: whether the decision changed under every removal, and the
        logits under each fill [n_fills, n, classes]."""
        logits = self.logits_of(self.removed(m, rows)).view(len(self.removals), len(rows), -1)
        ok = torch.stack([changed(lg, self.target[rows], self.foils[rows], self.contrastive) for lg in logits]).all(0)
        return ok, logits

    # -- the search ---------------------------------------------------------
    def start(self) -> torch.Tensor:
        """Cell logits [B, h, w] ranked by how fast removing each cell lowers the target's lead over its
        foils: minus the gradient of that lead in the removal mask, on the whole image and with
        ``necessary_draws`` random shares of the cells (``DRAW_SHARES``) already removed, averaged. The
        draws let cells that only act together (the letters of a text) count as well as cells that act
        alone (one backward pass each)."""
        b, gen = self.x.shape[0], torch.Generator().manual_seed(0)
        effect = torch.zeros(b, *self.x.shape[-2:], device=self.x.device, dtype=self.x.dtype)
        for d in range(1 + self.cfg.necessary_draws):
            cells = torch.zeros(b, *self.grid) if d == 0 else \
                (torch.rand(b, *self.grid, generator=gen) < DRAW_SHARES[(d - 1) % len(DRAW_SHARES)]).float()
            m = self.upsample(cells.to(self.x), smooth=False).requires_grad_(True)
            with torch.enable_grad():
                logits = self.logits_of(self.removed(m), keep_graph=True).view(len(self.removals), b, -1)
                gain = torch.stack([removal_gain(lg, self.target, self.foils) for lg in logits]).mean(0)
                g, = torch.autograd.grad(gain.sum(), m)
            effect -= g
        cells = F.adaptive_avg_pool2d(effect[:, None], self.grid)[:, 0]
        z = cells.flatten(1)
        z = (z - z.quantile(0.9, dim=1, keepdim=True)) / z.std(dim=1, keepdim=True).clamp_min(1e-8)
        return z.view_as(cells)

    def optimise(self, z: torch.Tensor) -> torch.Tensor:
        """``necessary_steps`` Adam steps on the cell logits: lower the target's lead over its foils under
        every fill (no further once a foil leads by a margin), with an area price and total variation."""
        cfg = self.cfg
        z = z.clone().requires_grad_(True)
        optim = torch.optim.Adam([z], lr=cfg.necessary_lr)
        for step in range(cfg.necessary_steps):
            with torch.enable_grad():
                m = self.upsample(torch.sigmoid(z))
                logits = self.logits_of(self.removed(m), keep_graph=True).view(len(self.removals), *self.logits_x.shape)
                lead = torch.stack([removal_gain(lg, self.target, self.foils) for lg in logits]).clamp_min(-1.0).mean(0)
                cells = torch.sigmoid(z)
                loss = lead + cfg.necessary_area * cells.flatten(1).mean(1) + cfg.tv * losses.total_variation(cells)
                optim.zero_grad(set_to_none=True)
                loss.sum().backward()
            optim.step()
            self.steps_run = step + 1
            self._notify(step, z.detach(), logits.detach(), loss.detach())
        return z.detach()

    @torch.no_grad()
    def cut(self, z: torch.Tensor):
        """Per image, the smallest cut of the ranking z (up to ``necessary_max_area``) whose removal changes
        the decision under every removal; also whether one did, and the largest cut tried otherwise."""
        b = z.shape[0]
        full = self.upsample(z)
        ranked = full.flatten(1).sort(dim=1, descending=True).values
        pixels = ranked.shape[1]
        areas = [a for a in NECESSARY_CUTS if a <= self.cfg.necessary_max_area] or [self.cfg.necessary_max_area]
        best = torch.zeros_like(full)
        found = torch.zeros(b, dtype=torch.bool, device=z.device)
        for a in areas:
            todo = (~found & self.decided).nonzero()[:, 0]
            if not len(todo):
                break
            k = max(1, int(a * pixels))
            masks = (full[todo] >= ranked[todo, k - 1, None, None]).float()
            ok, _ = self.judge(masks, todo)
            best[todo] = masks  # the largest tried, for images with none
            found[todo[ok]] = True
        return best, found

    @torch.no_grad()
    def drop_pieces(self, masks: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """Give back the pieces of each necessary region whose return keeps the decision changed
        (``cuts.drop_unneeded_pieces``, with "changed" as the test); pieces are cells of the grid."""
        rows = found.nonzero()[:, 0]
        smaller = drop_unneeded_pieces(masks, rows, self.grid, lambda r, m, eligible=None: (None, self.judge(m, r)[0]))
        for i, mask in smaller.items():
            masks[i] = mask
        return masks

    def run(self, fill_names, seconds_of=None) -> list[Necessary]:
        z = self.optimise(self.start()) if self.cfg.necessary_steps else self.start()
        masks, found = self.cut(z)
        masks = self.drop_pieces(masks, found)
        return self.check(masks, found, fill_names, seconds_of)

    @torch.no_grad()
    def check(self, masks, found, fill_names, seconds_of=None) -> list[Necessary]:
        """The verdict of a forward pass on each final region, and the record of it."""
        rows = torch.arange(masks.shape[0], device=masks.device)
        ok, logits = self.judge(masks, rows)
        probs = logits.softmax(2)
        out = []
        for i in range(masks.shape[0]):
            t = int(self.target[i])
            good = bool(found[i] and ok[i])
            new = int(logits[0, i].argmax()) if good else None
            if good and self.contrastive:
                new = int(self.foils[i, 0])
            note = None
            if not good:
                note = ("the model does not predict this class here, so there is no decision to change"
                        if not bool(self.decided[i]) else
                        f"no region of up to {self.cfg.necessary_max_area:.0%} of the image changes the decision "
                        f"to {'that foil' if self.contrastive else 'another likely class'} "
                        f"{removal_phrase(self.removal, tuple(fill_names[i]))}: "
                        "the decision is robust, or its evidence is spread over more of the image")
            out.append(Necessary(
                mask=(masks[i] if good else torch.zeros_like(masks[i])).float().cpu(),
                found=good, area=float(masks[i].mean()) if good else 0.0, target=t, turns_into=new,
                prob_before=float(self.prob_x[i, t]), prob_after=float(probs[:, i, t].max()),
                prob_turns_into_before=None if new is None else float(self.prob_x[i, new]),
                prob_turns_into_after=None if new is None else float(probs[0, i, new]),
                fills=tuple(fill_names[i]), foils=tuple(int(k) for k in self.foils[i]),
                contrastive=self.contrastive, max_area=self.cfg.necessary_max_area,
                seconds=seconds_of or 0.0, note=note, removal=self.removal,
            ))
        return out

    def _notify(self, step, z, logits, loss):
        if not self.callbacks:
            return
        from .optimize import StepState

        cells = (z[0] > 0).float()
        lg = logits[0, :1]
        t = int(self.target[0])
        state = StepState(
            step=self.step_offset + step + 1, total_steps=self.step_offset + self.cfg.necessary_steps,
            losses={"total": float(loss[0])}, mask=cells.cpu(), prob=float(lg.softmax(1)[0, t]),
            area=float(cells.mean()), label_kept=bool(lg.argmax(1)[0] == t),
            sufficient=bool(changed(logits[:, 0], self.target[:1].repeat(logits.shape[0]),
                                    self.foils[:1].repeat(logits.shape[0], 1), self.contrastive).all()),
            half="necessary",
        )
        # A callback of its own: ``on_step`` keeps meaning the sufficient mask's steps (progress bars,
        # users' callbacks and step counts stay as they were); the live widget draws both.
        for cb in self.callbacks:
            fn = getattr(cb, "on_necessary_step", None)
            if fn is not None:
                fn(state)


def cell_grid(size: tuple[int, int], cells: int, patch_grid=None) -> tuple[int, int]:
    """The necessary region's grid: a transformer's patches, else ``cells`` along the longest side (at
    most one a pixel)."""
    if patch_grid is not None:
        return tuple(patch_grid)
    h, w = size
    scale = min(cells, max(h, w)) / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))
