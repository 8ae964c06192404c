// Number formatting for the summary and labels ("—" for unknown values).

const DASH = "\u2014";

/** @param {number | null | undefined} p probability in [0, 1] */
export function formatProb(p) {
  return isNumber(p) ? p.toFixed(3) : DASH;
}

/** @param {number | null | undefined} share fraction in [0, 1] */
export function formatPercent(share, digits = 1) {
  return isNumber(share) ? `${(100 * share).toFixed(digits)}%` : DASH;
}

/** Compact number: 3 significant digits, exponent for very large/small values. */
/** @param {number | null | undefined} v */
export function formatNumber(v) {
  if (!isNumber(v)) return DASH;
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

/** @param {number | null | undefined} seconds */
export function formatSeconds(seconds) {
  if (!isNumber(seconds)) return DASH;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/**
 * @param {number | null | undefined} step
 * @param {number | null | undefined} total
 */
export function formatStep(step, total) {
  if (!isNumber(step)) return DASH;
  return isNumber(total) && total > 0 ? `${step} / ${total}` : String(step);
}

/**
 * The live line of the necessary half, while its region is searched.
 * @param {{area: number | null, changesDecision: boolean}} frame
 */
export function necessaryLine(frame) {
  const verdict = frame.changesDecision ? "changes the decision" : "does not change the decision yet";
  return `necessary (searching): removing ${formatPercent(frame.area)} ${verdict}`;
}

/** @param {unknown} v @returns {v is number} */
function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/**
 * A node id for people: "layer1:12" -> "layer1 · channel 12", "class:3" -> "class 3".
 * @param {string} id
 */
export function describeNode(id) {
  const text = String(id);
  const at = text.lastIndexOf(":");
  if (at < 0) return text;
  const layer = text.slice(0, at);
  const index = text.slice(at + 1);
  if (layer === "class") return `class ${index}`;
  // A transformer's nodes live at "<attention>.heads" and "<mlp>.units" (nbexplain.core.sites).
  const unit = layer.endsWith(".heads") ? "head" : layer.endsWith(".units") ? "unit" : "channel";
  return `${layer} \u00b7 ${unit} ${index}`;
}
