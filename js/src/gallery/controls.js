// The gallery's toolbar: filters, sort orders and the selection mode. It only reports
// what is set; the view decides what that shows.
import { h } from "../dom.js";
import { NO_FILTERS } from "./arrange.js";

/**
 * @typedef {import("./arrange.js").Filters} Filters
 * @typedef {{filters: Filters, groupOrder: import("./arrange.js").GroupOrder,
 *            memberOrder: import("./arrange.js").MemberOrder, selectMode: boolean}} Settings
 */

/**
 * @param {{onChange: () => void, onClearSelection: () => void}} handlers
 */
export function createControls({ onChange, onClearSelection }) {
  const classSelect = /** @type {HTMLSelectElement} */ (h("select", { class: "nbxg-select", "data-role": "class" },
    h("option", { value: "", text: "all classes" })));
  const correct = segmented("correct", [["all", "all"], ["correct", "correct"], ["wrong", "wrong"]], "all");
  const minSuspicion = slider("min-suspicion", 0, 1, 0.05, 0, (v) => v.toFixed(2));
  const maxArea = slider("max-area", 0, 1, 0.01, 1, (v) => `${Math.round(100 * v)}%`);
  const minConfidence = slider("min-confidence", 0, 1, 0.05, 0, (v) => v.toFixed(2));
  const groupOrder = /** @type {HTMLSelectElement} */ (h("select", { class: "nbxg-select", "data-role": "group-order" },
    h("option", { value: "suspicion", text: "suspicion (highest first)" }),
    h("option", { value: "size", text: "size (largest first)" }),
    h("option", { value: "accuracy", text: "accuracy (lowest first)" })));
  const memberOrder = /** @type {HTMLSelectElement} */ (h("select", { class: "nbxg-select", "data-role": "member-order" },
    h("option", { value: "representative", text: "representative first" }),
    h("option", { value: "area", text: "area (smallest first)" }),
    h("option", { value: "area-desc", text: "area (largest first)" }),
    h("option", { value: "confidence", text: "confidence (highest first)" }),
    h("option", { value: "confidence-asc", text: "confidence (lowest first)" })));
  const selectMode = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", "data-role": "select-mode" }));
  const selectedCount = h("span", { class: "nbxg-count", "data-role": "selected-count", text: "none selected" });
  const clear = /** @type {HTMLButtonElement} */ (h("button", { class: "nbxg-button", type: "button",
    "data-role": "clear-selection", text: "clear", disabled: true }));
  const reset = h("button", { class: "nbxg-button", type: "button", "data-role": "reset-filters", text: "reset filters" });

  const field = (/** @type {string} */ label, /** @type {Node} */ control) =>
    h("label", { class: "nbxg-field" }, h("span", { class: "nbxg-field-label", text: label }), control);
  const el = h("div", { class: "nbxg-controls", "data-role": "controls" },
    h("div", { class: "nbxg-control-row" },
      field("class", classSelect),
      h("div", { class: "nbxg-field" }, h("span", { class: "nbxg-field-label", text: "prediction" }), correct.el),
      field("suspicion \u2265", minSuspicion.el),
      field("area \u2264", maxArea.el),
      field("confidence \u2265", minConfidence.el),
      reset),
    h("div", { class: "nbxg-control-row" },
      field("groups by", groupOrder),
      field("images by", memberOrder),
      h("label", { class: "nbxg-field nbxg-inline", title: "Clicks select thumbnails instead of opening them (shift- or ctrl-click always selects)" },
        selectMode, h("span", { text: "click selects" })),
      selectedCount, clear));

  for (const control of [classSelect, groupOrder, memberOrder, selectMode]) control.addEventListener("change", onChange);
  for (const s of [minSuspicion, maxArea, minConfidence]) s.input.addEventListener("input", () => { s.show(); onChange(); });
  correct.onChange(onChange);
  clear.addEventListener("click", onClearSelection);
  reset.addEventListener("click", () => {
    classSelect.value = "";
    correct.set("all");
    minSuspicion.set(0);
    maxArea.set(1);
    minConfidence.set(0);
    onChange();
  });

  return {
    el,
    /** @returns {Settings} */
    get() {
      return {
        filters: {
          ...NO_FILTERS,
          target: classSelect.value === "" ? null : Number(classSelect.value),
          correct: /** @type {Filters["correct"]} */ (correct.value()),
          minSuspicion: minSuspicion.value(),
          maxArea: maxArea.value(),
          minConfidence: minConfidence.value(),
        },
        groupOrder: /** @type {any} */ (groupOrder.value),
        memberOrder: /** @type {any} */ (memberOrder.value),
        selectMode: selectMode.checked,
      };
    },
    /** @param {[number, string, number][]} options [class, name, count] */
    setClasses(options) {
      const keep = classSelect.value;
      const items = [["", "all classes"], ...options.map(([t, name, n]) => [String(t), `${name} (${n})`])];
      const same = items.length === classSelect.options.length
        && items.every(([v, text], k) => classSelect.options[k].value === v && classSelect.options[k].text === text);
      if (same) return;
      classSelect.replaceChildren(...items.map(([value, text]) => h("option", { value, text })));
      classSelect.value = items.some(([v]) => v === keep) ? keep : "";
    },
    /** @param {number} n */
    setSelected(n) {
      selectedCount.textContent = n ? `${n} selected` : "none selected";
      clear.disabled = n === 0;
    },
  };
}

/**
 * @param {string} role
 * @param {number} min @param {number} max @param {number} step @param {number} value
 * @param {(v: number) => string} format
 */
function slider(role, min, max, step, value, format) {
  const input = /** @type {HTMLInputElement} */ (h("input", { type: "range", class: "nbxg-range", "data-role": role,
    min, max, step, value }));
  const out = h("span", { class: "nbxg-range-value", text: format(value) });
  const show = () => { out.textContent = format(Number(input.value)); };
  return {
    el: h("span", { class: "nbxg-slider" }, input, out),
    input,
    show,
    value: () => Number(input.value),
    set: (/** @type {number} */ v) => { input.value = String(v); show(); },
  };
}

/**
 * @param {string} role
 * @param {[string, string][]} options [value, text]
 * @param {string} initial
 */
function segmented(role, options, initial) {
  let current = initial;
  /** @type {(() => void)[]} */
  const listeners = [];
  const buttons = options.map(([value, text]) => {
    const b = h("button", { class: "nbxg-toggle", type: "button", "data-value": value, text,
      "aria-pressed": value === initial ? "true" : "false" });
    b.addEventListener("click", () => { set(value); listeners.forEach((f) => f()); });
    return b;
  });
  const set = (/** @type {string} */ value) => {
    current = value;
    for (const b of buttons) b.setAttribute("aria-pressed", b.dataset.value === value ? "true" : "false");
  };
  return {
    el: h("span", { class: "nbxg-segmented", "data-role": role }, ...buttons),
    value: () => current,
    set,
    onChange: (/** @type {() => void} */ f) => listeners.push(f),
  };
}
