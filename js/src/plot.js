// The small live plot of every loss term (each scaled to its own range).
import { CATEGORICAL } from "./colormap.js";
import { h, s } from "./dom.js";
import { formatNumber } from "./format.js";
import { normalise, polylines } from "./losses.js";

const WIDTH = 260;
const HEIGHT = 120;

/**
 * @param {import("./losses.js").LossSeries} [_series]
 */
export function createLossPlot(_series) {
  const svg = s("svg", {
    class: "nbx-plot",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": "loss terms over training steps",
  });
  const legend = h("ul", { class: "nbx-legend" });
  const el = h(
    "figure",
    { class: "nbx-panel nbx-losses" },
    svg,
    legend,
    h("figcaption", { text: "Loss terms (each scaled to its own range)" }),
  );
  /** @type {Map<string, string>} */
  const colours = new Map();

  /**
   * Redraw from a series; `total` fixes the x axis during training.
   * @param {import("./losses.js").LossSeries} series
   * @param {number} [total]
   */
  function update(series, total) {
    const terms = series.terms();
    for (const name of terms) {
      if (!colours.has(name)) colours.set(name, CATEGORICAL[colours.size % CATEGORICAL.length]);
    }
    const stepMax = total && total > 0 ? total : undefined;
    const box = { width: WIDTH, height: HEIGHT, pad: 3, stepMin: series.steps[0] ?? 0, stepMax };
    svg.replaceChildren(
      s("rect", { class: "nbx-plot-frame", x: 0.5, y: 0.5, width: WIDTH - 1, height: HEIGHT - 1 }),
      ...terms.flatMap((name) =>
        polylines(series.steps, normalise(series.values.get(name) ?? []), box).map((points) =>
          s("polyline", {
            points,
            fill: "none",
            stroke: colours.get(name),
            "stroke-width": name === "total" ? 2 : 1.2,
            "data-term": name,
          }),
        ),
      ),
    );
    legend.replaceChildren(
      ...terms.map((name) => {
        const values = series.values.get(name) ?? [];
        const last = values[values.length - 1];
        return h(
          "li",
          {},
          h("span", { class: "nbx-swatch", style: `background:${colours.get(name)}` }),
          h("span", { class: "nbx-term", text: name }),
          h("span", { class: "nbx-value", text: formatNumber(last) }),
        );
      }),
    );
  }

  return { el, update };
}
