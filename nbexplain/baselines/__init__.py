"""Baseline attribution methods behind one interface.

Every method is ``fn(model, x, target=None, **options) -> Attribution`` with
``x`` a model-space tensor [C, H, W] or [1, C, H, W].  Captum is imported
only when a method runs.
"""

from __future__ import annotations

from .gradcam import default_gradcam_layer, gradcam
from .integrated_gradients import integrated_gradients
from .occlusion import occlusion, occlusion_window

METHODS = {
    "gradcam": gradcam,
    "occlusion": occlusion,
    "integrated_gradients": integrated_gradients,
}


def run_method(name: str, model, x, target=None, **options):
    """Run the baseline called ``name`` (a key of ``METHODS``) and return its Attribution."""
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name](model, x, target, **options)


__all__ = [
    "METHODS", "run_method", "gradcam", "occlusion", "integrated_gradients",
    "default_gradcam_layer", "occlusion_window",
]
