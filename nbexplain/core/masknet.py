"""The mask generator: a small U-Net, one independent copy per image.

Several images are explained at once by grouped convolutions: copy ``i``
only ever sees image ``i`` and has its own weights, so a batch of masks is
exactly a batch of independent per-image optimisations, in one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupedConv(nn.Module):
    """A 3x3 (or 1x1) convolution applied to ``n`` independent feature stacks."""

    def __init__(self, n: int, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        self.n, self.c_out = n, c_out
        self.conv = nn.Conv2d(n * c_in, n * c_out, kernel, padding=kernel // 2, groups=n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [n, c_in, h, w]
        if self.n == 1:  # one shared network: an ordinary batched convolution
            return self.conv(x)
        n, c, h, w = x.shape
        y = self.conv(x.reshape(1, n * c, h, w))
        return y.reshape(n, self.c_out, h, w)


class _Block(nn.Module):
    def __init__(self, n, c_in, c_out):
        super().__init__()
        self.a = GroupedConv(n, c_in, c_out)
        self.b = GroupedConv(n, c_out, c_out)

    def forward(self, x):
        return F.leaky_relu(self.b(F.leaky_relu(self.a(x), 0.1)), 0.1)


class MaskUNet(nn.Module):
    """U-Net mapping images [n, C, h, w] to mask logits [n, h, w].

    ``depth`` levels of (conv, conv) with widths ``width * 2**level``; average
    pooling down, bilinear upsampling and skip concatenation up.
    """

    def __init__(self, in_channels: int, n: int = 1, width: int = 16, depth: int = 3):
        super().__init__()
        self.n, self.depth = n, depth
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(_Block(n, c, w))
            c = w
        self.bottom = _Block(n, c, widths[-1])
        self.up = nn.ModuleList(_Block(n, widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = GroupedConv(n, widths[0], 1, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mult = 2**self.depth
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[:, 0, :h, :w]
