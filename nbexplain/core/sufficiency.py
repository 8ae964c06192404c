"""What a sufficient mask must satisfy: the loss terms that pull a mask towards it, and the check
that says whether a mask is sufficient.

A mask is sufficient when the image kept inside it and the fill outside keeps the model's label with
the probability needed, also under every check fill (and, when strict, on random backgrounds). The
loss terms are the smooth side of that: match x's activations across the tapped layers and its output
(KL, CE), keep the mask small, binary and compact (area, binarisation, TV), and keep the label on
random backgrounds (robustness). x's activations are computed once; the explanation and its
robustness variants go through the model together in one batched forward per step.
"""

from __future__ import annotations

import torch

from ..config import ExplainConfig
from . import losses
from .batching import in_chunks
from .fills import random_background
from .relevance import LayerRelevance, position_weights
from .taps import Taps

TERMS = ("activation", "kl", "ce", "area", "binarization", "tv", "robustness")


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


class SufficiencyProblem:
    """The sufficient-mask problem for a batch of images against a frozen model: its loss terms
    (``loss_terms``) and its check (``judge``).

    ``checks`` [n, B, C, H, W] are other neutral fills: a mask counts as sufficient only if the label
    also holds with each of them outside it (they judge, and are not in the loss). ``prob_fill`` (the
    target's probability on the fill alone, computed if not given) saves a forward pass. ``seed``
    seeds the random backgrounds (with ``seed + 1``: the mask generator's weights draw from ``seed``).
    """

    def __init__(self, model, taps: Taps, layers, x, target, acts_x, logits_x, fill, cfg, seed, prob_fill=None,
                 relevance=None, checks=None, prefix_x=None):
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
        self.layer_weights = _layer_weights(cfg, len(layers))
        self.distances = _distances(cfg, len(layers))
        self.gen = torch.Generator(device=x.device).manual_seed(seed + 1)
        # Target-aware matching: each tapped position weighted by its relevance to the target.
        self.relevance = relevance if isinstance(relevance, LayerRelevance) else LayerRelevance(relevance or {})
        self.act_weights = {n: position_weights(r) for n, r in self.relevance.items()}
        # A token layer's prefix tokens (a ViT's class token) are matched too, weighted by their share of
        # the layer's relevance: at the last block the head reads only them.
        self.prefix_x = prefix_x or {}
        self.prefix_share = {n: s for n in self.prefix_x if (s := self.relevance.prefix_share(n)) is not None}
        # Random-background variants join every ``variants_every``-th step (every step when strict).
        self.variants_every = 1 if cfg.strict_backgrounds else cfg.robustness_every

    # -- the loss terms -----------------------------------------------------------------------
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
        return self.cfg.n_backgrounds if step % self.variants_every == 0 else 0

    def loss_terms(self, p: torch.Tensor, m_work: torch.Tensor, m: torch.Tensor, step: int):
        """The terms (``TERMS``) of a mask given as probabilities ``p`` and a binary ``m_work`` at working
        resolution and a binary ``m`` at the input's size (each with its straight-through gradient); also
        the logits (detached) of the explanation [B, K], under each check fill [n, B, K] and of this step's
        random-background variants, and the robustness measured this step (detached; None without variants)."""
        cfg, x, b = self.cfg, self.x, self.x.shape[0]
        m4 = m[:, None]
        batch = [m4 * x + (1 - m4) * self.fill] + [m4 * x + (1 - m4) * check for check in self.checks]
        n_checks = len(self.checks)
        kinds, n_var = cfg.backgrounds, self.variants_at(step)
        for j in range(n_var):
            kind = kinds[(step // self.variants_every * cfg.n_backgrounds + j) % len(kinds)]
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
        measured = None
        if n_var:  # on steps without variants the term is 0, and its weight doubles on the others
            variants = logits[(1 + n_checks) * b:].reshape(n_var, b, -1)
            ce = torch.stack([losses.label_ce(v, self.target) for v in variants]).mean(0)
            terms["robustness"] = ce * self.variants_every
            measured = ce.detach()
        else:
            terms["robustness"] = torch.zeros(b, device=x.device)
        return terms, logits_e.detach(), logits_c.detach(), logits[(1 + n_checks) * b:].detach(), measured

    # -- the check ----------------------------------------------------------------------------
    def judge(self, rows: torch.Tensor, masks: torch.Tensor, backgrounds: bool, eligible: torch.Tensor | None = None):
        """The target's probability on masks [n, H, W] of the images ``rows`` [n], and whether each is
        sufficient (label kept with ``prob_needed``; with ``backgrounds``, also on random backgrounds).
        ``eligible`` [n]: masks that may count as sufficient at all (the others are scored, never sufficient)."""
        m, target = masks[:, None], self.target[rows]
        logits = self.forward(m * self.x[rows] + (1 - m) * self.fill[rows])
        p = logits.softmax(1).gather(1, target[:, None])[:, 0]
        good = (logits.argmax(1) == target) & (p >= self.prob_needed[rows])
        if eligible is not None:
            good &= eligible
        for check in self.checks:
            todo = good.nonzero()[:, 0]
            if len(todo):
                mt = m[todo]
                held = self.forward(mt * self.x[rows[todo]] + (1 - mt) * check[rows[todo]]).argmax(1) == target[todo]
                good[todo] &= held
        if backgrounds and bool(good.any()):
            kinds = self.cfg.backgrounds
            for j in range(self.cfg.n_backgrounds):
                bg = random_background(kinds[j % len(kinds)], self.x, self.gen)[rows]
                good &= self.forward(m * self.x[rows] + (1 - m) * bg).argmax(1) == target
        return p, good

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of scoring forwards (``in_chunks``); their activations are not the result's."""
        logits = in_chunks(self.model, images)
        self.taps.reset()
        return logits
