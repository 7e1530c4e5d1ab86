/**
 * Int8 item tables (`export.py --int8-table`): weights.bin may store a float16 table as int8 rows
 * with one float32 scale per row, half its bytes. The ONNX graphs still read the float16 table at
 * its offset in the expanded file, so the loader rebuilds that file before onnxruntime sees it:
 * value = float16(float32(q * scale)), rounded to nearest even, exactly as PyTorch's `.half()`.
 */

/** One packed table: `rows` x `cols` float16 at `offset` of the expanded file, stored at
 * `packed_offset` as rows*cols int8 values, zero padding to 4 bytes, then rows float32 scales. */
export interface Int8Rows {
  offset: number;
  rows: number;
  cols: number;
  packed_offset: number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE float16 bits of a number (via float32), round to nearest even; overflow gives infinity. */
export function toHalfBits(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is still correct
  return sign | h;
}

/** The number a float16's bits hold (exact: every float16 is a float32). */
export function fromHalfBits(h: number): number {
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  const v = e === 0 ? f * 2 ** -24 : e === 0x1f ? (f ? Number.NaN : Number.POSITIVE_INFINITY) : (1 + f / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

/** Bytes of a packed table in weights.bin. */
function packedBytes(t: Int8Rows): number {
  const q = t.rows * t.cols;
  return q + ((4 - (q % 4)) % 4) + 4 * t.rows;
}

/**
 * Rebuild the expanded weights file from a packed one: bytes outside the tables are copied, each
 * table becomes float16 again. Throws if the layout does not add up to `expandedBytes`.
 */
export function expandInt8Rows(packed: Uint8Array, tables: Int8Rows[], expandedBytes: number): Uint8Array {
  const out = new Uint8Array(expandedBytes);
  const sorted = [...tables].sort((a, b) => a.offset - b.offset);
  let src = 0;
  let dst = 0;
  for (const t of sorted) {
    const raw = t.offset - dst;
    if (raw < 0 || t.packed_offset !== src + raw) throw new Error(`int8 table at ${t.offset}: layout does not match the file`);
    out.set(packed.subarray(src, src + raw), dst);
    src += raw;
    dst += raw;
    const n = t.rows * t.cols;
    if (src + packedBytes(t) > packed.byteLength || dst + 2 * n > expandedBytes) throw new Error(`int8 table at ${t.offset}: file too short`);
    const q = new Int8Array(packed.buffer, packed.byteOffset + src, n);
    const scaleAt = src + n + ((4 - (n % 4)) % 4);
    const scales = new DataView(packed.buffer, packed.byteOffset + scaleAt, 4 * t.rows);
    const half = new DataView(out.buffer, out.byteOffset + dst, 2 * n);
    for (let r = 0; r < t.rows; r++) {
      const s = scales.getFloat32(4 * r, true);
      for (let c = 0, i = r * t.cols; c < t.cols; c++, i++) half.setUint16(2 * i, toHalfBits(Math.fround((q[i] as number) * s)), true);
    }
    src += packedBytes(t);
    dst += 2 * n;
  }
  if (packed.byteLength - src !== expandedBytes - dst) throw new Error("int8 tables: the file's tail does not match the expanded size");
  out.set(packed.subarray(src), dst);
  return out;
}
