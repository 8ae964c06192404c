// Colour maps as 256-entry lookup tables, built from a few hand-picked stops.

/** @typedef {[number, number, number]} RGB */
/** @typedef {[number, RGB][]} Stops position in [0, 1] and colour, ascending */

/** Dark to bright, for activation maps: navy, violet, red-orange, amber, pale yellow. */
export const SEQUENTIAL = /** @type {Stops} */ ([
  [0.0, [12, 10, 38]],
  [0.3, [88, 32, 112]],
  [0.6, [204, 72, 62]],
  [0.85, [244, 158, 44]],
  [1.0, [252, 238, 168]],
]);

/** Negative blue, zero grey, positive orange: for "explanation minus original". */
export const DIVERGING = /** @type {Stops} */ ([
  [0.0, [38, 98, 196]],
  [0.5, [150, 150, 150]],
  [1.0, [222, 96, 36]],
]);

/**
 * Interpolate a colour at t in [0, 1] (clamped; NaN gives the lowest colour).
 * @param {Stops} stops
 * @param {number} t
 * @returns {RGB}
 */
export function colorAt(stops, t) {
  const x = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  for (let i = 1; i < stops.length; i++) {
    const [p1, c1] = stops[i];
    if (x <= p1) {
      const [p0, c0] = stops[i - 1];
      const f = p1 > p0 ? (x - p0) / (p1 - p0) : 0;
      return /** @type {RGB} */ (c0.map((v, k) => Math.round(v + f * (c1[k] - v))));
    }
  }
  return /** @type {RGB} */ ([...stops[stops.length - 1][1]]);
}

/**
 * A 256x3 lookup table: entry b is the colour of byte value b.
 * @param {Stops} stops
 * @returns {Uint8Array}
 */
export function buildLut(stops) {
  const lut = new Uint8Array(256 * 3);
  for (let b = 0; b < 256; b++) lut.set(colorAt(stops, b / 255), b * 3);
  return lut;
}

/**
 * CSS colour string for t in [0, 1].
 * @param {Stops} stops
 * @param {number} t
 */
export function cssColor(stops, t) {
  const [r, g, b] = colorAt(stops, t);
  return `rgb(${r}, ${g}, ${b})`;
}

/** Distinct line colours for loss terms (readable on light and dark backgrounds). */
export const CATEGORICAL = [
  "#3b82c4", "#e0823d", "#4aa564", "#d1495b", "#8e6cc0",
  "#a0785a", "#d67fb6", "#7f8c8d", "#b5a642", "#3fb0b5",
];
