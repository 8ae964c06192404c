// Pixel buffers for <canvas>: images, masks, masked images and colour-mapped maps.
// Pure functions on typed arrays so they run (and are tested) without a DOM.

/**
 * RGB bytes (row-major) to RGBA for ImageData.
 * @param {Uint8Array} rgb
 * @param {number} width
 * @param {number} height
 * @returns {Uint8ClampedArray}
 */
export function rgbToRgba(rgb, width, height) {
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

/**
 * One byte per pixel through a 256x3 lookup table (or grey when none) to RGBA.
 * @param {Uint8Array} values
 * @param {Uint8Array | null} lut
 * @returns {Uint8ClampedArray}
 */
export function mapToRgba(values, lut = null) {
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

/**
 * The explanation as the model sees it: the image where the mask keeps pixels, the
 * fill (what removed pixels become; black without one) elsewhere. The mask (any
 * resolution) is scaled to the image by nearest neighbour, like the core scales the
 * working mask up to the input.
 * @param {Uint8Array} rgb image bytes, width*height*3
 * @param {number} width
 * @param {number} height
 * @param {Uint8Array} mask 0..255, maskWidth*maskHeight
 * @param {number} maskWidth
 * @param {number} maskHeight
 * @param {Uint8Array | null} [fill] fill bytes, width*height*3
 * @returns {Uint8ClampedArray} RGBA
 */
export function maskedRgba(rgb, width, height, mask, maskWidth, maskHeight, fill = null) {
  if (mask.length !== maskWidth * maskHeight) {
    throw new Error(`expected ${maskWidth * maskHeight} mask bytes, got ${mask.length}`);
  }
  if (fill && fill.length !== width * height * 3) {
    throw new Error(`expected ${width * height * 3} fill bytes, got ${fill.length}`);
  }
  const out = rgbToRgba(rgb, width, height);
  const cols = new Int32Array(width);
  for (let x = 0; x < width; x++) cols[x] = Math.floor((x * maskWidth) / width);
  for (let y = 0; y < height; y++) {
    const row = Math.floor((y * maskHeight) / height) * maskWidth;
    for (let x = 0; x < width; x++) {
      const m = mask[row + cols[x]] / 255;
      const j = (y * width + x) * 4;
      const k = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) out[j + c] = out[j + c] * m + (fill ? fill[k + c] * (1 - m) : 0);
    }
  }
  return out;
}

/** The necessary region's colour (as in the static figure, nbexplain.display.removal_overlay). */
export const NECESSARY_RED = [255, 38, 26];

/**
 * Tint, in place, the pixels of RGBA `rgba` where `region` (any resolution, scaled by
 * nearest neighbour like a mask) is set: the necessary evidence drawn over a picture.
 * @param {Uint8ClampedArray} rgba width*height*4, changed and returned
 * @param {number} width
 * @param {number} height
 * @param {Uint8Array} region 0..255, regionWidth*regionHeight; >= 128 counts as in the region
 * @param {number} regionWidth
 * @param {number} regionHeight
 * @param {number} [alpha] how much of the colour replaces the pixel
 * @param {number[]} [colour] RGB
 * @returns {Uint8ClampedArray}
 */
export function tintRgba(rgba, width, height, region, regionWidth, regionHeight, alpha = 0.6, colour = NECESSARY_RED) {
  if (region.length !== regionWidth * regionHeight) {
    throw new Error(`expected ${regionWidth * regionHeight} region bytes, got ${region.length}`);
  }
  if (rgba.length !== width * height * 4) throw new Error(`expected ${width * height * 4} RGBA bytes, got ${rgba.length}`);
  const cols = new Int32Array(width);
  for (let x = 0; x < width; x++) cols[x] = Math.floor((x * regionWidth) / width);
  for (let y = 0; y < height; y++) {
    const row = Math.floor((y * regionHeight) / height) * regionWidth;
    for (let x = 0; x < width; x++) {
      if (region[row + cols[x]] < 128) continue;
      const j = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) rgba[j + c] = (1 - alpha) * rgba[j + c] + alpha * colour[c];
    }
  }
  return rgba;
}
