"""Small classifiers trained on ``nbexplain.datasets`` scenes, bundled as weight files.

>>> from nbexplain.zoo import load_model
>>> zm = load_model("honest")       # or "shortcut": leans on the planted corner cue
>>> zm.model(zm.preprocess(img)[None]).argmax(1)   # doctest: +SKIP
"""

from .architecture import SmallResNet
from .evaluation import accuracy, predict, shortcut_report
from .loading import MODEL_NAMES, ZooModel, load_amortized, load_model

__all__ = ["MODEL_NAMES", "SmallResNet", "ZooModel", "accuracy", "load_amortized", "load_model", "predict", "shortcut_report"]
