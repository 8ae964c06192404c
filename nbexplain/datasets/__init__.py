"""Procedural scenes whose deciding pixels are known exactly.

>>> from nbexplain.datasets import make_scenes
>>> s = make_scenes(8, seed=0)
>>> s.images.shape, s.masks.shape
(torch.Size([8, 3, 128, 128]), torch.Size([8, 128, 128]))
"""

from .scenes import CUE_CLASS, SHORTCUT_MODES, Scenes, make_scenes
from .shapes import CLASS_NAMES

__all__ = ["CLASS_NAMES", "CUE_CLASS", "SHORTCUT_MODES", "Scenes", "make_scenes"]
