/**
 * RowMask: the model rows a ranking must never return, one bit a row (bit r & 7 of byte r >> 3).
 * The rules build it (domain/filters.ts: availability, category, price, purchases, seen, exclude),
 * the runtime reads it: a single-isolate graph as a float mask (`toFloats`), a sharded model as each
 * shard's row range of the bits (`range`, what the shards receive). At a million rows it is 125 KB,
 * where a float mask was 4 MB to fill, copy and pack per request.
 *
 * The bits past `rows` in the last byte are always 0, so whole-byte operations (`add`, counting)
 * need no tail handling.
 */

/** Set bits of each byte value. */
export const BITS_SET = Uint8Array.from({ length: 256 }, (_, v) => {
  let c = 0;
  for (let x = v; x; x >>= 1) c += x & 1;
  return c;
});

/** How many bits of `b` are set: 32 bits at a time (a SWAR popcount) where `b` is 4-byte aligned,
 * BITS_SET for the rest: 0.06 ms for a 1M-row mask (125 KB) in Node, 0.14 a byte at a time. */
export function countSet(b: Uint8Array): number {
  let set = 0;
  let i = 0;
  const head = (4 - (b.byteOffset & 3)) & 3;
  for (; i < Math.min(head, b.length); i++) set += BITS_SET[b[i]!]!;
  const words = (b.length - i) >> 2;
  if (words > 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let k = 0; k < words; k++) {
      let x = w[k]!;
      x -= (x >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      set += (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
    }
    i += words << 2;
  }
  for (; i < b.length; i++) set += BITS_SET[b[i]!]!;
  return set;
}

export class RowMask {
  /** One bit a row, 1 = never return. */
  readonly bits: Uint8Array;

  /** An empty mask (every row free) over `rows` rows, or one over the given bits. */
  constructor(
    readonly rows: number,
    bits?: Uint8Array,
  ) {
    if (bits && bits.length !== (rows + 7) >> 3) throw new Error(`RowMask: ${bits.length} bytes for ${rows} rows`);
    this.bits = bits ?? new Uint8Array((rows + 7) >> 3);
  }

  /** Every row set: the start of a ranking over a few rows only (`clear` them). */
  static full(rows: number): RowMask {
    const m = new RowMask(rows);
    m.bits.fill(255);
    if (rows & 7) m.bits[m.bits.length - 1] = (1 << (rows & 7)) - 1;
    return m;
  }

  /** The rows whose value in a float mask is above 0.5 (the graphs' convention). */
  static fromFloats(mask: Float32Array): RowMask {
    const m = new RowMask(mask.length);
    for (let r = 0; r < mask.length; r++) if (mask[r]! > 0.5) m.bits[r >> 3]! |= 1 << (r & 7);
    return m;
  }

  has(row: number): boolean {
    return ((this.bits[row >> 3]! >> (row & 7)) & 1) === 1;
  }

  /** Set a row (ignored outside 0..rows-1). */
  set(row: number): void {
    if (row >= 0 && row < this.rows) this.bits[row >> 3]! |= 1 << (row & 7);
  }

  /** Clear a row (ignored outside 0..rows-1). */
  clear(row: number): void {
    if (row >= 0 && row < this.rows) this.bits[row >> 3]! &= ~(1 << (row & 7));
  }

  /** Set every row `other` sets (a mask over as many rows). */
  add(other: RowMask): void {
    if (other.rows !== this.rows) throw new Error(`RowMask: adding a mask of ${other.rows} rows to one of ${this.rows}`);
    const a = this.bits;
    const b = other.bits;
    for (let i = 0; i < a.length; i++) a[i]! |= b[i]!;
  }

  copy(): RowMask {
    return new RowMask(this.rows, this.bits.slice());
  }

  /** How many rows are not set. */
  free(): number {
    return this.rows - countSet(this.bits);
  }

  /** The float mask a single-isolate graph takes (1 = never return), one float a row. */
  toFloats(): Float32Array {
    const out = new Float32Array(this.rows);
    const b = this.bits;
    for (let i = 0; i < b.length; i++) {
      const v = b[i]!;
      if (!v) continue;
      for (let j = 0, r = i << 3; j < 8 && r < this.rows; j++, r++) if ((v >> j) & 1) out[r] = 1;
    }
    return out;
  }

  /** Rows [lo, hi) as bits of their own (bit j = row lo + j) and how many of them are free: a
   * shard's part. A byte-aligned `lo` is a copy; otherwise each byte is two shifted halves. */
  range(lo: number, hi: number): { bits: Uint8Array; free: number } {
    const n = hi - lo;
    const out = new Uint8Array((n + 7) >> 3);
    const b = this.bits;
    const at = lo >> 3;
    const shift = lo & 7;
    if (shift === 0) out.set(b.subarray(at, at + out.length));
    else for (let i = 0; i < out.length; i++) out[i] = (b[at + i]! >> shift) | ((b[at + i + 1] ?? 0) << (8 - shift));
    if (n & 7) out[out.length - 1]! &= (1 << (n & 7)) - 1;
    return { bits: out, free: n - countSet(out) };
  }
}
