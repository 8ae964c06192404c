"""Causal check of a circuit: keep only its channels and see whether the target survives.

At every tapped layer, forward hooks replace the channels outside the kept set by
zero or by their own spatial mean (of that very forward pass), then the input runs
through the model. The same is done for random channel sets of the same size per
layer (seeded), for the unablated model and for the empty set (every channel
filled), so that a circuit no better than random shows as such. Random sets are drawn
uniformly from all channels of each layer (they may overlap the circuit).

Note on ``fill="mean"``: at a tap followed directly by global average pooling (a
ResNet's last stage), replacing a channel by its own spatial mean leaves the pooled
feature unchanged, so that layer is effectively not ablated; the empty-set row of
the report makes such a trivially passed check visible. ``"zero"`` has no such
blind spot and is the default.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass

import torch

from ..core.plumbing import eval_mode, hooks, logits_from, model_device_dtype
from .sites import OutputSite, never_ran

_CHUNK = 8  # variants per forward pass: bounds memory on 224x224 inputs


@dataclass(frozen=True)
class CircuitValidation:
    """Outcome of ``Circuit.validate``; probabilities are those of the target class."""

    target: int
    target_name: str | None
    fill: str
    layers: tuple[str, ...]
    kept_channels: tuple[int, ...]
    total_channels: tuple[int, ...]
    prob_clean: float
    predicted_clean: int
    prob_circuit: float
    predicted_circuit: int
    prob_empty: float
    predicted_empty: int
    random_probs: tuple[float, ...]
    random_predicted: tuple[int, ...]
    random_sets: tuple[dict, ...]
    seed: int
    #: the share of what the channels add to the target's probability over the empty set that a
    #: sufficient circuit recovers (``CircuitConfig.recover``)
    recover: float = 0.5

    def needed(self) -> float:
        """The target probability a sufficient channel set must reach (see ``is_sufficient``)."""
        return self.prob_empty + self.recover * max(0.0, self.prob_clean - self.prob_empty)

    def is_sufficient(self, prob: float, predicted: int) -> bool:
        """The test a decision-sized circuit passes: the target stays the top class *and* recovers
        ``recover`` of what the channels add to its probability over the empty set (top-1 alone is a weak
        test with few classes, where a class can win on the biases alone)."""
        return predicted == self.target and prob >= self.needed() - 1e-12

    @property
    def sufficient_circuit(self) -> bool:
        return self.is_sufficient(self.prob_circuit, self.predicted_circuit)

    @property
    def random_sufficient_rate(self) -> float | None:
        """Share of random sets of equal size that pass the same test (small is good)."""
        if not self.random_probs:
            return None
        ok = [self.is_sufficient(p, c) for p, c in zip(self.random_probs, self.random_predicted)]
        return sum(ok) / len(ok)

    @property
    def kept_clean(self) -> bool:
        return self.predicted_clean == self.target

    @property
    def kept_circuit(self) -> bool:
        """Whether the target is still the top class keeping only the circuit's channels."""
        return self.predicted_circuit == self.target

    @property
    def kept_empty(self) -> bool:
        return self.predicted_empty == self.target

    @property
    def random_kept(self) -> tuple[bool, ...]:
        return tuple(p == self.target for p in self.random_predicted)

    @property
    def random_kept_rate(self) -> float | None:
        return sum(self.random_kept) / len(self.random_kept) if self.random_kept else None

    @property
    def random_prob_mean(self) -> float | None:
        return statistics.fmean(self.random_probs) if self.random_probs else None

    @property
    def random_at_least_as_good(self) -> float | None:
        """Share of random sets whose target probability is >= the circuit's (small is good)."""
        if not self.random_probs:
            return None
        return sum(p >= self.prob_circuit for p in self.random_probs) / len(self.random_probs)

    def to_dict(self) -> dict:
        """JSON-serialisable summary, with the per-draw results."""
        return {
            "target": self.target, "target_name": self.target_name, "fill": self.fill,
            "layers": list(self.layers), "kept_channels": list(self.kept_channels),
            "total_channels": list(self.total_channels),
            "clean": {"prob": self.prob_clean, "predicted": self.predicted_clean, "kept": self.kept_clean},
            "circuit": {"prob": self.prob_circuit, "predicted": self.predicted_circuit,
                        "kept": self.kept_circuit},
            "empty": {"prob": self.prob_empty, "predicted": self.predicted_empty, "kept": self.kept_empty},
            "random": [{"prob": p, "predicted": c, "kept": c == self.target,
                        "channels": {k: list(v) for k, v in s.items()}}
                       for p, c, s in zip(self.random_probs, self.random_predicted, self.random_sets)],
            "random_kept_rate": self.random_kept_rate,
            "recover": self.recover, "needed": self.needed(), "sufficient_circuit": self.sufficient_circuit,
            "random_sufficient_rate": self.random_sufficient_rate,
            "random_at_least_as_good": self.random_at_least_as_good,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        def row(label, prob, predicted):
            verdict = "kept" if predicted == self.target else f"lost (top class {predicted})"
            return f"  {label:<16} p={prob:.3f}  {verdict}"

        name = f" {self.target_name!r}" if self.target_name is not None else ""
        lines = [
            f"CircuitValidation(target {self.target}{name}, fill={self.fill!r}, keeping "
            f"{sum(self.kept_channels)}/{sum(self.total_channels)} channels over {len(self.layers)} layers)",
            row("unablated", self.prob_clean, self.predicted_clean),
            row("circuit only", self.prob_circuit, self.predicted_circuit)
            + f" ({'' if self.sufficient_circuit else 'NOT '}sufficient: p >= {self.needed():.3f} needed)",
            row("nothing kept", self.prob_empty, self.predicted_empty),
        ]
        n = len(self.random_probs)
        if n:
            probs = sorted(self.random_probs)
            lines.append(f"  {'random x' + str(n):<16} p median {statistics.median(probs):.3f} "
                         f"(range {probs[0]:.3f}-{probs[-1]:.3f}), target kept in {sum(self.random_kept)}/{n}")
            better = sum(p < self.prob_circuit for p in self.random_probs)
            lines.append(f"  the circuit beats {better}/{n} random sets of equal size (seed {self.seed}); "
                         f"{self.random_sufficient_rate:.0%} of them are sufficient")
        return "\n".join(lines)


def validate_circuit(model, layers, channels, inputs, *, target, target_name=None, fill="zero",
                     repeats=20, seed=0, recover=0.5, sites=None) -> CircuitValidation:
    """Run the ablation check (see module doc). ``channels``: ``{layer: kept channel indices}``;
    ``sites``: ``{layer: Site}`` where nodes are not a module output's channels (heads, units)."""
    if fill not in ("zero", "mean"):
        raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise ValueError(f"repeats must be an integer >= 0, got {repeats!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a [C, H, W] tensor, got {type(inputs).__name__}.")
    x = inputs[0] if inputs.dim() == 4 and inputs.shape[0] == 1 else inputs
    if x.dim() != 3:
        raise ValueError(f"inputs must have shape [C, H, W], got {list(inputs.shape)}.")
    layers = tuple(layers)
    device, dtype = model_device_dtype(model)
    x = x.detach().to(device=device, dtype=dtype)[None]

    ablation = _Ablation(model, layers, fill, sites)
    with ablation, eval_mode(model), torch.no_grad():
        clean = torch.softmax(ablation.run(x, None).double(), dim=1)[0].cpu()
        totals = ablation.channel_counts
        sizes = tuple(len(channels[name]) for name in layers)
        for name, size in zip(layers, sizes):
            bad = [c for c in channels[name] if not 0 <= c < totals[name]]
            if bad:
                raise ValueError(f"Channels {bad} do not exist at layer {name!r} ({totals[name]} channels).")
        generator = torch.Generator().manual_seed(seed)
        random_sets = tuple(
            {name: tuple(sorted(int(c) for c in torch.randperm(totals[name], generator=generator)[:size]))
             for name, size in zip(layers, sizes)}
            for _ in range(repeats)
        )
        variants = [{name: tuple(channels[name]) for name in layers}, {name: () for name in layers}]
        variants += list(random_sets)
        probs = _run_variants(model, ablation, x, layers, totals, variants)

    predicted = probs.argmax(dim=1).tolist()
    target_probs = probs[:, target].tolist()
    return CircuitValidation(
        target=int(target), target_name=target_name, fill=fill, layers=layers, kept_channels=sizes,
        total_channels=tuple(totals[name] for name in layers),
        prob_clean=float(clean[target]), predicted_clean=int(clean.argmax()),
        prob_circuit=target_probs[0], predicted_circuit=predicted[0],
        prob_empty=target_probs[1], predicted_empty=predicted[1],
        random_probs=tuple(target_probs[2:]), random_predicted=tuple(predicted[2:]),
        random_sets=random_sets, seed=seed, recover=recover,
    )


def _run_variants(model, ablation, x, layers, totals, variants):
    """Target-class-agnostic softmax ``[len(variants), classes]``; a variant is ``{layer: kept channels}``
    (a layer missing from it keeps every channel)."""
    # BatchNorm without running statistics normalises over the batch: variants must then run alone.
    step = 1 if _batch_coupled(model) else _CHUNK
    probs = []
    for start in range(0, len(variants), step):
        chunk = variants[start:start + step]
        keep = {name: _keep_mask([v.get(name, range(totals[name])) for v in chunk], totals[name])
                for name in layers}
        logits = ablation.run(x.expand(len(chunk), *x.shape[1:]), keep)
        probs.append(torch.softmax(logits.double(), dim=1).cpu())
    return torch.cat(probs)


@dataclass(frozen=True)
class Sizing:
    """How a decision-sized circuit was found (see ``decision_sizes``)."""

    sizes: dict
    totals: dict
    kept: bool
    forwards: int
    recover: float = 0.5  #: the share of the channels' contribution the circuit had to recover

    @property
    def share(self) -> float:
        return sum(self.sizes.values()) / max(1, sum(self.totals.values()))

    def to_dict(self) -> dict:
        return {"mode": "decision", "sizes": dict(self.sizes), "totals": dict(self.totals),
                "kept": self.kept, "share": self.share, "forwards": self.forwards, "recover": self.recover}


def _grid(n, useful=None):
    """Candidate node counts for a layer of ``n`` nodes whose first ``useful`` (in the order) help the
    target: every count up to ``useful``, then ``n`` (bisection needs about log2(useful) tests)."""
    useful = n if useful is None else max(1, min(int(useful), n))
    return list(range(1, useful + 1)) + ([n] if useful < n else [])


def decision_sizes(model, layers, orders, inputs, *, target, fill="zero", recover=0.5, sites=None,
                   useful=None) -> Sizing:
    """The fewest channels per layer whose circuit alone is sufficient for ``target``.

    ``orders``: ``{layer: channel indices, best first}``; the circuit keeps a prefix of
    each. ``useful``: ``{layer: how many of the first channels help the target}`` (positive
    relevance); sizes are looked for among those prefixes, with every channel as the fallback
    (a prefix that runs into the channels that lower the target fails, and the search would
    then return almost every channel).

    The test is ``CircuitValidation.is_sufficient``: keep those channels at every
    tapped layer, fill the rest, run the input; the target must stay the top class and
    recover ``recover`` of what the channels add to its probability over the empty set
    (every channel filled). The search, one single-image forward pass per test:

    1. each layer alone (the other layers unablated): the smallest sufficient prefix, found
       by a doubling search and bisection over the counts 1..C (``smallest``);
    2. all layers together: those counts grown by a common factor (1, 1.25, 1.5, 2, 3,
       4, 6, 8, 16, then everything), the smallest that is sufficient, searched the same way;
    3. each layer in turn (most grown first): shrunk back the same way, but never below
       its own bound from step 1.

    Layers are never shrunk below their step-1 bound: with an earlier layer nearly emptied,
    the kept channels of a later one still fire on the biases of the layers between, and
    can carry the decision on them (measured: one channel at each of four ResNet-18 layers,
    18 at the last, passed the test), which would make the earlier layers look unneeded.

    Only tested sizes are returned, so the result always passes the test (the search
    assumes that more channels do not hurt; where they do, the result is merely not the
    smallest). If even the unablated input is not classified as ``target``, every
    channel is kept and ``kept`` is False.
    """
    if fill not in ("zero", "mean"):
        raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}.")
    if not 0 <= recover <= 1:
        raise ValueError(f"recover must be in [0, 1], got {recover!r}.")
    layers = tuple(layers)
    device, dtype = model_device_dtype(model)
    x = inputs[0] if inputs.dim() == 4 else inputs
    x = x.detach().to(device=device, dtype=dtype)[None]
    ablation = _Ablation(model, layers, fill, sites)
    forwards = 0

    def keeps(sizes):
        nonlocal forwards
        forwards += 1
        variant = {name: tuple(orders[name][:k]) for name, k in sizes.items()}
        probs = _run_variants(model, ablation, x, layers, totals, [variant])[0]
        return int(probs.argmax()) == int(target) and float(probs[target]) >= needed - 1e-12

    def smallest(candidates, test):
        """A small candidate passing ``test`` (the last one is known to pass): the first to pass of
        candidates 1, 2, 4, 8, ... (their positions), then bisection back to the one before it. Where
        more channels can hurt, a plain bisection that tests a failing middle first skips the small
        sets that pass (measured: 256 of 256 channels where 8 passed)."""
        last, before, step = len(candidates) - 1, -1, 0
        while step < last and not test(candidates[step]):
            before, step = step, 2 * step + 1
        lo, hi = before + 1, min(step, last)
        while lo < hi:
            mid = (lo + hi) // 2
            if test(candidates[mid]):
                hi = mid
            else:
                lo = mid + 1
        return candidates[hi]

    with ablation, eval_mode(model), torch.no_grad():
        clean = ablation.run(x, None)
        forwards += 1
        totals = dict(ablation.channel_counts)
        limit = {n: totals[n] if useful is None or n not in useful else max(1, min(int(useful[n]), totals[n]))
                 for n in layers}
        if int(clean.argmax()) != int(target):
            return Sizing(dict(totals), dict(totals), False, forwards, recover)
        empty = _run_variants(model, ablation, x, layers, totals, [{name: () for name in layers}])[0]
        forwards += 1
        p_clean, p_empty = float(clean.double().softmax(1)[0, target]), float(empty[target])
        needed = p_empty + recover * max(0.0, p_clean - p_empty)
        single = {}
        for name in layers:
            single[name] = smallest(_grid(totals[name], limit[name]), lambda k: k == totals[name] or keeps({name: k}))
        factors = [1, 1.25, 1.5, 2, 3, 4, 6, 8, 16, math.inf]

        def grown(f):
            return {n: totals[n] if f == math.inf else min(max(single[n], limit[n]), math.ceil(single[n] * f))
                for n in layers}

        sizes = grown(smallest(factors, lambda f: f == math.inf or keeps(grown(f))))
        for name in sorted(layers, key=lambda n: -(sizes[n] - single[n])):
            grid = [k for k in _grid(totals[name], limit[name]) if single[name] <= k < sizes[name]] + [sizes[name]]
            if len(grid) > 1:
                best = smallest(grid, lambda k: k == sizes[name] or keeps(dict(sizes, **{name: k})))
                sizes = dict(sizes, **{name: best})
    return Sizing({n: int(sizes[n]) for n in layers}, totals, True, forwards, recover)


