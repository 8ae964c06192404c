"""The widget in a real browser: JupyterLab on localhost, Debian's chromium driven by Playwright.

Runs tests/ui/widget_demo.ipynb, checks that live frames arrive while the mask
trains (not only at the end), then the necessary half's, that the settled widget
shows its circuit and switches between its sufficient and necessary evidence,
that clicking a channel node brings its activation maps from the kernel, and
keeps screenshots in test-artifacts/.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and the Playwright
Python package (no browser download: the system chromium is used); the server and
browser fixtures are in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._lab import open_and_run_all, wait_for_static_png

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOK = HERE / "widget_demo.ipynb"
TOTAL_STEPS = 150  # as in the notebook

# Generous but bounded waits (milliseconds), for slow shared CI machines.
KERNEL_READY_MS = 120_000
WIDGET_SHOWN_MS = 240_000
TRAINING_DONE_MS = 300_000
CHANNEL_ANSWER_MS = 60_000


ROOT_JS = "document.querySelectorAll('.nbx-root')[0]"
# Keep a canvas's pixels under a name, and the share of pixels that differ between two kept ones.
SNAPSHOT_JS = "(c, key) => { (window.nbxShots ??= {})[key] = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; }"
DIFFER_JS = """([a, b]) => {
    const x = window.nbxShots[a], y = window.nbxShots[b];
    if (x.length !== y.length) return 1;
    let n = 0;
    for (let i = 0; i < x.length; i += 4) n += x[i] !== y[i] || x[i + 1] !== y[i + 1] || x[i + 2] !== y[i + 2];
    return n / (x.length / 4);
}"""


def test_widget_streams_frames_then_opens_a_channel(lab, page):
    try:
        _check_widget(lab, page)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure.png"))
        raise


def _check_widget(lab, page):
    open_and_run_all(lab, page, NOTEBOOK.name, KERNEL_READY_MS)

    # 1. While the mask trains: frames arrive and the step counter moves.
    page.wait_for_selector(".nbx-root", timeout=WIDGET_SHOWN_MS)
    page.wait_for_function(
        f"""() => {{
            const r = {ROOT_JS};
            return r && r.dataset.status === 'training' && Number(r.dataset.frames || 0) >= 3
                && Number(r.dataset.lastStep) < {TOTAL_STEPS};
        }}""",
        timeout=WIDGET_SHOWN_MS,
    )
    live = page.locator(".nbx-root").first
    step_text = live.locator("[data-role=step]").inner_text()
    live_step = int(step_text.split("/")[0])
    assert 0 < live_step < TOTAL_STEPS, step_text
    assert live.locator("[data-role=mask]").get_attribute("data-painted") == "true"
    live.screenshot(path=str(ARTIFACTS / "widget-training.png"))
    first = page.evaluate(f"() => ({{...{ROOT_JS}.dataset}})")
    # More frames keep coming while the kernel is still training (not all at the end).
    page.wait_for_function(
        f"""() => {{
            const r = {ROOT_JS};
            return r.dataset.status === 'training' && Number(r.dataset.frames) >= {int(first["frames"]) + 2}
                && Number(r.dataset.lastStep) > {int(first["lastStep"])};
        }}""",
        timeout=WIDGET_SHOWN_MS,
    )
    later = page.evaluate(f"() => ({{...{ROOT_JS}.dataset}})")
    # Arrived later, in another message (the throttle's pacing is unit-tested with a fake clock).
    assert int(later["lastFrameMs"]) > int(first["lastFrameMs"]), (first, later)

    # 2. Training ends: the widget settles, then its output gets the static PNG beside the
    #    widget (for GitHub/nbviewer); JupyterLab re-renders that output from synced state.
    live_view = page.evaluate_handle(ROOT_JS)
    # The necessary half streams its region once its steps start (drawn over the mask's, by default).
    page.wait_for_function("r => Number(r.dataset.necessaryWhileTraining || 0) >= 1 && r.dataset.half === 'both'",
                           arg=live_view, timeout=TRAINING_DONE_MS)
    wait_for_static_png(page, 2, TRAINING_DONE_MS)
    page.wait_for_function(
        f"old => {{ const r = {ROOT_JS}; return r && r !== old && r.dataset.status === 'done'; }}",
        arg=live_view,
        timeout=CHANNEL_ANSWER_MS,
    )
    assert live.locator("[data-role=step]").inner_text().startswith(str(TOTAL_STEPS))
    for role in ("prob-original", "prob-explanation", "area"):
        assert live.locator(f"[data-role={role}]").inner_text() != "\u2014", role
    assert live.locator("[data-role=circuit]").is_visible()
    line = _check_halves(page, live)

    # 3. Click a channel node: its activation maps come back from the kernel.
    nodes = live.locator(".nbx-node.nbx-channel")
    assert nodes.count() > 0
    nodes.first.locator("circle").hover()
    assert live.locator("svg.nbx-graph.nbx-tracing").count() == 1, "hover highlights the node's paths"
    nodes.first.locator("circle").click()
    panel = live.locator("[data-role=channel-panel]")
    page.wait_for_function(
        f"""() => {ROOT_JS}.querySelector('[data-role=channel-panel]').dataset.state === 'ready'""",
        timeout=CHANNEL_ANSWER_MS,
    )
    assert panel.is_visible()
    for role in ("map-original", "map-explanation"):
        canvas = panel.locator(f"canvas[data-role={role}]")
        assert canvas.get_attribute("data-painted") == "true"
        drawn = canvas.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let opaque = 0; for (let i = 3; i < d.length; i += 4) opaque += d[i] === 255;
                      return {w: c.width, h: c.height, opaque}; }"""
        )
        assert drawn["w"] > 0 and drawn["h"] > 0 and drawn["opaque"] == drawn["w"] * drawn["h"], drawn
    assert "channel" in panel.locator(".nbx-channel-title").inner_text()

    # 4. The toggle: difference, then the original circuit.
    for view in ("difference", "original"):
        live.locator(f"button[data-view={view}]").click()
        assert live.locator(f"button[data-view={view}]").get_attribute("aria-pressed") == "true"
        assert live.locator(".nbx-circuit-view").get_attribute("data-view") == view
        assert live.locator(".nbx-node").count() > 0
    live.locator("button[data-view=explanation]").click()
    live.locator(".nbx-node.nbx-channel").first.locator("circle").click()
    page.wait_for_function(
        f"""() => {ROOT_JS}.querySelector('[data-role=channel-panel]').dataset.state === 'ready'""",
        timeout=CHANNEL_ANSWER_MS,
    )
    page.mouse.move(0, 0)  # no hover highlight in the screenshot
    live.screenshot(path=str(ARTIFACTS / "widget-settled.png"))

    # 5. The result shown again (cell 3) comes back whole from synced state.
    page.wait_for_function("() => document.querySelectorAll('.nbx-root').length >= 2", timeout=CHANNEL_ANSWER_MS)
    again = page.locator(".nbx-root").nth(1)
    again.scroll_into_view_if_needed()
    assert again.get_attribute("data-status") == "done"
    assert again.get_attribute("data-frames") is None, "no frames: everything came from state"
    assert again.locator("[data-role=mask]").get_attribute("data-painted") == "true"
    assert again.locator(".nbx-node").count() > 0
    assert again.locator("[data-role=necessary]").inner_text() == line
    page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))

    # 6. Dark theme: the widget follows JupyterLab's theme variables.
    light = again.evaluate("el => getComputedStyle(el).color")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function(
        f"() => getComputedStyle(document.querySelectorAll('.nbx-root')[1]).color !== {json.dumps(light)}",
        timeout=30_000,
    )
    live.scroll_into_view_if_needed()
    live.screenshot(path=str(ARTIFACTS / "widget-dark.png"))

    # 7. Interrupting the kernel mid-training: the widget says so and keeps the best mask.
    page.evaluate(
        """async (code) => {
            const app = window.jupyterapp;
            const nb = app.shell.currentWidget;
            nb.content.activeCellIndex = nb.content.widgets.length - 1;
            await app.commands.execute('notebook:insert-cell-below');
            nb.content.activeCell.model.sharedModel.setSource(code);
            void app.commands.execute('notebook:run-cell');
        }""",
        "res2 = explainer.explain(photo, steps=5000, min_steps=5000, mask_resolution=24)",
    )
    page.wait_for_function(
        """() => { const r = document.querySelectorAll('.nbx-root')[2];
                   return r && r.dataset.status === 'training' && Number(r.dataset.frames || 0) >= 3; }""",
        timeout=WIDGET_SHOWN_MS,
    )
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.interrupt()")
    page.wait_for_function(
        "() => document.querySelectorAll('.nbx-root')[2].dataset.status === 'interrupted'", timeout=CHANNEL_ANSWER_MS
    )
    stopped = page.locator(".nbx-root").nth(2)
    assert stopped.locator("[data-role=status]").inner_text() == "interrupted"
    assert "nterrupted" in stopped.locator("[data-role=note]").inner_text()
    assert stopped.locator("[data-role=mask]").get_attribute("data-painted") == "true"
    assert int(stopped.locator("[data-role=step]").inner_text().split("/")[0]) < 5000
    # The interrupt still reached the cell: it ends with KeyboardInterrupt and the kernel is free again.
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.textContent.includes('KeyboardInterrupt'))
                 && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'""",
        timeout=CHANNEL_ANSWER_MS,
    )
    stopped.scroll_into_view_if_needed()
    stopped.screenshot(path=str(ARTIFACTS / "widget-interrupted.png"))

    widget_errors = [e for e in page.errors if "nbx" in e or "nbexplain" in e or "anywidget" in e]
    assert not widget_errors, widget_errors


