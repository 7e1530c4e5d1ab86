/**
 * An item shard's masked top-k without onnxruntime (issue 18): int8 rows scored by a WebAssembly
 * SIMD kernel (kernel/scan.wat) pick the candidates, and the candidates are rescored in the rank
 * graph's own float32 arithmetic, so the answer is the rank graph's answer exactly, from a third of
 * the bytes a row (a byte a value against onnxruntime's float32 copies) and no onnxruntime.
 *
 * Why it is exact. At load, each row e (the table's float32 values) is stored as int8 codes c with a
 * scale s = max|e| / 127 (e = s c + err). A query q becomes int16 values qi with a step t =
 * max|q| / 32767 (q = t qi + dq, |dq| <= sqrt(dim) t / 2 <= sqrt(dim) |q| / 65534). The kernel
 * computes D = c . qi exactly (int32), so
 *     q . e = s t D + s (c . dq) + err . q,   |q . e - s t D| <= (s |c| sqrt(dim) / 65534 + |err|) |q|
 * (Cauchy-Schwarz), and the rank graph's float32 result differs from the real q . e (+ b) by at most
 * gamma (|q| |e| + |b|), gamma = (d + 4) 2^-24 / (1 - (d + 4) 2^-24) (a sum of d products, the bias,
 * the division by the norm, and the kernel's own float32 steps, for which every interval is widened
 * by 2^-18 more). Every row thus gets an interval [lo, hi] that holds its graph score. tau, the k-th
 * largest lo among the rows the mask leaves, is at most the k-th best graph score, so every row of
 * the true top-k has hi >= tau: those rows are the candidates (about 15 for k = 10 at 111k rows x
 * 64), rescored as the graph scores them, and the k best (equal scores by row, as onnxruntime's TopK
 * orders them) are the answer.
 *
 * The graph's arithmetic (rank.s<i>.onnx, models/training/export_shards.py `rank_graph`): its Gemm
 * sums q_c e_c in float32 from c = 0 in order (onnxruntime's MLAS kernel for one query row;
 * test/node/int8-scan.test.ts holds this against onnxruntime), then adds the bias (score) or divides
 * by max(norm, 1e-12) (similar).
 */
import { fromHalfBits } from "./int8-rows";
import type { Boost, ShardTop } from "./shards";

/** The kernel's exports (kernel/scan.wat). */
interface Kernel {
  memory: WebAssembly.Memory;
  scan(q: number, rows: number, n: number, stride: number, scale: number, width: number, bias: number, inv: number, mask: number,
    step: number, qn: number, grow: number, similar: number, hi: number, heap: number, k: number): number;
  collect(hi: number, n: number, tau: number, out: number): number;
}

/** Byte offsets of a scan table's arrays in its kernel's memory (16-aligned; per-row arrays hold
 * n rounded up to 4 values, the codes too). */
interface Layout {
  q: number;
  mask: number;
  scale: number;
  width: number;
  bias: number;
  inv: number;
  hi: number;
  /** The heap of the scan, then the candidates' rows. */
  heap: number;
  rows: number;
  end: number;
}

/** One shard's table, ready to scan: codes in the kernel's memory, per-row bounds, exact rows. */
export interface ScanTable {
  n: number;
  dim: number;
  kernel: Kernel;
  /** Bytes a row of codes (dim rounded up to 16). */
  stride: number;
  /** Where its arrays are in the kernel's memory: the int16 query, the mask, per row the codes'
   * scale s, the width (|err| + gamma |e| + s |c| sqrt(dim) / 65534, rounded up), the bias,
   * 1 / max(norm, 1e-12) and the highs, the heap, and the int8 codes. */
  at: Layout;
  /** gamma + 2^-18, rounded up: the widening of every interval for float32 rounding. */
  grow: number;
  /** The stored table: float16 bits (`half` widens them) or float32 values. */
  raw: Uint16Array | Float32Array;
  half: Float32Array | undefined;
  /** Per row: the bias and max(norm, 1e-12) as the graph reads them. */
  bias: Float32Array;
  norm: Float32Array;
}

/** Where a shard's table, bias and norms lie in its weights file (manifest `shards[i].table`). */
export interface ScanLayout {
  n: number;
  dim: number;
  dtype: "float16" | "float32";
  table: number;
  bias: number;
  norm: number;
}

let HALF: Float32Array | undefined;
/** Every float16 bit pattern's value (256 KiB, built once). */
function halfTable(): Float32Array {
  if (!HALF) {
    HALF = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF[h] = fromHalfBits(h);
  }
  return HALF;
}

/** `count` stored values at byte `offset` of `bytes`: float16 bits or float32 (a view where aligned, else a copy). */
function floats(bytes: Uint8Array, offset: number, count: number, dtype: "float16" | "float32"): Float32Array | Uint16Array {
  const size = dtype === "float16" ? 2 : 4;
  if (offset < 0 || offset + count * size > bytes.byteLength) throw new Error(`a table of ${count} values at byte ${offset} runs past the weights file`);
  const start = bytes.byteOffset + offset;
  const buf = start % size === 0 ? bytes.buffer : bytes.slice(offset, offset + count * size).buffer;
  const at = start % size === 0 ? start : 0;
  return dtype === "float16" ? new Uint16Array(buf, at, count) : new Float32Array(buf, at, count);
}