#: points along the path from a layer's filled activation to its own at which ``channel_relevance``
#: takes the gradient (midpoints of equal steps)
PATH_POINTS = 8


def channel_relevance(model, layers, inputs, target, fill="zero", sites=None, points=PATH_POINTS) -> dict:
    """``{layer: [C]}``: what filling each channel (head, unit) costs the target's logit, integrated
    along the path from the filled layer to the layer as it is (integrated gradients at the layer).

    ``sum over positions of (a - fill(a)) * mean over t of d logit / d a`` at ``fill(a) + t (a - fill(a))``,
    ``t`` the midpoints of ``points`` equal steps in (0, 1), with ``a`` the tapped activation on
    ``inputs`` and ``fill(a)`` zero or its mean over positions; each layer is moved alone (the others
    as they are). Large positive values: channels the decision leans on. The gradient at the
    activation alone (``points=1`` would be close to it) ranks for a small change, but a circuit
    fills most channels at once, where the first-order estimate misleads: on a scene ResNet it asked
    for 60 of the 64 channels of one layer, the integrated ranking for 10.
    """
    layers = tuple(layers)
    sites = _sites_for(layers, sites)
    device, dtype = model_device_dtype(model)
    x = inputs[0] if inputs.dim() == 4 else inputs
    x = x.detach().to(device=device, dtype=dtype)[None]
    steps = (torch.arange(points, device=device, dtype=dtype) + 0.5) / points
    # BatchNorm without running statistics normalises over the batch: the path points must then run alone.
    chunks = steps.split(1) if _batch_coupled(model) else (steps,)
    out = {}
    with eval_mode(model):
        for name in layers:
            site, total = sites[name], 0.0
            for t in chunks:
                total = total + _path_gradient_sum(model, site, x, target, fill, t)
            out[name] = (total / points).cpu()
    return out


