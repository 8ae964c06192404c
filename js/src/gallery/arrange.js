// Which groups and thumbnails the gallery shows, in which order: pure functions of the
// rows, the audit's groups and the controls, tested with node --test.
import { className } from "./rows.js";

/**
 * @typedef {import("./rows.js").Row} Row
 * @typedef {object} AuditGroup as the kernel sends it (see nbexplain/widget/_gallery_wire.py)
 * @property {number} index
 * @property {number} target
 * @property {string} target_name
 * @property {number} size
 * @property {number[]} ids
 * @property {number} representative
 * @property {number | null} suspicion
 * @property {number | null} transplant
 * @property {number | null} [transplant_control]
 * @property {number | null} same_place
 * @property {number | null} off_object
 * @property {number | null} accuracy
 * @property {number | null} mean_area
 *
 * @typedef {object} Shelf one row of the gallery: an audit group, or a class not grouped yet
 * @property {string} key        stable across renders ("g3", "c2", "errors")
 * @property {"group" | "class" | "errors"} kind
 * @property {string} name
 * @property {number | null} target
 * @property {number[]} ids
 * @property {AuditGroup | null} group
 * @property {number} mapIndex  position of its shared map in group_maps (-1: none)
 *
 * @typedef {object} Filters
 * @property {number | null} target    class (the explained one), null: all
 * @property {"all" | "correct" | "wrong"} correct
 * @property {number} minSuspicion     groups below are hidden (classes not grouped yet are not)
 * @property {number} minArea
 * @property {number} maxArea
 * @property {number} minConfidence   p(target | image)
 *
 * @typedef {"suspicion" | "size" | "accuracy"} GroupOrder
 * @typedef {"representative" | "area" | "area-desc" | "confidence" | "confidence-asc"} MemberOrder
 */

/** @type {Filters} */
export const NO_FILTERS = Object.freeze({
  target: null, correct: "all", minSuspicion: 0, minArea: 0, maxArea: 1, minConfidence: 0,
});

/**
 * The gallery's rows: the audit's groups once it has them, classes before; images that
 * could not be explained (or are in no group) last.
 * @param {Map<number, Row>} rows
 * @param {AuditGroup[]} groups
 * @param {boolean} grouped
 * @param {string[]} [labels]
 * @returns {Shelf[]}
 */
export function shelves(rows, groups, grouped, labels = []) {
  /** @type {Shelf[]} */
  const out = [];
  const placed = new Set();
  if (grouped) {
    groups.forEach((g, k) => {
      const ids = g.ids.filter((id) => rows.has(id));
      ids.forEach((id) => placed.add(id));
      out.push({ key: `g${g.index}`, kind: "group", name: g.target_name, target: g.target, ids, group: g, mapIndex: k });
    });
  } else {
    /** @type {Map<number, number[]>} */
    const byClass = new Map();
    for (const r of rows.values()) {
      if (r.error || r.target === null) continue;
      if (!byClass.has(r.target)) byClass.set(r.target, []);
      /** @type {number[]} */ (byClass.get(r.target)).push(r.id);
      placed.add(r.id);
    }
    for (const t of [...byClass.keys()].sort((a, b) => a - b)) {
      const ids = /** @type {number[]} */ (byClass.get(t)).sort((a, b) => a - b);
      out.push({ key: `c${t}`, kind: "class", name: className(labels, t), target: t, ids, group: null, mapIndex: -1 });
    }
  }
  const rest = [...rows.keys()].filter((id) => !placed.has(id)).sort((a, b) => a - b);
  if (rest.length) {
    const failed = rest.every((id) => rows.get(id)?.error);
    out.push({ key: "rest", kind: "errors", name: failed ? "could not be explained" : "in no group",
      target: null, ids: rest, group: null, mapIndex: -1 });
  }
  return out;
}

/**
 * @param {Row} row
 * @param {Filters} f
 */
export function rowPasses(row, f) {
  if (f.target !== null && (row.target ?? row.label) !== f.target) return false;
  if (f.correct !== "all" && row.correct !== (f.correct === "correct")) return false;
  if ((f.minArea > 0 || f.maxArea < 1) && !(row.area !== null && row.area >= f.minArea && row.area <= f.maxArea)) return false;
  if (f.minConfidence > 0 && !(row.prob !== null && row.prob >= f.minConfidence)) return false;
  return true;
}

