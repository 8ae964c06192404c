// Training curves: collect per-step values, thin them, and place them on honest axes
// (a fixed 0..1 axis for the area and p(target), a log axis for the losses; nothing is
// rescaled to its own range).

/** History keys that are measurements, not loss terms: area kept and p(target | explanation). */
export const NOT_LOSSES = new Set(["prob", "mask_area"]);

/** Most decades a log axis spans below its largest value (smaller values run off its bottom). */
export const LOG_DECADES = 6;

/** Collects loss values per term, and the measurements, as frames arrive, keeping at most `maxPoints`. */
export class LossSeries {
  /** @param {number} maxPoints */
  constructor(maxPoints = 600) {
    this.maxPoints = Math.max(4, maxPoints);
    /** @type {number[]} */
    this.steps = [];
    /** @type {Map<string, (number | null)[]>} loss terms (and "total") */
    this.values = new Map();
    /** @type {Map<string, (number | null)[]>} measurements ("prob", "mask_area") */
    this.measures = new Map();
  }

  /**
   * Append one step's values (a name seen for the first time is padded with nulls).
   * Loss terms go to `values`, the measurements of NOT_LOSSES to `measures`.
   * @param {number} step
   * @param {Record<string, number | null | undefined>} row
   */
  push(step, row) {
    const n = this.steps.length;
    if (n > 0 && step <= this.steps[n - 1]) return; // duplicates or out of order
    this.steps.push(step);
    for (const name of Object.keys(row)) {
      const into = NOT_LOSSES.has(name) ? this.measures : this.values;
      if (!into.has(name)) into.set(name, new Array(n).fill(null));
    }
    for (const into of [this.values, this.measures]) {
      for (const [name, series] of into) series.push(finiteOrNull(row[name]));
    }
    if (this.steps.length > this.maxPoints) this.#thin();
  }

  /** Drop every second point (the last is kept), halving memory and drawing cost. */
  #thin() {
    const keep = (/** @type {number} */ i, /** @type {number} */ n) => i % 2 === 0 || i === n - 1;
    const n = this.steps.length;
    this.steps = this.steps.filter((_, i) => keep(i, n));
    for (const into of [this.values, this.measures]) {
      for (const [name, series] of into) into.set(name, series.filter((_, i) => keep(i, n)));
    }
  }

  /** @returns {string[]} the loss terms, in the order first seen */
  terms() {
    return [...this.values.keys()];
  }

  /**
   * A measurement per step ("prob" or "mask_area"); all nulls when never sent.
   * @param {string} name
   * @returns {(number | null)[]}
   */
  measure(name) {
    return this.measures.get(name) ?? this.steps.map(() => null);
  }

  /**
   * Build from the synced `history` trait: {"steps": [...], "terms": {name: [...]}}.
   * @param {{steps?: number[], terms?: Record<string, (number | null)[]>}} history
   * @param {number} maxPoints
   * @param {number} firstStep the step of the history's index 0 (the trait counts from 0, frames from 1)
   */
  static fromHistory(history, maxPoints = 600, firstStep = 0) {
    const series = new LossSeries(maxPoints);
    const steps = history?.steps ?? [];
    const terms = history?.terms ?? {};
    steps.forEach((step, i) => {
      /** @type {Record<string, number | null>} */
      const row = {};
      for (const [name, values] of Object.entries(terms)) row[name] = values[i] ?? null;
      series.push(step + firstStep, row);
    });
    return series;
  }
}

/**
 * Values on a fixed axis [lo, hi] as positions in [0, 1] (0 = lo); values outside lie outside
 * [0, 1] (the plot clips them), nulls stay null.
 * @param {(number | null)[]} values
 * @param {number} lo
 * @param {number} hi
 * @returns {(number | null)[]}
 */
export function linearScale(values, lo = 0, hi = 1) {
  const span = hi > lo ? hi - lo : 1;
  return values.map((v) => (isFiniteNumber(v) ? (v - lo) / span : null));
}