def _path_gradient_sum(model, site, x, target, fill, steps) -> torch.Tensor:
    """``[n]``: ``sum over the points t of sum over positions of (a - fill(a)) * d logit / d a`` at
    ``fill(a) + t (a - fill(a))``, one row of the batch per point."""
    held_values = {}

    def along_path(z):
        if "leaf" in held_values:
            return None
        base = site.filled(z, fill)
        shape = [len(steps)] + [1] * (z.dim() - 1)
        leaf = (base + steps.view(shape) * (z - base)).detach().requires_grad_(True)
        held_values.update(leaf=leaf, delta=(z - base).detach())
        return leaf.clone()  # downstream in-place operations must not touch the leaf

    with hooks() as held:
        held.append(site.attach(model, along_path))
        with torch.enable_grad():
            logits = logits_from(model(x.expand(len(steps), *x.shape[1:])))
            if "leaf" not in held_values:
                if isinstance(site, OutputSite):
                    raise ValueError(f"Layer {site.name!r} did not run in the forward pass; tap layers the model runs.")
                raise never_ran(model, site)
            grad, = torch.autograd.grad(logits[:, int(target)].sum(), held_values["leaf"], allow_unused=True)
    delta = held_values["delta"]
    grad = torch.zeros_like(delta) if grad is None else grad
    return site.node_values(delta * grad).double().flatten(2).sum(dim=(0, 2))


