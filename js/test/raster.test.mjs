import assert from "node:assert/strict";
import { test } from "node:test";
import { DIVERGING, SEQUENTIAL, buildLut, colorAt, cssColor } from "../src/colormap.js";
import { NECESSARY_RED, mapToRgba, maskedRgba, rgbToRgba, tintRgba } from "../src/raster.js";

test("colorAt hits the stops exactly and clamps outside [0, 1]", () => {
  assert.deepEqual(colorAt(SEQUENTIAL, 0), SEQUENTIAL[0][1]);
  assert.deepEqual(colorAt(SEQUENTIAL, 1), SEQUENTIAL[SEQUENTIAL.length - 1][1]);
  assert.deepEqual(colorAt(SEQUENTIAL, 0.3), SEQUENTIAL[1][1]);
  assert.deepEqual(colorAt(SEQUENTIAL, -3), SEQUENTIAL[0][1]);
  assert.deepEqual(colorAt(SEQUENTIAL, 7), SEQUENTIAL[SEQUENTIAL.length - 1][1]);
  assert.deepEqual(colorAt(SEQUENTIAL, Number.NaN), SEQUENTIAL[0][1]);
  assert.equal(cssColor(DIVERGING, 0.5), "rgb(150, 150, 150)");
});

test("colorAt interpolates linearly between stops", () => {
  const stops = /** @type {any} */ ([[0, [0, 0, 0]], [1, [200, 100, 50]]]);
  assert.deepEqual(colorAt(stops, 0.5), [100, 50, 25]);
});

test("the sequential map gets brighter from byte 0 to 255", () => {
  const lut = buildLut(SEQUENTIAL);
  assert.equal(lut.length, 768);
  const luminance = (/** @type {number} */ b) => 0.3 * lut[b * 3] + 0.59 * lut[b * 3 + 1] + 0.11 * lut[b * 3 + 2];
  for (let b = 1; b < 256; b++) assert.ok(luminance(b) >= luminance(b - 1) - 0.5, `byte ${b}`);
});

test("rgbToRgba adds opaque alpha and checks the length", () => {
  assert.deepEqual([...rgbToRgba(new Uint8Array([1, 2, 3, 4, 5, 6]), 2, 1)], [1, 2, 3, 255, 4, 5, 6, 255]);
  assert.throws(() => rgbToRgba(new Uint8Array(5), 2, 1), /expected 6 RGB bytes/);
});

test("mapToRgba greys without a table and colours with one", () => {
  assert.deepEqual([...mapToRgba(new Uint8Array([0, 200]))], [0, 0, 0, 255, 200, 200, 200, 255]);
  const lut = buildLut(SEQUENTIAL);
  const out = mapToRgba(new Uint8Array([255]), lut);
  assert.deepEqual([...out.slice(0, 3)], SEQUENTIAL[SEQUENTIAL.length - 1][1]);
});

test("maskedRgba scales a coarse mask to the image by nearest neighbour", () => {
  // 4x2 white image, 2x1 mask: left half kept, right half removed.
  const rgb = new Uint8Array(4 * 2 * 3).fill(200);
  const out = maskedRgba(rgb, 4, 2, new Uint8Array([255, 0]), 2, 1);
  const red = [...Array(8).keys()].map((i) => out[i * 4]);
  assert.deepEqual(red, [200, 200, 0, 0, 200, 200, 0, 0]);
  assert.ok([...Array(8).keys()].every((i) => out[i * 4 + 3] === 255));
});

test("maskedRgba with a soft mask scales the pixel", () => {
  const out = maskedRgba(new Uint8Array([200, 100, 50]), 1, 1, new Uint8Array([51]), 1, 1);
  assert.deepEqual([...out], [40, 20, 10, 255]);
  assert.throws(() => maskedRgba(new Uint8Array(3), 1, 1, new Uint8Array(2), 1, 1), /mask bytes/);
});

test("maskedRgba puts the fill where pixels are removed, blending a soft mask", () => {
  const rgb = new Uint8Array([200, 100, 50, 200, 100, 50]);
  const fill = new Uint8Array([10, 20, 30, 10, 20, 30]);
  const out = maskedRgba(rgb, 2, 1, new Uint8Array([255, 0]), 2, 1, fill);
  assert.deepEqual([...out], [200, 100, 50, 255, 10, 20, 30, 255]);
  const half = maskedRgba(rgb.subarray(0, 3), 1, 1, new Uint8Array([51]), 1, 1, fill.subarray(0, 3));
  assert.deepEqual([...half], [48, 36, 34, 255]);
  assert.throws(() => maskedRgba(rgb, 2, 1, new Uint8Array(2), 2, 1, new Uint8Array(3)), /fill bytes/);
});

test("tintRgba reddens only the region, scaled to the picture by nearest neighbour", () => {
  // 4x1 grey picture, 2x1 region: the right half is necessary.
  const rgba = rgbToRgba(new Uint8Array(4 * 3).fill(100), 4, 1);
  const out = tintRgba(rgba, 4, 1, new Uint8Array([0, 255]), 2, 1, 0.5);
  assert.equal(out, rgba, "in place");
  const red = (/** @type {number} */ i) => [...out.slice(i * 4, i * 4 + 4)];
  assert.deepEqual(red(0), [100, 100, 100, 255]);
  assert.deepEqual(red(1), [100, 100, 100, 255]);
  const tinted = NECESSARY_RED.map((c) => Math.round(50 + 0.5 * c));
  assert.deepEqual(red(2), [...tinted, 255]);
  assert.deepEqual(red(3), [...tinted, 255]);
  assert.deepEqual([...tintRgba(rgbToRgba(new Uint8Array(3), 1, 1), 1, 1, new Uint8Array([255]), 1, 1, 1)].slice(0, 3), NECESSARY_RED);
  assert.throws(() => tintRgba(rgba, 4, 1, new Uint8Array(3), 2, 1), /region bytes/);
});
