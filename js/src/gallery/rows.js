// The gallery's rows as the kernel sends them: JSON columns plus two blobs (every
// thumbnail's JPEG bytes, every mask packed one bit per pixel at its thumbnail's size).
// Pure functions on typed arrays, so they run (and are tested) without a DOM.
import { toBytes } from "../bytes.js";

/**
 * @typedef {object} Row
 * @property {number} id
 * @property {string | null} key
 * @property {number | null} label
 * @property {number | null} pred
 * @property {number | null} target
 * @property {boolean | null} correct
 * @property {number | null} prob      p(target | image)
 * @property {number | null} probE     p(target | explanation)
 * @property {number | null} area      share of pixels kept
 * @property {string | null} error     why the image could not be explained
 * @property {number} thumbW
 * @property {number} thumbH
 * @property {Uint8Array} thumb        JPEG bytes (empty: not explained)
 * @property {Uint8Array} mask         packed bits, thumbW x thumbH, row-major, most significant bit first
 */

/** Bytes of a packed mask of w x h pixels (np.packbits pads the last byte). */
export function packedLength(/** @type {number} */ w, /** @type {number} */ h) {
  return Math.ceil((w * h) / 8);
}

/**
 * Split the columns and blobs into rows (views into the blobs, no copies).
 * @param {Record<string, any[]>} columns
 * @param {ArrayBuffer | ArrayBufferView | null | undefined} thumbs
 * @param {ArrayBuffer | ArrayBufferView | null | undefined} masks
 * @returns {Row[]}
 */
export function decodeRows(columns, thumbs, masks) {
  const ids = columns?.id ?? [];
  if (!ids.length) return []; // the state before any row (an empty dict)
  const thumbBytes = toBytes(thumbs);
  const maskBytes = toBytes(masks);
  const col = (/** @type {string} */ name) => {
    const c = columns[name];
    if (!Array.isArray(c) || c.length !== ids.length) throw new Error(`column ${name} must hold ${ids.length} values`);
    return c;
  };
  const [w, h, len] = [col("thumb_w"), col("thumb_h"), col("thumb_len")];
  for (const name of Object.keys(columns ?? {})) col(name);
  const rows = [];
  let t = 0;
  let m = 0;
  for (let i = 0; i < ids.length; i++) {
    const hasMask = len[i] > 0 && w[i] > 0 && h[i] > 0;
    const mlen = hasMask ? packedLength(w[i], h[i]) : 0;
    if (t + len[i] > thumbBytes.length || m + mlen > maskBytes.length) {
      throw new Error(`the blobs end before row ${i} (image ${ids[i]}): ${thumbBytes.length} thumbnail and ${maskBytes.length} mask bytes`);
    }
    rows.push({
      id: ids[i],
      key: columns.key?.[i] ?? null,
      label: columns.label?.[i] ?? null,
      pred: columns.pred?.[i] ?? null,
      target: columns.target?.[i] ?? null,
      correct: columns.correct?.[i] ?? null,
      prob: columns.prob?.[i] ?? null,
      probE: columns.prob_e?.[i] ?? null,
      area: columns.area?.[i] ?? null,
      error: columns.error?.[i] ?? null,
      thumbW: w[i],
      thumbH: h[i],
      thumb: thumbBytes.subarray(t, t + len[i]),
      mask: maskBytes.subarray(m, m + mlen),
    });
    t += len[i];
    m += mlen;
  }
  return rows;
}

/**
 * Unpack n bits (most significant first, as np.packbits) into one byte per pixel, 0 or 1.
 * @param {Uint8Array} packed
 * @param {number} n
 * @returns {Uint8Array}
 */
export function unpackBits(packed, n) {
  if (packed.length < packedLength(n, 1)) throw new Error(`expected ${packedLength(n, 1)} packed bytes for ${n} bits, got ${packed.length}`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

/**
 * A class's name: the label list's entry, else "class k".
 * @param {string[] | null | undefined} labels
 * @param {number | null | undefined} k
 */
export function className(labels, k) {
  if (k === null || k === undefined) return "\u2014";
  return labels?.[k] ?? `class ${k}`;
}
