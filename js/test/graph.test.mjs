import assert from "node:assert/strict";
import { test } from "node:test";
import { circuitDifference, layoutCircuit, nodeValue, pathsThrough, strongestNodes } from "../src/graph.js";

/** A small circuit in the schema of nbexplain.core.circuit's to_dict(). */
function circuit(energies = { a: 3, b: 1, c: 2 }, source = "explanation") {
  return {
    target: 3,
    target_name: "star",
    source,
    layers: ["relu", "layer1"],
    nodes: [
      { id: "relu:0", kind: "channel", layer: "relu", layer_index: 0, channel: 0, energy: energies.a, energy_original: 1, energy_explanation: energies.a },
      { id: "relu:1", kind: "channel", layer: "relu", layer_index: 0, channel: 1, energy: energies.b },
      { id: "layer1:7", kind: "channel", layer: "layer1", layer_index: 1, channel: 7, energy: energies.c },
      { id: "class:3", kind: "class", class: 3, name: "star", prob: 0.9, logit: 4, layer_index: 2 },
    ],
    edges: [
      { source: "relu:0", target: "layer1:7", score: 0.8 },
      { source: "relu:1", target: "layer1:7", score: 0.2 },
      { source: "layer1:7", target: "class:3", score: 1.2 },
    ],
  };
}

test("layout puts layers left to right and the class column last", () => {
  const g = layoutCircuit(circuit(), { width: 600 });
  const x = (/** @type {string} */ id) => /** @type {any} */ (g.byId.get(id)).x;
  assert.ok(x("relu:0") < x("layer1:7"));
  assert.ok(x("layer1:7") < x("class:3"));
  assert.equal(x("relu:0"), x("relu:1"));
  assert.deepEqual(g.columns.map((c) => c.label), ["relu", "layer1", "class"]);
  assert.ok(g.nodes.every((n) => n.x >= 0 && n.x <= 600 && n.y > 0 && n.y < g.height));
});

test("layout sizes nodes by energy within their layer and sorts the first column by it", () => {
  const g = layoutCircuit(circuit(), { rMin: 2, rMax: 10 });
  const a = /** @type {any} */ (g.byId.get("relu:0"));
  const b = /** @type {any} */ (g.byId.get("relu:1"));
  assert.equal(a.r, 10);
  assert.ok(b.r < a.r && b.r > 2);
  assert.ok(a.y < b.y, "the stronger channel is on top");
});

test("layout scales edges by |score| and drops edges to unknown nodes", () => {
  const c = circuit();
  c.edges.push({ source: "nowhere:1", target: "class:3", score: 9 });
  const g = layoutCircuit(c, { wMin: 1, wMax: 5 });
  assert.equal(g.edges.length, 3);
  const widths = Object.fromEntries(g.edges.map((e) => [`${e.source}>${e.target}`, e.width]));
  assert.equal(widths["layer1:7>class:3"], 5);
  assert.ok(widths["relu:1>layer1:7"] < widths["relu:0>layer1:7"]);
  assert.ok(g.edges.every((e) => e.d.startsWith("M") && e.opacity > 0 && e.opacity <= 1));
});

test("layout grows in height with the tallest column", () => {
  const many = circuit();
  for (let i = 2; i < 20; i++) many.nodes.push({ id: `relu:${i}`, kind: "channel", layer: "relu", layer_index: 0, channel: i, energy: 1 });
  assert.ok(layoutCircuit(many).height > layoutCircuit(circuit()).height);
});

test("layout stays within maxHeight by packing rows and shrinking nodes", () => {
  const many = circuit();
  for (let i = 2; i < 60; i++) many.nodes.push({ id: `relu:${i}`, kind: "channel", layer: "relu", layer_index: 0, channel: i, energy: 1 });
  const g = layoutCircuit(many, { maxHeight: 300, rMax: 12 });
  assert.equal(g.height, 300);
  const column = g.nodes.filter((n) => n.layer === "relu").sort((a, b) => a.y - b.y);
  for (let i = 1; i < column.length; i++) {
    assert.ok(column[i].y - column[i - 1].y >= column[i].r + column[i - 1].r, "nodes do not overlap");
  }
  assert.ok(column.every((n) => n.y > 0 && n.y < 300));
});

test("strongestNodes keeps the top channels of each layer, all classes, and edges between kept nodes", () => {
  const c = circuit({ a: 3, b: 1, c: 2 });
  const s = strongestNodes(c, 1);
  assert.deepEqual((s.nodes ?? []).map((n) => n.id).sort(), ["class:3", "layer1:7", "relu:0"]);
  assert.deepEqual((s.edges ?? []).map((e) => `${e.source}>${e.target}`).sort(), ["layer1:7>class:3", "relu:0>layer1:7"]);
  assert.equal(strongestNodes(c, Infinity), c);
  assert.equal((strongestNodes(c, 0).nodes ?? []).length, 1);
});

