"""Shared fixtures: tiny seeded models that run in milliseconds."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """A small CNN with BatchNorm and in-place ReLUs, like the real thing in miniature."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def make_tiny(seed: int = 0, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet(classes)
    # Non-trivial BatchNorm statistics, so a changed buffer would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_resnet(seed: int = 0, classes: int = 5) -> nn.Module:
    """A torchvision ResNet (BasicBlock) with the real structure, shrunk for speed."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=classes)
    return model.eval()


def fast_options(**kw):
    return {"steps": 6, "min_steps": 6, "mask_resolution": 16, "unet_width": 4, **kw}


@pytest.fixture
def tiny():
    return make_tiny()


@pytest.fixture
def image():
    torch.manual_seed(1)
    return torch.randn(3, 32, 32)
