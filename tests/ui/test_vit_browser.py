"""A transformer's circuit in the widget, in a real browser: heads and MLP units as nodes, a head's map.

Runs tests/ui/vit_widget_demo.ipynb (the bundled ViT on a scene) in JupyterLab with Debian's
chromium, waits for the settled widget, checks the circuit's columns are the blocks' heads and
units, clicks a head and checks its maps come back from the kernel; keeps
test-artifacts/widget-vit.png.
"""

from __future__ import annotations

from pathlib import Path

from ._lab import open_and_run_all, wait_for_static_png

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parents[1] / "test-artifacts"
NOTEBOOK = HERE / "vit_widget_demo.ipynb"
ROOT_JS = "document.querySelectorAll('.nbx-root')[0]"
KERNEL_READY_MS, DONE_MS, ANSWER_MS = 120_000, 300_000, 60_000


def test_vit_circuit_shows_heads_and_units(lab, page):
    try:
        _check(lab, page)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure-vit.png"))
        page.locator(".nbx-root").first.screenshot(path=str(ARTIFACTS / "failure-vit-widget.png"))
        raise


def _check(lab, page):
    open_and_run_all(lab, page, NOTEBOOK.name, KERNEL_READY_MS)
    page.wait_for_selector(".nbx-root", timeout=DONE_MS)
    # When training ends the output gets the static PNG beside the widget, and JupyterLab renders the
    # widget anew from synced state: work on that one.
    wait_for_static_png(page, 2, DONE_MS)
    page.wait_for_function(f"() => {{ const r = {ROOT_JS}; return r && r.dataset.status === 'done'; }}",
                           timeout=ANSWER_MS)
    page.wait_for_timeout(1000)  # let the re-rendered view settle
    live = page.locator(".nbx-root").first
    assert live.locator("[data-role=circuit]").is_visible()
    columns = [t.strip() for t in live.locator("text.nbx-column").all_text_contents()]
    assert any(c.endswith("heads") for c in columns) and any(c.endswith("units") for c in columns), columns
    labels = [t.strip() for t in live.locator(".nbx-node.nbx-channel text").all_text_contents() if t.strip()]
    assert any(t.startswith("h") for t in labels) and any(t.startswith("u") for t in labels), labels

    head = live.locator(".nbx-node.nbx-channel").first  # the first column: block 0's heads
    head.locator("circle").hover()
    head.locator("circle").click()
    page.wait_for_function(
        f"() => {ROOT_JS}.querySelector('[data-role=channel-panel]').dataset.state === 'ready'", timeout=ANSWER_MS)
    panel = live.locator("[data-role=channel-panel]")
    assert "head" in panel.locator(".nbx-channel-title").inner_text()
    for role in ("map-original", "map-explanation"):
        assert panel.locator(f"canvas[data-role={role}]").get_attribute("data-painted") == "true"
    page.mouse.move(0, 0)
    ARTIFACTS.mkdir(exist_ok=True)
    live.screenshot(path=str(ARTIFACTS / "widget-vit.png"))
