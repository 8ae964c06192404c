// The panel that shows one channel: its activation map on x and on the
// explanation (one shared colour scale), its energies and strongest edges.
import { SEQUENTIAL, buildLut, cssColor } from "./colormap.js";
import { h, paint } from "./dom.js";
import { describeNode as describe, formatNumber } from "./format.js";
import { mapToRgba } from "./raster.js";

const LUT = buildLut(SEQUENTIAL);

/**
 * @param {{onNavigate: (id: string) => void, onClose: () => void}} handlers
 */
export function createChannelPanel(handlers) {
  const title = h("h4", { class: "nbx-channel-title" });
  const status = h("p", { class: "nbx-channel-status", role: "status" });
  const canvasX = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "nbx-map", "data-role": "map-original" }));
  const canvasE = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "nbx-map", "data-role": "map-explanation" }));
  const energyX = h("span", { class: "nbx-num" });
  const energyE = h("span", { class: "nbx-num" });
  const scaleLo = h("span");
  const scaleHi = h("span");
  const incoming = h("ol", { class: "nbx-edges" });
  const outgoing = h("ol", { class: "nbx-edges" });
  const body = h(
    "div",
    { class: "nbx-channel-body", hidden: true },
    h(
      "div",
      { class: "nbx-maps" },
      h("figure", {}, canvasX, h("figcaption", {}, "on x \u00b7 energy ", energyX)),
      h("figure", {}, canvasE, h("figcaption", {}, "on explanation \u00b7 energy ", energyE)),
    ),
    h(
      "div",
      { class: "nbx-scale" },
      scaleLo,
      h("span", {
        class: "nbx-scale-bar",
        style: `background: linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map((t) => cssColor(SEQUENTIAL, t)).join(", ")})`,
      }),
      scaleHi,
    ),
    h(
      "div",
      { class: "nbx-edge-lists" },
      h("div", {}, h("h5", { text: "Strongest inputs" }), incoming),
      h("div", {}, h("h5", { text: "Strongest outputs" }), outgoing),
    ),
  );
  const close = h("button", { class: "nbx-close", type: "button", title: "Close", "aria-label": "Close channel panel", text: "\u00d7" });
  close.addEventListener("click", () => handlers.onClose());
  const el = h("aside", { class: "nbx-panel nbx-channel", hidden: true, "data-role": "channel-panel" }, close, title, status, body);

  /** @param {string} id */
  function loading(id) {
    el.hidden = false;
    el.dataset.state = "loading";
    title.textContent = describe(id);
    status.textContent = "Asking the kernel for this channel\u2026";
    body.hidden = true;
  }

  /** @param {string} message */
  function error(message) {
    el.hidden = false;
    el.dataset.state = "error";
    status.textContent = message;
    body.hidden = true;
  }

  /** @param {import("./frame.js").ChannelAnswer} answer */
  function show(answer) {
    el.hidden = false;
    el.dataset.state = "ready";
    title.textContent = describe(answer.id);
    status.textContent = `${answer.height}\u00d7${answer.width} activation map`;
    paint(canvasX, mapToRgba(answer.mapOriginal, LUT), answer.width, answer.height);
    paint(canvasE, mapToRgba(answer.mapExplanation, LUT), answer.width, answer.height);
    energyX.textContent = formatNumber(answer.energyOriginal);
    energyE.textContent = formatNumber(answer.energyExplanation);
    scaleLo.textContent = formatNumber(answer.scale[0]);
    scaleHi.textContent = formatNumber(answer.scale[1]);
    incoming.replaceChildren(...answer.incoming.map(edgeItem));
    outgoing.replaceChildren(...answer.outgoing.map(edgeItem));
    if (!answer.incoming.length) incoming.append(h("li", { class: "nbx-muted", text: "none in the circuit" }));
    if (!answer.outgoing.length) outgoing.append(h("li", { class: "nbx-muted", text: "none in the circuit" }));
    body.hidden = false;
  }

  /** @param {{node: string, score: number | null}} edge */
  function edgeItem(edge) {
    const link = h("button", { type: "button", class: "nbx-link", text: describe(edge.node) });
    link.addEventListener("click", () => handlers.onNavigate(edge.node));
    return h("li", {}, link, h("span", { class: "nbx-num", text: formatNumber(edge.score) }));
  }

  function hide() {
    el.hidden = true;
    delete el.dataset.state;
  }

  return { el, loading, error, show, hide };
}
