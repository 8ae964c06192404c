// The gallery's view: groups as rows (header, shared evidence map, thumbnails), the
// toolbar above, a line below that says what a click opened. Rows come from synced
// state (folded in now and then, and at the end) and from messages while the audit runs.
import { buildLut, SEQUENTIAL } from "../colormap.js";
import { h, paint } from "../dom.js";
import { formatPercent, formatProb } from "../format.js";
import { mapToRgba } from "../raster.js";
import { toBytes } from "../bytes.js";
import { arrange, classOptions, shelves } from "./arrange.js";
import { createControls } from "./controls.js";
import { className, decodeRows } from "./rows.js";
import { put, ThumbCache } from "./thumbs.js";

const LUT = buildLut(SEQUENTIAL);
const HINT = "Click a thumbnail to open its explanation below; shift- or ctrl-click (or \u201cclick selects\u201d) to select.";

/**
 * @typedef {import("./rows.js").Row} Row
 * @typedef {import("./arrange.js").Shelf} Shelf
 */

/**
 * @param {{model: any, el: HTMLElement}} ctx
 * @returns {() => void} cleanup
 */
export function render({ model, el }) {
  /** @type {Map<number, Row>} */
  let rows = new Map();
  const cache = new ThumbCache();
  /** @type {Set<string>} shelves showing all their thumbnails */
  const expanded = new Set();
  /** @type {Set<number>} */
  let selected = new Set(model.get("selected_ids") ?? []);
  let frame = 0;
  let messages = 0;

  const status = h("span", { class: "nbxg-status", "data-role": "status" });
  const controls = createControls({ onChange: drawNow, onClearSelection: () => setSelection(new Set()) });
  const shown = h("p", { class: "nbxg-shown", "data-role": "shown" });
  const groupsEl = h("div", { class: "nbxg-groups", "data-role": "groups" });
  const detail = h("p", { class: "nbxg-detail-status", "data-role": "detail-status", text: HINT });
  const root = h("div", { class: "nbxg-root", "data-role": "gallery" },
    h("header", { class: "nbxg-header" }, h("span", { class: "nbxg-title", text: "nbexplain audit" }), status),
    controls.el, shown, groupsEl, detail);
  el.replaceChildren(root);

  // ---- data ---------------------------------------------------------------
  function loadState() {
    const fromState = decodeRows(model.get("rows") ?? {}, model.get("thumbs"), model.get("masks"));
    const merged = new Map(fromState.map((r) => [r.id, r]));
    // Rows streamed after the last fold are not in the state yet: keep them.
    for (const [id, r] of rows) if (!merged.has(id)) merged.set(id, r);
    rows = merged;
  }

  /** @param {any} content @param {any[]} buffers */
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
        detail.textContent = content.ok
          ? `Image ${content.id}: its explanation is shown below.`
          : `Image ${content.id ?? "?"}: ${content.message ?? "could not be opened"} (shown below).`;
      }
    } catch (err) {
      detail.textContent = `Could not show a message from the kernel: ${err instanceof Error ? err.message : err}`;
    }
  }

  // ---- drawing ------------------------------------------------------------
  // Kernel updates (many while the audit runs) are drawn once per frame; the user's own
  // clicks at once, so what a click changed is there when the click is handled.
  function schedule() {
    if (frame) return;
    const run = () => { frame = 0; draw(); };
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
    status.textContent = `explained ${rows.size}${total > rows.size ? ` of ${total}` : ""} image${rows.size === 1 && !total ? "" : "s"}`
      + (errors ? ` (${errors} could not be explained)` : "")
      + (grouped ? ` \u00b7 ${nGroups} group${nGroups === 1 ? "" : "s"}` : " \u00b7 not grouped yet: thumbnails by class");
    const images = list.reduce((n, x) => n + x.members.length, 0);
    const kind = grouped ? "groups" : "classes";
    shown.textContent = `showing ${list.length} of ${all.length} ${kind}, ${images} of ${rows.size} images`;
    Object.assign(root.dataset, { rows: String(rows.size), grouped: String(grouped), shelves: String(list.length), images: String(images) });
    markSelection();
  }

  /**
   * @param {Shelf} shelf
   * @param {number[]} members
   * @param {number} limit
   * @param {string[]} labels
   */
  function shelfEl(shelf, members, limit, labels) {
    const all = expanded.has(shelf.key);
    const visible = all ? members : members.slice(0, limit);
    const thumbs = h("div", { class: "nbxg-thumbs" }, ...visible.map((id) => thumbEl(/** @type {Row} */ (rows.get(id)), labels)));
    const more = members.length > limit
      ? h("button", { class: "nbxg-button nbxg-more", type: "button", "data-action": "expand", "data-shelf": shelf.key,
        text: all ? "show fewer" : `show all ${members.length}` })
      : null;
    return h("section", { class: "nbxg-group", "data-shelf": shelf.key, "data-kind": shelf.kind,
      "data-group": shelf.group ? String(shelf.group.index) : null },
      headerEl(shelf, members),
      h("div", { class: "nbxg-body" }, mapEl(shelf), h("div", { class: "nbxg-members" }, thumbs, more)));
  }

  /** @param {Shelf} shelf @param {number[]} members */
  function headerEl(shelf, members) {
    const g = shelf.group;
    const size = g ? g.size : shelf.ids.length;
    const count = `${size} image${size === 1 ? "" : "s"}` + (members.length < size ? `, ${members.length} shown` : "");
    const parts = [
      h("span", { class: "nbxg-name", text: g ? `#${g.index} ${shelf.name}` : shelf.name }),
      h("span", { class: "nbxg-size", text: count }),
    ];
    if (g) {
      const s = g.suspicion ?? 0;
      parts.push(h("span", { class: "nbxg-suspicion", "data-level": s >= 0.5 ? "high" : s >= 0.2 ? "some" : "low",
        title: "(transplant \u2212 control) \u00d7 max(same place, off object)", text: `suspicion ${g.suspicion === null ? "\u2014" : g.suspicion.toFixed(2)}` }));
      const figures = [
        ["transplant", g.transplant, "share of transplants of the kept pixels into other images that turn them to this class"],
        ["control", g.transplant_control, "the same, with each mask moved by half the image"],
        ["same place", g.same_place, "share of each member's kept pixels that at least half of the other members keep too, beyond chance"],
        ["off object", g.off_object, "share of kept pixels off the labelled object"],
        ["accuracy", g.accuracy, "share of members predicted as their label"],
      ];
      parts.push(h("span", { class: "nbxg-figures" }, ...figures.map(([name, v, why]) =>
        h("span", { class: "nbxg-figure", title: String(why) }, `${name} `, h("b", { text: formatPercent(/** @type {any} */ (v), 0) })))));
    } else if (shelf.kind === "class") {
      parts.push(h("span", { class: "nbxg-muted", text: "not grouped yet" }));
    }
    const allSelected = members.every((id) => selected.has(id));
    parts.push(h("button", { class: "nbxg-button nbxg-select-group", type: "button", "data-action": "select-group",
      "data-shelf": shelf.key, title: "select (or unselect) this group's thumbnails that pass the filters",
      text: allSelected ? "unselect group" : "select group" }));
    return h("div", { class: "nbxg-group-head" }, ...parts);
  }

  /** @param {Shelf} shelf */
  function mapEl(shelf) {
    const side = model.get("map_side") ?? 0;
    const maps = toBytes(model.get("group_maps"));
    if (shelf.mapIndex < 0 || !side || maps.length < (shelf.mapIndex + 1) * side * side) return null;
    const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "nbxg-map", "data-role": "shared-map" }));
    paint(canvas, mapToRgba(maps.subarray(shelf.mapIndex * side * side, (shelf.mapIndex + 1) * side * side), LUT), side, side);
    return h("figure", { class: "nbxg-map-figure", title: "share of the members keeping each pixel" },
      canvas, h("figcaption", { text: "shared evidence" }));
  }

  /** @param {Row} row @param {string[]} labels */
  function thumbEl(row, labels) {
    const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "nbxg-canvas" }));
    // Small kept areas (a corner tag is well under 1 %) need a decimal to be told apart.
    const area = formatPercent(row.area, row.area !== null && row.area < 0.1 ? 1 : 0);
    const caption = row.error ? "not explained" : `${row.correct === false ? "\u2717 " : ""}${row.id} \u00b7 ${area}`;
    const b = h("button", { class: "nbxg-thumb", type: "button", "data-id": String(row.id), title: tooltip(row, labels),
      "data-wrong": row.correct === false ? "true" : null },
      canvas, h("span", { class: "nbxg-caption", text: caption }));
    cache.pixels(row).then(
      (data) => { if (data) put(canvas, data); else canvas.dataset.empty = "true"; },
      () => { canvas.dataset.failed = "true"; },
    );
    return b;
  }

  /** @param {Row} r @param {string[]} labels */
  function tooltip(r, labels) {
    const lines = [`image ${r.id}${r.key !== null && r.key !== String(r.id) ? ` (${r.key})` : ""}`];
    if (r.error) lines.push(`could not be explained: ${r.error}`);
    else {
      lines.push(`label ${className(labels, r.label)}, predicted ${className(labels, r.pred)}`);
      lines.push(`p(x) ${formatProb(r.prob)}, p(explanation) ${formatProb(r.probE)}, area kept ${formatPercent(r.area)}`);
    }
    return lines.join("\n");
  }

  // ---- selection and clicks -----------------------------------------------
  function markSelection() {
    const opened = model.get("opened");
    for (const b of groupsEl.querySelectorAll(".nbxg-thumb")) {
      const id = Number(/** @type {HTMLElement} */ (b).dataset.id);
      b.setAttribute("aria-pressed", selected.has(id) ? "true" : "false");
      /** @type {HTMLElement} */ (b).dataset.opened = id === opened ? "true" : "false";
    }
    controls.setSelected(selected.size);
    root.dataset.selected = String(selected.size);
  }

  /** @param {Set<number>} next */
  function setSelection(next) {
    selected = next;
    model.set("selected_ids", [...next]);
    model.save_changes();
    drawNow(); // group buttons say "select" or "unselect"
  }

  /** @param {number} id */
  function open(id) {
    root.dataset.opening = String(id);
    detail.textContent = `Opening image ${id}\u2026 (it appears below as soon as the kernel is free: not while a cell runs).`;
    model.send({ type: "open", id });
  }

  /** @param {MouseEvent} event */
  function onClick(event) {
    const target = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (event.target).closest("[data-action], .nbxg-thumb"));
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

  /** The members of a shelf that pass the filters (also those beyond the thumbnail limit). */
  function shelfMembers(/** @type {string} */ key) {
    const settings = controls.get();
    const list = arrange(shelves(rows, model.get("groups") ?? [], Boolean(model.get("grouped")), model.get("labels") ?? []),
      rows, settings.filters, settings.groupOrder, settings.memberOrder);
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
  const listeners = /** @type {[string, (...args: any[]) => void][]} */ ([
    ["msg:custom", onMessage],
    ["change:rows", onState],
    ["change:grouped", schedule],
    ["change:groups", schedule],
    ["change:labels", schedule],
    ["change:total", schedule],
    ["change:max_per_group", schedule],
    ["change:selected_ids", onSelected],
    ["change:opened", markSelection],
  ]);
  for (const [event, fn] of listeners) model.on(event, fn);
  onState();

  return () => {
    if (frame) (typeof cancelAnimationFrame === "function" ? cancelAnimationFrame : clearTimeout)(frame);
    groupsEl.removeEventListener("click", onClick);
    for (const [event, fn] of listeners) model.off(event, fn);
  };
}
