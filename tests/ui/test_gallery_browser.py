"""The audit gallery in a real browser: JupyterLab on localhost, Debian's chromium via Playwright.

Runs tests/ui/gallery_demo.ipynb: checks that thumbnails appear while the audit runs (counted
at two times before it ends), that the groups render once it ends, that a filter hides what it
should, that clicking a thumbnail opens the image's explanation widget in the panel below,
and that thumbnails selected in the browser are the rows the kernel's ``view.selection`` has
(and the other way round). Screenshots go to test-artifacts/gallery*.png.

The server and browser fixtures are in conftest.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ._lab import open_and_run_all

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOK = HERE / "gallery_demo.ipynb"
N_IMAGES = 30  # as in the notebook

# Generous but bounded waits (milliseconds), for slow shared CI machines.
KERNEL_READY_MS = 120_000
GALLERY_SHOWN_MS = 240_000
AUDIT_DONE_MS = 480_000
ANSWER_MS = 120_000

LIVE = "document.querySelectorAll('.nbxg-root')[0]"
AGAIN = "document.querySelectorAll('.nbxg-root')[1]"


def test_gallery_fills_in_live_then_filters_opens_and_selects(lab, page):
    try:
        _check_gallery(lab, page)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "gallery-failure.png"), full_page=True)
        raise


def _check_gallery(lab, page):
    page.set_viewport_size({"width": 1400, "height": 2400})  # tall: whole galleries in the screenshots
    open_and_run_all(lab, page, NOTEBOOK.name, KERNEL_READY_MS)

    # 1. While the audit runs: thumbnails appear by class, more of them later.
    page.wait_for_function(
        f"""() => {{ const r = {LIVE};
                     return r && r.dataset.grouped === 'false' && Number(r.dataset.rows || 0) > 0
                         && r.querySelector('.nbxg-thumb canvas[data-painted=true]'); }}""",
        timeout=GALLERY_SHOWN_MS,
    )
    first = int(page.evaluate(f"() => {LIVE}.dataset.rows"))
    page.wait_for_function(
        f"() => {{ const r = {LIVE}; return r.dataset.grouped === 'false' && Number(r.dataset.rows) > {first}; }}",
        timeout=GALLERY_SHOWN_MS,
    )
    live = page.locator(".nbxg-root").first
    later = int(live.get_attribute("data-rows"))
    assert 0 < first < later < N_IMAGES, (first, later)
    assert live.locator("[data-kind=class]").count() >= 1, "not grouped yet: thumbnails by class"
    assert "not grouped yet" in live.locator("[data-role=status]").inner_text()
    assert int(live.get_attribute("data-messages") or 0) >= 1, "rows arrived as messages while the audit ran"
    live.screenshot(path=str(ARTIFACTS / "gallery-live.png"))

    # 2. The audit ends: the groups, most suspicious first, each with its shared evidence map.
    page.wait_for_function(
        f"() => {{ const r = {LIVE}; return r && r.dataset.grouped === 'true'; }}", timeout=AUDIT_DONE_MS
    )
    live = page.locator(".nbxg-root").first
    assert f"explained {N_IMAGES} images" in live.locator("[data-role=status]").inner_text()
    groups = live.locator(".nbxg-group[data-kind=group]")
    assert groups.count() >= 2
    heads = [groups.nth(k).locator(".nbxg-group-head").inner_text() for k in range(groups.count())]
    suspicions = [float(re.search(r"suspicion (\d\.\d\d)", h).group(1)) for h in heads]
    assert suspicions == sorted(suspicions, reverse=True), heads
    for k in range(groups.count()):
        assert groups.nth(k).locator("canvas[data-role=shared-map]").get_attribute("data-painted") == "true"
        for word in ("transplant", "same place", "accuracy"):
            assert word in heads[k]
    page.wait_for_function(
        f"""() => {{ const t = {LIVE}.querySelectorAll('.nbxg-thumb canvas');
                     return t.length > 0 && [...t].every(c => c.dataset.painted === 'true'); }}""",
        timeout=ANSWER_MS,
    )
    assert int(live.get_attribute("data-images")) == N_IMAGES
    _wait_idle(page)
    live.scroll_into_view_if_needed()
    live.screenshot(path=str(ARTIFACTS / "gallery.png"))

    # 3. Filters: wrong predictions only, then one class only.
    live.locator("[data-role=correct] button[data-value=wrong]").click()
    wrong = live.locator(".nbxg-thumb")
    assert 0 < wrong.count() and int(live.get_attribute("data-images")) < N_IMAGES
    assert all(wrong.nth(k).get_attribute("data-wrong") == "true" for k in range(wrong.count()))
    assert f"of {N_IMAGES} images" in live.locator("[data-role=shown]").inner_text()
    live.locator("[data-role=correct] button[data-value=all]").click()
    select = live.locator("select[data-role=class]")
    option = select.locator("option").nth(1)
    name = option.inner_text().rsplit(" (", 1)[0]
    count = int(option.inner_text().rsplit("(", 1)[1].rstrip(")"))
    select.select_option(index=1)
    names = live.locator(".nbxg-group .nbxg-name").all_inner_texts()
    assert names and all(n.endswith(name) for n in names), (name, names)
    assert int(live.get_attribute("data-images")) == count
    live.locator("[data-role=reset-filters]").click()
    assert int(live.get_attribute("data-images")) == N_IMAGES
    # Sorting: groups by size (largest first), images by kept area (smallest first).
    live.locator("select[data-role=group-order]").select_option("size")
    sizes = [int(t.split()[0]) for t in live.locator(".nbxg-group[data-kind=group] .nbxg-size").all_inner_texts()]
    assert sizes == sorted(sizes, reverse=True), sizes
    live.locator("select[data-role=group-order]").select_option("suspicion")
    live.locator("select[data-role=member-order]").select_option("area")
    captions = live.locator(".nbxg-group[data-kind=group]").first.locator(".nbxg-caption").all_inner_texts()
    areas = [float(c.rsplit(" ", 1)[1].rstrip("%")) for c in captions]
    assert areas == sorted(areas), captions
    live.locator("select[data-role=member-order]").select_option("representative")

    # 4. A click opens the image's explanation in the panel below the gallery.
    thumb = live.locator(".nbxg-group[data-kind=group]").first.locator(".nbxg-thumb").first
    opened_id = int(thumb.get_attribute("data-id"))
    thumb.click()
    page.wait_for_function(
        f"() => {LIVE}.dataset.opened === '{opened_id}'", timeout=ANSWER_MS
    )
    assert "explanation is shown below" in live.locator("[data-role=detail-status]").inner_text()
    output = page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea").first
    detail = output.locator(".nbx-root")
    detail.wait_for(timeout=ANSWER_MS)
    page.wait_for_function(
        """() => { const cell = window.jupyterapp.shell.currentWidget.content.widgets[2].node;
                   const r = cell.querySelector('.nbx-root');
                   return r && r.dataset.status === 'done'
                       && r.querySelector('[data-role=explanation]').dataset.painted === 'true'; }""",
        timeout=ANSWER_MS,
    )
    assert f"image {opened_id}" in output.inner_text()
    assert thumb.get_attribute("data-opened") == "true"
    page.mouse.move(0, 0)
    panel = output.locator(".widget-output")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACTS / "gallery-detail.png"))

    # 5. Selection, browser to kernel: ctrl-click two thumbnails of the gallery shown again
    #    (rebuilt from state), and select a whole group.
    page.wait_for_function(f"() => {{ const r = {AGAIN}; return r && r.dataset.grouped === 'true'; }}",
                           timeout=ANSWER_MS)
    again = page.locator(".nbxg-root").nth(1)
    again.scroll_into_view_if_needed()
    assert int(again.get_attribute("data-images")) == N_IMAGES
    assert again.get_attribute("data-messages") is None, "everything came from state"
    groups = again.locator(".nbxg-group[data-kind=group]")
    top = groups.first.locator(".nbxg-thumb")
    top.nth(0).click(modifiers=["Control"])
    if top.count() > 1:
        top.nth(1).click(modifiers=["Shift"])
    last = groups.nth(groups.count() - 1)  # another group: its button selects, not unselects
    last.locator("[data-action=select-group]").click()
    expected = sorted({int(x) for x in again.locator(".nbxg-thumb[aria-pressed=true]").evaluate_all(
        "els => els.map(e => e.dataset.id)")})
    assert len(expected) >= 2, expected
    assert again.get_attribute("data-selected") == str(len(expected))
    assert last.locator("[data-action=select-group]").inner_text() == "unselect group"
    _wait_idle(page)
    got = _run_cell(page, "print('SELECTED-IDS', json.dumps(sorted(view.selection.index.tolist())))",
                    "SELECTED-IDS", prelude="import json")
    assert json.loads(got.split("SELECTED-IDS", 1)[1].strip().splitlines()[0]) == expected
    table = _run_cell(page, "print('SELECTED-ROWS'); print(view.selection[['group', 'target', 'area']].to_string())",
                      "SELECTED-ROWS")
    assert all(re.search(rf"^\s*{i}\s", table, re.M) for i in expected), table
    again.screenshot(path=str(ARTIFACTS / "gallery-selection.png"))

    # 6. Selection, kernel to browser.
    _run_cell(page, "view.selected_ids = [0, 1]; print('SET-FROM-KERNEL')", "SET-FROM-KERNEL")
    page.wait_for_function(
        f"""() => {{ const on = [...{AGAIN}.querySelectorAll('.nbxg-thumb[aria-pressed=true]')].map(e => e.dataset.id);
                     return on.length === 2 && on.includes('0') && on.includes('1'); }}""",
        timeout=ANSWER_MS,
    )

    # 7. A thumbnail limit per group, and "show all".
    _run_cell(page, "view.max_per_group = 4; print('LIMIT-SET')", "LIMIT-SET")
    big = again.locator(".nbxg-group[data-kind=group]").first
    size = int(big.locator(".nbxg-size").inner_text().split()[0])
    assert size > 4
    page.wait_for_function(
        f"() => {AGAIN}.querySelector('.nbxg-group[data-kind=group]').querySelectorAll('.nbxg-thumb').length === 4",
        timeout=ANSWER_MS,
    )
    more = big.locator("[data-action=expand]")
    assert more.inner_text() == f"show all {size}"
    more.click()
    assert big.locator(".nbxg-thumb").count() == size
    assert big.locator("[data-action=expand]").inner_text() == "show fewer"

    gallery_errors = [e for e in page.errors if "nbxg" in e or "nbexplain" in e or "anywidget" in e]
    assert not gallery_errors, gallery_errors


def _wait_idle(page):
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=AUDIT_DONE_MS,
    )


def _run_cell(page, code: str, marker: str, prelude: str = "") -> str:
    """Append a cell, run it, and return the text of the output that contains ``marker``."""
    page.evaluate(
        """async (code) => {
            const app = window.jupyterapp;
            const nb = app.shell.currentWidget;
            nb.content.activeCellIndex = nb.content.widgets.length - 1;
            await app.commands.execute('notebook:insert-cell-below');
            nb.content.activeCell.model.sharedModel.setSource(code);
            await app.commands.execute('notebook:run-cell');
        }""",
        (prelude + "\n" + code).strip(),
    )
    handle = page.wait_for_function(
        """(marker) => { const outs = [...document.querySelectorAll('.jp-OutputArea-output')]
                             .filter(o => o.textContent.includes(marker));
                         return outs.length ? outs[outs.length - 1].textContent : false; }""",
        arg=marker,
        timeout=ANSWER_MS,
    )
    return handle.json_value()
