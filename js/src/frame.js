// Decoding the kernel's custom messages: live frames and channel answers.
import { checkShape, toBytes } from "./bytes.js";

/**
 * @typedef {object} Frame
 * @property {number} step
 * @property {number} total
 * @property {Record<string, number | null>} losses
 * @property {number | null} prob
 * @property {number | null} area
 * @property {boolean} labelKept
 * @property {number | null} elapsed seconds since training started
 * @property {number} width mask width (working resolution)
 * @property {number} height mask height
 * @property {Uint8Array} mask 0..255, row-major
 * @property {"sufficient" | "necessary"} half which mask trains: the kept pixels, or the removed region
 * @property {boolean} changesDecision for the necessary half: removing its region changes the decision (under every removal)
 */

/**
 * Turn a `{"type": "frame"}` message (the sufficient mask's) or a `{"type": "necessary"}` one (the
 * necessary region's) and its buffers into a Frame.
 * @param {any} content
 * @param {Array<ArrayBuffer | ArrayBufferView>} buffers
 * @returns {Frame}
 */
export function decodeFrame(content, buffers) {
  if (content?.type !== "frame" && content?.type !== "necessary") throw new Error("not a frame message");
  if (!buffers || buffers.length < 1) throw new Error("a frame needs its mask buffer");
  if (content.dtype !== undefined && content.dtype !== "uint8") {
    throw new Error(`unsupported mask dtype ${content.dtype}`);
  }
  const mask = toBytes(buffers[0]);
  const { height, width } = checkShape(mask, content.shape, 1);
  return {
    step: Number(content.step),
    total: Number(content.total),
    losses: { ...(content.losses || {}) },
    prob: numberOrNull(content.prob),
    area: numberOrNull(content.area),
    labelKept: Boolean(content.label_kept),
    elapsed: numberOrNull(content.elapsed),
    width,
    height,
    mask,
    half: content.type === "necessary" ? "necessary" : "sufficient",
    changesDecision: Boolean(content.changes_decision),
  };
}

/**
 * @typedef {object} ChannelAnswer
 * @property {number | null} requestId
 * @property {string} id node id "layer:channel"
 * @property {string} layer
 * @property {number} channel
 * @property {number} width
 * @property {number} height
 * @property {Uint8Array} mapOriginal activation on x, 0..255 on the shared scale
 * @property {Uint8Array} mapExplanation activation on the explanation, same scale
 * @property {[number, number]} scale activation values of byte 0 and byte 255
 * @property {number | null} energyOriginal
 * @property {number | null} energyExplanation
 * @property {{node: string, score: number | null}[]} incoming
 * @property {{node: string, score: number | null}[]} outgoing
 */

/**
 * Turn a `{"type": "channel"}` answer and its two buffers into a ChannelAnswer.
 * @param {any} content
 * @param {Array<ArrayBuffer | ArrayBufferView>} buffers
 * @returns {ChannelAnswer}
 */
export function decodeChannel(content, buffers) {
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
    outgoing: Array.isArray(content.outgoing) ? content.outgoing : [],
  };
}

/**
 * @param {unknown} value
 * @returns {number | null}
 */
export function numberOrNull(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}