def _check_halves(page, live) -> str:
    """The settled widget shows the sufficient mask, the necessary region (red) or both: each view
    changes the explanation's picture, and the necessary one differs from x just on its region.
    Returns the necessary line."""
    assert live.locator("[data-role=halves]").is_visible()
    line = live.locator("[data-role=necessary]").inner_text()
    assert line.startswith("necessary: "), line
    found = not line.startswith("necessary: none")
    assert live.locator("button[data-half=both]").get_attribute("aria-pressed") == "true", "both halves by default"
    live.locator("canvas[data-role=image]").evaluate(SNAPSHOT_JS, "input")
    for half in ("sufficient", "necessary", "both"):
        live.locator(f"button[data-half={half}]").click()
        assert live.locator(f"button[data-half={half}]").get_attribute("aria-pressed") == "true"
        assert live.get_attribute("data-half") == half
        live.locator("canvas[data-role=explanation]").evaluate(SNAPSHOT_JS, half)
        if half == "necessary":
            live.screenshot(path=str(ARTIFACTS / "widget-necessary.png"))

    def differ(a, b):
        return page.evaluate(DIFFER_JS, [a, b])

    assert differ("sufficient", "necessary") > 0.01, "the necessary view is x, not the explanation"
    region = differ("input", "necessary")  # red only where the region is
    assert (0 < region < 0.5) if found else region == 0, (line, region)
    assert (differ("sufficient", "both") > 0) == found, line
    assert live.locator("canvas[data-role=mask]").get_attribute("data-painted") == "true"
    return line
