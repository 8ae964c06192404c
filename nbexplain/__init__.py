"""nbexplain: minimal binary-mask explanations and channel circuits for image classifiers."""

from .config import ExplainConfig
from .explainer import Explainer
from .explanation import Explanation

__all__ = ["Explainer", "Explanation", "ExplainConfig"]
__version__ = "0.1.0"
