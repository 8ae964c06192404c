"""The class-defining shapes, as inside-tests on local coordinates.

Every shape lives in a unit circle: ``(u, v)`` are pixel-centre coordinates
already shifted to the object's centre, rotated and divided by its radius, so
one test serves every position, size and rotation. The tests are exact
boolean functions, which is what makes the ground-truth masks pixel-exact: the
renderer paints precisely the pixels these functions return.
"""

from __future__ import annotations

import math

import torch

CLASS_NAMES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring"]

# Proportions chosen so each shape fills the unit circle with a similar area
# and no shape is a scaled copy of another.
_CIRCLE_R = 0.9
_SQUARE_HALF = 0.68
_STAR_INNER = 0.45
_CROSS_HALF_WIDTH = 0.3
_CROSS_HALF_LENGTH = 0.95
_RING_OUTER, _RING_INNER = 0.95, 0.55


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + v * v <= _CIRCLE_R**2


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= _SQUARE_HALF


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Equilateral, circumradius 1, inradius 1/2: inside all three edges, each
    # edge lying opposite a vertex at distance 1/2 from the centre.
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(3):
        angle = math.pi / 2 + k * 2 * math.pi / 3
        inside &= -(u * math.cos(angle) + v * math.sin(angle)) <= 0.5
    return inside


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Fold the angle into one half-spike (0..36 degrees); there the outline is
    # the straight edge from the tip (1, 0) to the inner vertex.
    sector = 2 * math.pi / 5
    angle = torch.remainder(torch.atan2(v, u), sector) - sector / 2
    angle = angle.abs()
    rho = torch.sqrt(u * u + v * v)
    px, py = rho * torch.cos(angle), rho * torch.sin(angle)
    qx, qy = _STAR_INNER * math.cos(sector / 2), _STAR_INNER * math.sin(sector / 2)
    return (qx - 1.0) * py - qy * (px - 1.0) >= 0


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    along_u = (av <= _CROSS_HALF_WIDTH) & (au <= _CROSS_HALF_LENGTH)
    along_v = (au <= _CROSS_HALF_WIDTH) & (av <= _CROSS_HALF_LENGTH)
    return along_u | along_v


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r2 = u * u + v * v
    return (r2 <= _RING_OUTER**2) & (r2 >= _RING_INNER**2)


_TESTS = [_circle, _square, _triangle, _star, _cross, _ring]


def local_coordinates(
    xs: torch.Tensor, ys: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
    radius: torch.Tensor, angle: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map pixel centres into each object's unit frame.

    ``xs`` is [1, 1, W] and ``ys`` [1, H, 1]; the per-object parameters are [n];
    returns ``u, v`` of shape [n, H, W].
    """
    cx, cy = cx.view(-1, 1, 1), cy.view(-1, 1, 1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    inv_r = (1.0 / radius).view(-1, 1, 1)
    dx, dy = (xs - cx) * inv_r, (ys - cy) * inv_r
    return dx * cos + dy * sin, dy * cos - dx * sin


def shape_masks(
    classes: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
    radius: torch.Tensor, angle: torch.Tensor, size: int,
) -> torch.Tensor:
    """Boolean masks [n, size, size] of n objects, one shape class each.

    Pixel (row i, column j) is inside when its centre (j + 0.5, i + 0.5) passes
    the class's inside-test. Objects are grouped by class so each pixel runs one
    test, not six.
    """
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    xs, ys = coords.view(1, 1, -1), coords.view(1, -1, 1)
    out = torch.zeros(len(classes), size, size, dtype=torch.bool)
    for cls in torch.unique(classes).tolist():
        idx = (classes == cls).nonzero().flatten()
        u, v = local_coordinates(xs, ys, cx[idx], cy[idx], radius[idx], angle[idx])
        out[idx] = _TESTS[cls](u, v)
    return out
