/**
 * The sessions of one item shard (a row range of a sharded model's item table) and its masked top-k
 * runs: what the ItemShard Durable Object (item-shard.ts) holds; no Workers imports, so
 * scripts/bench-model.ts measures a shard in Node.
 *
 * A shard's files (score.s<i>.onnx, similar.s<i>.onnx, weights.s<i>.bin) are read from MODEL_BUCKET under
 * the spec's prefix on first use, the weights checked against their SHA-256, and kept as two ORT
 * sessions. Sessions are cached per isolate by (prefix, shard, checksum): objects of one class may
 * share an isolate, and then share one load. A shard not used for SHARD_IDLE_MS is released by a
 * later call of any shard in the isolate (looked for once a minute), so retired versions do not hold
 * memory.
 */
import type { InferenceSession } from "onnxruntime-web/wasm";
import { fromHalfBits, toHalfBits } from "./int8-rows";
import { withOrt } from "./ort";
import type { ShardAnswer, ShardSpec, ShardTop } from "./shards";

/** A shard unused this long is released (ms). */
const SHARD_IDLE_MS = 10 * 60_000;
/** Idle shards are looked for at most this often (ms): every call walking every loaded shard of the
 * isolate cost the 28 shards of a 1M-item model 28 awaits a call each. */
const SWEEP_EVERY_MS = 60_000;
let sweptAt = 0;

export interface Loaded {
  score: InferenceSession;
  similar: InferenceSession;
  ort: typeof import("onnxruntime-web/wasm");
  /** Runs on one session are serialised (ORT's wasm backend is not re-entrant). */
  queue: Promise<unknown>;
  usedAt: number;
  /** Reused mask buffer (one row a float). */
  mask: Float32Array;
  /** The shard's rows of the table as stored (float16 or float32, row-major), when the spec has
   * `table`: what `readRows` answers from (a copy: the weights file itself is let go). */
  table?: Uint8Array;
}

const loaded = new Map<string, Promise<Loaded>>();
const keyOf = (s: ShardSpec) => `${s.prefix}#${s.index}#${s.weights.sha256}`;

/** Where a shard reads its files (an R2 bucket, or anything with its `get`). */
export interface ShardFiles {
  get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null>;
}

/** This isolate's sessions of `spec` (loaded once, shared by the objects of the isolate); shards
 * idle for SHARD_IDLE_MS are released first. */
