"""Where the widget can be shown, and one-call ways to show it.

Widgets live until they are closed (ipywidgets keeps every one), so a cell that
is re-run a hundred times would keep a hundred widgets. The functions here
close the widgets a cell made on its previous run when it runs again.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

#: Environment variable that forces the choice: "1" always use the widget, "0" never.
ENV_SWITCH = "NBEXPLAIN_WIDGET"


def should_use_widget() -> bool:
    """True inside a running Jupyter kernel (ipykernel), where a widget front end may exist.

    False in plain Python, the terminal IPython shell and scripts (CI), where the
    caller should fall back to text/PNG output. ``NBEXPLAIN_WIDGET=0`` or ``=1``
    overrides the detection.
    """
    forced = os.environ.get(ENV_SWITCH, "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    return _kernel() is not None


def live_widget(labels: Sequence[str] | None = None, static_fallback: bool = True, **options: Any):
    """Create an ``ExplanationWidget``, display it now, and return it.

    Pass the returned widget as a training callback; it shows frames while the
    mask trains and settles on the result when ``on_end`` is called.

    With ``static_fallback`` the displayed output gets the result's PNG (its
    ``_repr_png_``) once training ends, so a saved notebook still shows the
    result where no widget front end exists (GitHub, nbviewer, exported HTML).
    Widget front ends keep showing the widget.
    """
    from IPython.display import display

    from ._widget import ExplanationWidget

    widget = adopt_in_cell(ExplanationWidget(labels=labels, **options))
    handle = display(widget, display_id=True)
    if static_fallback:
        widget.display_handle = handle
    return widget


def result_widget(result: Any, **options: Any):
    """A settled widget for ``result`` (for an Explanation's rich display).

    Like ``ExplanationWidget.from_result``, but the widget is closed when the
    cell that displayed it runs again.
    """
    from ._widget import ExplanationWidget

    return adopt_in_cell(ExplanationWidget.from_result(result, **options))


def adopt_in_cell(widget: Any) -> Any:
    """Ties ``widget`` to the running cell, so that it is closed when that cell runs again."""
    _CELLS.adopt(widget, current_cell())
    return widget


def current_cell() -> tuple[str, str] | None:
    """(cell id, execution request id) of the running cell, when the front end says.

    JupyterLab, Notebook 7 and VS Code put the cell's id in the execute request's
    metadata; elsewhere this is None and widgets are simply not tracked.
    """
    kernel = _kernel()
    get_parent = getattr(kernel, "get_parent", None)
    if get_parent is None:
        return None
    try:
        parent = get_parent() or {}
    except Exception:  # a kernel without a current request (e.g. during start-up)
        return None
    cell = (parent.get("metadata") or {}).get("cellId")
    run = (parent.get("header") or {}).get("msg_id")
    return (str(cell), str(run)) if cell and run else None


class CellWidgets:
    """Widgets made by each cell's latest run; a new run of the cell closes the older ones."""

    def __init__(self) -> None:
        self._by_cell: dict[str, tuple[str, list]] = {}

    def adopt(self, widget: Any, where: tuple[str, str] | None) -> None:
        if where is None:
            return
        cell, run = where
        previous_run, widgets = self._by_cell.get(cell, (None, []))
        if previous_run != run:
            for old in widgets:
                old.close()
            widgets = []
        widgets.append(widget)
        self._by_cell[cell] = (run, widgets)

    def count(self) -> int:
        return sum(len(widgets) for _, widgets in self._by_cell.values())


_CELLS = CellWidgets()


def _kernel():
    ipython = sys.modules.get("IPython")  # never import IPython just to ask
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    # Only kernels (ZMQInteractiveShell) have .kernel; the terminal shell has none.
    return getattr(shell, "kernel", None) if shell is not None else None
