"""Jupyter widget for nbexplain: live mask training and a clickable circuit graph.

Needs ``anywidget``; the core package never imports this module.
"""

from ._live import live_widget, result_widget, should_use_widget
from ._widget import ExplanationWidget

__all__ = ["ExplanationWidget", "live_widget", "result_widget", "should_use_widget"]
