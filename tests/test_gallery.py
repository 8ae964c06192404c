"""The audit gallery's Python side: the wire format, the live fill-in, clicks and selection
from the browser, the detail panel, the static fallback and the contact sheet.

Messages are captured at the comm (what would go on the wire); browser messages come in
through the widget's own comm message handler, as in tests/test_widget.py. One small real
audit serves the whole module.
"""

import base64
import io
from pathlib import Path

import comm
import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain
from nbexplain.audits import Audit
from nbexplain.datasets import make_scenes
from nbexplain.widget import ExplanationWidget
from nbexplain.widget import gallery as gallery_module
from nbexplain.widget._gallery_wire import encode_row, pack_rows, shrink_mask, unpack_bits
from nbexplain.widget.gallery import GalleryWidget, gallery_of, live_gallery
from nbexplain.zoo import load_model

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "nbexplain" / "widget" / "static"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# --------------------------------------------------------------------------- fixtures
class RecordingComm(comm.DummyComm):
    """A comm that keeps every message its widget publishes."""

    def __init__(self, *args, **kwargs):
        self.messages = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg":
            data = data or {}
            self.messages.append((data.get("method"), data.get("content", data.get("state", {})),
                                  [bytes(b) for b in buffers or []]))


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", RecordingComm)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real audit of 12 scenes by the shortcut model (about 10 s), with its model."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("audit")
    zoo = load_model("shortcut")
    scenes = make_scenes(12, seed=0)
    a = nbexplain.audit(zoo, scenes, out=out, config="fast", circuits=False, progress=False, gallery=False)
    return {"audit": a, "out": out, "zoo": zoo, "scenes": scenes}


@pytest.fixture
def audit(run):
    return run["audit"]


def custom(w, kind):
    return [(c, b) for method, c, b in w.comm.messages if method == "custom" and c.get("type") == kind]


def updates(w):
    return [c for method, c, _ in w.comm.messages if method == "update"]


