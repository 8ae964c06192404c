import assert from "node:assert/strict";
import { test } from "node:test";
import { NO_FILTERS, arrange, classOptions, rowPasses, shelves, sortMembers, sortShelves } from "../src/gallery/arrange.js";
import { className, decodeRows, packedLength, unpackBits } from "../src/gallery/rows.js";
import { ThumbCache, dimOutside } from "../src/gallery/thumbs.js";

/** Columns as nbexplain/widget/_gallery_wire.py packs them, for rows given as objects. */
function columns(/** @type {any[]} */ rows) {
  const names = ["id", "key", "label", "pred", "target", "correct", "prob", "prob_e", "area", "error", "thumb_w", "thumb_h", "thumb_len"];
  return Object.fromEntries(names.map((n) => [n, rows.map((r) => r[n] ?? null)]));
}

function row(/** @type {Record<string, any>} */ over) {
  return { id: 0, key: String(over.id ?? 0), label: 0, pred: 0, target: 0, correct: true, prob: 0.9, probE: 0.8,
    area: 0.1, error: null, thumbW: 2, thumbH: 2, thumb: new Uint8Array([1]), mask: new Uint8Array([0]), ...over };
}

const rowsOf = (/** @type {any[]} */ list) => new Map(list.map((r) => [r.id, row(r)]));

test("unpackBits reads np.packbits' order: most significant bit first, padded last byte", () => {
  // np.packbits([1, 0, 1, 1, 0, 0, 0, 0, 1]) == [176, 128]
  assert.deepEqual([...unpackBits(new Uint8Array([176, 128]), 9)], [1, 0, 1, 1, 0, 0, 0, 0, 1]);
  assert.equal(packedLength(3, 3), 2);
  assert.equal(packedLength(8, 8), 8);
  assert.throws(() => unpackBits(new Uint8Array([1]), 9), /expected 2 packed bytes/);
});

test("decodeRows splits both blobs by the rows' sizes without copying", () => {
  const thumbs = new Uint8Array([10, 11, 12, 20, 21]);
  const masks = new Uint8Array([0b11000000, 0xff, 0x80]); // 2x2 -> 1 byte, 3x3 -> 2 bytes
  const cols = columns([
    { id: 4, thumb_w: 2, thumb_h: 2, thumb_len: 3, area: 0.5 },
    { id: 9, thumb_w: 3, thumb_h: 3, thumb_len: 2, correct: false },
    { id: 11, thumb_w: 0, thumb_h: 0, thumb_len: 0, error: "ValueError: bad image" },
  ]);
  const rows = decodeRows(cols, new DataView(thumbs.buffer), masks.buffer);
  assert.deepEqual(rows.map((r) => r.id), [4, 9, 11]);
  assert.deepEqual([...rows[0].thumb], [10, 11, 12]);
  assert.deepEqual([...rows[1].thumb], [20, 21]);
  assert.deepEqual([...rows[0].mask], [0b11000000]);
  assert.deepEqual([...rows[1].mask], [0xff, 0x80]);
  assert.equal(rows[1].thumb.buffer, thumbs.buffer, "a view, not a copy");
  assert.equal(rows[2].thumb.length, 0);
  assert.equal(rows[2].error, "ValueError: bad image");
  assert.equal(rows[0].area, 0.5);
  assert.equal(rows[1].correct, false);
});

test("decodeRows refuses blobs shorter than the columns say", () => {
  const cols = columns([{ id: 1, thumb_w: 8, thumb_h: 8, thumb_len: 4 }]);
  assert.throws(() => decodeRows(cols, new Uint8Array(4), new Uint8Array(7)), /blobs end before row 0/);
  assert.throws(() => decodeRows({ ...cols, area: [] }, new Uint8Array(4), new Uint8Array(8)), /column area must hold 1 values/);
  assert.deepEqual(decodeRows({}, null, null), []);
});

test("before grouping, thumbnails are shelved by class; failures last", () => {
  const rows = rowsOf([{ id: 3, target: 2 }, { id: 1, target: 0 }, { id: 2, target: 2 }, { id: 5, target: null, error: "x" }]);
  const list = shelves(rows, [], false, ["cat", "dog"]);
  assert.deepEqual(list.map((s) => [s.key, s.kind, s.name, s.ids]), [
    ["c0", "class", "cat", [1]],
    ["c2", "class", "class 2", [2, 3]],
    ["rest", "errors", "could not be explained", [5]],
  ]);
  assert.equal(className(["cat"], null), "\u2014");
});