/**
 * The decades a log axis spans to show these series: [lo, hi] as powers of ten (integers),
 * from the largest positive value down to the smallest, at most `decades` below the top.
 * Null when no value is positive.
 * @param {(number | null)[][]} seriesList
 * @param {number} decades
 * @returns {[number, number] | null}
 */
export function logRange(seriesList, decades = LOG_DECADES) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of seriesList) {
    for (const v of values) {
      if (!isFiniteNumber(v) || v <= 0) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (hi === -Infinity) return null;
  const top = Math.ceil(Math.log10(hi) - 1e-9) + 0; // + 0: no -0
  const bottom = Math.max(Math.floor(Math.log10(lo) + 1e-9), top - decades) + 0;
  return [Math.min(bottom, top - 1), top];
}

/**
 * Values on a log axis spanning the decades [lo, hi] as positions in [0, 1] (0 = 10^lo).
 * A value <= 0 has no place on a log axis: it becomes null (a gap), and is counted.
 * @param {(number | null)[]} values
 * @param {[number, number]} range powers of ten
 * @returns {{scaled: (number | null)[], nonPositive: number}}
 */
export function logScale(values, range) {
  const [lo, hi] = range;
  const span = hi > lo ? hi - lo : 1;
  let nonPositive = 0;
  const scaled = values.map((v) => {
    if (!isFiniteNumber(v)) return null;
    if (v <= 0) {
      nonPositive += 1;
      return null;
    }
    return (Math.log10(v) - lo) / span;
  });
  return { scaled, nonPositive };
}

/**
 * Tick labels of a log axis: one per decade, every other one past five decades.
 * @param {[number, number]} range powers of ten
 * @returns {{at: number, label: string}[]} `at` in [0, 1] (0 = bottom)
 */
export function logTicks(range) {
  const [lo, hi] = range;
  const span = hi > lo ? hi - lo : 1;
  const every = span > 5 ? 2 : 1;
  /** @type {{at: number, label: string}[]} */
  const ticks = [];
  for (let e = hi; e >= lo; e -= every) ticks.push({ at: (e - lo) / span, label: powerLabel(e) });
  return ticks;
}

/** @param {number} e a power of ten */
export function powerLabel(e) {
  if (e >= 0 && e <= 3) return String(10 ** e);
  if (e < 0 && e >= -2) return (10 ** e).toFixed(-e);
  return `1e${e}`;
}

/**
 * SVG polyline point strings for one scaled series; a gap (null) starts a new line.
 * @param {number[]} steps
 * @param {(number | null)[]} scaled positions, 0 at the bottom and 1 at the top of the box
 * @param {{width: number, height: number, pad?: number, stepMin?: number, stepMax?: number}} box
 * @returns {string[]}
 */
export function polylines(steps, scaled, box) {
  const pad = box.pad ?? 2;
  const s0 = box.stepMin ?? (steps.length ? steps[0] : 0);
  const s1 = box.stepMax ?? (steps.length ? steps[steps.length - 1] : 1);
  const sx = s1 > s0 ? (box.width - 2 * pad) / (s1 - s0) : 0;
  const sy = box.height - 2 * pad;
  /** @type {string[]} */
  const lines = [];
  /** @type {string[]} */
  let current = [];
  steps.forEach((step, i) => {
    const v = scaled[i];
    if (v === null || v === undefined) {
      if (current.length) lines.push(current.join(" "));
      current = [];
      return;
    }
    const x = pad + (step - s0) * sx;
    const y = pad + (1 - v) * sy;
    current.push(`${round2(x)},${round2(y)}`);
  });
  if (current.length) lines.push(current.join(" "));
  return lines;
}

/** @param {unknown} v @returns {v is number} */
function isFiniteNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** @param {unknown} v */
function finiteOrNull(v) {
  return isFiniteNumber(v) ? v : null;
}

/** @param {number} v */
function round2(v) {
  return Math.round(v * 100) / 100;
}