def from_browser(w, content):
    """A custom message as the browser sends it."""
    w._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def browser_sets(w, **state):
    """A trait change made in the browser (model.set + save_changes)."""
    w._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def decoded_rows(columns, thumbs, masks):
    """The front end's split of the blobs (js/src/gallery/rows.js), in Python."""
    out, t, m = {}, 0, 0
    for k, image_id in enumerate(columns["id"]):
        w, h, n = columns["thumb_w"][k], columns["thumb_h"][k], columns["thumb_len"][k]
        nm = -(-w * h // 8) if n else 0
        out[image_id] = (thumbs[t:t + n], masks[m:m + nm], w, h)
        t, m = t + n, m + nm
    assert t == len(thumbs) and m == len(masks)
    return out


# --------------------------------------------------------------------------- wire format
def test_a_row_travels_as_its_jpeg_and_its_mask_packed_at_thumbnail_size(audit):
    from PIL import Image

    record = audit.store.read_rows().slice(0, 1).to_pylist()[0]
    row = encode_row(record)
    assert row.thumb == record["thumb"] and row.thumb[:2] == b"\xff\xd8"  # the stored JPEG, untouched
    with Image.open(io.BytesIO(row.thumb)) as im:
        assert (row.thumb_w, row.thumb_h) == im.size
    assert len(row.mask) == -(-row.thumb_w * row.thumb_h // 8)  # one bit per thumbnail pixel
    small = unpack_bits(row.mask, row.thumb_h, row.thumb_w)
    assert np.array_equal(small, shrink_mask(audit.mask(row.id), row.thumb_h, row.thumb_w))
    full = audit.mask(row.id)
    assert abs(small.mean() - full.mean()) < 0.02  # the same share kept, at a coarser grain
    assert row.meta["id"] == record["id"] and row.meta["target"] == record["target"]
    assert row.meta["area"] == pytest.approx(record["area"], abs=1e-4)


def test_shrinking_keeps_a_thin_stroke_and_rows_without_pixels_travel_empty():
    mask = np.zeros((128, 128), bool)
    mask[:, 60:62] = True  # 2 pixels wide at 128: 1 pixel at 64, not lost to sampling
    assert shrink_mask(mask, 64, 64)[:, 30].all()
    failed = encode_row({"id": 7, "key": "7", "label": 1, "error": "ValueError: unreadable", "thumb": None,
                         "mask_bits": None})
    assert (failed.thumb, failed.mask, failed.thumb_w) == (b"", b"", 0)
    columns, thumbs, masks = pack_rows([failed])
    assert columns["error"] == ["ValueError: unreadable"] and columns["pred"] == [None]
    assert columns["thumb_len"] == [0] and thumbs == masks == b""


def test_nan_and_missing_values_travel_as_null(audit):
    df = audit._rows.iloc[:1].copy()
    df["prob_original"] = np.nan
    df["label"] = None
    row = encode_row(df.to_dict("records")[0])
    assert row.meta["prob"] is None and row.meta["label"] is None and row.meta["error"] is None


# --------------------------------------------------------------------------- live fill-in
def test_rows_stream_as_messages_and_fold_into_state_as_the_stream_outgrows_it(recording, audit, monkeypatch):
    monkeypatch.setattr(gallery_module, "FOLD_MIN", 4)
    table = audit.store.read_rows()
    w = GalleryWidget(labels=audit.labels)
    w.add_rows(table.slice(0, 2))  # the first rows go into state: a view rendered late still gets them
    assert w.rows["id"] == [0, 1] and custom(w, "rows") == []
    w.add_rows(table.slice(2, 2))  # streamed 2 < max(2 in state, FOLD_MIN 4): a message
    w.add_rows(table.slice(4, 2))  # streamed 4 >= 4: folded into state, no message
    assert w.rows["id"] == list(range(6))
    w.add_rows(table.slice(6, 2))
    w.add_rows(table.slice(8, 2))
    assert w.rows["id"] == list(range(6)), "state untouched while the stream is smaller than it"
    messages = custom(w, "rows")
    assert [c["rows"]["id"] for c, _ in messages] == [[2, 3], [6, 7], [8, 9]]
    for content, buffers in messages:
        assert len(buffers) == 2  # thumbnails and masks as binary buffers, not base64
        got = decoded_rows(content["rows"], buffers[0], buffers[1])
        for image_id, (thumb, mask, tw, th) in got.items():
            assert thumb == audit.thumbnail(image_id)
            assert np.array_equal(unpack_bits(mask, th, tw), shrink_mask(audit.mask(image_id), th, tw))
    w.add_rows(table.slice(10, 2))  # streamed 6 >= 6 in state: fold
    assert w.rows["id"] == list(range(12)) and len(custom(w, "rows")) == 3
    state, paths, buffers = _remove_buffers(w.get_state())
    assert ["thumbs"] in paths and ["masks"] in paths
    got = decoded_rows(w.rows, w.thumbs, w.masks)
    assert sorted(got) == list(range(12))
    assert w.grouped is False and w.groups == []
    w.add_rows(table.slice(0, 0))  # an empty shard (a resumed audit with nothing stored) sends nothing
    assert len(custom(w, "rows")) == 3


def test_state_re_sends_add_up_to_about_twice_the_rows(recording, audit):
    import pyarrow as pa

    table = audit.store.read_rows()
    w = GalleryWidget()
    sent_in_state = 0
    for k in range(40):  # 480 rows, 12 a shard (a gallery keys rows by id: give each shard new ids)
        before = len(w.rows.get("id", []))
        w.add_rows(table.set_column(0, "id", pa.array([int(i) + 12 * k for i in table["id"].to_pylist()])))
        after = len(w.rows.get("id", []))
        sent_in_state += after if after != before else 0
    assert len(w._wire) == 480
    assert sent_in_state <= 2.5 * 480, sent_in_state


def test_show_audit_settles_on_groups_and_every_row(recording, audit):
    w = GalleryWidget(labels=audit.labels)
    w.add_rows(audit.store.read_rows().slice(0, 5))
    w.show_audit(audit)
    assert w.grouped and w.audit is audit
    assert sorted(w.rows["id"]) == sorted(audit._rows.index.tolist())
    assert [g["index"] for g in w.groups] == [g.index for g in audit.groups]
    for sent, g in zip(w.groups, audit.groups):
        assert sent["ids"] == g.indices.tolist() and sent["representative"] == g.representative
        assert sent["suspicion"] == pytest.approx(g.suspicion, abs=1e-4)
        assert sent["target_name"] == g.target_name and sent["size"] == g.size
        for key in ("transplant", "same_place", "accuracy", "mean_area"):
            assert sent[key] is None or sent[key] == pytest.approx(getattr(g, key), abs=1e-4)
    side = w.map_side
    assert side == audit.groups[0].shared_map.shape[0]
    assert len(w.group_maps) == len(audit.groups) * side * side
    first = np.frombuffer(w.group_maps[: side * side], np.uint8).reshape(side, side)
    assert np.abs(first / 255 - audit.groups[0].shared_map).max() <= 0.5 / 255 + 1e-6
    _, paths, _ = _remove_buffers(w.get_state())
    assert ["group_maps"] in paths
    assert w.labels == list(audit.labels)


def test_the_live_audit_fills_the_gallery_and_ends_with_its_groups(recording, run, monkeypatch):
    """nbexplain.audit(..., gallery=True) in a kernel: resuming the stored run shows its rows at once."""
    import IPython.display

    handles = []

    class Handle:
        def __init__(self):
            self.updates = []

        def update(self, obj, **kw):
            self.updates.append((obj, kw))

    def fake_display(obj, **kw):
        handles.append((obj, Handle()))
        return handles[-1][1]

    monkeypatch.setattr(IPython.display, "display", fake_display)
    again = nbexplain.audit(run["zoo"], run["scenes"], out=run["out"], config="fast", circuits=False,
                            progress=False, gallery=True)
    ((view, handle),) = handles
    assert isinstance(view, GalleryWidget) and again._gallery is view
    assert view.grouped and sorted(view.rows["id"]) == list(range(12))
    assert view.total == 12  # the status line says "explained N of 12" while it runs
    ((bundle, kw),) = handle.updates  # the end of the audit adds the static picture
    assert kw == {"raw": True}
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert bundle[WIDGET_VIEW]["model_id"] == view._box.model_id


# --------------------------------------------------------------------------- clicks
def test_a_click_opens_the_explanation_in_the_detail_panel(recording, audit):
    w = gallery_of(audit)
    image_id = audit.groups[0].representative
    from_browser(w, {"type": "open", "id": image_id})
    ((reply, _),) = custom(w, "opened")
    assert reply == {"type": "opened", "id": image_id, "ok": True, "message": "explanation"}
    assert w.opened == image_id
    text, shown = w.detail.outputs
    assert f"image {image_id}" in text["data"]["text/html"] and "Audit.load" not in text["data"]["text/html"]
    assert isinstance(w._detail_widget, ExplanationWidget)
    assert shown["data"][WIDGET_VIEW]["model_id"] == w._detail_widget.model_id
    assert w._detail_widget.status == "done"
    # The same seed: the explanation shown is the stored one.
    mask = np.frombuffer(w._detail_widget.mask, np.uint8).reshape(w._detail_widget.mask_shape) > 127
    stored = audit.mask(image_id)
    if mask.shape == stored.shape:
        assert (mask == stored).mean() > 0.98
    # Opening another image releases the previous explanation widget.
    previous = w._detail_widget
    other = next(i for i in audit._rows.index if i != image_id)
    from_browser(w, {"type": "open", "id": int(other)})
    assert previous.comm is None and w._detail_widget is not previous and w.opened == other


def test_without_its_model_a_click_shows_the_stored_mask_and_how_to_reopen(recording, run):
    stored = Audit.load(run["out"])
    w = stored.gallery()
    image_id = stored.groups[0].representative
    from_browser(w, {"type": "open", "id": image_id})
    ((reply, _),) = custom(w, "opened")
    assert reply["ok"] is False and reply["id"] == image_id
    text, picture = w.detail.outputs
    html = text["data"]["text/html"]
    assert "Audit.load(" in html and "model=..." in html and str(run["out"]) in html
    assert "p(x)" in html and "area kept" in html
    png = base64.b64decode(picture["data"]["image/png"])
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        assert max(im.size) == 192
    assert w._detail_widget is None


@pytest.mark.parametrize("message, says", [
    ({"type": "open", "id": "seven"}, "not an image id"),
    ({"type": "open"}, "not an image id"),
    ({"type": "open", "id": 10_000}, "not in this audit"),
])
def test_bad_clicks_get_an_answer_not_an_exception(recording, audit, message, says):
    w = gallery_of(audit)
    from_browser(w, message)
    ((reply, _),) = custom(w, "opened")
    assert reply["ok"] is False and says in reply["message"]


def test_a_click_before_the_audit_finished_says_so_and_unknown_messages_are_ignored(recording, audit):
    w = GalleryWidget()
    w.add_rows(audit.store.read_rows().slice(0, 3))
    from_browser(w, {"type": "open", "id": 1})
    ((reply, _),) = custom(w, "opened")
    assert reply["ok"] is False and "not finished" in reply["message"]
    from_browser(w, {"type": "nonsense"})
    from_browser(w, ["not", "a", "dict"])
    assert len(custom(w, "opened")) == 1


# --------------------------------------------------------------------------- selection
def test_selection_made_in_the_browser_is_the_rows_of_the_audit_table(recording, audit):
    w = gallery_of(audit)
    ids = [int(i) for i in audit.groups[0].indices[:2]] + [int(audit._rows.index[-1])]
    browser_sets(w, selected_ids=ids)
    assert w.selected_ids == ids
    sel = w.selection
    assert list(sel.index) == ids
    assert sel.equals(audit.table.loc[ids])
    assert {"group", "suspicion", "area", "prob_original"} <= set(sel.columns)
    assert "thumb" not in sel.columns and "mask_bits" not in sel.columns


def test_selection_set_in_python_goes_to_the_browser(recording, audit):
    w = gallery_of(audit)
    w.selected_ids = [3, 1]
    assert {"selected_ids": [3, 1]} in updates(w)
    assert list(w.selection.index) == [3, 1]
    w.selected_ids = [1, 999]  # ids not in the audit are not rows
    assert list(w.selection.index) == [1]


def test_selection_while_the_audit_runs_gives_the_rows_so_far(recording, audit):
    w = GalleryWidget()
    w.add_rows(audit.store.read_rows().slice(0, 4))
    w.selected_ids = [2, 0]
    sel = w.selection
    assert list(sel.index) == [2, 0] and "thumb" not in sel.columns
    assert list(sel["id"]) == [2, 0]
    assert GalleryWidget().selection.empty


# --------------------------------------------------------------------------- display
def test_displayed_gallery_brings_its_detail_panel_and_a_static_picture(recording, audit):
    w = gallery_of(audit)
    bundle = w._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == w._box.model_id
    assert w._box.children == (w, w.detail)
    png = base64.b64decode(bundle["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "groups" in bundle["text/plain"] and "Audit of 12 images" in bundle["text/plain"]
    live = GalleryWidget()
    assert "image/png" not in live._repr_mimebundle_() and "not grouped yet" in repr(live)
    w.close()
    assert w.comm is None and w.detail.comm is None and w._box.comm is None


def test_rerunning_a_cell_closes_its_previous_gallery(recording, monkeypatch):
    import IPython.display

    from nbexplain.widget import _live

    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: None)
    monkeypatch.setattr(_live, "_CELLS", _live.CellWidgets())
    monkeypatch.setattr(_live, "current_cell", lambda: ("cell", "run-1"))
    first = live_gallery(labels=["a"])
    monkeypatch.setattr(_live, "current_cell", lambda: ("cell", "run-2"))
    second = live_gallery(labels=["a"])
    assert first.comm is None and first.detail.comm is None and second.comm is not None


# --------------------------------------------------------------------------- contact sheet
def test_contact_sheet_shows_the_map_the_figures_and_the_members_with_outlines(audit):
    from matplotlib.figure import Figure

    g = max(audit.groups, key=lambda g: g.size)
    fig = audit.contact_sheet(g)
    assert isinstance(fig, Figure)
    title = fig._suptitle.get_text()
    for word in (g.target_name, "suspicion", "transplant", "same place", "off object", "accuracy"):
        assert word in title
    axes = fig.axes
    map_ax, thumbs = axes[0], axes[1:]
    assert map_ax.get_title() == "shared evidence"
    assert np.allclose(map_ax.images[0].get_array(), g.shared_map)
    drawn = [ax for ax in thumbs if ax.images]
    assert len(drawn) == g.size
    assert str(g.representative) in drawn[0].get_title()  # the representative leads
    with_outline = [ax for ax in drawn if ax.collections]
    assert with_outline, "kept regions are outlined"
    # Pixels outside the mask are dimmed.
    img = np.asarray(drawn[0].images[0].get_array())
    from nbexplain.audits.sheet import _resize_mask

    small = _resize_mask(audit.mask(g.representative), *img.shape[:2])
    if small.any() and not small.all():
        assert img[~small].mean() < img[small].mean()


def test_contact_sheet_limits_its_thumbnails_and_checks_its_arguments(audit):
    g = max(audit.groups, key=lambda g: g.size)
    fig = audit.contact_sheet(g, max_images=2, columns=2)
    assert len([ax for ax in fig.axes[1:] if ax.images]) == 2
    assert "first 2 shown" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="at least 1"):
        audit.contact_sheet(0, max_images=0)
    png = audit._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the built front end
def test_gallery_ships_its_bundle_without_cdn_imports():
    import re

    esm = str(GalleryWidget._esm)
    assert "export" in esm and "render" in esm and "bundle is missing" not in esm
    assert not re.findall(r"""(?:\bfrom|\bimport)\s*\(?\s*["']https?://""", esm)
    assert "nbxg-root" in str(GalleryWidget._css)
