/**
 * The seen-items filter of a user's state record: which items the user already had, over more
 * sessions than the recent ring holds, in a fixed 768 bytes. It serves `exclude_seen=true` (shops
 * where an item is had once: films rated, books read). models/training/seen.py is the same code in
 * Python (the harness measures with it); test/fixtures/seen-golden.json holds both to one answer.
 *
 * Two Bloom filters ("generations") of SEEN_BITS bits, SEEN_K positions per item id
 * (Kirsch-Mitzenmacher: (h1 + i*h2) mod SEEN_BITS, h1 and h2 FNV-1a 32 of the id's UTF-8 bytes with
 * two offset bases, h2 odd). An item is added to the current generation unless already there; once
 * it holds SEEN_CAPACITY items it becomes the previous generation and a fresh one starts. "Seen" =
 * held by either, so at least the last SEEN_CAPACITY distinct items are remembered (up to twice
 * that), with a false-positive rate of at most ~1.5%.
 */
import type { RowMask } from "../model/row-mask";

/** Bytes per generation. */
export const SEEN_GEN_BYTES = 384;
/** Bits per generation (3,072). */
export const SEEN_BITS = SEEN_GEN_BYTES * 8;
/** Bit positions per item. */
export const SEEN_K = 7;
/** Items per generation before it rotates. */
export const SEEN_CAPACITY = 300;

/** One user's filter. `bits`: current generation then previous, bit j of a generation in byte j >> 3 at bit j & 7. */
export interface SeenFilter {
  bits: Uint8Array;
  /** Items in the current generation. */
  count: number;
}

/** An empty filter. */
export function emptySeen(): SeenFilter {
  return { bits: new Uint8Array(2 * SEEN_GEN_BYTES), count: 0 };
}

const encoder = new TextEncoder();

function fnv1a(bytes: Uint8Array, basis: number): number {
  let h = basis;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h >>> 0;
}

/** The SEEN_K bit positions of an item id. */
export function seenPositions(itemId: string): Uint16Array {
  const b = encoder.encode(itemId);
  const h1 = fnv1a(b, 0x811c9dc5);
  const h2 = (fnv1a(b, 0x9747b28c) | 1) >>> 0;
  const out = new Uint16Array(SEEN_K);
  for (let i = 0; i < SEEN_K; i++) out[i] = ((h1 + Math.imul(i, h2)) >>> 0) % SEEN_BITS;
  return out;
}

function inGen(bits: Uint8Array, offset: number, pos: ArrayLike<number>, from = 0): boolean {
  for (let i = from; i < from + SEEN_K; i++) {
    const p = pos[i]!;
    if (!(bits[offset + (p >> 3)]! & (1 << (p & 7)))) return false;
  }
  return true;
}

/** Does the filter hold the item with these positions (`pos[from .. from+K)`)? */
export function seenHasAt(f: SeenFilter, pos: ArrayLike<number>, from = 0): boolean {
  return inGen(f.bits, 0, pos, from) || inGen(f.bits, SEEN_GEN_BYTES, pos, from);
}

/** Does the filter hold this item id (or a false positive)? */
export function seenHas(f: SeenFilter, itemId: string): boolean {
  return seenHasAt(f, seenPositions(itemId));
}

/** Add an item id in place (rotating the generations when the current one is full). */
export function seenAdd(f: SeenFilter, itemId: string): void {
  const pos = seenPositions(itemId);
  if (inGen(f.bits, 0, pos)) return;
  if (f.count >= SEEN_CAPACITY) {
    f.bits.copyWithin(SEEN_GEN_BYTES, 0, SEEN_GEN_BYTES);
    f.bits.fill(0, 0, SEEN_GEN_BYTES);
    f.count = 0;
  }
  for (const p of pos) f.bits[p >> 3]! |= 1 << (p & 7);
  f.count++;
}

/** A copy (the fold never changes a state it was given). */
export function copySeen(f: SeenFilter): SeenFilter {
  return { bits: f.bits.slice(), count: f.count };
}

const rowTables = new WeakMap<object, Uint16Array>();

/**
 * Bit positions of every embedding row of a model (row r at r*K), computed once per model and
 * isolate (27 ms in Node for diginetica's 43k items). Row 0 (padding) is left at zeros: skip it.
 */
export function rowPositions(model: { rows: number; idOf(row: number): string }): Uint16Array {
  let t = rowTables.get(model);
  if (!t) {
    t = new Uint16Array(model.rows * SEEN_K);
    for (let r = 1; r < model.rows; r++) t.set(seenPositions(model.idOf(r)), r * SEEN_K);
    rowTables.set(model, t);
  }
  return t;
}

/**
 * Set every row 1..rows-1 of `mask` the filter holds, given rowPositions(model): the
 * `exclude_seen` pass of a ranking (1.2 ms in Node for diginetica's 43k rows, 0.13 ms per 5k).
 */
export function maskSeenRows(f: SeenFilter, pos: Uint16Array, mask: RowMask): void {
  const bits = f.bits;
  const rows = mask.rows;
  const set = mask.bits;
  for (let g = 0; g < 2; g++) {
    const off = g * SEEN_GEN_BYTES;
    for (let r = 1, i = SEEN_K; r < rows; r++, i += SEEN_K) {
      if ((set[r >> 3]! >> (r & 7)) & 1) continue;
      let k = 0;
      while (k < SEEN_K) {
        const p = pos[i + k]!;
        if (!(bits[off + (p >> 3)]! & (1 << (p & 7)))) break;
        k++;
      }
      if (k === SEEN_K) set[r >> 3]! |= 1 << (r & 7);
    }
  }
}
