"""Helpers the real-browser tests share (fixtures live in conftest.py)."""

from __future__ import annotations


def open_and_run_all(lab, page, notebook: str, kernel_ready_ms: int) -> None:
    """Open ``notebook`` in JupyterLab, wait for its kernel, and start running every cell without
    awaiting the run (the command's promise resolves only when every cell is done)."""
    page.goto(f"{lab['base']}/lab/tree/{notebook}?token={lab['token']}")
    page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const nb = app && app.shell.currentWidget;
            const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
            return nb && nb.content && nb.content.widgets && kernel && kernel.status === 'idle';
        }""",
        timeout=kernel_ready_ms,
    )
    page.evaluate(
        """() => {
            window.jupyterapp.shell.collapseLeft();
            void window.jupyterapp.commands.execute('notebook:run-all-cells');
        }"""
    )


def wait_for_static_png(page, cell: int, timeout_ms: int) -> None:
    """Wait until code cell ``cell``'s output carries the static PNG beside the widget: training has
    ended, and JupyterLab renders that output (and the widget) anew from synced state."""
    page.wait_for_function(
        """cell => {
            const outputs = window.jupyterapp.shell.currentWidget.content.widgets[cell].model.outputs;
            for (let i = 0; i < outputs.length; i++) {
                const data = outputs.get(i).data;
                if (data['image/png'] && data['application/vnd.jupyter.widget-view+json']) return true;
            }
            return false;
        }""",
        arg=cell,
        timeout=timeout_ms,
    )
