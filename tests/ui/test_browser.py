"""The widget in a real browser: JupyterLab on localhost, Debian's chromium driven by Playwright.

Runs tests/ui/widget_demo.ipynb, checks that live frames arrive while the mask
trains (not only at the end), that the settled widget shows its circuit, that
clicking a channel node brings its activation maps from the kernel, and keeps
screenshots in test-artifacts/.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and the Playwright
Python package (no browser download: the system chromium is used).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOK = HERE / "widget_demo.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TOTAL_STEPS = 150  # as in the notebook

# Generous but bounded waits (milliseconds), for slow shared CI machines.
SERVER_START_S = 120
KERNEL_READY_MS = 120_000
WIDGET_SHOWN_MS = 240_000
TRAINING_DONE_MS = 300_000
CHANNEL_ANSWER_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _shutdown_kernels(base: str, token: str) -> None:
    """Ask the server to stop its kernels (they run in their own sessions)."""
    try:
        kernels = json.loads(_get(f"{base}/api/kernels?token={token}"))
        for kernel in kernels:
            request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()
    except (OSError, ValueError):
        pass  # the server is already gone; terminating it below still runs


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free localhost port, stopped whatever happens."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    work = tmp_path_factory.mktemp("lab")
    notebooks = work / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOK, notebooks / NOTEBOOK.name)
    # No "official Jupyter news?" toast over the widget.
    news = work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.pop("NBEXPLAIN_WIDGET", None)  # the kernel must detect the front end by itself
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
        OMP_NUM_THREADS="1",
    )
    command = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells without keyboard tricks
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log_path = work / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, cwd=notebooks, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status?token={token}", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"base": base, "token": token}
    finally:
        _shutdown_kernels(base, token)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the group this test started, nothing else
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "jupyterlab-server.log")


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            page = context.new_page()
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.errors = errors
            yield page
        finally:
            browser.close()


ROOT_JS = "document.querySelectorAll('.nbx-root')[0]"


def test_widget_streams_frames_then_opens_a_channel(lab, page):
    try:
        _check_widget(lab, page)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure.png"))
        raise


def _check_widget(lab, page):
    page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}")
    page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const nb = app && app.shell.currentWidget;
            const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
            return nb && nb.content && nb.content.widgets && kernel && kernel.status === 'idle';
        }""",
        timeout=KERNEL_READY_MS,
    )
    # Start the run without awaiting it (the command's promise resolves when every cell is done).
    page.evaluate(
        """() => {
            window.jupyterapp.shell.collapseLeft();
            void window.jupyterapp.commands.execute('notebook:run-all-cells');
        }"""
    )

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
    page.wait_for_function(
        """() => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[2];
            const outputs = cell.model.outputs;
            for (let i = 0; i < outputs.length; i++) {
                const data = outputs.get(i).data;
                if (data['image/png'] && data['application/vnd.jupyter.widget-view+json']) return true;
            }
            return false;
        }""",
        timeout=TRAINING_DONE_MS,
    )
    page.wait_for_function(
        f"old => {{ const r = {ROOT_JS}; return r && r !== old && r.dataset.status === 'done'; }}",
        arg=live_view,
        timeout=CHANNEL_ANSWER_MS,
    )
    assert live.locator("[data-role=step]").inner_text().startswith(str(TOTAL_STEPS))
    for role in ("prob-original", "prob-explanation", "area"):
        assert live.locator(f"[data-role={role}]").inner_text() != "\u2014", role
    assert live.locator("[data-role=circuit]").is_visible()

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
