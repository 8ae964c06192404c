// Circuit graph: layout (layers left to right, classes on the right), the
// "explanation minus original" difference, and the paths through a node.
// Input follows the circuit JSON schema of nbexplain.core.circuit.

/**
 * @typedef {object} CircuitNode
 * @property {string} id
 * @property {"channel" | "class"} kind
 * @property {string} [layer]
 * @property {number} [layer_index]
 * @property {number} [channel]
 * @property {number} [class]
 * @property {string} [name]
 * @property {number} [energy]
 * @property {number} [energy_original]
 * @property {number} [energy_explanation]
 * @property {number} [relevance]
 * @property {number} [prob]
 * @property {number} [logit]
 *
 * @typedef {{source: string, target: string, score: number}} CircuitEdge
 * @typedef {{layers?: string[], nodes?: CircuitNode[], edges?: CircuitEdge[], source?: string,
 *            target?: number, target_name?: string}} Circuit
 *
 * @typedef {CircuitNode & {x: number, y: number, r: number, column: number, value: number}} PlacedNode
 * @typedef {CircuitEdge & {index: number, d: string, width: number, opacity: number, sign: number}} PlacedEdge
 * @typedef {{width: number, height: number, rowGap: number, nodes: PlacedNode[], edges: PlacedEdge[],
 *            columns: {label: string, x: number}[], byId: Map<string, PlacedNode>}} Layout
 */

const DEFAULTS = {
  width: 640,
  padLeft: 36,
  padRight: 96, // room for class names
  padTop: 30,
  padBottom: 14,
  rowGap: 30,
  minHeight: 180,
  maxHeight: 460, // beyond this, rows (and nodes) get closer instead of the graph taller
  rMin: 3,
  rMax: 11,
  wMin: 0.6,
  wMax: 6,
};

/**
 * The value that sizes a node: energy for channels (signed in a difference
 * graph), probability for classes.
 * @param {CircuitNode} node
 */
export function nodeValue(node) {
  const v = node.kind === "class" ? node.prob ?? node.energy ?? 1 : node.energy ?? 0;
  return Number.isFinite(v) ? Number(v) : 0;
}

/**
 * Place nodes and edges. Columns are the circuit's layers in order, then one
 * column of class nodes. The first column is sorted by value; each later one by
 * the score-weighted mean row of its predecessors, so edges cross less.
 * @param {Circuit} circuit
 * @param {Partial<typeof DEFAULTS>} options
 * @returns {Layout}
 */
export function layoutCircuit(circuit, options = {}) {
  const o = { ...DEFAULTS, ...options };
  const layers = circuit?.layers ?? [];
  const nodes = circuit?.nodes ?? [];
  const nColumns = layers.length + 1;
  /** @type {CircuitNode[][]} */
  const columns = Array.from({ length: nColumns }, () => []);
  for (const node of nodes) columns[columnOf(node, layers)].push(node);

  const incoming = new Map();
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
  const xOf = (/** @type {number} */ c) =>
    nColumns === 1 ? o.width / 2 : o.padLeft + (c * (o.width - o.padLeft - o.padRight)) / (nColumns - 1);

  /** @type {Map<string, PlacedNode>} */
  const byId = new Map();
  /** @type {PlacedNode[]} */
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
    const a = /** @type {PlacedNode} */ (byId.get(e.source));
    const b = /** @type {PlacedNode} */ (byId.get(e.target));
    const share = strongest > 0 ? Math.abs(e.score ?? 0) / strongest : 0;
    return {
      ...e,
      index,
      d: curve(a, b),
      width: o.wMin + (o.wMax - o.wMin) * share,
      opacity: 0.15 + 0.7 * share,
      sign: Math.sign(e.score ?? 0),
    };
  });
  // A transformer's columns carry short titles ("block 3 heads"); `label` stays the layer's name.
  const titles = circuit?.layer_labels ?? {};
  const columnLabels = [...layers, "class"].map((label, c) => ({ label, title: titles[label] ?? label, x: xOf(c) }));
  return { width: o.width, height, rowGap, nodes: placed, edges: placedEdges, columns: columnLabels, byId };
}

/**
 * Keep the `perLayer` strongest channels of each layer (by relevance to the
 * target when the circuit has it, else by |value|), every class node, and the
 * edges between kept nodes; a kept channel fed only by channels left out brings its
 * strongest source along. `more` counts, per layer, the channels left out, so
 * that a circuit of hundreds of channels a layer can say "+ N more".
 * @param {Circuit} circuit
 * @param {number} perLayer Infinity keeps everything
 * @returns {Circuit & {more?: Record<string, number>}}
 */