const roundUp = (x: number) => Math.fround(x * (1 + 2 ** -20));

/** The largest dim the kernel's int32 sums hold (127 x 32767 x 512 < 2^31). */
export const SCAN_MAX_DIM = 512;

/** Whether a shard entry can be served by the int8 scan: a rank shard whose `table` gives its bias
 * and norm offsets, with a dim up to SCAN_MAX_DIM (shard-sessions.ts loads it so; memory.ts
 * estimates it so). */
export function scannableEntry(hasRank: boolean, table: { bias?: number; norm?: number } | undefined, dim: number): boolean {
  return hasRank && table?.bias !== undefined && table.norm !== undefined && dim > 0 && dim <= SCAN_MAX_DIM;
}

/** The kernel's memory for n rows of `dim`, bytes: its arrays (layoutOf) in whole 64 KiB pages. */
export function scanKernelBytes(n: number, dim: number): number {
  return Math.ceil(layoutOf((n + 3) & ~3, (dim + 15) & ~15).end / 65536) * 65536;
}

/**
 * Build a shard's scan table from its weights file (`layout`: where its rows, bias and norms are)
 * and the compiled kernel (`kernel`: kernel/scan.wasm). Time: a pass over the rows (about 160 ms for
 * 111k x 64 in Node); memory: the codes (the dim rounded up to 16 bytes a row), six float32 a row in
 * the kernel's memory and two in JS, beside the weights file (memory.ts `scanEstimate`).
 */
export function buildScan(kernel: WebAssembly.Module, weights: Uint8Array, layout: ScanLayout): ScanTable {
  const { n, dim: d, dtype } = layout;
  if (d > SCAN_MAX_DIM) throw new Error(`the int8 scan takes a dim up to ${SCAN_MAX_DIM} (int32 sums), not ${d}`);
  const half = dtype === "float16" ? halfTable() : undefined;
  const raw = floats(weights, layout.table, n * d, dtype);
  const value = half ? (i: number) => half[(raw as Uint16Array)[i]!]! : (i: number) => (raw as Float32Array)[i]!;
  const read = (off: number) => {
    const v = floats(weights, off, n, dtype);
    return half ? Float32Array.from(v as Uint16Array, (h) => half[h]!) : Float32Array.from(v as Float32Array);
  };
  const bias = read(layout.bias);
  const norm = read(layout.norm).map((x) => Math.max(x, Math.fround(1e-12)));
  const stride = (d + 15) & ~15;
  const n4 = (n + 3) & ~3;
  const at = layoutOf(n4, stride);
  const k = new WebAssembly.Instance(kernel, {}).exports as unknown as Kernel;
  if (at.end > k.memory.buffer.byteLength) k.memory.grow(Math.ceil((at.end - k.memory.buffer.byteLength) / 65536));
  const mem = k.memory.buffer;
  const codes = new Int8Array(mem, at.rows, n4 * stride);
  const f32 = (off: number) => new Float32Array(mem, off, n4);
  const [scale, width, biasIn, inv] = [at.scale, at.width, at.bias, at.inv].map(f32) as [Float32Array, Float32Array, Float32Array, Float32Array];
  biasIn.set(bias);
  const g = ((d + 4) * 2 ** -24) / (1 - (d + 4) * 2 ** -24);
  // |dq| <= sqrt(dim) step / 2 <= sqrt(dim) |q| / 65534 (scanTop's int16 query), so s |c| |dq| <= this * s |c| |q|
  const dq = (Math.sqrt(d) / 65534) * (1 + 1e-6);
  for (let r = 0; r < n; r++) {
    let m = 0;
    for (let c = 0; c < d; c++) m = Math.max(m, Math.abs(value(r * d + c)));
    const s = m > 0 ? Math.fround(m / 127) : 1;
    let cc = 0;
    let ee = 0;
    let rr = 0;
    for (let c = 0; c < d; c++) {
      const e = value(r * d + c);
      const code = Math.max(-127, Math.min(127, Math.round(e / s)));
      codes[r * stride + c] = code;
      const err = e - s * code; // exact in float64: s has 24 bits, code 8
      cc += code * code;
      ee += err * err;
      rr += e * e;
    }
    scale[r] = s;
    width[r] = roundUp(Math.sqrt(ee) + g * Math.sqrt(rr) + s * Math.sqrt(cc) * dq);
    inv[r] = 1 / norm[r]!;
  }
  return { n, dim: d, kernel: k, stride, at, grow: roundUp(g + 2 ** -18), raw, half, bias, norm };
}