test("strongestNodes counts the channels it leaves out and ranks by relevance when given", () => {
  const big = { layers: ["a"], nodes: /** @type {any[]} */ ([{ id: "class:0", kind: "class", class: 0, prob: 1 }]), edges: [] };
  for (let i = 0; i < 300; i++) big.nodes.push({ id: `a:${i}`, kind: "channel", layer: "a", layer_index: 0, channel: i, energy: i, relevance: -i });
  const s = strongestNodes(big, 10);
  assert.deepEqual(s.more, { a: 290 });
  assert.deepEqual((s.nodes ?? []).filter((n) => n.kind === "channel").map((n) => n.channel), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(strongestNodes(big, 400).more, {});
});

test("strongestNodes shows the strongest source of a shown channel whose sources it would leave out", () => {
  const nodes = /** @type {any[]} */ ([]);
  for (let i = 0; i < 4; i++) nodes.push({ id: `a:${i}`, kind: "channel", layer: "a", layer_index: 0, channel: i, energy: 1, relevance: 10 - i });
  nodes.push({ id: "b:0", kind: "channel", layer: "b", layer_index: 1, channel: 0, energy: 1, relevance: 1 });
  const edges = [{ source: "a:3", target: "b:0", score: 0.5 }, { source: "a:2", target: "b:0", score: 0.2 }];
  const s = strongestNodes({ layers: ["a", "b"], nodes, edges }, 2);
  assert.deepEqual((s.nodes ?? []).map((n) => n.id).sort(), ["a:0", "a:1", "a:3", "b:0"]);
  assert.deepEqual(s.more, { a: 1 });
  assert.deepEqual((s.edges ?? []).map((e) => `${e.source}>${e.target}`), ["a:3>b:0"]);
});

test("layout of an empty or missing circuit is empty, not an error", () => {
  assert.equal(layoutCircuit({}).nodes.length, 0);
  assert.equal(layoutCircuit(/** @type {any} */ (null)).edges.length, 0);
});

test("later columns follow the rows of their inputs (fewer crossings)", () => {
  const c = {
    layers: ["a", "b"],
    nodes: [
      { id: "a:0", kind: "channel", layer: "a", channel: 0, energy: 5 },
      { id: "a:1", kind: "channel", layer: "a", channel: 1, energy: 1 },
      { id: "b:0", kind: "channel", layer: "b", channel: 0, energy: 9 },
      { id: "b:1", kind: "channel", layer: "b", channel: 1, energy: 1 },
    ],
    edges: [
      { source: "a:0", target: "b:1", score: 1 },
      { source: "a:1", target: "b:0", score: 1 },
    ],
  };
  const g = layoutCircuit(/** @type {any} */ (c));
  const y = (/** @type {string} */ id) => /** @type {any} */ (g.byId.get(id)).y;
  assert.ok(y("b:1") < y("b:0"), "b:1 sits level with its input a:0 even though b:0 is stronger");
});

test("difference: explanation minus original energies and edge scores", () => {
  const e = circuit({ a: 3, b: 1, c: 2 });
  const o = circuit({ a: 1, b: 4, c: 2 }, "original");
  o.nodes[0].energy_explanation = 3;
  o.edges = [
    { source: "relu:0", target: "layer1:7", score: 0.3 },
    { source: "relu:1", target: "class:3", score: 0.5 },
    { source: "layer1:7", target: "class:3", score: 1.2 },
  ];
  const d = circuitDifference(e, o);
  const energy = Object.fromEntries((d.nodes ?? []).map((n) => [n.id, n.energy]));
  assert.equal(d.source, "difference");
  assert.equal(energy["relu:0"], 3 - 1); // from the node's own energy_explanation / energy_original
  assert.equal(energy["relu:1"], 1 - 4); // from each circuit's energy
  assert.equal(energy["layer1:7"], 0);
  const score = Object.fromEntries((d.edges ?? []).map((x) => [`${x.source}>${x.target}`, x.score]));
  assert.ok(Math.abs(score["relu:0>layer1:7"] - 0.5) < 1e-12);
  assert.equal(score["relu:1>layer1:7"], 0.2);
  assert.equal(score["relu:1>class:3"], -0.5);
  assert.equal(score["layer1:7>class:3"], undefined, "equal scores cancel out");
});

test("difference keeps nodes found in only one circuit", () => {
  const e = circuit();
  const o = { layers: e.layers, nodes: [{ id: "relu:9", kind: "channel", layer: "relu", channel: 9, energy: 2 }], edges: [] };
  const d = circuitDifference(e, /** @type {any} */ (o));
  const n = (d.nodes ?? []).find((x) => x.id === "relu:9");
  assert.equal(n?.energy, -2);
  assert.equal((d.nodes ?? []).length, 5);
});

test("pathsThrough finds everything upstream and downstream of a node", () => {
  const g = layoutCircuit(circuit());
  const p = pathsThrough(g, "layer1:7");
  assert.deepEqual([...p.nodes].sort(), ["class:3", "layer1:7", "relu:0", "relu:1"]);
  assert.equal(p.edges.size, 3);
  const q = pathsThrough(g, "relu:1");
  assert.deepEqual([...q.nodes].sort(), ["class:3", "layer1:7", "relu:1"]);
  assert.equal(q.edges.size, 2);
});

test("pathsThrough terminates on cycles", () => {
  const p = pathsThrough({ edges: [{ source: "a", target: "b" }, { source: "b", target: "a" }] }, "a");
  assert.deepEqual([...p.nodes].sort(), ["a", "b"]);
});

test("nodeValue: energy for channels, probability for classes", () => {
  assert.equal(nodeValue({ id: "x", kind: "channel", energy: 2 }), 2);
  assert.equal(nodeValue({ id: "c", kind: "class", prob: 0.4 }), 0.4);
  assert.equal(nodeValue({ id: "x", kind: "channel" }), 0);
});