export function strongestNodes(circuit, perLayer) {
  const nodes = circuit?.nodes ?? [];
  if (!(perLayer < Infinity)) return circuit;
  /** @type {Map<string, CircuitNode[]>} */
  const byLayer = new Map();
  for (const n of nodes) {
    if (n.kind === "class") continue;
    const key = String(n.layer ?? n.layer_index);
    if (!byLayer.has(key)) byLayer.set(key, []);
    /** @type {CircuitNode[]} */ (byLayer.get(key)).push(n);
  }
  const rank = (/** @type {CircuitNode} */ n) => {
    const r = Number(/** @type {any} */ (n).relevance);
    return Number.isFinite(r) ? r : Math.abs(nodeValue(n));
  };
  const kept = new Set(nodes.filter((n) => n.kind === "class").map((n) => n.id));
  for (const group of byLayer.values()) {
    group.sort((a, b) => rank(b) - rank(a)).slice(0, Math.max(0, perLayer)).forEach((n) => kept.add(n.id));
  }
  // A shown channel whose incoming edges all come from channels left out would look cut off from
  // the layer before it: from the last layer back, its strongest source is shown too.
  /** @type {Map<string, {source: string, score: number}>} */
  const strongestIn = new Map();
  for (const e of circuit?.edges ?? []) {
    const best = strongestIn.get(e.target);
    if (!best || Number(e.score) > best.score) strongestIn.set(e.target, { source: e.source, score: Number(e.score) });
  }
  const fedByKept = (/** @type {string} */ id) =>
    (circuit?.edges ?? []).some((e) => e.target === id && kept.has(e.source));
  for (const group of [...byLayer.values()].reverse()) {
    for (const n of group) {
      const best = strongestIn.get(n.id);
      if (kept.has(n.id) && best && !fedByKept(n.id)) kept.add(best.source);
    }
  }
  /** @type {Record<string, number>} */
  const more = {};
  for (const [key, group] of byLayer) {
    const hidden = group.filter((n) => !kept.has(n.id)).length;
    if (hidden) more[key] = hidden;
  }
  return {
    ...circuit,
    nodes: nodes.filter((n) => kept.has(n.id)),
    edges: (circuit?.edges ?? []).filter((e) => kept.has(e.source) && kept.has(e.target)),
    more,
  };
}

/**
 * @param {CircuitNode} node
 * @param {string[]} layers
 */
function columnOf(node, layers) {
  if (node.kind === "class") return layers.length;
  const byName = node.layer !== undefined ? layers.indexOf(node.layer) : -1;
  if (byName >= 0) return byName;
  const i = Number(node.layer_index);
  return Number.isInteger(i) && i >= 0 && i < layers.length ? i : 0;
}

/**
 * @param {CircuitNode[]} column
 * @param {Map<string, CircuitEdge[]> | null} incoming
 * @param {Map<string, PlacedNode>} placed nodes of earlier columns
 */
function orderColumn(column, incoming, placed) {
  const byValue = (/** @type {CircuitNode} */ a, /** @type {CircuitNode} */ b) =>
    Math.abs(nodeValue(b)) - Math.abs(nodeValue(a)) || String(a.id).localeCompare(String(b.id));
  if (!incoming) return [...column].sort(byValue);
  const centre = new Map();
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

/**
 * A horizontal S-curve from the right edge of a to the left edge of b.
 * @param {PlacedNode} a
 * @param {PlacedNode} b
 */
function curve(a, b) {
  const x1 = a.x + a.r;
  const x2 = b.x - b.r;
  const mid = (x1 + x2) / 2;
  const f = (/** @type {number} */ v) => Math.round(v * 10) / 10;
  return `M${f(x1)},${f(a.y)} C${f(mid)},${f(a.y)} ${f(mid)},${f(b.y)} ${f(x2)},${f(b.y)}`;
}

/**
 * "Explanation minus original": every node of either circuit, its energy the
 * difference energy_explanation - energy_original; every edge of either, its
 * score the difference of scores (a missing edge counts 0).
 * @param {Circuit} explanation
 * @param {Circuit} original
 * @returns {Circuit}
 */
export function circuitDifference(explanation, original) {
  /** @type {Map<string, CircuitNode>} */
  const nodes = new Map();
  /** @type {Map<string, Record<string, number>>} */
  const energies = new Map(); // id -> {explanation, original} as seen in each circuit
  for (const [which, circuit] of /** @type {const} */ ([["explanation", explanation], ["original", original]])) {
    for (const node of circuit?.nodes ?? []) {
      if (!nodes.has(node.id) || (which === "explanation" && node.kind === "class")) nodes.set(node.id, node);
      const seen = energies.get(node.id) ?? {};
      seen[which] = node.energy ?? 0;
      energies.set(node.id, seen);
    }
  }
  /** @type {CircuitNode[]} */
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
  /** @type {Map<string, CircuitEdge>} */
  const edges = new Map();
  const key = (/** @type {CircuitEdge} */ e) => `${e.source}\u2192${e.target}`;
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
    edges: [...edges.values()].filter((e) => e.score !== 0),
  };
}

/**
 * Everything upstream and downstream of a node: the nodes and edge indices on
 * any path through it (for hover highlighting).
 * @param {{edges: {source: string, target: string}[]}} graph
 * @param {string} id
 * @returns {{nodes: Set<string>, edges: Set<number>}}
 */
export function pathsThrough(graph, id) {
  const nodes = new Set([id]);
  const edges = new Set();
  const walk = (/** @type {"source" | "target"} */ from, /** @type {"source" | "target"} */ to) => {
    const queue = [id];
    const seen = new Set([id]);
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
  walk("target", "source"); // upstream
  walk("source", "target"); // downstream
  return { nodes, edges };
}

/** @param {unknown} v */
function finite(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}