def _batch_coupled(model) -> bool:
    """Whether rows of a batch affect each other (BatchNorm without running statistics)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is None
               for m in model.modules())


def _sites_for(layers, sites):
    sites = dict(sites or {})
    return {name: sites.get(name) or OutputSite(name) for name in layers}


def _keep_mask(sets, n_channels):
    keep = torch.zeros(len(sets), n_channels)
    for row, chans in enumerate(sets):
        keep[row, list(chans)] = 1.0
    return keep


class _Ablation:
    """Hooks at each layer's site (a module's output channels, or a transformer's heads and units)
    that keep chosen nodes and fill the rest.

    Hooks are registered on entry and removed on exit (also on errors).
    """

    def __init__(self, model, layers, fill, sites=None):
        self.model = model
        self.layers = layers
        self.fill = fill
        self.sites = _sites_for(layers, sites)
        self.keep = None
        self.channel_counts = {}
        self.calls = {}
        self._release = None

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            held = stack.enter_context(hooks())
            for name in self.layers:
                held.append(self.sites[name].attach(self.model, self._hook(name)))
            self._release = stack.pop_all()  # all attached: they stay until __exit__
        return self

    def __exit__(self, *exc):
        self._release.close()

    def run(self, x, keep):
        self.keep = keep
        self.calls = dict.fromkeys(self.layers, 0)
        out = logits_from(self.model(x))
        silent = [n for n, c in self.calls.items() if c == 0 and not isinstance(self.sites[n], OutputSite)]
        if silent:
            raise never_ran(self.model, self.sites[silent[0]])
        reused = [n for n, c in self.calls.items() if c != 1]
        if reused:
            raise ValueError(f"Tapped modules {reused} did not run exactly once per forward pass; "
                             "validate() can only ablate modules that do.")
        return out

    def _hook(self, name):
        site = self.sites[name]

        def fn(z):
            self.calls[name] += 1
            self.channel_counts[name] = site.n
            if self.keep is None:
                return None
            return site.apply_keep(z, self.keep[name], self.fill)
        return fn
