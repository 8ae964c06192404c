// The circuit graph in SVG with its explanation / original / difference toggle.
// Hovering a node highlights the paths through it; clicking a channel node asks
// for its channel panel.
import { DIVERGING, cssColor } from "./colormap.js";
import { h, s } from "./dom.js";
import { describeNode, formatNumber, formatProb } from "./format.js";
import { circuitDifference, layoutCircuit, pathsThrough, strongestNodes } from "./graph.js";

/** Choices of channels shown per layer (a decision-sized circuit may hold hundreds). */
export const PER_LAYER = [6, 10, 16, 32, Infinity];

/** "all" still shows at most this many channels a layer; the rest are counted as "+ N more". */
export const MAX_SHOWN = 64;

export const VIEWS = /** @type {const} */ ([
  ["explanation", "Explanation circuit"],
  ["original", "Original circuit"],
  ["difference", "Difference"],
]);

/**
 * @param {{onSelect: (node: import("./graph.js").PlacedNode, view: string) => void}} handlers
 */
export function createCircuitView(handlers) {
  /** @type {{explanation: any, original: any}} */
  let circuits = { explanation: {}, original: {} };
  let view = "explanation";
  let perLayer = 10;
  /** @type {string | null} */
  let selected = null;
  /** @type {import("./graph.js").Layout | null} */
  let layout = null;

  const buttons = VIEWS.map(([key, label]) => {
    const b = h("button", { type: "button", class: "nbx-toggle", "data-view": key, "aria-pressed": "false", text: label });
    b.addEventListener("click", () => setView(key));
    return b;
  });
  const limit = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { class: "nbx-select", "aria-label": "channels shown per layer" },
      ...PER_LAYER.map((n) => h("option", { value: String(n), selected: n === perLayer, text: n < Infinity ? `top ${n}` : `all (up to ${MAX_SHOWN})` })),
    )
  );
  limit.addEventListener("change", () => {
    perLayer = Number(limit.value);
    draw();
  });
  const svg = /** @type {SVGSVGElement} */ (s("svg", { class: "nbx-graph", role: "group", "aria-label": "channel circuit" }));
  const empty = h("p", { class: "nbx-muted nbx-empty", hidden: true });
  const legend = h("p", { class: "nbx-hint" });
  const el = h(
    "section",
    { class: "nbx-circuit-view" },
    h("div", { class: "nbx-toolbar" }, h("h4", { text: "Circuit" }), h("div", { class: "nbx-segmented", role: "group" }, ...buttons),
      h("label", { class: "nbx-limit" }, "channels per layer ", limit),
    ),
    legend,
    svg,
    empty,
  );

  let emptyText = "No circuit to show for this result.";

  /**
   * @param {{explanation: any, original: any}} next
   * @param {string} [whyEmpty] what to say when there is no circuit
   */
  function setCircuits(next, whyEmpty) {
    circuits = { explanation: next.explanation ?? {}, original: next.original ?? {} };
    emptyText = whyEmpty ?? "No circuit to show for this result.";
    draw();
  }

  /** @param {string} next */
  function setView(next) {
    view = next;
    draw();
  }

  /** @param {string | null} id */
  function setSelected(id) {
    selected = id;
    for (const g of svg.querySelectorAll(".nbx-node")) g.classList.toggle("nbx-selected", g.getAttribute("data-id") === id);
  }

  function current() {
    const full =
      view === "difference"
        ? circuitDifference(circuits.explanation, circuits.original)
        : view === "original"
          ? circuits.original
          : circuits.explanation;
    return strongestNodes(full, Math.min(perLayer, MAX_SHOWN));
  }

  function draw() {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    const circuit = current();
    const has = (circuit?.nodes ?? []).length > 0;
    el.dataset.view = view;
    svg.style.display = has ? "" : "none";
    empty.hidden = has;
    empty.textContent = has ? "" : emptyText;
    legend.textContent =
      view === "difference"
        ? "Explanation minus original: orange = stronger on the explanation, blue = stronger on x. Click a channel."
        : "Nodes sized by energy, edges by score. Hover to trace paths; click a channel to inspect it.";
    if (!has) {
      svg.replaceChildren();
      layout = null;
      return;
    }
    const more = /** @type {Record<string, number>} */ (circuit.more ?? {});
    const hasMore = Object.keys(more).length > 0;
    layout = layoutCircuit(circuit, hasMore ? { padBottom: 24 } : {});
    const signed = view === "difference";
    const roomy = layout.rowGap >= 22;
    const maxAbs = Math.max(1e-12, ...layout.nodes.filter((n) => n.kind !== "class").map((n) => Math.abs(n.value)));
    svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
    svg.style.maxWidth = `${layout.width}px`;
    const edgeEls = layout.edges.map((e) =>
      s("path", {
        class: "nbx-edge",
        d: e.d,
        "stroke-width": e.width.toFixed(2),
        "stroke-opacity": e.opacity.toFixed(2),
        style: signed ? `stroke:${cssColor(DIVERGING, e.sign > 0 ? 1 : 0)}` : null,
        "data-index": e.index,
        "data-source": e.source,
        "data-target": e.target,
      }, s("title", { text: `${describeNode(e.source)} \u2192 ${describeNode(e.target)}: ${formatNumber(e.score)}` })),
    );
    const nodeEls = layout.nodes.map((n) => {
      const isClass = n.kind === "class";
      const fill = signed && !isClass ? cssColor(DIVERGING, 0.5 + 0.5 * (n.value / maxAbs)) : null;
      // Channel numbers only where rows leave room; the tooltip always has them.
      const unit = n.unit === "head" ? "h" : n.unit === "unit" ? "u" : "";  // a transformer's heads and MLP units
      const label = isClass ? `${n.name ?? `class ${n.class}`} ${formatProb(n.prob)}` : roomy ? `${unit}${n.channel ?? ""}` : "";
      const tip = isClass
        ? `${n.name ?? n.id}: p = ${formatProb(n.prob)}, logit ${formatNumber(n.logit)}`
        : `${describeNode(n.id)}\nenergy ${formatNumber(n.value)} (x: ${formatNumber(n.energy_original)}, explanation: ${formatNumber(n.energy_explanation)})` +
          (Number.isFinite(Number(n.relevance)) ? `\nrelevance to the target ${formatNumber(Number(n.relevance))}` : "");
      const g = s(
        "g",
        {
          class: `nbx-node nbx-${n.kind}${n.id === selected ? " nbx-selected" : ""}`,
          "data-id": n.id,
          "data-kind": n.kind,
          tabindex: isClass ? null : 0,
          role: isClass ? null : "button",
          "aria-label": isClass ? null : describeNode(n.id),
        },
        s("title", { text: tip }),
        s("circle", { cx: n.x.toFixed(1), cy: n.y.toFixed(1), r: n.r.toFixed(1), style: fill ? `fill:${fill}` : null }),
        s("text", {
          x: (isClass ? n.x + n.r + 5 : n.x).toFixed(1),
          y: (isClass ? n.y + 4 : n.y - n.r - 3).toFixed(1),
          "text-anchor": isClass ? "start" : "middle",
          text: label,
        }),
      );
      g.addEventListener("mouseenter", () => highlight(n.id));
      g.addEventListener("mouseleave", () => highlight(null));
      g.addEventListener("focus", () => highlight(n.id));
      g.addEventListener("blur", () => highlight(null));
      if (!isClass) {
        g.addEventListener("click", () => choose(n.id));
        g.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            choose(n.id);
          }
        });
      }
      return g;
    });
    const columnEls = layout.columns.map((c) =>
      s("text", { class: "nbx-column", x: c.x.toFixed(1), y: 14, "text-anchor": "middle", text: c.title ?? c.label }),
    );
    const height = layout.height;
    for (const c of layout.columns) {
      const hidden = more[c.label];
      if (hidden > 0) {
        columnEls.push(s("text", { class: "nbx-more", x: c.x.toFixed(1), y: height - 6, "text-anchor": "middle",
          text: `+ ${hidden} more` }, s("title", { text: `${hidden} more nodes of ${c.title ?? c.label} are in the circuit; choose more per layer to see them` })));
      }
    }
    svg.replaceChildren(s("g", { class: "nbx-edges" }, ...edgeEls), s("g", {}, ...columnEls), s("g", { class: "nbx-nodes" }, ...nodeEls));
  }

  /** @param {string | null} id */
  function highlight(id) {
    if (!layout) return;
    if (id === null) {
      svg.classList.remove("nbx-tracing");
      for (const el of svg.querySelectorAll(".nbx-hot")) el.classList.remove("nbx-hot");
      return;
    }
    const paths = pathsThrough(layout, id);
    svg.classList.add("nbx-tracing");
    for (const g of svg.querySelectorAll(".nbx-node")) g.classList.toggle("nbx-hot", paths.nodes.has(g.getAttribute("data-id") ?? ""));
    for (const p of svg.querySelectorAll(".nbx-edge")) p.classList.toggle("nbx-hot", paths.edges.has(Number(p.getAttribute("data-index"))));
  }

  /** @param {string} id */
  function choose(id) {
    const node = layout?.byId.get(id);
    if (!node || node.kind === "class") return;
    setSelected(id);
    handlers.onSelect(node, view);
  }

  return { el, setCircuits, setView, setSelected, choose, get view() { return view; } };
}
