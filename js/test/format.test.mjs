import assert from "node:assert/strict";
import { test } from "node:test";
import { describeNode, formatNumber, formatPercent, formatProb, formatSeconds, formatStep, necessaryLine } from "../src/format.js";

test("formatting numbers, with a dash for unknown values", () => {
  assert.equal(formatProb(0.93123), "0.931");
  assert.equal(formatProb(null), "\u2014");
  assert.equal(formatPercent(0.1234), "12.3%");
  assert.equal(formatPercent(0.5, 0), "50%");
  assert.equal(formatPercent(Number.NaN), "\u2014");
  assert.equal(formatNumber(3.14159), "3.14");
  assert.equal(formatNumber(123456), "1.23e+5");
  assert.equal(formatNumber(0.0001234), "1.23e-4");
  assert.equal(formatNumber(0), "0");
  assert.equal(formatSeconds(2.345), "2.3 s");
  assert.equal(formatSeconds(125), "2 min 5 s");
  assert.equal(formatStep(7, 120), "7 / 120");
  assert.equal(formatStep(7, 0), "7");
  assert.equal(formatStep(undefined, 120), "\u2014");
});

test("describeNode names layers and classes for people", () => {
  assert.equal(describeNode("layer1:12"), "layer1 \u00b7 channel 12");
  assert.equal(describeNode("features.3:0"), "features.3 \u00b7 channel 0");
  assert.equal(describeNode("class:3"), "class 3");
  assert.equal(describeNode("odd"), "odd");
});

test("the necessary half's live line says whether its region changes the decision yet", () => {
  assert.equal(necessaryLine({ area: 0.031, changesDecision: true }),
    "necessary (searching): removing 3.1% changes the decision");
  assert.match(necessaryLine({ area: null, changesDecision: false }), /removing \u2014 does not change the decision yet$/);
});
