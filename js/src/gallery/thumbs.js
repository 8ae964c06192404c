// Thumbnails: the stored JPEG drawn on a canvas with the pixels outside the kept mask
// dimmed and the mask's edge outlined. Decoding is asynchronous (the browser's JPEG
// decoder); the finished pixels are cached per image so re-filtering redraws instantly.
import { unpackBits } from "./rows.js";

const DIM = 0.3; // removed pixels keep a third of their brightness: context stays readable
const OUTLINE = [255, 210, 63];

/**
 * Dim the pixels outside the mask and outline the kept region from outside (pure, in
 * place): the outline takes removed pixels next to a kept one, so a kept region only a
 * pixel or two wide at thumbnail size still shows its own pixels.
 * @param {Uint8ClampedArray} rgba width*height*4
 * @param {Uint8Array} mask 0/1 per pixel, width*height
 * @param {number} width
 * @param {number} height
 * @returns {Uint8ClampedArray} rgba
 */
export function dimOutside(rgba, mask, width, height) {
  if (mask.length !== width * height) throw new Error(`expected a ${width}x${height} mask, got ${mask.length} pixels`);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (mask[i]) continue;
      const j = i * 4;
      const edge = (x > 0 && mask[i - 1]) || (x < width - 1 && mask[i + 1])
        || (y > 0 && mask[i - width]) || (y < height - 1 && mask[i + width]);
      if (edge) rgba.set(OUTLINE, j);
      else for (let c = 0; c < 3; c++) rgba[j + c] = rgba[j + c] * DIM;
    }
  }
  return rgba;
}

/**
 * Decoded pixels by image id, the most recently used kept: a thumbnail is 16 KiB of
 * RGBA, so an audit of many thousand images must not keep every one it ever drew.
 */
export class ThumbCache {
  /**
   * @param {number} [limit] thumbnails kept
   * @param {(row: import("./rows.js").Row) => Promise<ImageData | null>} [draw] (tests pass a fake)
   */
  constructor(limit = 1500, draw = render) {
    this.limit = limit;
    this.draw = draw;
    /** @type {Map<number, {thumb: Uint8Array, mask: Uint8Array, pixels: Promise<ImageData | null>}>} */
    this.entries = new Map();
  }

  /**
   * The thumbnail of `row` with its mask applied (null: no thumbnail).
   * @param {import("./rows.js").Row} row
   * @returns {Promise<ImageData | null>}
   */
  pixels(row) {
    const old = this.entries.get(row.id);
    this.entries.delete(row.id); // re-inserted below: Map order is the use order
    if (old && sameBytes(old.thumb, row.thumb) && sameBytes(old.mask, row.mask)) {
      this.entries.set(row.id, old);
      return old.pixels;
    }
    const pixels = row.thumb.length ? this.draw(row) : Promise.resolve(null);
    this.entries.set(row.id, { thumb: row.thumb, mask: row.mask, pixels });
    while (this.entries.size > this.limit) this.entries.delete(/** @type {number} */ (this.entries.keys().next().value));
    return pixels;
  }
}

/** @param {import("./rows.js").Row} row */
async function render(row) {
  const { thumbW: w, thumbH: h } = row;
  const image = await decodeJpeg(row.thumb);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  ctx.drawImage(image, 0, 0, w, h);
  const data = ctx.getImageData(0, 0, w, h);
  if (row.mask.length) dimOutside(data.data, unpackBits(row.mask, w * h), w, h);
  return data;
}

/**
 * @param {Uint8Array} bytes JPEG
 * @returns {Promise<ImageBitmap | HTMLImageElement>}
 */
async function decodeJpeg(bytes) {
  const blob = new Blob([bytes], { type: "image/jpeg" });
  if (typeof createImageBitmap === "function") return createImageBitmap(blob);
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}

/**
 * Draw cached pixels on a canvas (sized to them).
 * @param {HTMLCanvasElement} canvas
 * @param {ImageData} data
 */
export function put(canvas, data) {
  canvas.width = data.width;
  canvas.height = data.height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.putImageData(data, 0, 0);
  canvas.dataset.painted = "true";
}

/** @param {Uint8Array} a @param {Uint8Array} b */
function sameBytes(a, b) {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
