// Loss curves: collect per-step values, thin them, and scale each term to [0, 1].

/** History keys that are measurements, not loss terms (not plotted as losses). */
export const NOT_LOSSES = new Set(["prob", "mask_area"]);

/** Collects loss values per term as frames arrive, keeping at most `maxPoints`. */
export class LossSeries {
  /** @param {number} maxPoints */
  constructor(maxPoints = 600) {
    this.maxPoints = Math.max(4, maxPoints);
    /** @type {number[]} */
    this.steps = [];
    /** @type {Map<string, (number | null)[]>} */
    this.values = new Map();
  }

  /**
   * Append one step's losses (a term seen for the first time is padded with nulls).
   * @param {number} step
   * @param {Record<string, number | null | undefined>} losses
   */
  push(step, losses) {
    const n = this.steps.length;
    if (n > 0 && step <= this.steps[n - 1]) return; // duplicates or out of order
    this.steps.push(step);
    for (const [name, value] of Object.entries(losses)) {
      if (NOT_LOSSES.has(name)) continue;
      if (!this.values.has(name)) this.values.set(name, new Array(n).fill(null));
    }
    for (const [name, series] of this.values) {
      const v = losses[name];
      series.push(typeof v === "number" && Number.isFinite(v) ? v : null);
    }
    if (this.steps.length > this.maxPoints) this.#thin();
  }

  /** Drop every second point (the last is kept), halving memory and drawing cost. */
  #thin() {
    const keep = (/** @type {number} */ i, /** @type {number} */ n) => i % 2 === 0 || i === n - 1;
    const n = this.steps.length;
    this.steps = this.steps.filter((_, i) => keep(i, n));
    for (const [name, series] of this.values) this.values.set(name, series.filter((_, i) => keep(i, n)));
  }

  /** @returns {string[]} */
  terms() {
    return [...this.values.keys()];
  }

  /**
   * Build from the synced `history` trait: {"steps": [...], "terms": {name: [...]}}.
   * @param {{steps?: number[], terms?: Record<string, (number | null)[]>}} history
   * @param {number} maxPoints
   */
  static fromHistory(history, maxPoints = 600) {
    const series = new LossSeries(maxPoints);
    const steps = history?.steps ?? [];
    const terms = history?.terms ?? {};
    steps.forEach((step, i) => {
      /** @type {Record<string, number | null>} */
      const row = {};
      for (const [name, values] of Object.entries(terms)) row[name] = values[i] ?? null;
      series.push(step, row);
    });
    return series;
  }
}

/**
 * Scale values to [0, 1] by their own min and max (nulls stay null).
 * A constant series maps to 0 so it lies flat along the bottom.
 * @param {(number | null)[]} values
 * @returns {(number | null)[]}
 */
export function normalise(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const span = hi - lo;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    return span > 0 ? (v - lo) / span : 0;
  });
}

/**
 * SVG polyline point strings for one normalised series; a gap (null) starts a new line.
 * @param {number[]} steps
 * @param {(number | null)[]} scaled values in [0, 1]
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

/** @param {number} v */
function round2(v) {
  return Math.round(v * 100) / 100;
}
