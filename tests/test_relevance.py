"""Where the target's evidence sits: the relevance read from x's own forward, and its
edge-aware smoothing (the second starting ranking of the mask)."""

import torch
import torch.nn.functional as F
from torch import nn

from nbexplain.core.relevance import edge_aware, relevance_maps, relevance_probes
from nbexplain.core.taps import tap_activations


def two_colour_guide(size=32):
    """A guide image: a red left half and a blue right half, with a little texture."""
    g = torch.zeros(1, 3, size, size)
    g[0, 0, :, : size // 2] = 1.0
    g[0, 2, :, size // 2:] = 1.0
    return g + 0.01 * torch.randn(g.shape, generator=torch.Generator().manual_seed(0))


def test_edge_aware_smoothing_fills_a_region_and_stops_at_its_outline():
    size = 32
    values = torch.zeros(1, size, size)
    values[0, 14:18, 10:14] = 1.0  # evidence inside the left region, 2 pixels from its edge
    smooth = edge_aware(values, two_colour_guide(size), radius=6)
    plain = F.avg_pool2d(F.pad(values[:, None], (6,) * 4, mode="replicate"), 13, stride=1)[:, 0]
    # Across the edge, within reach of the window: the plain box blur leaks, the edge-aware one does not.
    beyond = (slice(None), slice(12, 20), slice(16, 19))
    assert float(plain[beyond].mean()) > 0.05
    assert float(smooth[beyond].abs().mean()) < 0.2 * float(plain[beyond].mean())
    # Inside the region the evidence spreads beyond the spike, so a cut of it keeps more of the region.
    assert float(smooth[0, 14:18, 2:8].mean()) > 0.02


def test_relevance_from_the_forward_that_gives_the_logits_matches_gradient_times_activation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([0, 2])
    layers = ["0", "2"]
    with tap_activations(net, layers) as taps, torch.enable_grad(), relevance_probes(net, layers) as probes:
        logits = net(x.clone())
        acts = {k: v.detach() for k, v in taps.collect().items()}
        maps = relevance_maps(logits, probes, acts, target)
    # Reference: the same quantity from a forward split at each layer by hand.
    a0 = net[0](x).requires_grad_(True)
    a2 = net[2](net[1](a0.clone())).requires_grad_(True)
    z = net[6](net[5](net[4](net[3](a2.clone()))))
    g0, g2 = torch.autograd.grad(z.gather(1, target[:, None]).sum(), [a0, a2])
    torch.testing.assert_close(maps["0"], (g0 * a0).sum(1).clamp_min(0).detach())
    torch.testing.assert_close(maps["2"], (g2 * a2).sum(1).clamp_min(0).detach())
    assert all(len(m._forward_hooks) == 0 for m in net.modules())  # the probes are gone