/** The arrays' offsets for n4 rows (a multiple of 4) of `stride` code bytes. */
function layoutOf(n4: number, stride: number): Layout {
  let end = 0;
  const take = (bytes: number) => {
    const at = end;
    end = (end + bytes + 15) & ~15;
    return at;
  };
  const q = take(stride * 2);
  const mask = take((n4 + 7) >> 3);
  const [scale, width, bias, inv, hi, heap] = Array.from({ length: 6 }, () => take(4 * n4)) as [number, number, number, number, number, number];
  const rows = take(n4 * stride);
  return { q, mask, scale, width, bias, inv, hi, heap, rows, end };
}

/**
 * The k best rows of the table for `vec` that `bits` (a bit a row, 1 = never return) leaves:
 * scores q . e + b (`similar` false) or cosines q . e / max(|e|, 1e-12) (`similar` true), exactly the
 * floats of the rank graph, best first, equal scores by row. Local rows.
 * `boost` (scores only): values added to some rows' scores (the item-transition term, all >= 0).
 * Still exact: a row outside `boost` that belongs to the boosted top-k has its plain score there, so
 * it is in the plain top-k, whose candidates are rescored here together with the boosted rows.
 */
export function scanTop(t: ScanTable, vec: Float32Array, bits: Uint8Array, k: number, similar: boolean, boost?: Boost): ShardTop {
  const { n, dim: d, stride, at, kernel } = t;
  const n4 = (n + 3) & ~3;
  const mem = kernel.memory.buffer;
  // the query as int16: q = step * qi + dq
  let m = 0;
  for (let c = 0; c < d; c++) m = Math.max(m, Math.abs(vec[c]!));
  const step = m > 0 ? Math.fround(m / 32767) : 1;
  const qi = new Int16Array(mem, at.q, stride);
  qi.fill(0);
  let qq = 0;
  for (let c = 0; c < d; c++) {
    const v = vec[c]!;
    qi[c] = Math.round(v / step);
    qq += v * v;
  }
  // the mask, its bits past the last row set
  const mask = new Uint8Array(mem, at.mask, (n4 + 7) >> 3);
  mask.fill(0);
  mask.set(bits.subarray(0, mask.length));
  for (let r = n; r < n4; r++) mask[r >> 3] = mask[r >> 3]! | (1 << (r & 7));
  // tau, the k-th largest low (-inf when fewer rows are left), and the rows whose high reaches it
  const kk = Math.max(0, Math.min(k, n));
  if (kk === 0) return { rows: new Int32Array(0), scores: new Float32Array(0) };
  const tau = kernel.scan(at.q, at.rows, n4, stride, at.scale, at.width, at.bias, at.inv, at.mask, step, roundUp(Math.sqrt(qq)), t.grow, similar ? 1 : 0, at.hi, at.heap, kk);
  const count = kernel.collect(at.hi, n4, tau, at.heap);
  const cand = new Int32Array(mem, at.heap, count);

  // the candidates (and the boosted rows the mask leaves), rescored as the graph scores them
  const rows = Array.from(cand);
  const added = new Map<number, number>();
  if (boost && !similar) {
    const seen = new Set(rows);
    for (let j = 0; j < boost.rows.length; j++) {
      const r = boost.rows[j]!;
      if (!(r >= 0 && r < n) || (bits[r >> 3]! >> (r & 7)) & 1) continue;
      added.set(r, boost.values[j]!);
      if (!seen.has(r)) rows.push(r), seen.add(r);
    }
  }
  const scores: number[] = [];
  const { bias, norm } = t;
  for (const r of rows) {
    const acc = t.half ? dotHalf(vec, t.raw as Uint16Array, t.half, r * d, d) : dotFloat(vec, t.raw as Float32Array, r * d, d);
    const base = similar ? Math.fround(acc / norm[r]!) : Math.fround(acc + bias[r]!);
    const b = added.get(r);
    scores.push(b === undefined ? base : Math.fround(base + b));
  }
  const order = rows.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || rows[a]! - rows[b]!);
  const top = Math.min(kk, order.length);
  const out = { rows: new Int32Array(top), scores: new Float32Array(top) };
  for (let i = 0; i < top; i++) {
    out.rows[i] = rows[order[i]!]!;
    out.scores[i] = scores[order[i]!]!;
  }
  return out;
}

/** sum_c q[c] * half[bits[at + c]] in float32, c = 0, 1, ... in order (the graph's Gemm). */
function dotHalf(q: Float32Array, bits: Uint16Array, half: Float32Array, at: number, d: number): number {
  let acc = 0;
  for (let c = 0; c < d; c++) acc = Math.fround(acc + Math.fround(q[c]! * half[bits[at + c]!]!));
  return acc;
}

/** sum_c q[c] * rows[at + c] in float32, in order. */
function dotFloat(q: Float32Array, rows: Float32Array, at: number, d: number): number {
  let acc = 0;
  for (let c = 0; c < d; c++) acc = Math.fround(acc + Math.fround(q[c]! * rows[at + c]!));
  return acc;
}