test("once grouped, the audit's groups are the shelves, with their maps' positions", () => {
  const rows = rowsOf([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4, error: "boom" }]);
  const groups = [
    { index: 0, target: 0, target_name: "cat", size: 2, ids: [2, 3], representative: 3, suspicion: 0.7, accuracy: 0.5 },
    { index: 1, target: 0, target_name: "cat", size: 1, ids: [1], representative: 1, suspicion: 0.1, accuracy: 1 },
  ];
  const list = shelves(rows, /** @type {any} */ (groups), true);
  assert.deepEqual(list.map((s) => [s.key, s.ids, s.mapIndex]), [["g0", [2, 3], 0], ["g1", [1], 1], ["rest", [4], -1]]);
  // Groups by accuracy: the lowest first; by size: the largest first; errors stay last.
  assert.deepEqual(sortShelves(list, "accuracy").map((s) => s.key), ["g0", "g1", "rest"]);
  assert.deepEqual(sortShelves([...list].reverse(), "suspicion").map((s) => s.key), ["g0", "g1", "rest"]);
  assert.deepEqual(sortShelves([list[1], list[2], list[0]], "size").map((s) => s.key), ["g0", "g1", "rest"]);
});

test("filters: class, correctness, area range and confidence; unknown values fail an active filter", () => {
  const r = row({ target: 1, correct: false, area: 0.3, prob: 0.6 });
  assert.ok(rowPasses(r, NO_FILTERS));
  assert.ok(rowPasses(r, { ...NO_FILTERS, target: 1, correct: "wrong" }));
  assert.ok(!rowPasses(r, { ...NO_FILTERS, target: 0 }));
  assert.ok(!rowPasses(r, { ...NO_FILTERS, correct: "correct" }));
  assert.ok(!rowPasses(r, { ...NO_FILTERS, maxArea: 0.2 }));
  assert.ok(!rowPasses(r, { ...NO_FILTERS, minArea: 0.4 }));
  assert.ok(rowPasses(r, { ...NO_FILTERS, minArea: 0.3, maxArea: 0.3 }));
  assert.ok(!rowPasses(r, { ...NO_FILTERS, minConfidence: 0.7 }));
  const unlabelled = row({ correct: null, area: null, prob: null });
  assert.ok(rowPasses(unlabelled, NO_FILTERS));
  assert.ok(!rowPasses(unlabelled, { ...NO_FILTERS, correct: "wrong" }));
  assert.ok(!rowPasses(unlabelled, { ...NO_FILTERS, maxArea: 0.5 }));
  assert.ok(!rowPasses(unlabelled, { ...NO_FILTERS, minConfidence: 0.1 }));
});

test("arrange drops groups under the suspicion floor and groups left empty, never classes not grouped yet", () => {
  const rows = rowsOf([{ id: 1, area: 0.05 }, { id: 2, area: 0.5 }, { id: 3, area: 0.6 }]);
  const groups = [
    { index: 0, target: 0, target_name: "a", size: 1, ids: [1], representative: 1, suspicion: 0.8 },
    { index: 1, target: 0, target_name: "a", size: 2, ids: [2, 3], representative: 3, suspicion: 0.1 },
  ];
  const all = shelves(rows, /** @type {any} */ (groups), true);
  const keys = (/** @type {any} */ f) => arrange(all, rows, { ...NO_FILTERS, ...f }, "suspicion", "representative").map((x) => [x.shelf.key, x.members]);
  assert.deepEqual(keys({}), [["g0", [1]], ["g1", [3, 2]]]);
  assert.deepEqual(keys({ minSuspicion: 0.5 }), [["g0", [1]]]);
  assert.deepEqual(keys({ maxArea: 0.55 }), [["g0", [1]], ["g1", [2]]]);
  assert.deepEqual(keys({ minArea: 0.3 }), [["g1", [3, 2]]]);
  const live = shelves(rows, [], false);
  assert.equal(arrange(live, rows, { ...NO_FILTERS, minSuspicion: 0.9 }, "suspicion", "area").length, 1);
});

