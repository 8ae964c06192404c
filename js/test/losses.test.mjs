import assert from "node:assert/strict";
import { test } from "node:test";
import { LossSeries, linearScale, logRange, logScale, logTicks, polylines, powerLabel } from "../src/losses.js";

test("LossSeries keeps steps and terms aligned, padding late terms", () => {
  const s = new LossSeries();
  s.push(1, { kl: 1, area: 0.5 });
  s.push(2, { kl: 2, area: 0.4, tv: 3 });
  assert.deepEqual(s.steps, [1, 2]);
  assert.deepEqual(s.terms(), ["kl", "area", "tv"]);
  assert.deepEqual(s.values.get("tv"), [null, 3]);
  assert.deepEqual(s.values.get("kl"), [1, 2]);
});

test("LossSeries keeps measurements apart from the loss terms; skips repeated steps and non-finite values", () => {
  const s = new LossSeries();
  s.push(1, { kl: 1, prob: 0.9, mask_area: 0.2 });
  s.push(1, { kl: 5 });
  s.push(2, { kl: Number.NaN, prob: 0.8 });
  assert.deepEqual(s.terms(), ["kl"]);
  assert.deepEqual(s.values.get("kl"), [1, null]);
  assert.deepEqual(s.measure("prob"), [0.9, 0.8]);
  assert.deepEqual(s.measure("mask_area"), [0.2, null]);
  assert.deepEqual(s.measure("never_sent"), [null, null]);
});

test("LossSeries thins to stay under maxPoints and keeps the newest step", () => {
  const s = new LossSeries(10);
  for (let i = 1; i <= 1000; i++) s.push(i, { kl: i, prob: i / 1000 });
  assert.ok(s.steps.length <= 10, `${s.steps.length} points`);
  assert.equal(s.steps[s.steps.length - 1], 1000);
  assert.equal(s.values.get("kl")?.length, s.steps.length);
  assert.deepEqual(s.values.get("kl"), s.steps);
  assert.deepEqual(s.measure("prob"), s.steps.map((i) => i / 1000));
});

test("LossSeries.fromHistory reads the synced history trait", () => {
  const s = LossSeries.fromHistory({ steps: [0, 5, 9], terms: { kl: [3, 2, 1], prob: [0.1, 0.5, 0.9] } });
  assert.deepEqual(s.steps, [0, 5, 9]);
  assert.deepEqual(s.terms(), ["kl"]);
  assert.deepEqual(s.values.get("kl"), [3, 2, 1]);
  assert.deepEqual(s.measure("prob"), [0.1, 0.5, 0.9]);
  assert.deepEqual(LossSeries.fromHistory(/** @type {any} */ (undefined)).steps, []);
});

test("linearScale puts values on a fixed axis: nothing is rescaled to its own range", () => {
  // A series moving between 0.2 and 0.3 stays between 0.2 and 0.3 of the 0..1 axis.
  assert.deepEqual(linearScale([0.2, 0.3, null, 0.25]), [0.2, 0.3, null, 0.25]);
  assert.deepEqual(linearScale([3, 3]), [3, 3]); // outside the axis: the plot clips it
  assert.deepEqual(linearScale([2, 4], 0, 8), [0.25, 0.5]);
});

test("logRange spans whole decades from the largest positive value, at most LOG_DECADES down", () => {
  assert.deepEqual(logRange([[1.9, 0.5], [0.0002, 0, -1, null]]), [-4, 1]);
  assert.deepEqual(logRange([[1, 1e-12]], 6), [-6, 0]);
  assert.deepEqual(logRange([[0.5, 0.5]]), [-1, 0]); // a flat series still gets a decade
  assert.equal(logRange([[0, -2, null]]), null);
});

test("logScale maps decades evenly and leaves out (and counts) values a log axis cannot show", () => {
  const { scaled, nonPositive } = logScale([1, 0.1, 0.01, 0, -3, null], [-2, 0]);
  assert.deepEqual(scaled, [1, 0.5, 0, null, null, null]);
  assert.equal(nonPositive, 2);
  // Below the range: under the axis (clipped), not pulled up to it.
  assert.ok(/** @type {number} */ (logScale([1e-5], [-2, 0]).scaled[0]) < 0);
});

test("logTicks label each decade, every other one on a wide axis", () => {
  assert.deepEqual(logTicks([-2, 0]), [
    { at: 1, label: "1" }, { at: 0.5, label: "0.1" }, { at: 0, label: "0.01" },
  ]);
  assert.deepEqual(logTicks([-6, 1]).map((t) => t.label), ["10", "0.1", "1e-3", "1e-5"]);
  assert.deepEqual([3, 0, -1, -3, 4].map(powerLabel), ["1000", "1", "0.1", "1e-3", "1e4"]);
});

test("polylines maps steps to x and values to y (top = 1) and breaks at gaps", () => {
  const lines = polylines([0, 5, 10, 15], [0, 1, null, 0.5], { width: 104, height: 54, pad: 2, stepMin: 0, stepMax: 20 });
  assert.deepEqual(lines, ["2,52 27,2", "77,27"]);
});

test("LossSeries.fromHistory can number the steps as the frames do (from 1)", () => {
  const s = LossSeries.fromHistory({ steps: [0, 5, 9], terms: { kl: [3, 2, 1] } }, 600, 1);
  assert.deepEqual(s.steps, [1, 6, 10]);
});
