"""nbexplain: minimal binary-mask explanations and channel circuits for image classifiers."""

from .amortized import AmortizedExplainer
from .audits import Audit, audit
from .attribution import Attribution
from .compare import Comparison, compare
from .config import ExplainConfig
from .explainer import Explainer
from .explanation import Explanation, load
from .fingerprint import about, method_fingerprint

__all__ = ["audit", "Audit", "Explainer", "Explanation", "ExplainConfig", "AmortizedExplainer", "compare", "Comparison", "Attribution", "load", "about", "method_fingerprint"]
__version__ = "0.2.0"
