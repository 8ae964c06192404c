"""The audit gallery: groups of images decided by the same evidence, as rows of thumbnails.

While the audit runs, ``add_rows`` streams each written shard to the browser (thumbnails
appear by class, not grouped yet); ``show_audit`` settles on the groups. Clicking a thumbnail
opens its explanation in a detail panel below the gallery; selected thumbnails are synced to
``selected_ids`` both ways, and ``view.selection`` gives their rows.

Rows go out as custom messages while the audit runs and are folded into synced state every
time the streamed part outgrows the state part, so the state's re-sends add up to about twice
the data (not once per shard), and a view that missed early messages (rendered late, or
re-displayed) gets every row at the next fold and at the end.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping, Sequence

import anywidget
import ipywidgets
import traitlets

from ._bundle import bundle
from ._gallery_detail import describe, display_output, stored_picture, text_output
from ._gallery_wire import WireRow, encode_groups, encode_row, pack_rows, row_records

_ESM, _CSS = bundle("gallery", "the gallery")

#: Rows streamed as messages before the first fold into state (smaller audits fold at once).
FOLD_MIN = 64
_LIGHT_DROP = ("mask_bits", "thumb")


class GalleryWidget(anywidget.AnyWidget):
    """Groups of an audit as rows of thumbnails, with filters, selection and a detail panel.

    Display it (or ``Audit.gallery()``) to see it; ``selected_ids`` is synced both ways and
    ``selection`` returns the selected rows of ``audit.table``.
    """

    _esm, _css = _ESM, _CSS

    labels = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    # Rows folded into state: JSON columns, and every thumbnail (JPEG) and mask (packed bits) in one blob each.
    rows = traitlets.Dict().tag(sync=True)
    thumbs = traitlets.Bytes(b"").tag(sync=True)
    masks = traitlets.Bytes(b"").tag(sync=True)
    #: True once the audit's groups are in (before: thumbnails by class, "not grouped yet")
    grouped = traitlets.Bool(False).tag(sync=True)
    groups = traitlets.List().tag(sync=True)
    group_maps = traitlets.Bytes(b"").tag(sync=True)  # uint8 [n_groups, side, side]
    map_side = traitlets.Int(0).tag(sync=True)
    selected_ids = traitlets.List(traitlets.Int(), []).tag(sync=True)
    opened = traitlets.Int(-1, help="the image shown in the detail panel (-1: none)").tag(sync=True)
    total = traitlets.Int(0, help="images the running audit will explain (0: unknown)").tag(sync=True)
    max_per_group = traitlets.Int(24, help="thumbnails per group before 'show all'").tag(sync=True)

    def __init__(self, labels: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if labels is not None:
            self.labels = [str(x) for x in labels]
        self._wire: dict[int, WireRow] = {}  # every row by id, as sent
        self._in_state = 0  # rows folded into the synced state
        self._streamed = 0  # rows sent as messages since the last fold
        self._light: list = []  # the rows' light columns before an audit is in (for .selection)
        self._audit = None
        self._detail_widget = None
        #: the detail panel: the opened image's explanation, below the gallery
        self.detail = ipywidgets.Output(layout=ipywidgets.Layout(width="100%"))
        self._box = ipywidgets.VBox([self, self.detail])
        #: IPython DisplayHandle of the output showing this gallery (set by ``live_gallery``):
        #: once the audit is in, that output also gets the contact sheet's PNG.
        self.display_handle = None
        self.rows_messages = 0
        self.on_msg(self._on_message)

    # ------------------------------------------------------------------ feeding
    def add_rows(self, table: Any) -> None:
        """Show newly explained rows (a pyarrow Table of ``ROW_SCHEMA``), while the audit runs."""
        records = list(row_records(table))
        if not records:
            return
        new = [encode_row(r, self._wire) for r in records]
        for row in new:
            self._wire[row.id] = row
        if hasattr(table, "drop_columns"):
            self._light.append(table.drop_columns([c for c in _LIGHT_DROP if c in table.column_names]))
        self._streamed += len(new)
        if self._streamed >= max(self._in_state, FOLD_MIN) or len(self._wire) <= len(new):
            self._fold()
        else:
            columns, thumbs, masks = pack_rows(new)
            self.send({"type": "rows", "rows": columns}, buffers=[thumbs, masks])
            self.rows_messages += 1

    def show_audit(self, audit: Any) -> None:
        """Settle on a finished audit: its groups, most suspicious first, and every row."""
        self._audit = audit
        self._light = []
        wire = {}
        for record in row_records(audit.rows):
            row = encode_row(record, self._wire)
            wire[row.id] = row
        self._wire = wire
        groups, maps, side = encode_groups(audit.groups)
        known = set(self._wire)
        with self.hold_sync():
            if audit.labels is not None:
                self.labels = [str(x) for x in audit.labels]
            self._fold()
            self.groups, self.group_maps, self.map_side = groups, maps, side
            self.selected_ids = [i for i in self.selected_ids if i in known]
            self.grouped = True
        self._add_static_fallback()

    def _fold(self) -> None:
        columns, thumbs, masks = pack_rows([self._wire[i] for i in sorted(self._wire)])
        with self.hold_sync():
            self.rows, self.thumbs, self.masks = columns, thumbs, masks
        self._in_state, self._streamed = len(self._wire), 0

    # ------------------------------------------------------------------ selection
    @property
    def audit(self):
        """The audit shown (None while it runs)."""
        return self._audit

    @property
    def selection(self):
        """The selected images' rows of ``audit.table`` (a pandas DataFrame), in selection order."""
        table = self._table()
        present = [i for i in self.selected_ids if i in table.index]
        return table.loc[present]

    def _table(self):
        if self._audit is not None:
            return self._audit.table
        import pandas as pd
        import pyarrow as pa

        if not self._light:
            return pd.DataFrame(index=pd.Index([], dtype="int64"))
        df = pa.concat_tables(self._light).to_pandas()
        df = df.drop_duplicates("id", keep="last").set_index("id", drop=False)
        df.index.name = None
        return df

    # ------------------------------------------------------------------ messages
    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Sequence) -> None:
        if not isinstance(content, Mapping) or content.get("type") != "open":
            return
        try:
            image_id = int(content.get("id"))
        except (TypeError, ValueError):
            self.send({"type": "opened", "id": None, "ok": False, "message": f"not an image id: {content.get('id')!r}"})
            return
        ok, message = self.open_image(image_id)
        self.send({"type": "opened", "id": image_id, "ok": ok, "message": message})

    def open_image(self, image_id: int) -> tuple[bool, str]:
        """Show image ``image_id`` in the detail panel: its explanation where the audit has a
        model, else its stored numbers and mask. Returns (shown in full, what was shown)."""
        audit = self._audit
        if audit is None:
            message = ("The audit has not finished: images open once it has (or reopen a stored one with "
                       "Audit.load(out, model=..., data=...).gallery()).")
            self._show([text_output(message)], image_id)
            return False, message
        if image_id not in audit.rows.index:
            message = f"image {image_id} is not in this audit ({len(audit)} images)"
            self._show([text_output(message)], -1)
            return False, message
        failed = audit.rows.loc[image_id, "error"]
        has_error = isinstance(failed, str) and bool(failed)
        try:
            worker = None if has_error else audit.worker_or_none()
        except Exception as err:  # a model that cannot be rebuilt: show what is stored
            worker, has_error = None, False
            note = f"The model could not be loaded: {type(err).__name__}: {err}"
        else:
            note = ""
        if worker is None:
            outputs = [describe(audit, image_id, reopen_hint=not has_error)]
            picture = stored_picture(audit, image_id)
            outputs += [picture] if picture is not None else []
            outputs += [text_output(note)] if note else []
            self._show(outputs, image_id)
            return False, "stored numbers and mask (no model)" if not has_error else "could not be explained"
        try:
            res = audit.explain(image_id, progress=False, live=False)
            from ._widget import ExplanationWidget

            widget = ExplanationWidget.from_result(res, labels=audit.labels)
        except Exception as err:  # the gallery stays usable whatever one image does
            message = f"image {image_id} could not be explained again: {type(err).__name__}: {err}"
            self._show([describe(audit, image_id, reopen_hint=False), text_output(message)], image_id)
            return False, message
        self._show([describe(audit, image_id, reopen_hint=False), display_output(widget._repr_mimebundle_())],
                   image_id, widget)
        return True, "explanation"

    def _show(self, outputs: list, image_id: int, widget: Any = None) -> None:
        # One explanation widget at a time: the previous one (and its activations) is released.
        if self._detail_widget is not None:
            self._detail_widget.close()
        self._detail_widget = widget
        self.detail.outputs = tuple(outputs)
        self.opened = image_id

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs: Any):
        """The gallery with its detail panel below, plus a PNG and text for readers without widgets."""
        data = {}
        if self.comm is not None:
            box = self._box._repr_mimebundle_(**kwargs)
            data.update(box[0] if isinstance(box, tuple) else box or {})
        data["text/plain"] = repr(self)
        png = self._static_png()
        if png is not None:
            data["image/png"] = base64.b64encode(png).decode("ascii")
        return data

    def _static_png(self) -> bytes | None:
        if self._audit is None or not self._audit.groups:
            return None
        try:
            return self._audit._repr_png_()
        except Exception:  # the widget is right anyway; the picture is for other readers
            return None

    def _add_static_fallback(self) -> None:
        if self.display_handle is None:
            return
        self.display_handle.update(self._repr_mimebundle_(), raw=True)

    def close(self) -> None:
        """Close the gallery, its detail panel and the explanation shown there."""
        if self._detail_widget is not None:
            self._detail_widget.close()
            self._detail_widget = None
        self.detail.close()
        self._box.close()
        super().close()

    def __repr__(self) -> str:
        n, a = len(getattr(self, "_wire", {})), getattr(self, "_audit", None)
        if a is None:
            return f"GalleryWidget({n} images, not grouped yet)"
        return f"GalleryWidget({n} images, {len(a.groups)} groups)\n{a.summary()}"


def live_gallery(labels: Sequence[str] | None = None) -> GalleryWidget:
    """Create a gallery, display it now (it fills in as ``add_rows`` is called) and return it.

    The gallery a cell showed on its previous run is closed when the cell runs again."""
    from IPython.display import display

    from ._live import adopt_in_cell

    view = adopt_in_cell(GalleryWidget(labels=labels))
    view.display_handle = display(view, display_id=True)
    return view


def gallery_of(audit: Any, **kwargs: Any) -> GalleryWidget:
    """The gallery of a finished audit (``Audit.gallery()``)."""
    from ._live import adopt_in_cell

    view = adopt_in_cell(GalleryWidget(labels=audit.labels, **kwargs))
    view.show_audit(audit)
    return view
