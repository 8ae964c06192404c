// Binary payloads arrive as DataView (anywidget), ArrayBuffer or a typed array,
// depending on the front end; everything downstream wants a Uint8Array view.

/**
 * View any binary buffer as bytes without copying.
 * @param {ArrayBuffer | ArrayBufferView | null | undefined} buffer
 * @returns {Uint8Array}
 */
export function toBytes(buffer) {
  if (buffer == null) return new Uint8Array(0);
  if (buffer instanceof Uint8Array) return buffer;
  if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError(`expected binary data, got ${Object.prototype.toString.call(buffer)}`);
}

/**
 * Check that a picture's bytes match its declared shape.
 * @param {Uint8Array} bytes
 * @param {number[]} shape [h, w]
 * @param {number} channels bytes per pixel
 * @returns {{height: number, width: number}}
 */
export function checkShape(bytes, shape, channels) {
  if (!Array.isArray(shape) || shape.length !== 2) {
    throw new Error(`shape must be [h, w], got ${JSON.stringify(shape)}`);
  }
  const [height, width] = shape.map(Number);
  if (!(Number.isInteger(height) && Number.isInteger(width) && height >= 0 && width >= 0)) {
    throw new Error(`shape must hold two non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (bytes.length !== height * width * channels) {
    throw new Error(
      `expected ${height}x${width}x${channels} = ${height * width * channels} bytes, got ${bytes.length}`,
    );
  }
  return { height, width };
}
