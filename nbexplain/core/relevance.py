"""Where the target's evidence sits in each tapped layer of the original image.

Matching *all* of x's activations rewards keeping every object in the image, not
the one whose class is asked: on a grid of four photos it keeps all four. So each
tapped position is weighted by its contribution to the target's logit, gradient
times activation summed over channels (positive part), computed once on x.
The weights also give the optimiser its start: the mask begins on the positions
that carry the target, and training decides what is really needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def target_relevance(net: nn.Module, logits_of, x: torch.Tensor, layers: list[str], acts_x: dict,
                     target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per layer, [B, h, w] maps of relu(sum_c dz_target/da * a) for channels-first maps
    (other shapes get no map). One forward and one backward of the model on x."""
    modules = dict(net.named_modules())
    deltas = {n: torch.zeros_like(a, requires_grad=True) for n, a in acts_x.items() if a.dim() == 4}
    if not deltas:
        return {}
    handles = []

    def make_hook(name):
        def hook(_module, _inputs, output):
            # A zero added to the output: its gradient is the output's, whatever in-place ops follow.
            if isinstance(output, torch.Tensor) and output.shape == deltas[name].shape:
                return output + deltas[name]
            return None

        return hook

    try:
        for name in deltas:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        with torch.enable_grad():
            # The target's own score, not its log-probability: the latter's gradient also rewards the
            # evidence against every other class, which keeps other objects (measured on grids of photos).
            logits = logits_of(x.clone())
            picked = logits.gather(1, target[:, None]).sum()
            grads = torch.autograd.grad(picked, list(deltas.values()), allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for (name, _), g in zip(deltas.items(), grads):
        if g is not None:
            out[name] = (g * acts_x[name]).sum(1).clamp_min(0).detach()
    return out


def position_weights(relevance: torch.Tensor) -> torch.Tensor:
    """Relevance [B, h, w] as weights with mean 1 per image (uniform where there is none)."""
    mean = relevance.flatten(1).mean(1)[:, None, None]
    return torch.where(mean > 0, relevance / mean.clamp_min(1e-12), torch.ones_like(relevance))


def start_logits(relevance: dict[str, torch.Tensor], size: tuple[int, int], on_share: float,
                 spread: float = 1.5) -> torch.Tensor | None:
    """Mask logits [B, *size] whose top ``on_share`` are the positions of highest relevance,
    averaged over layers (each scaled to a maximum of 1) at the mask's working size."""
    maps = []
    for r in relevance.values():
        peak = r.flatten(1).amax(1)[:, None, None].clamp_min(1e-12)
        maps.append(F.interpolate((r / peak)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])
    if not maps:
        return None
    rel = torch.stack(maps).mean(0).flatten(1)
    cut = torch.quantile(rel, 1.0 - on_share, dim=1, keepdim=True)
    z = (rel - cut) / rel.std(dim=1, keepdim=True).clamp_min(1e-6) * spread
    return z.view(-1, *size)
