// The training curves, on honest axes: the mask's area kept and p(target | explanation) on a
// fixed 0..1 axis (what falls into place as the mask trains), and the loss (its total, and
// each term unweighted) on a log axis. No curve is rescaled to its own range.
import { CATEGORICAL } from "./colormap.js";
import { h, s } from "./dom.js";
import { formatNumber } from "./format.js";
import { linearScale, logRange, logScale, logTicks, polylines } from "./losses.js";

const WIDTH = 300;
const LEFT = 30; // room for the y labels
const RIGHT = 8;
const TOP = 5;
const INNER = WIDTH - LEFT - RIGHT;
const PAD = 1.5; // inside the clip, so lines at an axis' end stay whole
const UNIT_HEIGHT = 66; // the 0..1 plot's drawing area
const LOG_HEIGHT = 78; // the log plot's
const X_LABELS = 13; // under the log plot: the first and last step

/**
 * @typedef {object} PlotExtras
 * @property {number | null} [probOriginal] p(target | x): a dashed reference on the 0..1 axis
 * @property {{area?: number | null, prob?: number | null} | null} [result] the settled result's own area
 *   and p(target | explanation): diamonds at the right end (the best mask need not be the last step's)
 */

export function createLossPlot() {
  const unitSvg = s("svg", {
    class: "nbx-plot",
    "data-role": "plot-unit",
    viewBox: `0 0 ${WIDTH} ${TOP + UNIT_HEIGHT + 4}`,
    role: "img",
    "aria-label": "area kept and p(target | explanation) over training steps, on a 0 to 1 axis",
  });
  const logSvg = s("svg", {
    class: "nbx-plot",
    "data-role": "plot-loss",
    viewBox: `0 0 ${WIDTH} ${TOP + LOG_HEIGHT + X_LABELS}`,
    role: "img",
    "aria-label": "loss over training steps, on a log axis",
  });
  const unitLegend = h("ul", { class: "nbx-legend", "data-role": "legend-unit" });
  const lossLegend = h("ul", { class: "nbx-legend", "data-role": "legend-loss" });
  const lossNote = h("p", { class: "nbx-plot-note", hidden: true, "data-role": "loss-note" });
  const el = h(
    "figure",
    { class: "nbx-panel nbx-losses" },
    h("div", { class: "nbx-plot-title", text: "Area kept and p(target)" }),
    unitSvg,
    unitLegend,
    h("div", { class: "nbx-plot-title", text: "Loss (log scale; terms unweighted)" }),
    logSvg,
    lossLegend,
    lossNote,
  );
  /** @type {Map<string, string>} */
  const colours = new Map();

  /**
   * Redraw from a series; `total` fixes the x axis during training.
   * @param {import("./losses.js").LossSeries} series
   * @param {number} [total]
   * @param {PlotExtras} [extras]
   */
  function update(series, total, extras = {}) {
    const steps = series.steps;
    const stepMin = steps[0] ?? 0;
    const stepMax = total && total > 0 ? Math.max(total, steps[steps.length - 1] ?? 0) : undefined;
    const box = (/** @type {number} */ height) => ({ width: INNER, height, pad: PAD, stepMin, stepMax });
    drawUnit(series, box(UNIT_HEIGHT), extras);
    drawLoss(series, box(LOG_HEIGHT), stepMin, stepMax ?? steps[steps.length - 1] ?? stepMin);
  }

  /**
   * @param {import("./losses.js").LossSeries} series
   * @param {{width: number, height: number, pad: number, stepMin: number, stepMax?: number}} box
   * @param {PlotExtras} extras
   */
  function drawUnit(series, box, extras) {
    const y = (/** @type {number} */ v) => TOP + PAD + (1 - v) * (UNIT_HEIGHT - 2 * PAD);
    const grid = [0, 0.5, 1].flatMap((v) => [
      s("line", { class: v === 0 ? "nbx-axis" : "nbx-grid", x1: LEFT, x2: LEFT + INNER, y1: y(v), y2: y(v) }),
      s("text", { class: "nbx-tick", x: LEFT - 4, y: y(v) + 3, "text-anchor": "end", text: String(v) }),
    ]);
    const lines = [];
    const p0 = extras.probOriginal;
    if (typeof p0 === "number" && Number.isFinite(p0)) {
      lines.push(s("line", { class: "nbx-line-prob nbx-reference", "data-series": "prob_original",
        x1: 0, x2: INNER, y1: y(p0) - TOP, y2: y(p0) - TOP }));
    }
    for (const [name, cls] of [["mask_area", "nbx-line-area"], ["prob", "nbx-line-prob"]]) {
      for (const points of polylines(series.steps, linearScale(series.measure(name)), box)) {
        lines.push(s("polyline", { points, class: cls, "data-series": name }));
      }
    }
    const markers = [];
    const result = extras.result;
    for (const [key, cls] of /** @type {const} */ ([["area", "nbx-fill-area"], ["prob", "nbx-fill-prob"]])) {
      const v = result?.[key];
      if (typeof v !== "number" || !Number.isFinite(v)) continue;
      markers.push(diamond(LEFT + INNER - PAD, y(Math.min(1, Math.max(0, v))), cls, `result-${key}`));
    }
    unitSvg.replaceChildren(
      ...grid,
      s("svg", { x: LEFT, y: TOP, width: INNER, height: UNIT_HEIGHT, class: "nbx-clip" }, ...lines),
      ...markers,
    );
    const items = [
      legendItem("nbx-swatch-area", "area kept", null),
      legendItem("nbx-swatch-prob", "p(target | explanation)", null),
    ];
    if (typeof p0 === "number" && Number.isFinite(p0)) items.push(legendItem("nbx-swatch-reference", "p(target | x)", null));
    if (markers.length) items.push(legendItem("nbx-swatch-result", "the result (best mask)", null));
    unitLegend.replaceChildren(...items);
  }

  /**
   * @param {import("./losses.js").LossSeries} series
   * @param {{width: number, height: number, pad: number, stepMin: number, stepMax?: number}} box
   * @param {number} stepMin
   * @param {number} stepMax
   */
  function drawLoss(series, box, stepMin, stepMax) {
    // The total first (drawn last, on top), then the terms in the order they came.
    const terms = series.terms().sort((a, b) => Number(b === "total") - Number(a === "total"));
    for (const name of terms) {
      if (name !== "total" && !colours.has(name)) colours.set(name, CATEGORICAL[colours.size % CATEGORICAL.length]);
    }
    const range = logRange(terms.map((name) => series.values.get(name) ?? [])) ?? [-1, 1];
    const y = (/** @type {number} */ at) => TOP + PAD + (1 - at) * (LOG_HEIGHT - 2 * PAD);
    const grid = logTicks(range).flatMap(({ at, label }) => [
      s("line", { class: "nbx-grid", x1: LEFT, x2: LEFT + INNER, y1: y(at), y2: y(at) }),
      s("text", { class: "nbx-tick", x: LEFT - 4, y: y(at) + 3, "text-anchor": "end", text: label }),
    ]);
    const bottom = TOP + LOG_HEIGHT;
    const axis = [
      s("line", { class: "nbx-axis", x1: LEFT, x2: LEFT + INNER, y1: bottom, y2: bottom }),
      s("text", { class: "nbx-tick", x: LEFT, y: bottom + 11, "text-anchor": "start", text: `step ${stepMin}` }),
      s("text", { class: "nbx-tick", x: LEFT + INNER, y: bottom + 11, "text-anchor": "end", text: String(stepMax) }),
    ];
    /** @type {string[]} */
    const omitted = [];
    /** @type {SVGElement[]} */
    const lines = [];
    for (const name of [...terms].reverse()) {
      const { scaled, nonPositive } = logScale(series.values.get(name) ?? [], range);
      if (nonPositive) omitted.push(name);
      for (const points of polylines(series.steps, scaled, box)) {
        lines.push(s("polyline", {
          points,
          class: name === "total" ? "nbx-line-total" : "nbx-line-term",
          stroke: name === "total" ? undefined : colours.get(name),
          "data-term": name,
        }));
      }
    }
    logSvg.replaceChildren(
      ...grid,
      ...axis,
      s("svg", { x: LEFT, y: TOP, width: INNER, height: LOG_HEIGHT, class: "nbx-clip" }, ...lines),
    );
    lossLegend.replaceChildren(
      ...terms.map((name) => {
        const values = series.values.get(name) ?? [];
        const mark = omitted.includes(name) ? " *" : "";
        return legendItem(name === "total" ? "nbx-swatch-total" : "", `${name}${mark}`, formatNumber(values[values.length - 1]),
          name === "total" ? undefined : colours.get(name));
      }),
    );
    lossNote.hidden = omitted.length === 0;
    lossNote.textContent = omitted.length ? "* \u2264 0 at some steps: no place on a log axis, not drawn there" : "";
  }

  return { el, update };
}

/**
 * @param {number} x @param {number} y @param {string} cls @param {string} role
 */
function diamond(x, y, cls, role) {
  const r = 4;
  return s("path", { d: `M${x} ${y - r}L${x + r} ${y}L${x} ${y + r}L${x - r} ${y}Z`, class: `nbx-marker ${cls}`, "data-role": role });
}

/**
 * @param {string} swatchClass @param {string} name @param {string | null} value @param {string} [colour]
 */
function legendItem(swatchClass, name, value, colour) {
  return h(
    "li",
    {},
    h("span", { class: `nbx-swatch ${swatchClass}`.trim(), style: colour ? `background:${colour}` : undefined }),
    h("span", { class: "nbx-term", text: name }),
    value === null ? null : h("span", { class: "nbx-value", text: value }),
  );
}
