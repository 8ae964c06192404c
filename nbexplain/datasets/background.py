"""Cluttered, textured backgrounds with distractors that never define a class.

Cheap by construction: every smooth ingredient is a one-channel map times a
colour, summed by one matrix product, and thin distractors (lines, dots, arcs)
are point samples scattered into the image, so their cost grows with their
length, not with the image.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def paint(img: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> None:
    """In place: ``img`` [n, 3, S, S] takes ``pixels`` exactly where ``mask`` [n, S, S].

    ``lerp`` with weights 0 and 1 returns start and end exactly; expanding the
    weight to all channels first is about twice as fast as broadcasting it.
    """
    weight = mask.to(img.dtype).unsqueeze(1).expand_as(img).contiguous()
    img.lerp_(pixels.expand_as(img), weight)


def _uniform(gen, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


@functools.lru_cache(maxsize=4)
def _noise_basis(size: int) -> torch.Tensor:
    """[16, size*size]: bicubic upsamplings of the 16 cells of a 4x4 grid.

    Any low-frequency noise image is a weighted sum of these maps, so a whole
    batch of them is one matrix product.
    """
    eye = torch.eye(16).view(16, 1, 4, 4)
    maps = F.interpolate(eye, size=size, mode="bicubic", align_corners=False)
    return maps.view(16, size * size)


def _gauss(coords: torch.Tensor, centre: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(-((coords - centre) ** 2) / (2 * sigma**2))


def _texture(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    """Colour gradient, low-frequency noise, soft blobs and stripes: [n, 3, S, S].

    Each ingredient is a one-channel map times a colour, so the image is
    ``colours @ maps``: a couple of matrix products instead of dozens of
    full-image passes.
    """
    pix = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    gx, gy = pix.view(1, 1, -1), pix.view(1, -1, 1)
    maps, colours = [], []

    # Linear gradient between two random colours, at a random angle.
    c0, c1 = torch.rand((n, 3), generator=gen), torch.rand((n, 3), generator=gen)
    theta = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    maps.append(((gx - 0.5) * torch.cos(theta) + (gy - 0.5) * torch.sin(theta) + 0.5).clamp(0, 1))
    colours.append(c1 - c0)

    # Soft Gaussian blobs (separable): no hard edge, so they never read as a circle.
    for _ in range(3):
        centre = torch.rand((n, 2, 1, 1), generator=gen)
        sigma = _uniform(gen, (n, 1, 1), 0.06, 0.16)
        maps.append(_gauss(gx, centre[:, 0], sigma) * _gauss(gy, centre[:, 1], sigma))
        colours.append((torch.rand((n, 3), generator=gen) - 0.5) * _uniform(gen, (n, 1), 0, 1.0))

    # Stripes: faint everywhere, stronger inside one soft patch.
    period = _uniform(gen, (n, 1, 1), 3.0, 12.0) / size
    theta = _uniform(gen, (n, 1, 1), 0, math.pi)
    phase = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    freq = 2 * math.pi / period
    wave = torch.sin((gx * (freq * torch.cos(theta)) + phase) + gy * (freq * torch.sin(theta)))
    centre = torch.rand((n, 2, 1, 1), generator=gen)
    sigma = _uniform(gen, (n, 1, 1), 0.06, 0.14)
    strong = _uniform(gen, (n, 1, 1), 0, 0.3)
    window = (strong * _gauss(gx, centre[:, 0], sigma)) * _gauss(gy, centre[:, 1], sigma)
    maps.append(wave * (window + _uniform(gen, (n, 1, 1), 0, 0.08)))
    colours.append(torch.rand((n, 3), generator=gen) * 2 - 1)

    per_image = torch.stack(maps, 1).view(n, len(maps), size * size)
    img = torch.stack(colours, 2) @ per_image  # [n, 3, S*S]

    # Low-frequency colour noise plus the base colour, shared maps for all images.
    noise = (torch.rand((n * 3, 16), generator=gen) - 0.5) * _uniform(gen, (n * 3, 1), 0.1, 0.6)
    img += (noise @ _noise_basis(size)).view(n, 3, -1) + c0.unsqueeze(-1)
    return img.view(n, 3, size, size)


def _thin_points(gen: torch.Generator, n: int, size: int):
    """Pixel samples of thin distractors: returns (x, y, id) each [n, points]."""
    xs, ys, ids = [], [], []
    next_id = 0

    def add(x, y, count):
        nonlocal next_id
        # Each distractor gets its own id, so it has its own colour.
        per = x.shape[1] // count
        ident = next_id + torch.arange(count).repeat_interleave(per)
        xs.append(x), ys.append(y), ids.append(ident.expand(n, -1))
        next_id += count

    # Straight segments, 1 or 2 pixels wide.
    lines, samples = 6, 64
    p0 = torch.rand((n, lines, 1, 2), generator=gen) * size
    length = _uniform(gen, (n, lines, 1), 0.08, 0.4) * size
    theta = _uniform(gen, (n, lines, 1), 0, 2 * math.pi)
    t = torch.linspace(0, 1, samples).view(1, 1, -1)
    x = p0[..., 0] + t * length * torch.cos(theta)
    y = p0[..., 1] + t * length * torch.sin(theta)
    wide = (torch.rand((n, lines, 1), generator=gen) < 0.5).float()
    x = torch.cat([x, x + wide * 0.7], -1)
    y = torch.cat([y, y + wide * 0.7], -1)
    add(x.flatten(1), y.flatten(1), lines)

    # Small dots of radius at most 2.5 pixels (objects are 10x larger).
    dots = 6
    centre = torch.rand((n, dots, 1, 2), generator=gen) * size
    radius = _uniform(gen, (n, dots, 1), 0.8, 2.5)
    offs = torch.arange(-2, 3, dtype=torch.float32)
    ox, oy = offs.repeat(5).view(1, 1, -1), offs.repeat_interleave(5).view(1, 1, -1)
    keep = ox**2 + oy**2 <= radius**2
    far = torch.tensor(-10.0 * size)  # samples outside every image are dropped
    x = torch.where(keep, centre[..., 0] + ox, far)
    y = torch.where(keep, centre[..., 1] + oy, far)
    add(x.flatten(1), y.flatten(1), dots)

    # Thin open arcs (at most 3/4 of a turn, so never a closed ring).
    arcs, samples = 3, 96
    centre = torch.rand((n, arcs, 1, 2), generator=gen) * size
    radius = _uniform(gen, (n, arcs, 1), 0.05, 0.18) * size
    start = _uniform(gen, (n, arcs, 1), 0, 2 * math.pi)
    span = _uniform(gen, (n, arcs, 1), 0.6, 1.5 * math.pi)
    phi = start + span * torch.linspace(0, 1, samples).view(1, 1, -1)
    x = centre[..., 0] + radius * torch.cos(phi)
    y = centre[..., 1] + radius * torch.sin(phi)
    add(x.flatten(1), y.flatten(1), arcs)

    return torch.cat(xs, 1), torch.cat(ys, 1), torch.cat(ids, 1), next_id


def _paint_thin(gen: torch.Generator, img: torch.Tensor) -> None:
    """Draw the thin distractors in place; later distractors cover earlier ones."""
    n, _, size, _ = img.shape
    x, y, ids, count = _thin_points(gen, n, size)
    col, row = x.floor().long(), y.floor().long()
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    flat = torch.where(inside, row * size + col, size * size)  # spare slot for misses
    owner = torch.full((n, size * size + 1), -1, dtype=torch.long)
    # amax keeps the highest id per pixel: order-independent, hence deterministic.
    owner.scatter_reduce_(1, flat, torch.where(inside, ids, -1), reduce="amax")
    owner = owner[:, :-1]
    colours = torch.rand((n, 3, count), generator=gen)
    drawn = torch.gather(colours, 2, owner.clamp(min=0).unsqueeze(1).expand(n, 3, -1))
    paint(img, drawn.view(n, 3, size, size), (owner >= 0).view(n, size, size))


def make_background(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    """Cluttered backgrounds, float32 [n, 3, size, size] (not yet clamped)."""
    img = _texture(gen, n, size)
    _paint_thin(gen, img)
    return img


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> torch.Tensor:
    """A fixed bank of fine noise tiles [16, 3, size, size] in [-0.5, 0.5].

    Drawing fresh per-pixel noise costs more than the rest of the scene;
    a seeded bank, indexed per image, looks the same and costs a copy.
    """
    gen = torch.Generator().manual_seed(size)
    return torch.rand((16, 3, size, size), generator=gen) - 0.5


def add_fine_noise(gen: torch.Generator, img: torch.Tensor) -> None:
    """Add sensor-like noise of random strength in place to images [n, 3, S, S]."""
    n, size = img.shape[0], img.shape[-1]
    bank = _noise_bank(size)
    tiles = bank[torch.randint(len(bank), (n,), generator=gen)]
    # Random flips of the tile multiply the variety at no cost.
    flip = torch.rand(n, generator=gen) < 0.5
    tiles[flip] = tiles[flip].flip(-1)
    amp = 0.02 + 0.06 * torch.rand((n, 1, 1, 1), generator=gen)
    img.add_(amp * tiles)
