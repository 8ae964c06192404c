"""Procedural scenes whose deciding pixels are known exactly, and real photographs.

>>> from nbexplain.datasets import make_scenes
>>> s = make_scenes(8, seed=0)
>>> s.images.shape, s.masks.shape
(torch.Size([8, 3, 128, 128]), torch.Size([8, 128, 128]))
"""

from .mix import concat_scenes, photo_grids, shortcut_mix
from .photos import PHOTOS, README_PHOTOS, load_photo
from .scenes import CUE_CLASS, SHORTCUT_MODES, Scenes, make_scenes
from .shapes import CLASS_NAMES

__all__ = ["PHOTOS", "README_PHOTOS", "load_photo", "CLASS_NAMES", "CUE_CLASS", "SHORTCUT_MODES", "Scenes", "make_scenes", "concat_scenes", "photo_grids", "shortcut_mix"]
