import assert from "node:assert/strict";
import { test } from "node:test";
import { LossSeries, normalise, polylines } from "../src/losses.js";

test("LossSeries keeps steps and terms aligned, padding late terms", () => {
  const s = new LossSeries();
  s.push(1, { kl: 1, area: 0.5 });
  s.push(2, { kl: 2, area: 0.4, tv: 3 });
  assert.deepEqual(s.steps, [1, 2]);
  assert.deepEqual(s.terms(), ["kl", "area", "tv"]);
  assert.deepEqual(s.values.get("tv"), [null, 3]);
  assert.deepEqual(s.values.get("kl"), [1, 2]);
});

test("LossSeries skips measurements, repeated steps and non-finite values", () => {
  const s = new LossSeries();
  s.push(1, { kl: 1, prob: 0.9, mask_area: 0.2 });
  s.push(1, { kl: 5 });
  s.push(2, { kl: Number.NaN });
  assert.deepEqual(s.terms(), ["kl"]);
  assert.deepEqual(s.values.get("kl"), [1, null]);
});

test("LossSeries thins to stay under maxPoints and keeps the newest step", () => {
  const s = new LossSeries(10);
  for (let i = 1; i <= 1000; i++) s.push(i, { kl: i });
  assert.ok(s.steps.length <= 10, `${s.steps.length} points`);
  assert.equal(s.steps[s.steps.length - 1], 1000);
  assert.equal(s.values.get("kl")?.length, s.steps.length);
  assert.deepEqual(s.values.get("kl"), s.steps);
});

test("LossSeries.fromHistory reads the synced history trait", () => {
  const s = LossSeries.fromHistory({ steps: [0, 5, 9], terms: { kl: [3, 2, 1], prob: [0.1, 0.5, 0.9] } });
  assert.deepEqual(s.steps, [0, 5, 9]);
  assert.deepEqual(s.terms(), ["kl"]);
  assert.deepEqual(s.values.get("kl"), [3, 2, 1]);
  assert.deepEqual(LossSeries.fromHistory(/** @type {any} */ (undefined)).steps, []);
});

test("normalise scales each series to [0, 1]; constants lie at 0; nulls stay", () => {
  assert.deepEqual(normalise([2, 4, null, 6]), [0, 0.5, null, 1]);
  assert.deepEqual(normalise([3, 3]), [0, 0]);
  assert.deepEqual(normalise([]), []);
});

test("polylines maps steps to x and values to y (top = 1) and breaks at gaps", () => {
  const lines = polylines([0, 5, 10, 15], [0, 1, null, 0.5], { width: 104, height: 54, pad: 2, stepMin: 0, stepMax: 20 });
  assert.deepEqual(lines, ["2,52 27,2", "77,27"]);
});
