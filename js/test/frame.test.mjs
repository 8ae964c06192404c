import assert from "node:assert/strict";
import { test } from "node:test";
import { checkShape, toBytes } from "../src/bytes.js";
import { decodeChannel, decodeFrame, numberOrNull } from "../src/frame.js";

const frameContent = (extra = {}) => ({
  type: "frame",
  step: 7,
  total: 120,
  losses: { area: 0.4, kl: null },
  prob: 0.91,
  area: 0.25,
  label_kept: true,
  shape: [2, 3],
  dtype: "uint8",
  elapsed: 0.5,
  ...extra,
});

test("toBytes views DataView, ArrayBuffer and typed arrays without copying", () => {
  const raw = new Uint8Array([9, 1, 2, 3, 9]).buffer;
  const view = new DataView(raw, 1, 3);
  const bytes = toBytes(view);
  assert.deepEqual([...bytes], [1, 2, 3]);
  assert.equal(bytes.buffer, raw);
  assert.deepEqual([...toBytes(raw)], [9, 1, 2, 3, 9]);
  assert.deepEqual([...toBytes(new Uint16Array([258]))], [2, 1]);
  assert.equal(toBytes(null).length, 0);
  assert.throws(() => toBytes(/** @type {any} */ ("text")), TypeError);
});

test("checkShape rejects a shape that does not match the bytes", () => {
  assert.deepEqual(checkShape(new Uint8Array(6), [2, 3], 1), { height: 2, width: 3 });
  assert.deepEqual(checkShape(new Uint8Array(18), [2, 3], 3), { height: 2, width: 3 });
  assert.throws(() => checkShape(new Uint8Array(5), [2, 3], 1), /expected 2x3x1 = 6 bytes, got 5/);
  assert.throws(() => checkShape(new Uint8Array(0), [2], 1), /shape must be/);
  assert.throws(() => checkShape(new Uint8Array(0), [-1, 0], 1), /non-negative/);
});

test("decodeFrame reads numbers and the mask buffer", () => {
  const mask = new Uint8Array([0, 255, 255, 0, 0, 255]);
  const f = decodeFrame(frameContent(), [new DataView(mask.buffer)]);
  assert.equal(f.step, 7);
  assert.equal(f.total, 120);
  assert.equal(f.width, 3);
  assert.equal(f.height, 2);
  assert.deepEqual([...f.mask], [...mask]);
  assert.equal(f.prob, 0.91);
  assert.equal(f.labelKept, true);
  assert.deepEqual(f.losses, { area: 0.4, kl: null });
});

test("decodeFrame rejects other messages, missing and mis-sized buffers", () => {
  assert.throws(() => decodeFrame({ type: "channel" }, []), /not a frame/);
  assert.throws(() => decodeFrame(frameContent(), []), /mask buffer/);
  assert.throws(() => decodeFrame(frameContent(), [new Uint8Array(5)]), /expected 2x3x1/);
  assert.throws(() => decodeFrame(frameContent({ dtype: "float32" }), [new Uint8Array(6)]), /dtype/);
});

test("decodeFrame turns missing numbers into null", () => {
  const f = decodeFrame(frameContent({ prob: null, area: undefined }), [new Uint8Array(6)]);
  assert.equal(f.prob, null);
  assert.equal(f.area, null);
});

test("decodeChannel reads both maps, scale, energies and edges", () => {
  const a = new Uint8Array([0, 128, 255, 1]);
  const b = new Uint8Array([5, 6, 7, 8]);
  const c = decodeChannel(
    {
      type: "channel",
      request_id: 3,
      layer: "layer1",
      channel: 12,
      id: "layer1:12",
      shape: [2, 2],
      scale: [0, 4.5],
      energy_original: 2.5,
      energy_explanation: 3,
      incoming: [{ node: "relu:5", score: 0.8 }],
      outgoing: [],
    },
    [a.buffer, new DataView(b.buffer)],
  );
  assert.equal(c.requestId, 3);
  assert.equal(c.id, "layer1:12");
  assert.deepEqual([...c.mapOriginal], [...a]);
  assert.deepEqual([...c.mapExplanation], [...b]);
  assert.deepEqual(c.scale, [0, 4.5]);
  assert.equal(c.energyExplanation, 3);
  assert.deepEqual(c.incoming, [{ node: "relu:5", score: 0.8 }]);
});

test("decodeChannel needs two maps of the declared shape", () => {
  const content = { type: "channel", layer: "l", channel: 0, shape: [2, 2] };
  assert.throws(() => decodeChannel(content, [new Uint8Array(4)]), /two map buffers/);
  assert.throws(() => decodeChannel(content, [new Uint8Array(4), new Uint8Array(3)]), /expected 2x2x1/);
});

test("numberOrNull", () => {
  assert.equal(numberOrNull(1.5), 1.5);
  assert.equal(numberOrNull("2"), 2);
  assert.equal(numberOrNull(null), null);
  assert.equal(numberOrNull(Number.NaN), null);
  assert.equal(numberOrNull(Infinity), null);
});

test("the necessary half's frames decode like the mask's, with their own half and verdict", () => {
  const mask = new Uint8Array(6);
  const kept = decodeFrame(frameContent(), [mask]);
  assert.equal(kept.half, "sufficient");
  assert.equal(kept.changesDecision, false);
  const necessary = decodeFrame(frameContent({ type: "necessary", changes_decision: true }), [mask]);
  assert.equal(necessary.half, "necessary");
  assert.equal(necessary.changesDecision, true);
  assert.equal(necessary.step, 7);
  assert.throws(() => decodeFrame(frameContent({ type: "channel" }), [mask]), /not a frame/);
});
