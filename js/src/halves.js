// Which half of the explanation the pictures show: the sufficient mask (what is enough for the
// class), the necessary region (what, removed, changes the decision), or both; and one line
// saying what the necessary evidence is.
import { h } from "./dom.js";

/** @typedef {"sufficient" | "necessary" | "both"} Half */

/** @type {[Half, string, string][]} key, label, tooltip */
const HALVES = [
  ["sufficient", "sufficient", "the kept pixels: enough for the model to keep its decision"],
  ["necessary", "necessary", "in red: the region whose removal changes the decision"],
  ["both", "both", "the kept pixels, with the necessary region in red on top"],
];

/** @param {{onChange: (half: Half) => void}} handlers */
export function createHalves(handlers) {
  /** @type {Half} both by default: the sufficient half stays in view while the necessary one appears */
  let half = "both";
  const buttons = HALVES.map(([key, label, title]) => {
    const b = h("button", { type: "button", class: "nbx-toggle", "data-half": key, "aria-pressed": "false", title, text: label });
    b.addEventListener("click", () => {
      half = key;
      draw();
      handlers.onChange(half);
    });
    return b;
  });
  const line = h("span", { class: "nbx-necessary-line", "data-role": "necessary" });
  const el = h(
    "div",
    { class: "nbx-halves", hidden: true, "data-role": "halves" },
    h("div", { class: "nbx-segmented", role: "group", "aria-label": "evidence shown" }, ...buttons),
    line,
  );

  function draw() {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.half === half));
    el.dataset.half = half;
  }
  draw();

  return {
    el,
    /** @returns {Half} */
    get half() {
      return half;
    },
    /**
     * Show the control with this line, or hide it (no necessary half yet, or none at all).
     * @param {string | null} text
     * @param {boolean} [found] whether a region was found (the line is muted when not)
     * @param {string} [details] the full numbers, shown on hover
     */
    setLine(text, found = true, details = "") {
      el.hidden = text === null;
      line.textContent = text ?? "";
      line.dataset.found = String(found);
      line.title = details ?? "";
    },
  };
}
