// Built from js/src by js/build.mjs; do not edit by hand.

// src/colormap.js
var SEQUENTIAL = (
  /** @type {Stops} */
  [
    [0, [12, 10, 38]],
    [0.3, [88, 32, 112]],
    [0.6, [204, 72, 62]],
    [0.85, [244, 158, 44]],
    [1, [252, 238, 168]]
  ]
);
function colorAt(stops, t) {
  const x = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  for (let i = 1; i < stops.length; i++) {
    const [p1, c1] = stops[i];
    if (x <= p1) {
      const [p0, c0] = stops[i - 1];
      const f = p1 > p0 ? (x - p0) / (p1 - p0) : 0;
      return (
        /** @type {RGB} */
        c0.map((v, k) => Math.round(v + f * (c1[k] - v)))
      );
    }
  }
  return (
    /** @type {RGB} */
    [...stops[stops.length - 1][1]]
  );
}
function buildLut(stops) {
  const lut = new Uint8Array(256 * 3);
  for (let b = 0; b < 256; b++) lut.set(colorAt(stops, b / 255), b * 3);
  return lut;
}

// src/dom.js
function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}
function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === void 0 || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    el.append(child);
  }
  return el;
}
function paint(canvas, rgba, width, height) {
  if (width === 0 || height === 0) return;
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.putImageData(new ImageData(rgba, width, height), 0, 0);
  canvas.dataset.painted = "true";
}

// src/format.js
var DASH = "\u2014";
function formatProb(p) {
  return isNumber(p) ? p.toFixed(3) : DASH;
}
function formatPercent(share, digits = 1) {
  return isNumber(share) ? `${(100 * share).toFixed(digits)}%` : DASH;
}
function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

// src/raster.js
function mapToRgba(values, lut = null) {
  const out = new Uint8ClampedArray(values.length * 4);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const v = values[i];
    if (lut) {
      out[j] = lut[v * 3];
      out[j + 1] = lut[v * 3 + 1];
      out[j + 2] = lut[v * 3 + 2];
    } else {
      out[j] = out[j + 1] = out[j + 2] = v;
    }
    out[j + 3] = 255;
  }
  return out;
}

// src/bytes.js
function toBytes(buffer) {
  if (buffer == null) return new Uint8Array(0);
  if (buffer instanceof Uint8Array) return buffer;
  if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError(`expected binary data, got ${Object.prototype.toString.call(buffer)}`);
}

