"""A narrow torchvision ResNet and a tiny torchvision ViT: the real structures,
small enough for a CPU.

``SmallResNet`` *is* a ``torchvision.models.resnet.ResNet`` (same class
hierarchy, forward and attribute names: conv1, bn1, relu, maxpool,
layer1..layer4 of ``BasicBlock``, avgpool, fc), only with fewer channels, so
code written for torchvision ResNets (layer taps, circuit readout) sees the
real thing.

``SmallViT`` *is* a ``torchvision.models.vision_transformer.VisionTransformer``
(conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_i
with ln_1, self_attention = ``nn.MultiheadAttention``, ln_2 and mlp,
encoder.ln, heads.head), built by its own ``__init__`` with small sizes.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet, conv1x1
from torchvision.models.vision_transformer import VisionTransformer


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One ``layerN``: BasicBlocks, the first one downsampling as torchvision does."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class SmallResNet(ResNet):
    """torchvision ``ResNet`` with BasicBlocks and configurable stage widths."""

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        # Skip ResNet.__init__ (it would build the full-width network first) and
        # create the same attributes directly.
        nn.Module.__init__(self)
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError("widths and blocks need one entry per stage (4)")
        self.widths, self.blocks = tuple(widths), tuple(blocks)
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = widths[0]
        for i, (planes, count) in enumerate(zip(widths, blocks)):
            setattr(self, f"layer{i + 1}", _stage(inplanes, planes, count, 1 if i == 0 else 2))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class SmallViT(VisionTransformer):
    """torchvision ``VisionTransformer`` with small sizes (defaults: 8x8 patches of
    16 px on 128 px images, i.e. 64 patch tokens plus the class token)."""

    def __init__(
        self,
        num_classes: int,
        image_size: int = 128,
        patch_size: int = 16,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 64,
        mlp_dim: int = 128,
    ) -> None:
        super().__init__(
            image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
            hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes,
        )
