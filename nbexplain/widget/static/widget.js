// Built from js/src by js/build.mjs; do not edit by hand.

// src/bytes.js
function toBytes(buffer) {
  if (buffer == null) return new Uint8Array(0);
  if (buffer instanceof Uint8Array) return buffer;
  if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError(`expected binary data, got ${Object.prototype.toString.call(buffer)}`);
}
function checkShape(bytes, shape, channels) {
  if (!Array.isArray(shape) || shape.length !== 2) {
    throw new Error(`shape must be [h, w], got ${JSON.stringify(shape)}`);
  }
  const [height, width] = shape.map(Number);
  if (!(Number.isInteger(height) && Number.isInteger(width) && height >= 0 && width >= 0)) {
    throw new Error(`shape must hold two non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (bytes.length !== height * width * channels) {
    throw new Error(
      `expected ${height}x${width}x${channels} = ${height * width * channels} bytes, got ${bytes.length}`
    );
  }
  return { height, width };
}

// src/colormap.js
var SEQUENTIAL = (
  /** @type {Stops} */
  [
    [0, [12, 10, 38]],
    [0.3, [88, 32, 112]],
    [0.6, [204, 72, 62]],
    [0.85, [244, 158, 44]],
    [1, [252, 238, 168]]
  ]
);
var DIVERGING = (
  /** @type {Stops} */
  [
    [0, [38, 98, 196]],
    [0.5, [150, 150, 150]],
    [1, [222, 96, 36]]
  ]
);
function colorAt(stops, t) {
  const x = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  for (let i = 1; i < stops.length; i++) {
    const [p1, c1] = stops[i];
    if (x <= p1) {
      const [p0, c0] = stops[i - 1];
      const f = p1 > p0 ? (x - p0) / (p1 - p0) : 0;
      return (
        /** @type {RGB} */
        c0.map((v, k) => Math.round(v + f * (c1[k] - v)))
      );
    }
  }
  return (
    /** @type {RGB} */
    [...stops[stops.length - 1][1]]
  );
}
function buildLut(stops) {
  const lut = new Uint8Array(256 * 3);
  for (let b = 0; b < 256; b++) lut.set(colorAt(stops, b / 255), b * 3);
  return lut;
}
function cssColor(stops, t) {
  const [r, g, b] = colorAt(stops, t);
  return `rgb(${r}, ${g}, ${b})`;
}
var CATEGORICAL = [
  "#3b82c4",
  "#e0823d",
  "#4aa564",
  "#d1495b",
  "#8e6cc0",
  "#a0785a",
  "#d67fb6",
  "#7f8c8d",
  "#b5a642",
  "#3fb0b5"
];

// src/dom.js
var SVG_NS = "http://www.w3.org/2000/svg";
function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}
function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}
function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === void 0 || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    el.append(child);
  }
  return el;
}
function paint(canvas, rgba, width, height) {
  if (width === 0 || height === 0) return;
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.putImageData(new ImageData(rgba, width, height), 0, 0);
  canvas.dataset.painted = "true";
}

// src/format.js
var DASH = "\u2014";
function formatProb(p) {
  return isNumber(p) ? p.toFixed(3) : DASH;
}
function formatPercent(share, digits = 1) {
  return isNumber(share) ? `${(100 * share).toFixed(digits)}%` : DASH;
}
function formatNumber(v) {
  if (!isNumber(v)) return DASH;
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}
function formatSeconds(seconds) {
  if (!isNumber(seconds)) return DASH;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}
function formatStep(step, total) {
  if (!isNumber(step)) return DASH;
  return isNumber(total) && total > 0 ? `${step} / ${total}` : String(step);
}
function necessaryLine(frame) {
  const verdict = frame.changesDecision ? "changes the decision" : "does not change the decision yet";
  return `necessary (searching): removing ${formatPercent(frame.area)} ${verdict}`;
}
function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}
function describeNode(id) {
  const text = String(id);
  const at = text.lastIndexOf(":");
  if (at < 0) return text;
  const layer = text.slice(0, at);
  const index = text.slice(at + 1);
  if (layer === "class") return `class ${index}`;
  const unit = layer.endsWith(".heads") ? "head" : layer.endsWith(".units") ? "unit" : "channel";
  return `${layer} \xB7 ${unit} ${index}`;
}

// src/raster.js
function rgbToRgba(rgb, width, height) {
  const n = width * height;
  if (rgb.length !== n * 3) throw new Error(`expected ${n * 3} RGB bytes, got ${rgb.length}`);
  const out = new Uint8ClampedArray(n * 4);
  for (let i = 0, j = 0; i < n * 3; i += 3, j += 4) {
    out[j] = rgb[i];
    out[j + 1] = rgb[i + 1];
    out[j + 2] = rgb[i + 2];
    out[j + 3] = 255;
  }
  return out;
}
function mapToRgba(values, lut = null) {
  const out = new Uint8ClampedArray(values.length * 4);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const v = values[i];
    if (lut) {
      out[j] = lut[v * 3];
      out[j + 1] = lut[v * 3 + 1];
      out[j + 2] = lut[v * 3 + 2];
    } else {
      out[j] = out[j + 1] = out[j + 2] = v;
    }
    out[j + 3] = 255;
  }
  return out;
}
function maskedRgba(rgb, width, height, mask, maskWidth, maskHeight, fill2 = null) {
  if (mask.length !== maskWidth * maskHeight) {
    throw new Error(`expected ${maskWidth * maskHeight} mask bytes, got ${mask.length}`);
  }
  if (fill2 && fill2.length !== width * height * 3) {
    throw new Error(`expected ${width * height * 3} fill bytes, got ${fill2.length}`);
  }
  const out = rgbToRgba(rgb, width, height);
  const cols = new Int32Array(width);
  for (let x = 0; x < width; x++) cols[x] = Math.floor(x * maskWidth / width);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y * maskHeight / height) * maskWidth;
    for (let x = 0; x < width; x++) {
      const m = mask[row + cols[x]] / 255;
      const j = (y * width + x) * 4;
      const k = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) out[j + c] = out[j + c] * m + (fill2 ? fill2[k + c] * (1 - m) : 0);
    }
  }
  return out;
}
var NECESSARY_RED = [255, 38, 26];
function tintRgba(rgba, width, height, region, regionWidth, regionHeight, alpha = 0.6, colour = NECESSARY_RED) {
  if (region.length !== regionWidth * regionHeight) {
    throw new Error(`expected ${regionWidth * regionHeight} region bytes, got ${region.length}`);
  }
  if (rgba.length !== width * height * 4) throw new Error(`expected ${width * height * 4} RGBA bytes, got ${rgba.length}`);
  const cols = new Int32Array(width);
  for (let x = 0; x < width; x++) cols[x] = Math.floor(x * regionWidth / width);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y * regionHeight / height) * regionWidth;
    for (let x = 0; x < width; x++) {
      if (region[row + cols[x]] < 128) continue;
      const j = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) rgba[j + c] = (1 - alpha) * rgba[j + c] + alpha * colour[c];
    }
  }
  return rgba;
}

// src/channel_panel.js
var LUT = buildLut(SEQUENTIAL);
function createChannelPanel(handlers) {
  const title = h("h4", { class: "nbx-channel-title" });
  const status = h("p", { class: "nbx-channel-status", role: "status" });
  const canvasX = (
    /** @type {HTMLCanvasElement} */
    h("canvas", { class: "nbx-map", "data-role": "map-original" })
  );
  const canvasE = (
    /** @type {HTMLCanvasElement} */
    h("canvas", { class: "nbx-map", "data-role": "map-explanation" })
  );
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
      h("figure", {}, canvasX, h("figcaption", {}, "on x \xB7 energy ", energyX)),
      h("figure", {}, canvasE, h("figcaption", {}, "on explanation \xB7 energy ", energyE))
    ),
    h(
      "div",
      { class: "nbx-scale" },
      scaleLo,
      h("span", {
        class: "nbx-scale-bar",
        style: `background: linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map((t) => cssColor(SEQUENTIAL, t)).join(", ")})`
      }),
      scaleHi
    ),
    h(
      "div",
      { class: "nbx-edge-lists" },
      h("div", {}, h("h5", { text: "Strongest inputs" }), incoming),
      h("div", {}, h("h5", { text: "Strongest outputs" }), outgoing)
    )
  );
  const close = h("button", { class: "nbx-close", type: "button", title: "Close", "aria-label": "Close channel panel", text: "\xD7" });
  close.addEventListener("click", () => handlers.onClose());
  const el = h("aside", { class: "nbx-panel nbx-channel", hidden: true, "data-role": "channel-panel" }, close, title, status, body);
  function loading(id) {
    el.hidden = false;
    el.dataset.state = "loading";
    title.textContent = describeNode(id);
    status.textContent = "Asking the kernel for this channel\u2026";
    body.hidden = true;
  }
  function error(message) {
    el.hidden = false;
    el.dataset.state = "error";
    status.textContent = message;
    body.hidden = true;
  }
  function show(answer) {
    el.hidden = false;
    el.dataset.state = "ready";
    title.textContent = describeNode(answer.id);
    status.textContent = `${answer.height}\xD7${answer.width} activation map`;
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
  function edgeItem(edge) {
    const link = h("button", { type: "button", class: "nbx-link", text: describeNode(edge.node) });
    link.addEventListener("click", () => handlers.onNavigate(edge.node));
    return h("li", {}, link, h("span", { class: "nbx-num", text: formatNumber(edge.score) }));
  }
  function hide() {
    el.hidden = true;
    delete el.dataset.state;
  }
  return { el, loading, error, show, hide };
}

// src/graph.js
var DEFAULTS = {
  width: 640,
  padLeft: 36,
  padRight: 96,
  // room for class names
  padTop: 30,
  padBottom: 14,
  rowGap: 30,
  minHeight: 180,
  maxHeight: 460,
  // beyond this, rows (and nodes) get closer instead of the graph taller
  rMin: 3,
  rMax: 11,
  wMin: 0.6,
  wMax: 6
};
function nodeValue(node) {
  const v = node.kind === "class" ? node.prob ?? node.energy ?? 1 : node.energy ?? 0;
  return Number.isFinite(v) ? Number(v) : 0;
}
function layoutCircuit(circuit, options = {}) {
  const o = { ...DEFAULTS, ...options };
  const layers = circuit?.layers ?? [];
  const nodes = circuit?.nodes ?? [];
  const nColumns = layers.length + 1;
  const columns = Array.from({ length: nColumns }, () => []);
  for (const node of nodes) columns[columnOf(node, layers)].push(node);
  const incoming = /* @__PURE__ */ new Map();
  for (const e of circuit?.edges ?? []) {
    if (!incoming.has(e.target)) incoming.set(e.target, []);
    incoming.get(e.target).push(e);
  }
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = Math.min(o.maxHeight, Math.max(o.minHeight, o.padTop + o.padBottom + tallest * o.rowGap));
  const innerHeight = height - o.padTop - o.padBottom;
  const rowGap = Math.min(o.rowGap, innerHeight / tallest);
  const rMax = Math.min(o.rMax, 0.45 * rowGap);
  const rMin = Math.min(o.rMin, rMax / 2);
  const xOf = (c) => nColumns === 1 ? o.width / 2 : o.padLeft + c * (o.width - o.padLeft - o.padRight) / (nColumns - 1);
  const byId = /* @__PURE__ */ new Map();
  const placed = [];
  columns.forEach((column, c) => {
    const order = orderColumn(column, c === 0 ? null : incoming, byId);
    const biggest = Math.max(0, ...order.map((n) => Math.abs(nodeValue(n))));
    const gap = rowGap;
    const top = o.padTop + (innerHeight - gap * order.length) / 2;
    order.forEach((node, i) => {
      const value = nodeValue(node);
      const share = biggest > 0 ? Math.sqrt(Math.abs(value) / biggest) : 0;
      const p = { ...node, column: c, value, x: xOf(c), y: top + (i + 0.5) * gap, r: rMin + (rMax - rMin) * share };
      placed.push(p);
      byId.set(node.id, p);
    });
  });
  const edges = (circuit?.edges ?? []).filter((e) => byId.has(e.source) && byId.has(e.target));
  const strongest = Math.max(0, ...edges.map((e) => Math.abs(e.score ?? 0)));
  const placedEdges = edges.map((e, index) => {
    const a = (
      /** @type {PlacedNode} */
      byId.get(e.source)
    );
    const b = (
      /** @type {PlacedNode} */
      byId.get(e.target)
    );
    const share = strongest > 0 ? Math.abs(e.score ?? 0) / strongest : 0;
    return {
      ...e,
      index,
      d: curve(a, b),
      width: o.wMin + (o.wMax - o.wMin) * share,
      opacity: 0.15 + 0.7 * share,
      sign: Math.sign(e.score ?? 0)
    };
  });
  const titles = circuit?.layer_labels ?? {};
  const columnLabels = [...layers, "class"].map((label, c) => ({ label, title: titles[label] ?? label, x: xOf(c) }));
  return { width: o.width, height, rowGap, nodes: placed, edges: placedEdges, columns: columnLabels, byId };
}
function strongestNodes(circuit, perLayer) {
  const nodes = circuit?.nodes ?? [];
  if (!(perLayer < Infinity)) return circuit;
  const byLayer = /* @__PURE__ */ new Map();
  for (const n of nodes) {
    if (n.kind === "class") continue;
    const key = String(n.layer ?? n.layer_index);
    if (!byLayer.has(key)) byLayer.set(key, []);
    byLayer.get(key).push(n);
  }
  const rank = (n) => {
    const r = Number(
      /** @type {any} */
      n.relevance
    );
    return Number.isFinite(r) ? r : Math.abs(nodeValue(n));
  };
  const kept = new Set(nodes.filter((n) => n.kind === "class").map((n) => n.id));
  for (const group of byLayer.values()) {
    group.sort((a, b) => rank(b) - rank(a)).slice(0, Math.max(0, perLayer)).forEach((n) => kept.add(n.id));
  }
  const strongestIn = /* @__PURE__ */ new Map();
  for (const e of circuit?.edges ?? []) {
    const best = strongestIn.get(e.target);
    if (!best || Number(e.score) > best.score) strongestIn.set(e.target, { source: e.source, score: Number(e.score) });
  }
  const fedByKept = (id) => (circuit?.edges ?? []).some((e) => e.target === id && kept.has(e.source));
  for (const group of [...byLayer.values()].reverse()) {
    for (const n of group) {
      const best = strongestIn.get(n.id);
      if (kept.has(n.id) && best && !fedByKept(n.id)) kept.add(best.source);
    }
  }
  const more = {};
  for (const [key, group] of byLayer) {
    const hidden = group.filter((n) => !kept.has(n.id)).length;
    if (hidden) more[key] = hidden;
  }
  return {
    ...circuit,
    nodes: nodes.filter((n) => kept.has(n.id)),
    edges: (circuit?.edges ?? []).filter((e) => kept.has(e.source) && kept.has(e.target)),
    more
  };
}
function columnOf(node, layers) {
  if (node.kind === "class") return layers.length;
  const byName = node.layer !== void 0 ? layers.indexOf(node.layer) : -1;
  if (byName >= 0) return byName;
  const i = Number(node.layer_index);
  return Number.isInteger(i) && i >= 0 && i < layers.length ? i : 0;
}
function orderColumn(column, incoming, placed) {
  const byValue = (a, b) => Math.abs(nodeValue(b)) - Math.abs(nodeValue(a)) || String(a.id).localeCompare(String(b.id));
  if (!incoming) return [...column].sort(byValue);
  const centre = /* @__PURE__ */ new Map();
  for (const node of column) {
    let sum = 0;
    let weight = 0;
    for (const e of incoming.get(node.id) ?? []) {
      const from = placed.get(e.source);
      if (!from) continue;
      const w = Math.abs(e.score ?? 0) || 1e-9;
      sum += w * from.y;
      weight += w;
    }
    centre.set(node.id, weight > 0 ? sum / weight : Infinity);
  }
  return [...column].sort((a, b) => centre.get(a.id) - centre.get(b.id) || byValue(a, b));
}
function curve(a, b) {
  const x1 = a.x + a.r;
  const x2 = b.x - b.r;
  const mid = (x1 + x2) / 2;
  const f = (v) => Math.round(v * 10) / 10;
  return `M${f(x1)},${f(a.y)} C${f(mid)},${f(a.y)} ${f(mid)},${f(b.y)} ${f(x2)},${f(b.y)}`;
}
function circuitDifference(explanation, original) {
  const nodes = /* @__PURE__ */ new Map();
  const energies = /* @__PURE__ */ new Map();
  for (
    const [which, circuit] of
    /** @type {const} */
    [["explanation", explanation], ["original", original]]
  ) {
    for (const node of circuit?.nodes ?? []) {
      if (!nodes.has(node.id) || which === "explanation" && node.kind === "class") nodes.set(node.id, node);
      const seen = energies.get(node.id) ?? {};
      seen[which] = node.energy ?? 0;
      energies.set(node.id, seen);
    }
  }
  const diffNodes = [];
  for (const [id, node] of nodes) {
    if (node.kind === "class") {
      diffNodes.push({ ...node });
      continue;
    }
    const seen = energies.get(id) ?? {};
    const e = finite(node.energy_explanation) ?? seen.explanation ?? 0;
    const x = finite(node.energy_original) ?? seen.original ?? 0;
    diffNodes.push({ ...node, energy: e - x, energy_explanation: e, energy_original: x });
  }
  const edges = /* @__PURE__ */ new Map();
  const key = (e) => `${e.source}\u2192${e.target}`;
  for (const e of explanation?.edges ?? []) edges.set(key(e), { ...e, score: e.score ?? 0 });
  for (const e of original?.edges ?? []) {
    const k = key(e);
    const prev = edges.get(k);
    edges.set(k, { source: e.source, target: e.target, score: (prev?.score ?? 0) - (e.score ?? 0) });
  }
  const layers = explanation?.layers?.length ? explanation.layers : original?.layers ?? [];
  return {
    ...explanation,
    source: "difference",
    layers,
    nodes: diffNodes,
    edges: [...edges.values()].filter((e) => e.score !== 0)
  };
}
function pathsThrough(graph, id) {
  const nodes = /* @__PURE__ */ new Set([id]);
  const edges = /* @__PURE__ */ new Set();
  const walk = (from, to) => {
    const queue = [id];
    const seen = /* @__PURE__ */ new Set([id]);
    while (queue.length) {
      const current = queue.shift();
      graph.edges.forEach((e, i) => {
        if (e[from] !== current) return;
        edges.add(i);
        nodes.add(e[to]);
        if (!seen.has(e[to])) {
          seen.add(e[to]);
          queue.push(e[to]);
        }
      });
    }
  };
  walk("target", "source");
  walk("source", "target");
  return { nodes, edges };
}
function finite(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : void 0;
}

// src/circuit_view.js
var PER_LAYER = [6, 10, 16, 32, Infinity];
var MAX_SHOWN = 64;
var VIEWS = (
  /** @type {const} */
  [
    ["explanation", "Explanation circuit"],
    ["original", "Original circuit"],
    ["difference", "Difference"]
  ]
);
function createCircuitView(handlers) {
  let circuits = { explanation: {}, original: {} };
  let view = "explanation";
  let perLayer = 10;
  let selected = null;
  let layout = null;
  const buttons = VIEWS.map(([key, label]) => {
    const b = h("button", { type: "button", class: "nbx-toggle", "data-view": key, "aria-pressed": "false", text: label });
    b.addEventListener("click", () => setView(key));
    return b;
  });
  const limit = (
    /** @type {HTMLSelectElement} */
    h(
      "select",
      { class: "nbx-select", "aria-label": "channels shown per layer" },
      ...PER_LAYER.map((n) => h("option", { value: String(n), selected: n === perLayer, text: n < Infinity ? `top ${n}` : `all (up to ${MAX_SHOWN})` }))
    )
  );
  limit.addEventListener("change", () => {
    perLayer = Number(limit.value);
    draw();
  });
  const svg = (
    /** @type {SVGSVGElement} */
    s("svg", { class: "nbx-graph", role: "group", "aria-label": "channel circuit" })
  );
  const empty = h("p", { class: "nbx-muted nbx-empty", hidden: true });
  const legend = h("p", { class: "nbx-hint" });
  const el = h(
    "section",
    { class: "nbx-circuit-view" },
    h(
      "div",
      { class: "nbx-toolbar" },
      h("h4", { text: "Circuit" }),
      h("div", { class: "nbx-segmented", role: "group" }, ...buttons),
      h("label", { class: "nbx-limit" }, "channels per layer ", limit)
    ),
    legend,
    svg,
    empty
  );
  let emptyText = "No circuit to show for this result.";
  function setCircuits(next, whyEmpty) {
    circuits = { explanation: next.explanation ?? {}, original: next.original ?? {} };
    emptyText = whyEmpty ?? "No circuit to show for this result.";
    draw();
  }
  function setView(next) {
    view = next;
    draw();
  }
  function setSelected(id) {
    selected = id;
    for (const g of svg.querySelectorAll(".nbx-node")) g.classList.toggle("nbx-selected", g.getAttribute("data-id") === id);
  }
  function current() {
    const full = view === "difference" ? circuitDifference(circuits.explanation, circuits.original) : view === "original" ? circuits.original : circuits.explanation;
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
    legend.textContent = view === "difference" ? "Explanation minus original: orange = stronger on the explanation, blue = stronger on x. Click a channel." : "Nodes sized by energy, edges by score. Hover to trace paths; click a channel to inspect it.";
    if (!has) {
      svg.replaceChildren();
      layout = null;
      return;
    }
    const more = (
      /** @type {Record<string, number>} */
      circuit.more ?? {}
    );
    const hasMore = Object.keys(more).length > 0;
    layout = layoutCircuit(circuit, hasMore ? { padBottom: 24 } : {});
    const signed = view === "difference";
    const roomy = layout.rowGap >= 22;
    const maxAbs = Math.max(1e-12, ...layout.nodes.filter((n) => n.kind !== "class").map((n) => Math.abs(n.value)));
    svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
    svg.style.maxWidth = `${layout.width}px`;
    const edgeEls = layout.edges.map(
      (e) => s("path", {
        class: "nbx-edge",
        d: e.d,
        "stroke-width": e.width.toFixed(2),
        "stroke-opacity": e.opacity.toFixed(2),
        style: signed ? `stroke:${cssColor(DIVERGING, e.sign > 0 ? 1 : 0)}` : null,
        "data-index": e.index,
        "data-source": e.source,
        "data-target": e.target
      }, s("title", { text: `${describeNode(e.source)} \u2192 ${describeNode(e.target)}: ${formatNumber(e.score)}` }))
    );
    const nodeEls = layout.nodes.map((n) => {
      const isClass = n.kind === "class";
      const fill2 = signed && !isClass ? cssColor(DIVERGING, 0.5 + 0.5 * (n.value / maxAbs)) : null;
      const unit = n.unit === "head" ? "h" : n.unit === "unit" ? "u" : "";
      const label = isClass ? `${n.name ?? `class ${n.class}`} ${formatProb(n.prob)}` : roomy ? `${unit}${n.channel ?? ""}` : "";
      const tip = isClass ? `${n.name ?? n.id}: p = ${formatProb(n.prob)}, logit ${formatNumber(n.logit)}` : `${describeNode(n.id)}
energy ${formatNumber(n.value)} (x: ${formatNumber(n.energy_original)}, explanation: ${formatNumber(n.energy_explanation)})` + (Number.isFinite(Number(n.relevance)) ? `
relevance to the target ${formatNumber(Number(n.relevance))}` : "");
      const g = s(
        "g",
        {
          class: `nbx-node nbx-${n.kind}${n.id === selected ? " nbx-selected" : ""}`,
          "data-id": n.id,
          "data-kind": n.kind,
          tabindex: isClass ? null : 0,
          role: isClass ? null : "button",
          "aria-label": isClass ? null : describeNode(n.id)
        },
        s("title", { text: tip }),
        s("circle", { cx: n.x.toFixed(1), cy: n.y.toFixed(1), r: n.r.toFixed(1), style: fill2 ? `fill:${fill2}` : null }),
        s("text", {
          x: (isClass ? n.x + n.r + 5 : n.x).toFixed(1),
          y: (isClass ? n.y + 4 : n.y - n.r - 3).toFixed(1),
          "text-anchor": isClass ? "start" : "middle",
          text: label
        })
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
    const columnEls = layout.columns.map(
      (c) => s("text", { class: "nbx-column", x: c.x.toFixed(1), y: 14, "text-anchor": "middle", text: c.title ?? c.label })
    );
    const height = layout.height;
    for (const c of layout.columns) {
      const hidden = more[c.label];
      if (hidden > 0) {
        columnEls.push(s("text", {
          class: "nbx-more",
          x: c.x.toFixed(1),
          y: height - 6,
          "text-anchor": "middle",
          text: `+ ${hidden} more`
        }, s("title", { text: `${hidden} more nodes of ${c.title ?? c.label} are in the circuit; choose more per layer to see them` })));
      }
    }
    svg.replaceChildren(s("g", { class: "nbx-edges" }, ...edgeEls), s("g", {}, ...columnEls), s("g", { class: "nbx-nodes" }, ...nodeEls));
  }
  function highlight(id) {
    if (!layout) return;
    if (id === null) {
      svg.classList.remove("nbx-tracing");
      for (const el2 of svg.querySelectorAll(".nbx-hot")) el2.classList.remove("nbx-hot");
      return;
    }
    const paths = pathsThrough(layout, id);
    svg.classList.add("nbx-tracing");
    for (const g of svg.querySelectorAll(".nbx-node")) g.classList.toggle("nbx-hot", paths.nodes.has(g.getAttribute("data-id") ?? ""));
    for (const p of svg.querySelectorAll(".nbx-edge")) p.classList.toggle("nbx-hot", paths.edges.has(Number(p.getAttribute("data-index"))));
  }
  function choose(id) {
    const node = layout?.byId.get(id);
    if (!node || node.kind === "class") return;
    setSelected(id);
    handlers.onSelect(node, view);
  }
  return { el, setCircuits, setView, setSelected, choose, get view() {
    return view;
  } };
}

// src/frame.js
function decodeFrame(content, buffers) {
  if (content?.type !== "frame" && content?.type !== "necessary") throw new Error("not a frame message");
  if (!buffers || buffers.length < 1) throw new Error("a frame needs its mask buffer");
  if (content.dtype !== void 0 && content.dtype !== "uint8") {
    throw new Error(`unsupported mask dtype ${content.dtype}`);
  }
  const mask = toBytes(buffers[0]);
  const { height, width } = checkShape(mask, content.shape, 1);
  return {
    step: Number(content.step),
    total: Number(content.total),
    losses: { ...content.losses || {} },
    prob: numberOrNull(content.prob),
    area: numberOrNull(content.area),
    labelKept: Boolean(content.label_kept),
    elapsed: numberOrNull(content.elapsed),
    width,
    height,
    mask,
    half: content.type === "necessary" ? "necessary" : "sufficient",
    changesDecision: Boolean(content.changes_decision)
  };
}
function decodeChannel(content, buffers) {
  if (!content || content.type !== "channel") throw new Error("not a channel message");
  if (!buffers || buffers.length < 2) throw new Error("a channel answer needs two map buffers");
  const mapOriginal = toBytes(buffers[0]);
  const mapExplanation = toBytes(buffers[1]);
  const { height, width } = checkShape(mapOriginal, content.shape, 1);
  checkShape(mapExplanation, content.shape, 1);
  const scale = Array.isArray(content.scale) ? content.scale : [0, 1];
  return {
    requestId: content.request_id ?? null,
    id: String(content.id ?? `${content.layer}:${content.channel}`),
    layer: String(content.layer),
    channel: Number(content.channel),
    width,
    height,
    mapOriginal,
    mapExplanation,
    scale: [Number(scale[0]), Number(scale[1])],
    energyOriginal: numberOrNull(content.energy_original),
    energyExplanation: numberOrNull(content.energy_explanation),
    incoming: Array.isArray(content.incoming) ? content.incoming : [],
    outgoing: Array.isArray(content.outgoing) ? content.outgoing : []
  };
}
function numberOrNull(value) {
  if (value === null || value === void 0 || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

// src/halves.js
var HALVES = [
  ["sufficient", "sufficient", "the kept pixels: enough for the model to keep its decision"],
  ["necessary", "necessary", "in red: the region whose removal changes the decision"],
  ["both", "both", "the kept pixels, with the necessary region in red on top"]
];
function createHalves(handlers) {
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
    line
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
    }
  };
}

// src/losses.js
var NOT_LOSSES = /* @__PURE__ */ new Set(["prob", "mask_area"]);
var LOG_DECADES = 6;
var LossSeries = class _LossSeries {
  /** @param {number} maxPoints */
  constructor(maxPoints = 600) {
    this.maxPoints = Math.max(4, maxPoints);
    this.steps = [];
    this.values = /* @__PURE__ */ new Map();
    this.measures = /* @__PURE__ */ new Map();
  }
  /**
   * Append one step's values (a name seen for the first time is padded with nulls).
   * Loss terms go to `values`, the measurements of NOT_LOSSES to `measures`.
   * @param {number} step
   * @param {Record<string, number | null | undefined>} row
   */
  push(step, row) {
    const n = this.steps.length;
    if (n > 0 && step <= this.steps[n - 1]) return;
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
    const keep = (i, n2) => i % 2 === 0 || i === n2 - 1;
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
    const series = new _LossSeries(maxPoints);
    const steps = history?.steps ?? [];
    const terms = history?.terms ?? {};
    steps.forEach((step, i) => {
      const row = {};
      for (const [name, values] of Object.entries(terms)) row[name] = values[i] ?? null;
      series.push(step + firstStep, row);
    });
    return series;
  }
};
function linearScale(values, lo = 0, hi = 1) {
  const span = hi > lo ? hi - lo : 1;
  return values.map((v) => isFiniteNumber(v) ? (v - lo) / span : null);
}
function logRange(seriesList, decades = LOG_DECADES) {
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
  const top = Math.ceil(Math.log10(hi) - 1e-9) + 0;
  const bottom = Math.max(Math.floor(Math.log10(lo) + 1e-9), top - decades) + 0;
  return [Math.min(bottom, top - 1), top];
}
function logScale(values, range) {
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
function logTicks(range) {
  const [lo, hi] = range;
  const span = hi > lo ? hi - lo : 1;
  const every = span > 5 ? 2 : 1;
  const ticks = [];
  for (let e = hi; e >= lo; e -= every) ticks.push({ at: (e - lo) / span, label: powerLabel(e) });
  return ticks;
}
function powerLabel(e) {
  if (e >= 0 && e <= 3) return String(10 ** e);
  if (e < 0 && e >= -2) return (10 ** e).toFixed(-e);
  return `1e${e}`;
}
function polylines(steps, scaled, box) {
  const pad = box.pad ?? 2;
  const s0 = box.stepMin ?? (steps.length ? steps[0] : 0);
  const s1 = box.stepMax ?? (steps.length ? steps[steps.length - 1] : 1);
  const sx = s1 > s0 ? (box.width - 2 * pad) / (s1 - s0) : 0;
  const sy = box.height - 2 * pad;
  const lines = [];
  let current = [];
  steps.forEach((step, i) => {
    const v = scaled[i];
    if (v === null || v === void 0) {
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
function isFiniteNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}
function finiteOrNull(v) {
  return isFiniteNumber(v) ? v : null;
}
function round2(v) {
  return Math.round(v * 100) / 100;
}

// src/plot.js
var WIDTH = 300;
var LEFT = 30;
var RIGHT = 8;
var TOP = 5;
var INNER = WIDTH - LEFT - RIGHT;
var PAD = 1.5;
var UNIT_HEIGHT = 66;
var LOG_HEIGHT = 78;
var X_LABELS = 13;
function createLossPlot() {
  const unitSvg = s("svg", {
    class: "nbx-plot",
    "data-role": "plot-unit",
    viewBox: `0 0 ${WIDTH} ${TOP + UNIT_HEIGHT + 4}`,
    role: "img",
    "aria-label": "area kept and p(target | explanation) over training steps, on a 0 to 1 axis"
  });
  const logSvg = s("svg", {
    class: "nbx-plot",
    "data-role": "plot-loss",
    viewBox: `0 0 ${WIDTH} ${TOP + LOG_HEIGHT + X_LABELS}`,
    role: "img",
    "aria-label": "loss over training steps, on a log axis"
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
    lossNote
  );
  const colours = /* @__PURE__ */ new Map();
  function update(series, total, extras = {}) {
    const steps = series.steps;
    const stepMin = steps[0] ?? 0;
    const stepMax = total && total > 0 ? Math.max(total, steps[steps.length - 1] ?? 0) : void 0;
    const box = (height) => ({ width: INNER, height, pad: PAD, stepMin, stepMax });
    drawUnit(series, box(UNIT_HEIGHT), extras);
    drawLoss(series, box(LOG_HEIGHT), stepMin, stepMax ?? steps[steps.length - 1] ?? stepMin);
  }
  function drawUnit(series, box, extras) {
    const y = (v) => TOP + PAD + (1 - v) * (UNIT_HEIGHT - 2 * PAD);
    const grid = [0, 0.5, 1].flatMap((v) => [
      s("line", { class: v === 0 ? "nbx-axis" : "nbx-grid", x1: LEFT, x2: LEFT + INNER, y1: y(v), y2: y(v) }),
      s("text", { class: "nbx-tick", x: LEFT - 4, y: y(v) + 3, "text-anchor": "end", text: String(v) })
    ]);
    const lines = [];
    const p0 = extras.probOriginal;
    if (typeof p0 === "number" && Number.isFinite(p0)) {
      lines.push(s("line", {
        class: "nbx-line-prob nbx-reference",
        "data-series": "prob_original",
        x1: 0,
        x2: INNER,
        y1: y(p0) - TOP,
        y2: y(p0) - TOP
      }));
    }
    for (const [name, cls] of [["mask_area", "nbx-line-area"], ["prob", "nbx-line-prob"]]) {
      for (const points of polylines(series.steps, linearScale(series.measure(name)), box)) {
        lines.push(s("polyline", { points, class: cls, "data-series": name }));
      }
    }
    const markers = [];
    const result = extras.result;
    for (
      const [key, cls] of
      /** @type {const} */
      [["area", "nbx-fill-area"], ["prob", "nbx-fill-prob"]]
    ) {
      const v = result?.[key];
      if (typeof v !== "number" || !Number.isFinite(v)) continue;
      markers.push(diamond(LEFT + INNER - PAD, y(Math.min(1, Math.max(0, v))), cls, `result-${key}`));
    }
    unitSvg.replaceChildren(
      ...grid,
      s("svg", { x: LEFT, y: TOP, width: INNER, height: UNIT_HEIGHT, class: "nbx-clip" }, ...lines),
      ...markers
    );
    const items = [
      legendItem("nbx-swatch-area", "area kept", null),
      legendItem("nbx-swatch-prob", "p(target | explanation)", null)
    ];
    if (typeof p0 === "number" && Number.isFinite(p0)) items.push(legendItem("nbx-swatch-reference", "p(target | x)", null));
    if (markers.length) items.push(legendItem("nbx-swatch-result", "the result (best mask)", null));
    unitLegend.replaceChildren(...items);
  }
  function drawLoss(series, box, stepMin, stepMax) {
    const terms = series.terms().sort((a, b) => Number(b === "total") - Number(a === "total"));
    for (const name of terms) {
      if (name !== "total" && !colours.has(name)) colours.set(name, CATEGORICAL[colours.size % CATEGORICAL.length]);
    }
    const range = logRange(terms.map((name) => series.values.get(name) ?? [])) ?? [-1, 1];
    const y = (at) => TOP + PAD + (1 - at) * (LOG_HEIGHT - 2 * PAD);
    const grid = logTicks(range).flatMap(({ at, label }) => [
      s("line", { class: "nbx-grid", x1: LEFT, x2: LEFT + INNER, y1: y(at), y2: y(at) }),
      s("text", { class: "nbx-tick", x: LEFT - 4, y: y(at) + 3, "text-anchor": "end", text: label })
    ]);
    const bottom = TOP + LOG_HEIGHT;
    const axis = [
      s("line", { class: "nbx-axis", x1: LEFT, x2: LEFT + INNER, y1: bottom, y2: bottom }),
      s("text", { class: "nbx-tick", x: LEFT, y: bottom + 11, "text-anchor": "start", text: `step ${stepMin}` }),
      s("text", { class: "nbx-tick", x: LEFT + INNER, y: bottom + 11, "text-anchor": "end", text: String(stepMax) })
    ];
    const omitted = [];
    const lines = [];
    for (const name of [...terms].reverse()) {
      const { scaled, nonPositive } = logScale(series.values.get(name) ?? [], range);
      if (nonPositive) omitted.push(name);
      for (const points of polylines(series.steps, scaled, box)) {
        lines.push(s("polyline", {
          points,
          class: name === "total" ? "nbx-line-total" : "nbx-line-term",
          stroke: name === "total" ? void 0 : colours.get(name),
          "data-term": name
        }));
      }
    }
    logSvg.replaceChildren(
      ...grid,
      ...axis,
      s("svg", { x: LEFT, y: TOP, width: INNER, height: LOG_HEIGHT, class: "nbx-clip" }, ...lines)
    );
    lossLegend.replaceChildren(
      ...terms.map((name) => {
        const values = series.values.get(name) ?? [];
        const mark = omitted.includes(name) ? " *" : "";
        return legendItem(
          name === "total" ? "nbx-swatch-total" : "",
          `${name}${mark}`,
          formatNumber(values[values.length - 1]),
          name === "total" ? void 0 : colours.get(name)
        );
      })
    );
    lossNote.hidden = omitted.length === 0;
    lossNote.textContent = omitted.length ? "* \u2264 0 at some steps: no place on a log axis, not drawn there" : "";
  }
  return { el, update };
}
function diamond(x, y, cls, role) {
  const r = 4;
  return s("path", { d: `M${x} ${y - r}L${x + r} ${y}L${x} ${y + r}L${x - r} ${y}Z`, class: `nbx-marker ${cls}`, "data-role": role });
}
function legendItem(swatchClass, name, value, colour) {
  return h(
    "li",
    {},
    h("span", { class: `nbx-swatch ${swatchClass}`.trim(), style: colour ? `background:${colour}` : void 0 }),
    h("span", { class: "nbx-term", text: name }),
    value === null ? null : h("span", { class: "nbx-value", text: value })
  );
}

// src/view.js
var SETTLED = /* @__PURE__ */ new Set(["done", "interrupted"]);
var CHANNEL_TIMEOUT_MS = 15e3;
var CAPTIONS = {
  sufficient: ["Mask", "Explanation"],
  necessary: ["Necessary region", "x, necessary in red"],
  both: ["Mask, necessary in red", "Explanation, necessary in red"]
};
function render({ model, el }) {
  const started = performance.now();
  let series = new LossSeries();
  let lastFrame = null;
  let lastNecessary = null;
  let frames = 0;
  let framesWhileTraining = 0;
  let necessaryWhileTraining = 0;
  let requestId = 0;
  let channelTimer;
  const statusBadge = h("span", { class: "nbx-badge", "data-role": "status" });
  const targetName = h("span", { class: "nbx-target" });
  const progress = h("div", { class: "nbx-progress" }, h("div", { class: "nbx-progress-bar" }));
  const stat = (role, label) => {
    const value = h("span", { class: "nbx-stat-value", "data-role": role, text: "\u2014" });
    return { card: h("div", { class: "nbx-stat" }, h("span", { class: "nbx-stat-label", text: label }), value), value };
  };
  const stats = {
    step: stat("step", "Step"),
    probX: stat("prob-original", "p(target | x)"),
    probE: stat("prob-explanation", "p(target | explanation)"),
    area: stat("area", "Area kept"),
    robustness: stat("robustness", "Robustness"),
    time: stat("time", "Time")
  };
  const note = h("p", { class: "nbx-note", hidden: true, "data-role": "note" });
  const canvases = {
    image: (
      /** @type {HTMLCanvasElement} */
      h("canvas", { "data-role": "image" })
    ),
    mask: (
      /** @type {HTMLCanvasElement} */
      h("canvas", { "data-role": "mask", class: "nbx-pixelated" })
    ),
    explanation: (
      /** @type {HTMLCanvasElement} */
      h("canvas", { "data-role": "explanation" })
    )
  };
  const captions = { mask: h("figcaption", { text: "Mask" }), explanation: h("figcaption", { text: "Explanation" }) };
  const picture = (canvas, caption) => h("figure", { class: "nbx-panel nbx-picture" }, canvas, typeof caption === "string" ? h("figcaption", { text: caption }) : caption);
  const halves = createHalves({ onChange: () => drawPictures() });
  const plot = createLossPlot();
  const panel = createChannelPanel({
    onNavigate: (id) => circuit.choose(id),
    onClose: () => {
      panel.hide();
      circuit.setSelected(null);
    }
  });
  const circuit = createCircuitView({ onSelect: (node, view) => requestChannel(node, view) });
  const circuitSection = h(
    "div",
    { class: "nbx-circuit", hidden: true, "data-role": "circuit" },
    circuit.el,
    panel.el
  );
  const root = h(
    "div",
    { class: "nbx-root", "data-role": "root" },
    h("header", { class: "nbx-header" }, h("span", { class: "nbx-title", text: "nbexplain" }), targetName, statusBadge),
    progress,
    h("div", { class: "nbx-stats" }, ...Object.values(stats).map((x) => x.card)),
    note,
    halves.el,
    h(
      "div",
      { class: "nbx-row" },
      picture(canvases.image, "Input x"),
      picture(canvases.mask, captions.mask),
      picture(canvases.explanation, captions.explanation),
      plot.el
    ),
    circuitSection
  );
  el.replaceChildren(root);
  const settled = () => SETTLED.has(model.get("status"));
  function synced(name, shape, channels) {
    const [height, width] = model.get(shape) ?? [0, 0];
    const bytes = toBytes(model.get(name));
    return bytes.length === width * height * channels && width > 0 ? { bytes, width, height } : null;
  }
  const image = () => synced("image", "image_shape", 3);
  const live = (f) => f && !settled() ? { bytes: f.mask, width: f.width, height: f.height } : null;
  const sufficientMask = () => live(lastFrame) ?? synced("mask", "mask_shape", 1);
  const necessaryRegion = () => live(lastNecessary) ?? synced("necessary_mask", "necessary_shape", 1);
  function drawImage() {
    const img = image();
    if (img) paint(canvases.image, rgbToRgba(img.bytes, img.width, img.height), img.width, img.height);
  }
  function explanationRgba(mask) {
    const expl = settled() ? synced("explanation", "explanation_shape", 3) : null;
    if (expl) return { rgba: rgbToRgba(expl.bytes, expl.width, expl.height), width: expl.width, height: expl.height };
    const img = image();
    if (!img || !mask) return null;
    const fill2 = toBytes(model.get("fill_image"));
    const rgba = maskedRgba(
      img.bytes,
      img.width,
      img.height,
      mask.bytes,
      mask.width,
      mask.height,
      fill2.length === img.bytes.length ? fill2 : null
    );
    return { rgba, width: img.width, height: img.height };
  }
  function drawPictures() {
    const mask = sufficientMask();
    const region = necessaryRegion();
    const half = region ? halves.half : "sufficient";
    root.dataset.half = half;
    [captions.mask.textContent, captions.explanation.textContent] = CAPTIONS[half];
    const tint = (rgba, width, height, alpha) => region && half !== "sufficient" ? tintRgba(rgba, width, height, region.bytes, region.width, region.height, alpha) : rgba;
    if (half === "necessary" && region) {
      const black = mapToRgba(new Uint8Array(region.bytes.length));
      paint(canvases.mask, tint(black, region.width, region.height, 1), region.width, region.height);
    } else if (mask) {
      paint(canvases.mask, tint(mapToRgba(mask.bytes), mask.width, mask.height, 0.85), mask.width, mask.height);
    }
    const img = image();
    const base = half === "necessary" && img ? { rgba: rgbToRgba(img.bytes, img.width, img.height), width: img.width, height: img.height } : explanationRgba(mask);
    if (base) paint(canvases.explanation, tint(base.rgba, base.width, base.height, 0.6), base.width, base.height);
  }
  function drawNecessary() {
    const nec = model.get("necessary") ?? {};
    if (!settled() && lastNecessary) halves.setLine(necessaryLine(lastNecessary), lastNecessary.changesDecision);
    else if (settled() && nec.text) halves.setLine(String(nec.text), nec.found !== false, nec.details);
    else halves.setLine(null);
  }
  function drawHeader() {
    const status = model.get("status") ?? "idle";
    root.dataset.status = status;
    const phase = model.get("phase");
    statusBadge.textContent = status === "training" && phase ? phase : status;
    statusBadge.dataset.status = status;
    const name = model.get("target_name");
    targetName.textContent = name ? `explaining \u201C${name}\u201D` : "";
  }
  function drawSummary() {
    const s2 = model.get("summary") ?? {};
    const total = model.get("total_steps");
    stats.step.value.textContent = formatStep(s2.steps ?? lastFrame?.step, total);
    stats.probX.value.textContent = formatProb(s2.prob_original);
    stats.probE.value.textContent = formatProb(s2.prob_explanation);
    stats.area.value.textContent = formatPercent(s2.area);
    stats.robustness.value.textContent = formatPercent(s2.robustness, 0);
    stats.time.value.textContent = formatSeconds(s2.seconds);
    stats.probE.value.dataset.kept = s2.label_kept === false ? "false" : "true";
    setProgress(1);
  }
  function drawFrame(f) {
    stats.step.value.textContent = formatStep(f.step, f.total);
    stats.time.value.textContent = formatSeconds(f.elapsed);
    setProgress(f.total > 0 ? f.step / f.total : 0);
    if (f.half === "sufficient") {
      stats.probE.value.textContent = formatProb(f.prob);
      stats.probE.value.dataset.kept = f.labelKept ? "true" : "false";
      stats.area.value.textContent = formatPercent(f.area);
      plot.update(series, f.total, { probOriginal: (model.get("summary") ?? {}).prob_original });
    }
    drawNecessary();
    drawPictures();
  }
  function setProgress(share) {
    const bar = (
      /** @type {HTMLElement} */
      progress.firstChild
    );
    bar.style.width = `${Math.round(100 * Math.min(1, Math.max(0, share)))}%`;
  }
  function drawNote() {
    const text = model.get("note") ?? "";
    const more = model.get("note_details") ?? "";
    note.hidden = !text;
    note.textContent = text;
    if (text && more) note.append(" ", h("details", { class: "nbx-details" }, h("summary", { text: "details" }), h("pre", { text: more })));
  }
  function drawSettled() {
    drawHeader();
    drawNote();
    drawImage();
    drawNecessary();
    drawPictures();
    drawSummary();
    series = LossSeries.fromHistory(model.get("history") ?? {}, 600, 1);
    const result = model.get("summary") ?? {};
    plot.update(series, void 0, {
      probOriginal: result.prob_original,
      result: { area: result.area, prob: result.prob_explanation }
    });
    circuit.setCircuits(
      { explanation: model.get("circuit"), original: model.get("circuit_original") },
      model.get("status") === "interrupted" ? "No circuit: training was interrupted before the result was complete." : "No circuit to show for this result."
    );
    circuitSection.hidden = false;
  }
  function drawLive() {
    drawHeader();
    drawNote();
    drawImage();
    circuitSection.hidden = true;
    panel.hide();
    stats.probX.value.textContent = formatProb((model.get("summary") ?? {}).prob_original);
    stats.robustness.value.textContent = "\u2014";
    drawNecessary();
    if (lastFrame) drawFrame(lastFrame);
    if (lastNecessary) drawFrame(lastNecessary);
  }
  function drawAll() {
    if (SETTLED.has(model.get("status"))) drawSettled();
    else drawLive();
  }
  function requestChannel(node, view) {
    requestId += 1;
    panel.loading(node.id);
    clearTimeout(channelTimer);
    channelTimer = setTimeout(() => {
      panel.error("No answer yet: the kernel may be busy (a cell is running). It will appear when the kernel is free.");
    }, CHANNEL_TIMEOUT_MS);
    model.send({ type: "channel", layer: node.layer, channel: node.channel, source: view, request_id: requestId });
  }
  function onMessage(content, buffers) {
    try {
      if (content?.type === "frame" || content?.type === "necessary") {
        const f = decodeFrame(content, buffers);
        const training = model.get("status") === "training";
        if (f.half === "necessary") {
          lastNecessary = f;
          if (training) necessaryWhileTraining += 1;
        } else {
          if (lastFrame && f.step < lastFrame.step) {
            series = new LossSeries();
            lastNecessary = null;
          }
          lastFrame = f;
          series.push(f.step, { ...f.losses, prob: f.prob, mask_area: f.area });
        }
        frames += 1;
        if (training) framesWhileTraining += 1;
        root.dataset.frames = String(frames);
        root.dataset.framesWhileTraining = String(framesWhileTraining);
        root.dataset.necessaryWhileTraining = String(necessaryWhileTraining);
        root.dataset.lastStep = String(f.step);
        root.dataset.lastFrameMs = String(Math.round(performance.now() - started));
        root.dataset.firstFrameMs ??= root.dataset.lastFrameMs;
        if (training) drawFrame(f);
      } else if (content?.type === "channel") {
        if (content.request_id !== requestId) return;
        clearTimeout(channelTimer);
        panel.show(decodeChannel(content, buffers));
      } else if (content?.type === "channel_error") {
        if (content.request_id !== requestId) return;
        clearTimeout(channelTimer);
        panel.error(String(content.message ?? "This channel cannot be shown."));
      }
    } catch (err) {
      note.hidden = false;
      note.textContent = `Could not show a message from the kernel: ${err instanceof Error ? err.message : err}`;
    }
  }
  const onStatus = () => {
    if (model.get("status") === "training") {
      series = new LossSeries();
      lastFrame = lastNecessary = null;
    }
    drawAll();
  };
  const listeners = (
    /** @type {[string, (...args: any[]) => void][]} */
    [
      ["msg:custom", onMessage],
      ["change:status", onStatus],
      ["change:image", drawImage],
      ["change:necessary", drawNecessary],
      ["change:note", drawNote],
      ["change:note_details", drawNote],
      ["change:target_name", drawHeader],
      ["change:phase", drawHeader]
    ]
  );
  for (const [event, fn] of listeners) model.on(event, fn);
  drawAll();
  return () => {
    clearTimeout(channelTimer);
    for (const [event, fn] of listeners) model.off(event, fn);
  };
}

// src/index.js
var index_default = { render };
export {
  index_default as default
};