// src/gallery/rows.js
function packedLength(w, h2) {
  return Math.ceil(w * h2 / 8);
}
function decodeRows(columns, thumbs, masks) {
  const ids = columns?.id ?? [];
  if (!ids.length) return [];
  const thumbBytes = toBytes(thumbs);
  const maskBytes = toBytes(masks);
  const col = (name) => {
    const c = columns[name];
    if (!Array.isArray(c) || c.length !== ids.length) throw new Error(`column ${name} must hold ${ids.length} values`);
    return c;
  };
  const [w, h2, len] = [col("thumb_w"), col("thumb_h"), col("thumb_len")];
  for (const name of Object.keys(columns ?? {})) col(name);
  const rows = [];
  let t = 0;
  let m = 0;
  for (let i = 0; i < ids.length; i++) {
    const hasMask = len[i] > 0 && w[i] > 0 && h2[i] > 0;
    const mlen = hasMask ? packedLength(w[i], h2[i]) : 0;
    if (t + len[i] > thumbBytes.length || m + mlen > maskBytes.length) {
      throw new Error(`the blobs end before row ${i} (image ${ids[i]}): ${thumbBytes.length} thumbnail and ${maskBytes.length} mask bytes`);
    }
    rows.push({
      id: ids[i],
      key: columns.key?.[i] ?? null,
      label: columns.label?.[i] ?? null,
      pred: columns.pred?.[i] ?? null,
      target: columns.target?.[i] ?? null,
      correct: columns.correct?.[i] ?? null,
      prob: columns.prob?.[i] ?? null,
      probE: columns.prob_e?.[i] ?? null,
      area: columns.area?.[i] ?? null,
      error: columns.error?.[i] ?? null,
      thumbW: w[i],
      thumbH: h2[i],
      thumb: thumbBytes.subarray(t, t + len[i]),
      mask: maskBytes.subarray(m, m + mlen)
    });
    t += len[i];
    m += mlen;
  }
  return rows;
}
function unpackBits(packed, n) {
  if (packed.length < packedLength(n, 1)) throw new Error(`expected ${packedLength(n, 1)} packed bytes for ${n} bits, got ${packed.length}`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = packed[i >> 3] >> 7 - (i & 7) & 1;
  return out;
}
function className(labels, k) {
  if (k === null || k === void 0) return "\u2014";
  return labels?.[k] ?? `class ${k}`;
}

// src/gallery/arrange.js
var NO_FILTERS = Object.freeze({
  target: null,
  correct: "all",
  minSuspicion: 0,
  minArea: 0,
  maxArea: 1,
  minConfidence: 0
});
function shelves(rows, groups, grouped, labels = []) {
  const out = [];
  const placed = /* @__PURE__ */ new Set();
  if (grouped) {
    groups.forEach((g, k) => {
      const ids = g.ids.filter((id) => rows.has(id));
      ids.forEach((id) => placed.add(id));
      out.push({ key: `g${g.index}`, kind: "group", name: g.target_name, target: g.target, ids, group: g, mapIndex: k });
    });
  } else {
    const byClass = /* @__PURE__ */ new Map();
    for (const r of rows.values()) {
      if (r.error || r.target === null) continue;
      if (!byClass.has(r.target)) byClass.set(r.target, []);
      byClass.get(r.target).push(r.id);
      placed.add(r.id);
    }
    for (const t of [...byClass.keys()].sort((a, b) => a - b)) {
      const ids = (
        /** @type {number[]} */
        byClass.get(t).sort((a, b) => a - b)
      );
      out.push({ key: `c${t}`, kind: "class", name: className(labels, t), target: t, ids, group: null, mapIndex: -1 });
    }
  }
  const rest = [...rows.keys()].filter((id) => !placed.has(id)).sort((a, b) => a - b);
  if (rest.length) {
    const failed = rest.every((id) => rows.get(id)?.error);
    out.push({
      key: "rest",
      kind: "errors",
      name: failed ? "could not be explained" : "in no group",
      target: null,
      ids: rest,
      group: null,
      mapIndex: -1
    });
  }
  return out;
}
function rowPasses(row, f) {
  if (f.target !== null && (row.target ?? row.label) !== f.target) return false;
  if (f.correct !== "all" && row.correct !== (f.correct === "correct")) return false;
  if ((f.minArea > 0 || f.maxArea < 1) && !(row.area !== null && row.area >= f.minArea && row.area <= f.maxArea)) return false;
  if (f.minConfidence > 0 && !(row.prob !== null && row.prob >= f.minConfidence)) return false;
  return true;
}
function shelfPasses(shelf, f) {
  if (f.target !== null && shelf.target !== null && shelf.target !== f.target) return false;
  if (f.minSuspicion > 0 && shelf.kind !== "class") {
    const s = shelf.group?.suspicion;
    if (s === null || s === void 0 || s < f.minSuspicion) return false;
  }
  return true;
}
function arrange(all, rows, filters, groupOrder, memberOrder) {
  const shown = [];
  for (const shelf of sortShelves(all, groupOrder)) {
    if (!shelfPasses(shelf, filters)) continue;
    const ids = shelf.ids.filter((id) => {
      const r = rows.get(id);
      return r !== void 0 && rowPasses(r, filters);
    });
    if (ids.length) shown.push({ shelf, members: sortMembers(ids, rows, memberOrder, shelf.group?.representative) });
  }
  return shown;
}
function sortShelves(all, order) {
  const key = {
    suspicion: (s) => nullable(s.group?.suspicion, (v) => -v),
    size: (s) => -s.ids.length,
    accuracy: (s) => nullable(s.group?.accuracy, (v) => v)
  }[order] ?? (() => 0);
  const indexed = all.map((s, i) => ({ s, i, last: s.kind === "errors" ? 1 : 0, k: key(s) }));
  indexed.sort((a, b) => a.last - b.last || compareNullable(a.k, b.k) || a.i - b.i);
  return indexed.map((x) => x.s);
}
function sortMembers(ids, rows, order, representative) {
  const keys = {
    area: (r) => r.area,
    "area-desc": (r) => nullable(r.area, (v) => -v),
    confidence: (r) => nullable(r.prob, (v) => -v),
    "confidence-asc": (r) => r.prob
  };
  const key = keys[order];
  const out = [...ids];
  if (!key) {
    out.sort((a, b) => (b === representative ? 1 : 0) - (a === representative ? 1 : 0) || a - b);
    return out;
  }
  const value = (id) => {
    const r = rows.get(id);
    return r ? key(r) : null;
  };
  out.sort((a, b) => compareNullable(value(a), value(b)) || a - b);
  return out;
}
function classOptions(rows, labels = []) {
  const counts = /* @__PURE__ */ new Map();
  for (const r of rows.values()) {
    const t = r.target ?? r.label;
    if (t !== null) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([t, n]) => [t, className(labels, t), n]);
}
function nullable(v, f) {
  return v === null || v === void 0 || Number.isNaN(v) ? null : f(v);
}
function compareNullable(a, b) {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

// src/gallery/controls.js
function createControls({ onChange, onClearSelection }) {
  const classSelect = (
    /** @type {HTMLSelectElement} */
    h(
      "select",
      { class: "nbxg-select", "data-role": "class" },
      h("option", { value: "", text: "all classes" })
    )
  );
  const correct = segmented("correct", [["all", "all"], ["correct", "correct"], ["wrong", "wrong"]], "all");
  const minSuspicion = slider("min-suspicion", 0, 1, 0.05, 0, (v) => v.toFixed(2));
  const maxArea = slider("max-area", 0, 1, 0.01, 1, (v) => `${Math.round(100 * v)}%`);
  const minConfidence = slider("min-confidence", 0, 1, 0.05, 0, (v) => v.toFixed(2));
  const groupOrder = (
    /** @type {HTMLSelectElement} */
    h(
      "select",
      { class: "nbxg-select", "data-role": "group-order" },
      h("option", { value: "suspicion", text: "suspicion (highest first)" }),
      h("option", { value: "size", text: "size (largest first)" }),
      h("option", { value: "accuracy", text: "accuracy (lowest first)" })
    )
  );
  const memberOrder = (
    /** @type {HTMLSelectElement} */
    h(
      "select",
      { class: "nbxg-select", "data-role": "member-order" },
      h("option", { value: "representative", text: "representative first" }),
      h("option", { value: "area", text: "area (smallest first)" }),
      h("option", { value: "area-desc", text: "area (largest first)" }),
      h("option", { value: "confidence", text: "confidence (highest first)" }),
      h("option", { value: "confidence-asc", text: "confidence (lowest first)" })
    )
  );
  const selectMode = (
    /** @type {HTMLInputElement} */
    h("input", { type: "checkbox", "data-role": "select-mode" })
  );
  const selectedCount = h("span", { class: "nbxg-count", "data-role": "selected-count", text: "none selected" });
  const clear = (
    /** @type {HTMLButtonElement} */
    h("button", {
      class: "nbxg-button",
      type: "button",
      "data-role": "clear-selection",
      text: "clear",
      disabled: true
    })
  );
  const reset = h("button", { class: "nbxg-button", type: "button", "data-role": "reset-filters", text: "reset filters" });
  const field = (label, control) => h("label", { class: "nbxg-field" }, h("span", { class: "nbxg-field-label", text: label }), control);
  const el = h(
    "div",
    { class: "nbxg-controls", "data-role": "controls" },
    h(
      "div",
      { class: "nbxg-control-row" },
      field("class", classSelect),
      h("div", { class: "nbxg-field" }, h("span", { class: "nbxg-field-label", text: "prediction" }), correct.el),
      field("suspicion \u2265", minSuspicion.el),
      field("area \u2264", maxArea.el),
      field("confidence \u2265", minConfidence.el),
      reset
    ),
    h(
      "div",
      { class: "nbxg-control-row" },
      field("groups by", groupOrder),
      field("images by", memberOrder),
      h(
        "label",
        { class: "nbxg-field nbxg-inline", title: "Clicks select thumbnails instead of opening them (shift- or ctrl-click always selects)" },
        selectMode,
        h("span", { text: "click selects" })
      ),
      selectedCount,
      clear
    )
  );
  for (const control of [classSelect, groupOrder, memberOrder, selectMode]) control.addEventListener("change", onChange);
  for (const s of [minSuspicion, maxArea, minConfidence]) s.input.addEventListener("input", () => {
    s.show();
    onChange();
  });
  correct.onChange(onChange);
  clear.addEventListener("click", onClearSelection);
  reset.addEventListener("click", () => {
    classSelect.value = "";
    correct.set("all");
    minSuspicion.set(0);
    maxArea.set(1);
    minConfidence.set(0);
    onChange();
  });
  return {
    el,
    /** @returns {Settings} */
    get() {
      return {
        filters: {
          ...NO_FILTERS,
          target: classSelect.value === "" ? null : Number(classSelect.value),
          correct: (
            /** @type {Filters["correct"]} */
            correct.value()
          ),
          minSuspicion: minSuspicion.value(),
          maxArea: maxArea.value(),
          minConfidence: minConfidence.value()
        },
        groupOrder: (
          /** @type {any} */
          groupOrder.value
        ),
        memberOrder: (
          /** @type {any} */
          memberOrder.value
        ),
        selectMode: selectMode.checked
      };
    },
    /** @param {[number, string, number][]} options [class, name, count] */
    setClasses(options) {
      const keep = classSelect.value;
      const items = [["", "all classes"], ...options.map(([t, name, n]) => [String(t), `${name} (${n})`])];
      const same = items.length === classSelect.options.length && items.every(([v, text], k) => classSelect.options[k].value === v && classSelect.options[k].text === text);
      if (same) return;
      classSelect.replaceChildren(...items.map(([value, text]) => h("option", { value, text })));
      classSelect.value = items.some(([v]) => v === keep) ? keep : "";
    },
    /** @param {number} n */
    setSelected(n) {
      selectedCount.textContent = n ? `${n} selected` : "none selected";
      clear.disabled = n === 0;
    }
  };
}
function slider(role, min, max, step, value, format) {
  const input = (
    /** @type {HTMLInputElement} */
    h("input", {
      type: "range",
      class: "nbxg-range",
      "data-role": role,
      min,
      max,
      step,
      value
    })
  );
  const out = h("span", { class: "nbxg-range-value", text: format(value) });
  const show = () => {
    out.textContent = format(Number(input.value));
  };
  return {
    el: h("span", { class: "nbxg-slider" }, input, out),
    input,
    show,
    value: () => Number(input.value),
    set: (v) => {
      input.value = String(v);
      show();
    }
  };
}
function segmented(role, options, initial) {
  let current = initial;
  const listeners = [];
  const buttons = options.map(([value, text]) => {
    const b = h("button", {
      class: "nbxg-toggle",
      type: "button",
      "data-value": value,
      text,
      "aria-pressed": value === initial ? "true" : "false"
    });
    b.addEventListener("click", () => {
      set(value);
      listeners.forEach((f) => f());
    });
    return b;
  });
  const set = (value) => {
    current = value;
    for (const b of buttons) b.setAttribute("aria-pressed", b.dataset.value === value ? "true" : "false");
  };
  return {
    el: h("span", { class: "nbxg-segmented", "data-role": role }, ...buttons),
    value: () => current,
    set,
    onChange: (f) => listeners.push(f)
  };
}

// src/gallery/thumbs.js
var DIM = 0.3;
var OUTLINE = [255, 210, 63];
function dimOutside(rgba, mask, width, height) {
  if (mask.length !== width * height) throw new Error(`expected a ${width}x${height} mask, got ${mask.length} pixels`);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (mask[i]) continue;
      const j = i * 4;
      const edge = x > 0 && mask[i - 1] || x < width - 1 && mask[i + 1] || y > 0 && mask[i - width] || y < height - 1 && mask[i + width];
      if (edge) rgba.set(OUTLINE, j);
      else for (let c = 0; c < 3; c++) rgba[j + c] = rgba[j + c] * DIM;
    }
  }
  return rgba;
}
var ThumbCache = class {
  /**
   * @param {number} [limit] thumbnails kept
   * @param {(row: import("./rows.js").Row) => Promise<ImageData | null>} [draw] (tests pass a fake)
   */
  constructor(limit = 1500, draw = render) {
    this.limit = limit;
    this.draw = draw;
    this.entries = /* @__PURE__ */ new Map();
  }
  /**
   * The thumbnail of `row` with its mask applied (null: no thumbnail).
   * @param {import("./rows.js").Row} row
   * @returns {Promise<ImageData | null>}
   */
  pixels(row) {
    const old = this.entries.get(row.id);
    this.entries.delete(row.id);
    if (old && sameBytes(old.thumb, row.thumb) && sameBytes(old.mask, row.mask)) {
      this.entries.set(row.id, old);
      return old.pixels;
    }
    const pixels = row.thumb.length ? this.draw(row) : Promise.resolve(null);
    this.entries.set(row.id, { thumb: row.thumb, mask: row.mask, pixels });
    while (this.entries.size > this.limit) this.entries.delete(
      /** @type {number} */
      this.entries.keys().next().value
    );
    return pixels;
  }
};
async function render(row) {
  const { thumbW: w, thumbH: h2 } = row;
  const image = await decodeJpeg(row.thumb);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h2;
  const ctx = (
    /** @type {CanvasRenderingContext2D} */
    canvas.getContext("2d")
  );
  ctx.drawImage(image, 0, 0, w, h2);
  const data = ctx.getImageData(0, 0, w, h2);
  if (row.mask.length) dimOutside(data.data, unpackBits(row.mask, w * h2), w, h2);
  return data;
}
async function decodeJpeg(bytes) {
  const blob = new Blob([bytes], { type: "image/jpeg" });
  if (typeof createImageBitmap === "function") return createImageBitmap(blob);
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}
function put(canvas, data) {
  canvas.width = data.width;
  canvas.height = data.height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.putImageData(data, 0, 0);
  canvas.dataset.painted = "true";
}
function sameBytes(a, b) {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// src/gallery/view.js
var LUT = buildLut(SEQUENTIAL);
var HINT = "Click a thumbnail to open its explanation below; shift- or ctrl-click (or \u201Cclick selects\u201D) to select.";
function render2({ model, el }) {
  let rows = /* @__PURE__ */ new Map();
  const cache = new ThumbCache();
  const expanded = /* @__PURE__ */ new Set();
  let selected = new Set(model.get("selected_ids") ?? []);
  let frame = 0;
  let messages = 0;
  const status = h("span", { class: "nbxg-status", "data-role": "status" });
  const controls = createControls({ onChange: drawNow, onClearSelection: () => setSelection(/* @__PURE__ */ new Set()) });
  const shown = h("p", { class: "nbxg-shown", "data-role": "shown" });
  const groupsEl = h("div", { class: "nbxg-groups", "data-role": "groups" });
  const detail = h("p", { class: "nbxg-detail-status", "data-role": "detail-status", text: HINT });
  const root = h(
    "div",
    { class: "nbxg-root", "data-role": "gallery" },
    h("header", { class: "nbxg-header" }, h("span", { class: "nbxg-title", text: "nbexplain audit" }), status),
    controls.el,
    shown,
    groupsEl,
    detail
  );
  el.replaceChildren(root);
  function loadState() {
    const fromState = decodeRows(model.get("rows") ?? {}, model.get("thumbs"), model.get("masks"));
    const merged = new Map(fromState.map((r) => [r.id, r]));
    for (const [id, r] of rows) if (!merged.has(id)) merged.set(id, r);
    rows = merged;
  }
  function onMessage(content, buffers) {
    try {
      if (content?.type === "rows") {
        for (const r of decodeRows(content.rows, buffers?.[0], buffers?.[1])) rows.set(r.id, r);
        messages += 1;
        root.dataset.messages = String(messages);
        schedule();
      } else if (content?.type === "opened") {
        root.dataset.opened = String(content.id);
        delete root.dataset.opening;
        detail.textContent = content.ok ? `Image ${content.id}: its explanation is shown below.` : `Image ${content.id ?? "?"}: ${content.message ?? "could not be opened"} (shown below).`;
      }
    } catch (err) {
      detail.textContent = `Could not show a message from the kernel: ${err instanceof Error ? err.message : err}`;
    }
  }
  function schedule() {
    if (frame) return;
    const run = () => {
      frame = 0;
      draw();
    };
    frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(run) : setTimeout(run, 16);
  }
  function drawNow() {
    if (frame) (typeof cancelAnimationFrame === "function" ? cancelAnimationFrame : clearTimeout)(frame);
    frame = 0;
    draw();
  }
  function draw() {
    const labels = model.get("labels") ?? [];
    const grouped = Boolean(model.get("grouped"));
    const groups = model.get("groups") ?? [];
    const settings = controls.get();
    controls.setClasses(classOptions(rows, labels));
    const all = shelves(rows, groups, grouped, labels);
    const list = arrange(all, rows, settings.filters, settings.groupOrder, settings.memberOrder);
    const limit = model.get("max_per_group") || 24;
    groupsEl.replaceChildren(...list.map(({ shelf, members }) => shelfEl(shelf, members, limit, labels)));
    if (!list.length) {
      groupsEl.append(h("p", { class: "nbxg-empty", text: rows.size ? "No image passes these filters." : "Waiting for the first explained images\u2026" }));
    }
    const errors = [...rows.values()].filter((r) => r.error).length;
    const nGroups = all.filter((s) => s.kind === "group").length;
    const total = model.get("total") || 0;
    status.textContent = `explained ${rows.size}${total > rows.size ? ` of ${total}` : ""} image${rows.size === 1 && !total ? "" : "s"}` + (errors ? ` (${errors} could not be explained)` : "") + (grouped ? ` \xB7 ${nGroups} group${nGroups === 1 ? "" : "s"}` : " \xB7 not grouped yet: thumbnails by class");
    const images = list.reduce((n, x) => n + x.members.length, 0);
    const kind = grouped ? "groups" : "classes";
    shown.textContent = `showing ${list.length} of ${all.length} ${kind}, ${images} of ${rows.size} images`;
    Object.assign(root.dataset, { rows: String(rows.size), grouped: String(grouped), shelves: String(list.length), images: String(images) });
    markSelection();
  }
  function shelfEl(shelf, members, limit, labels) {
    const all = expanded.has(shelf.key);
    const visible = all ? members : members.slice(0, limit);
    const thumbs = h("div", { class: "nbxg-thumbs" }, ...visible.map((id) => thumbEl(
      /** @type {Row} */
      rows.get(id),
      labels
    )));
    const more = members.length > limit ? h("button", {
      class: "nbxg-button nbxg-more",
      type: "button",
      "data-action": "expand",
      "data-shelf": shelf.key,
      text: all ? "show fewer" : `show all ${members.length}`
    }) : null;
    return h(
      "section",
      {
        class: "nbxg-group",
        "data-shelf": shelf.key,
        "data-kind": shelf.kind,
        "data-group": shelf.group ? String(shelf.group.index) : null
      },
      headerEl(shelf, members),
      h("div", { class: "nbxg-body" }, mapEl(shelf), h("div", { class: "nbxg-members" }, thumbs, more))
    );
  }
  function headerEl(shelf, members) {
    const g = shelf.group;
    const size = g ? g.size : shelf.ids.length;
    const count = `${size} image${size === 1 ? "" : "s"}` + (members.length < size ? `, ${members.length} shown` : "");
    const parts = [
      h("span", { class: "nbxg-name", text: g ? `#${g.index} ${shelf.name}` : shelf.name }),
      h("span", { class: "nbxg-size", text: count })
    ];
    if (g) {
      const s = g.suspicion ?? 0;
      parts.push(h("span", {
        class: "nbxg-suspicion",
        "data-level": s >= 0.5 ? "high" : s >= 0.2 ? "some" : "low",
        title: "(transplant \u2212 control) \xD7 max(same place, off object)",
        text: `suspicion ${g.suspicion === null ? "\u2014" : g.suspicion.toFixed(2)}`
      }));
      const figures = [
        ["transplant", g.transplant, "share of transplants of the kept pixels into other images that turn them to this class"],
        ["control", g.transplant_control, "the same, with each mask moved by half the image"],
        ["same place", g.same_place, "share of each member's kept pixels that at least half of the other members keep too, beyond chance"],
        ["off object", g.off_object, "share of kept pixels off the labelled object"],
        ["accuracy", g.accuracy, "share of members predicted as their label"]
      ];
      parts.push(h("span", { class: "nbxg-figures" }, ...figures.map(([name, v, why]) => h("span", { class: "nbxg-figure", title: String(why) }, `${name} `, h("b", { text: formatPercent(
        /** @type {any} */
        v,
        0
      ) })))));
    } else if (shelf.kind === "class") {
      parts.push(h("span", { class: "nbxg-muted", text: "not grouped yet" }));
    }
    const allSelected = members.every((id) => selected.has(id));
    parts.push(h("button", {
      class: "nbxg-button nbxg-select-group",
      type: "button",
      "data-action": "select-group",
      "data-shelf": shelf.key,
      title: "select (or unselect) this group's thumbnails that pass the filters",
      text: allSelected ? "unselect group" : "select group"
    }));
    return h("div", { class: "nbxg-group-head" }, ...parts);
  }
  function mapEl(shelf) {
    const side = model.get("map_side") ?? 0;
    const maps = toBytes(model.get("group_maps"));
    if (shelf.mapIndex < 0 || !side || maps.length < (shelf.mapIndex + 1) * side * side) return null;
    const canvas = (
      /** @type {HTMLCanvasElement} */
      h("canvas", { class: "nbxg-map", "data-role": "shared-map" })
    );
    paint(canvas, mapToRgba(maps.subarray(shelf.mapIndex * side * side, (shelf.mapIndex + 1) * side * side), LUT), side, side);
    return h(
      "figure",
      { class: "nbxg-map-figure", title: "share of the members keeping each pixel" },
      canvas,
      h("figcaption", { text: "shared evidence" })
    );
  }
  function thumbEl(row, labels) {
    const canvas = (
      /** @type {HTMLCanvasElement} */
      h("canvas", { class: "nbxg-canvas" })
    );
    const area = formatPercent(row.area, row.area !== null && row.area < 0.1 ? 1 : 0);
    const caption = row.error ? "not explained" : `${row.correct === false ? "\u2717 " : ""}${row.id} \xB7 ${area}`;
    const b = h(
      "button",
      {
        class: "nbxg-thumb",
        type: "button",
        "data-id": String(row.id),
        title: tooltip(row, labels),
        "data-wrong": row.correct === false ? "true" : null
      },
      canvas,
      h("span", { class: "nbxg-caption", text: caption })
    );
    cache.pixels(row).then(
      (data) => {
        if (data) put(canvas, data);
        else canvas.dataset.empty = "true";
      },
      () => {
        canvas.dataset.failed = "true";
      }
    );
    return b;
  }
  function tooltip(r, labels) {
    const lines = [`image ${r.id}${r.key !== null && r.key !== String(r.id) ? ` (${r.key})` : ""}`];
    if (r.error) lines.push(`could not be explained: ${r.error}`);
    else {
      lines.push(`label ${className(labels, r.label)}, predicted ${className(labels, r.pred)}`);
      lines.push(`p(x) ${formatProb(r.prob)}, p(explanation) ${formatProb(r.probE)}, area kept ${formatPercent(r.area)}`);
    }
    return lines.join("\n");
  }
  function markSelection() {
    const opened = model.get("opened");
    for (const b of groupsEl.querySelectorAll(".nbxg-thumb")) {
      const id = Number(
        /** @type {HTMLElement} */
        b.dataset.id
      );
      b.setAttribute("aria-pressed", selected.has(id) ? "true" : "false");
      b.dataset.opened = id === opened ? "true" : "false";
    }
    controls.setSelected(selected.size);
    root.dataset.selected = String(selected.size);
  }
  function setSelection(next) {
    selected = next;
    model.set("selected_ids", [...next]);
    model.save_changes();
    drawNow();
  }
  function open(id) {
    root.dataset.opening = String(id);
    detail.textContent = `Opening image ${id}\u2026 (it appears below as soon as the kernel is free: not while a cell runs).`;
    model.send({ type: "open", id });
  }
  function onClick(event) {
    const target = (
      /** @type {HTMLElement | null} */
      /** @type {HTMLElement} */
      event.target.closest("[data-action], .nbxg-thumb")
    );
    if (!target) return;
    if (target.classList.contains("nbxg-thumb")) {
      const id = Number(target.dataset.id);
      if (event.shiftKey || event.ctrlKey || event.metaKey || controls.get().selectMode) {
        const next = new Set(selected);
        if (next.has(id)) next.delete(id);
        else next.add(id);
        setSelection(next);
      } else open(id);
      return;
    }
    const key = target.dataset.shelf ?? "";
    if (target.dataset.action === "expand") {
      if (expanded.has(key)) expanded.delete(key);
      else expanded.add(key);
      drawNow();
    } else if (target.dataset.action === "select-group") {
      const members = shelfMembers(key);
      const next = new Set(selected);
      const all = members.every((id) => next.has(id));
      for (const id of members) all ? next.delete(id) : next.add(id);
      setSelection(next);
    }
  }
  function shelfMembers(key) {
    const settings = controls.get();
    const list = arrange(
      shelves(rows, model.get("groups") ?? [], Boolean(model.get("grouped")), model.get("labels") ?? []),
      rows,
      settings.filters,
      settings.groupOrder,
      settings.memberOrder
    );
    return list.find((x) => x.shelf.key === key)?.members ?? [];
  }
  const onSelected = () => {
    selected = new Set(model.get("selected_ids") ?? []);
    schedule();
  };
  const onState = () => {
    try {
      loadState();
    } catch (err) {
      detail.textContent = `Could not read the gallery's rows: ${err instanceof Error ? err.message : err}`;
    }
    schedule();
  };
  groupsEl.addEventListener("click", onClick);
  const listeners = (
    /** @type {[string, (...args: any[]) => void][]} */
    [
      ["msg:custom", onMessage],
      ["change:rows", onState],
      ["change:grouped", schedule],
      ["change:groups", schedule],
      ["change:labels", schedule],
      ["change:total", schedule],
      ["change:max_per_group", schedule],
      ["change:selected_ids", onSelected],
      ["change:opened", markSelection]
    ]
  );
  for (const [event, fn] of listeners) model.on(event, fn);
  onState();
  return () => {
    if (frame) (typeof cancelAnimationFrame === "function" ? cancelAnimationFrame : clearTimeout)(frame);
    groupsEl.removeEventListener("click", onClick);
    for (const [event, fn] of listeners) model.off(event, fn);
  };
}

// src/gallery/index.js
var index_default = { render: render2 };
export {
  index_default as default
};