export async function shardSessions(bucket: ShardFiles, spec: ShardSpec, wasm: WebAssembly.Module): Promise<Loaded> {
  const key = keyOf(spec);
  const now = Date.now();
  if (now - sweptAt >= SWEEP_EVERY_MS) {
    sweptAt = now;
    await sweep(key, now);
  }
  let p = loaded.get(key);
  if (!p) {
    p = loadShard(bucket, spec, wasm);
    loaded.set(key, p);
    p.catch(() => loaded.delete(key));
  }
  const l = await p;
  l.usedAt = now;
  return l;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Load a shard's sessions from the bucket (checked against the spec). */
export async function loadShard(bucket: ShardFiles, spec: ShardSpec, wasm: WebAssembly.Module): Promise<Loaded> {
  const read = async (file: string) => {
    const obj = await bucket.get(`${spec.prefix}/${file}`);
    if (!obj) throw new Error(`item shard ${spec.index}: ${spec.prefix}/${file} not found in the model bucket`);
    return new Uint8Array(await obj.arrayBuffer());
  };
  const [score, similar, weights] = await Promise.all([read(spec.score), read(spec.similar), read(spec.weights.file)]);
  if (weights.byteLength !== spec.weights.bytes || (await sha256Hex(weights)) !== spec.weights.sha256) {
    throw new Error(`item shard ${spec.index}: ${spec.weights.file} differs from the manifest (size or checksum)`);
  }
  return withOrt(wasm, async (ort) => {
    const opts = (): InferenceSession.SessionOptions => ({
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
      externalData: [{ path: spec.weights.file, data: weights }],
    });
    const s = await ort.InferenceSession.create(score, opts());
    const m = await ort.InferenceSession.create(similar, opts());
    const n = spec.rows[1] - spec.rows[0];
    let table: Uint8Array | undefined;
    if (spec.table) {
      const bytes = n * spec.dim * (spec.table.dtype === "float16" ? 2 : 4);
      if (spec.table.offset + bytes > weights.byteLength) throw new Error(`item shard ${spec.index}: its table runs past ${spec.weights.file}`);
      table = weights.slice(spec.table.offset, spec.table.offset + bytes);
    }
    return { score: s, similar: m, ort, queue: Promise.resolve(), usedAt: Date.now(), mask: new Float32Array(n), ...(table ? { table } : {}) };
  });
}

/** Release shards idle for SHARD_IDLE_MS (never `keep`). */
async function sweep(keep: string, now: number): Promise<void> {
  for (const [key, p] of loaded) {
    if (key === keep) continue;
    const l = await p.catch(() => null);
    if (!l) {
      loaded.delete(key);
      continue;
    }
    if (now - l.usedAt < SHARD_IDLE_MS) continue;
    loaded.delete(key);
    await l.queue.catch(() => undefined);
    await Promise.all([l.score.release(), l.similar.release()]).catch(() => undefined);
  }
}

/** Run one shard graph: (vector, packed mask, k) -> local top-k. */
export async function runShard(l: Loaded, graph: "score" | "similar", spec: ShardSpec, vec: Float32Array, bits: Uint8Array, k: number): Promise<ShardTop> {
  const n = spec.rows[1] - spec.rows[0];
  if (vec.length !== spec.dim) throw new Error(`item shard ${spec.index}: a vector of ${vec.length} floats, the model's is ${spec.dim}`);
  if (bits.length !== (n + 7) >> 3) throw new Error(`item shard ${spec.index}: a mask of ${bits.length} bytes for ${n} rows`);
  const run = l.queue.then(async () => {
    const mask = l.mask;
    let free = 0;
    for (let j = 0; j < n; j++) {
      const set = (bits[j >> 3]! >> (j & 7)) & 1;
      mask[j] = set;
      free += 1 - set;
    }
    const kk = Math.max(0, Math.min(k, free));
    if (kk === 0) return { rows: new Int32Array(0), scores: new Float32Array(0) };
    const T = l.ort.Tensor;
    const session = graph === "score" ? l.score : l.similar;
    const out = await session.run({
      [graph === "score" ? "q" : "vec"]: new T("float32", vec, [1, spec.dim]),
      mask: new T("float32", mask, [1, n]),
      k: new T("int64", BigInt64Array.of(BigInt(kk)), [1]),
    });
    const scores = new Float32Array(out.scores!.data as Float32Array);
    const idx = out.indices!.data as BigInt64Array;
    const rows = Int32Array.from(idx, (x) => Number(x));
    out.scores!.dispose();
    out.indices!.dispose();
    return { rows, scores };
  });
  l.queue = run.catch(() => undefined);
  return run;
}

/**
 * Rows `local` (local row numbers) of a shard's table, `dim` floats each, one after another: the
 * values the graphs compute with (a float16 table is widened exactly). `normalized`: each row
 * divided by its norm as export_shards.py's step graph and similar graphs divide (the norm, at least
 * 1e-12, rounded to float16 for a float16 table), the seed vector of similar items.
 */
export function readRows(l: Loaded, spec: ShardSpec, local: Int32Array, normalized: boolean): Float32Array {
  const n = spec.rows[1] - spec.rows[0];
  const d = spec.dim;
  if (!l.table || !spec.table) throw new Error(`item shard ${spec.index}: its manifest entry has no table to read rows from`);
  const half = spec.table.dtype === "float16";
  const view = new DataView(l.table.buffer, l.table.byteOffset, l.table.byteLength);
  const out = new Float32Array(local.length * d);
  for (let b = 0; b < local.length; b++) {
    const r = local[b]!;
    if (!(r >= 0 && r < n)) throw new Error(`item shard ${spec.index}: row ${r} is outside its ${n} rows`);
    const at = b * d;
    for (let c = 0; c < d; c++) out[at + c] = half ? fromHalfBits(view.getUint16(2 * (r * d + c), true)) : view.getFloat32(4 * (r * d + c), true);
    if (!normalized) continue;
    let sq = 0;
    for (let c = 0; c < d; c++) sq += out[at + c]! * out[at + c]!;
    let norm = Math.max(Math.fround(Math.sqrt(sq)), Math.fround(1e-12));
    if (half) norm = fromHalfBits(toHalfBits(norm));
    for (let c = 0; c < d; c++) out[at + c] = Math.fround(out[at + c]! / norm);
  }
  return out;
}