/**
 * @param {Shelf} shelf
 * @param {Filters} f
 */
export function shelfPasses(shelf, f) {
  if (f.target !== null && shelf.target !== null && shelf.target !== f.target) return false;
  if (f.minSuspicion > 0 && shelf.kind !== "class") {
    const s = shelf.group?.suspicion;
    if (s === null || s === undefined || s < f.minSuspicion) return false;
  }
  return true;
}

/**
 * Shelves to show, in order, each with its members that pass the filters, sorted.
 * Shelves left with no member are dropped.
 * @param {Shelf[]} all
 * @param {Map<number, Row>} rows
 * @param {Filters} filters
 * @param {GroupOrder} groupOrder
 * @param {MemberOrder} memberOrder
 * @returns {{shelf: Shelf, members: number[]}[]}
 */
export function arrange(all, rows, filters, groupOrder, memberOrder) {
  const shown = [];
  for (const shelf of sortShelves(all, groupOrder)) {
    if (!shelfPasses(shelf, filters)) continue;
    const ids = shelf.ids.filter((id) => {
      const r = rows.get(id);
      return r !== undefined && rowPasses(r, filters);
    });
    if (ids.length) shown.push({ shelf, members: sortMembers(ids, rows, memberOrder, shelf.group?.representative) });
  }
  return shown;
}

/**
 * Groups by suspicion (highest first), size (largest first) or accuracy (lowest first);
 * ties and shelves without the figure keep their order, unknown figures last; the
 * "could not be explained" shelf stays last.
 * @param {Shelf[]} all
 * @param {GroupOrder} order
 * @returns {Shelf[]}
 */
export function sortShelves(all, order) {
  /** @type {(s: Shelf) => number | null} */
  const key = {
    suspicion: (/** @type {Shelf} */ s) => nullable(s.group?.suspicion, (v) => -v),
    size: (/** @type {Shelf} */ s) => -s.ids.length,
    accuracy: (/** @type {Shelf} */ s) => nullable(s.group?.accuracy, (v) => v),
  }[order] ?? (() => 0);
  const indexed = all.map((s, i) => ({ s, i, last: s.kind === "errors" ? 1 : 0, k: key(s) }));
  indexed.sort((a, b) => a.last - b.last || compareNullable(a.k, b.k) || a.i - b.i);
  return indexed.map((x) => x.s);
}

/**
 * @param {number[]} ids
 * @param {Map<number, Row>} rows
 * @param {MemberOrder} order
 * @param {number} [representative] leads in the default order
 * @returns {number[]}
 */
export function sortMembers(ids, rows, order, representative) {
  /** @type {Record<string, (r: Row) => number | null>} */
  const keys = {
    area: (r) => r.area,
    "area-desc": (r) => nullable(r.area, (v) => -v),
    confidence: (r) => nullable(r.prob, (v) => -v),
    "confidence-asc": (r) => r.prob,
  };
  const key = keys[order];
  const out = [...ids];
  if (!key) {
    out.sort((a, b) => (b === representative ? 1 : 0) - (a === representative ? 1 : 0) || a - b);
    return out;
  }
  const value = (/** @type {number} */ id) => {
    const r = rows.get(id);
    return r ? key(r) : null;
  };
  out.sort((a, b) => compareNullable(value(a), value(b)) || a - b);
  return out;
}

/**
 * The classes present, for the class filter: [target, name, count], by target.
 * @param {Map<number, Row>} rows
 * @param {string[]} [labels]
 * @returns {[number, string, number][]}
 */
export function classOptions(rows, labels = []) {
  /** @type {Map<number, number>} */
  const counts = new Map();
  for (const r of rows.values()) {
    const t = r.target ?? r.label;
    if (t !== null) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([t, n]) => [t, className(labels, t), n]);
}

/**
 * @param {number | null | undefined} v
 * @param {(v: number) => number} f
 */
function nullable(v, f) {
  return v === null || v === undefined || Number.isNaN(v) ? null : f(v);
}

/** Ascending, with null (unknown) after every number. */
function compareNullable(/** @type {number | null} */ a, /** @type {number | null} */ b) {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}
