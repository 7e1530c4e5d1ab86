/**
 * The item-transition term of a sharded model (models/training/transitions.py): what follows the
 * user's recent items in everybody's sessions, added to their scores. A single-isolate model has it
 * inside its score graph; a sharded model's worker adds it: its constants lie past the step graph's
 * initializers in the worker's weights file (manifest `transitions.offsets`), and the shards rank
 * by plain score + term (int8-scan.ts scanTop), exactly as the score graph does.
 */
import type { Boost } from "./shards";

/** The manifest's `transitions` entry as the worker reads it. */
export interface TransitionsEntry {
  successors: number;
  alpha: number;
  eps: number;
  decay: number;
  offsets?: { idx: number; q: number; scale: number };
}

/** Successor rows and weights of every row, and the term's settings. */
export interface Transitions {
  /** Successors kept per row (M). */
  m: number;
  /** (rows, M) successor rows, 0 past a row's successors. */
  idx: Int32Array;
  /** (rows, M) weight codes: weight = code * scale[row]. */
  q: Uint8Array;
  /** (rows) one scale per row. */
  scale: Float32Array;
  alpha: number;
  eps: number;
  /** Weight of recency slot j: decay^j, as float32. */
  slot: Float32Array;
}

/** Copy a sharded model's transition constants out of its weights file (`rows` table rows, `ring`
 * recent items in the state). Throws when they run past it. */
export function loadTransitions(e: TransitionsEntry, weights: Uint8Array, rows: number, ring: number): Transitions {
  const o = e.offsets!;
  const m = e.successors;
  const need = [o.idx + 4 * rows * m, o.q + rows * m, o.scale + 4 * rows];
  if (need.some((end) => end > weights.byteLength) || [o.idx, o.scale].some((x) => x % 4)) {
    throw new Error(`the item-transition constants run past the weights file (${weights.byteLength} bytes) or are misaligned`);
  }
  // copies of their own (a Node Buffer's slice is a view of a shared pool)
  const copy = (at: number, bytes: number) => new Uint8Array(weights.subarray(at, at + bytes));
  const slot = new Float32Array(ring);
  for (let j = 0; j < ring; j++) slot[j] = Math.fround(e.decay ** j);
  return {
    m,
    idx: new Int32Array(copy(o.idx, 4 * rows * m).buffer),
    q: copy(o.q, rows * m),
    scale: new Float32Array(copy(o.scale, 4 * rows).buffer),
    alpha: e.alpha,
    eps: e.eps,
    slot,
  };
}

/**
 * The term for the recent rows `recent` (most recent first, 0 = empty): row -> alpha * log1p(sum_j
 * decay^j * weight(recent_j -> row) / eps) over the rows some recent row leads to (all > 0),
 * summed in the score graph's order (slot, then successor), in float32.
 */
export function transitionScores(t: Transitions, recent: ArrayLike<number>): Map<number, number> {
  const sums = new Map<number, number>();
  const n = t.scale.length;
  for (let j = 0; j < recent.length && j < t.slot.length; j++) {
    const r = recent[j]!;
    if (!(r > 0 && r < n)) continue;
    const w = Math.fround(t.scale[r]! * t.slot[j]!);
    for (let c = r * t.m, end = c + t.m; c < end; c++) {
      const code = t.q[c]!;
      if (code === 0) continue;
      const to = t.idx[c]!;
      sums.set(to, Math.fround((sums.get(to) ?? 0) + Math.fround(code * w)));
    }
  }
  const out = new Map<number, number>();
  for (const [row, s] of sums) out.set(row, Math.fround(t.alpha * Math.fround(Math.log1p(Math.fround(s / t.eps)))));
  return out;
}

/** The term split by shard row ranges `ranges` ([lo, hi) each), as local rows. */
export function boostsByShard(scores: Map<number, number>, ranges: readonly (readonly [number, number])[]): Boost[] {
  return ranges.map(([lo, hi]) => {
    const rows: number[] = [];
    const values: number[] = [];
    for (const [row, v] of scores) if (row >= lo && row < hi && v > 0) rows.push(row - lo), values.push(v);
    return { rows: Int32Array.from(rows), values: Float32Array.from(values) };
  });
}
