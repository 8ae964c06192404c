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
encoder.ln, heads.head), built by its own ``__init__`` with small sizes. Its patch
embedding ``conv_proj`` is torchvision's patchify convolution, or (``stem="resnet"``, the
bundled ViTs) a hybrid ViT's convolutional stem: the first two stages of ``SmallResNet``
(stride 8) and a 1x1 projection to the tokens' width, as in the original ViT paper's
ResNet hybrids. A ViT trained from scratch on a few thousand scenes barely learns in the
minutes a CPU gives it (27-32 % after 600 steps); with the stem initialised from the honest
ResNet's it reaches over 90 % in 400.
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
    16 px on 128 px images, i.e. 64 patch tokens plus the class token); ``stem="resnet"``
    embeds 8 px patches with a convolutional stem (``patch_size`` must then be 8)."""

    def __init__(
        self,
        num_classes: int,
        image_size: int = 128,
        patch_size: int = 16,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 64,
        mlp_dim: int = 128,
        stem: str = "patch",
        stem_widths: Sequence[int] = (16, 32),
    ) -> None:
        super().__init__(
            image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
            hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes,
        )
        if stem == "resnet":
            if patch_size != 8:
                raise ValueError(f"the ResNet stem has stride 8: patch_size must be 8, not {patch_size}")
            a, b = stem_widths
            self.conv_proj = nn.Sequential(
                nn.Conv2d(3, a, kernel_size=7, stride=2, padding=3, bias=False), nn.BatchNorm2d(a),
                nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                _stage(a, a, 1, 1), _stage(a, b, 1, 2), nn.Conv2d(b, hidden_dim, kernel_size=1))
        elif stem != "patch":
            raise ValueError(f"stem must be 'patch' or 'resnet', not {stem!r}")
        self.stem, self.stem_widths = stem, tuple(stem_widths)

    def init_stem_from(self, resnet: SmallResNet) -> None:
        """Start the convolutional stem from a trained ``SmallResNet``'s conv1, bn1, layer1 and layer2."""
        for index, part in ((0, "conv1"), (1, "bn1"), (4, "layer1"), (5, "layer2")):
            self.conv_proj[index].load_state_dict(getattr(resnet, part).state_dict())