test("members sort by area or confidence either way, unknown last; the representative leads by default", () => {
  const rows = rowsOf([{ id: 1, area: 0.3, prob: 0.5 }, { id: 2, area: 0.1, prob: 0.9 }, { id: 3, area: null, prob: 0.7 }, { id: 4, area: 0.2, prob: null }]);
  const ids = [1, 2, 3, 4];
  assert.deepEqual(sortMembers(ids, rows, "area"), [2, 4, 1, 3]);
  assert.deepEqual(sortMembers(ids, rows, "area-desc"), [1, 4, 2, 3]);
  assert.deepEqual(sortMembers(ids, rows, "confidence"), [2, 3, 1, 4]);
  assert.deepEqual(sortMembers(ids, rows, "confidence-asc"), [1, 3, 2, 4]);
  assert.deepEqual(sortMembers([4, 1, 3, 2], rows, "representative", 3), [3, 1, 2, 4]);
});

test("classOptions counts the images of each class present", () => {
  const rows = rowsOf([{ id: 1, target: 2 }, { id: 2, target: 0 }, { id: 3, target: 2 }, { id: 4, target: null, label: 1 }]);
  assert.deepEqual(classOptions(rows, ["a", "b", "c"]), [[0, "a", 1], [1, "b", 1], [2, "c", 2]]);
});

test("dimOutside dims removed pixels and outlines the kept region from outside", () => {
  // 4x3 image, every channel 200; the mask keeps the pixel at (1, 1) only.
  const w = 4;
  const h = 3;
  const rgba = new Uint8ClampedArray(w * h * 4).fill(200);
  const mask = new Uint8Array(w * h);
  mask[1 * w + 1] = 1;
  dimOutside(rgba, mask, w, h);
  const px = (/** @type {number} */ x, /** @type {number} */ y) => [...rgba.subarray((y * w + x) * 4, (y * w + x) * 4 + 4)];
  assert.deepEqual(px(1, 1), [200, 200, 200, 200], "kept pixels are untouched");
  assert.deepEqual(px(0, 1), [255, 210, 63, 200], "a removed neighbour is the outline");
  assert.deepEqual(px(1, 0), [255, 210, 63, 200]);
  assert.deepEqual(px(3, 2), [60, 60, 60, 200], "far removed pixels are dimmed");
  assert.deepEqual(px(0, 0), [60, 60, 60, 200], "diagonal neighbours are not outline");
  assert.throws(() => dimOutside(rgba, new Uint8Array(3), w, h), /4x3 mask/);
  // Everything kept: nothing changes.
  const full = new Uint8ClampedArray(16).fill(9);
  dimOutside(full, new Uint8Array(4).fill(1), 2, 2);
  assert.ok(full.every((v) => v === 9));
});

test("the thumbnail cache draws each image once, again when its bytes change, and keeps the most recent", async () => {
  /** @type {number[]} */
  const drawn = [];
  const cache = new ThumbCache(2, async (r) => { drawn.push(r.id); return /** @type {any} */ ({ id: r.id }); });
  const a = row({ id: 1, thumb: new Uint8Array([1, 2]) });
  const b = row({ id: 2, thumb: new Uint8Array([3]) });
  const c = row({ id: 3, thumb: new Uint8Array([4]) });
  assert.deepEqual(await cache.pixels(a), { id: 1 });
  await cache.pixels(b);
  await cache.pixels({ ...a, thumb: new Uint8Array([1, 2]) }); // the same bytes re-sent (a fold): no redraw
  assert.deepEqual(drawn, [1, 2]);
  await cache.pixels(c); // over the limit: the least recently used (2) goes
  assert.deepEqual([...cache.entries.keys()], [1, 3]);
  await cache.pixels({ ...a, mask: new Uint8Array([255]) }); // another mask: drawn again
  assert.deepEqual(drawn, [1, 2, 3, 1]);
  assert.equal(await cache.pixels(row({ id: 9, thumb: new Uint8Array(0) })), null, "no thumbnail, nothing drawn");
  assert.deepEqual(drawn, [1, 2, 3, 1]);
});
