/**
 * The sessions of one item shard (a row range of a sharded model's item table) and its masked top-k
 * runs: what the ItemShard Durable Object (item-shard.ts) holds; no Workers imports, so
 * scripts/bench-model.ts measures a shard in Node.
 *
 * A shard's files (rank.s<i>.onnx, or score.s<i>.onnx and similar.s<i>.onnx from earlier exports,
 * and weights.s<i>.bin) are read from MODEL_BUCKET under the spec's prefix on first use, the weights
 * checked against their SHA-256. A rank shard whose manifest entry says where its rows, bias and
 * norms are is served by the int8 scan (int8-scan.ts: no onnxruntime in its isolate, the same
 * answers); any other is kept as ORT sessions (one, or two). Shards are cached per
 * isolate by (prefix, shard, checksum): objects of one class may share an isolate, and then share
 * one load. A shard not used for SHARD_IDLE_MS is released by a
 * later call of any shard in the isolate (looked for once a minute), so retired versions do not hold
 * memory.
 */
import type { InferenceSession } from "onnxruntime-web/wasm";
import { fromHalfBits, toHalfBits } from "./int8-rows";
import { buildScan, type ScanTable, scannableEntry, scanTop } from "./int8-scan";
import { BITS_SET } from "./row-mask";
import { exclusive, withOrt } from "./ort";
import type { Boost, ShardAnswer, ShardSpec, ShardTop } from "./shards";

/** A shard unused this long is released (ms). */
const SHARD_IDLE_MS = 10 * 60_000;
/** Idle shards are looked for at most this often (ms): every call walking every loaded shard of the
 * isolate cost the 28 shards of a 1M-item model 28 awaits a call each. */
const SWEEP_EVERY_MS = 60_000;
let sweptAt = 0;

export interface Loaded {
  /** The int8 scan of its rows (a rank shard whose entry locates its rows, bias and norms), or ORT
   * sessions: one for scores and cosines (`rank`), or, from earlier exports, one for each. */
  sessions?: { rank: InferenceSession } | { score: InferenceSession; similar: InferenceSession };
  scan?: ScanTable;
  ort?: typeof import("onnxruntime-web/wasm");
  usedAt: number;
  /** ORT's reused mask buffer, a row an element: bool (a byte, in a buffer of whole 8-byte groups)
   * for the rank graph, float32 for the older graphs. */
  mask?: Uint8Array | Float32Array;
  /** The shard's rows of the table as stored (float16 or float32, row-major), when the spec has
   * `table`: what `readRows` answers from. A view of the weights file, which stays alive (its rows
   * are most of it): a copy would hold them twice while the sessions load. */
  table?: Uint8Array;
}

const loaded = new Map<string, Promise<Loaded>>();
const keyOf = (s: ShardSpec) => `${s.prefix}#${s.index}#${s.weights.sha256}`;

/** Where a shard reads its files (an R2 bucket, or anything with its `get`). */
export interface ShardFiles {
  get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null>;
}

/** This isolate's sessions of `spec` (loaded once, shared by the objects of the isolate); shards
 * idle for SHARD_IDLE_MS are released first. `scan`: the int8 scan kernel (kernel/scan.wasm),
 * used where the spec allows it (`scannable`). */
export async function shardSessions(bucket: ShardFiles, spec: ShardSpec, wasm: WebAssembly.Module, scan?: WebAssembly.Module): Promise<Loaded> {
  const key = keyOf(spec);
  const now = Date.now();
  if (now - sweptAt >= SWEEP_EVERY_MS) {
    sweptAt = now;
    await sweep(key, now);
  }
  let p = loaded.get(key);
  if (!p) {
    p = loadShard(bucket, spec, wasm, scan);
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

/** Whether a shard can be served by the int8 scan: a rank graph's shard whose entry says where its
 * rows, bias and norms are, with a dim the kernel's int32 sums hold. */
export function scannable(spec: ShardSpec): boolean {
  return scannableEntry("rank" in spec.graphs, spec.table, spec.dim);
}

/** Load a shard from the bucket (checked against the spec): its int8 scan where `scan` is given
 * and the spec allows it, else its ORT sessions. */
export async function loadShard(bucket: ShardFiles, spec: ShardSpec, wasm: WebAssembly.Module, scan?: WebAssembly.Module): Promise<Loaded> {
  const read = async (file: string) => {
    const obj = await bucket.get(`${spec.prefix}/${file}`);
    if (!obj) throw new Error(`item shard ${spec.index}: ${spec.prefix}/${file} not found in the model bucket`);
    return new Uint8Array(await obj.arrayBuffer());
  };
  const g = spec.graphs;
  const byScan = scan !== undefined && scannable(spec);
  const [graphs, weights] = await Promise.all([byScan ? [] : Promise.all(("rank" in g ? [g.rank] : [g.score, g.similar]).map(read)), read(spec.weights.file)]);
  if (weights.byteLength !== spec.weights.bytes || (await sha256Hex(weights)) !== spec.weights.sha256) {
    throw new Error(`item shard ${spec.index}: ${spec.weights.file} differs from the manifest (size or checksum)`);
  }
  const n = spec.rows[1] - spec.rows[0];
  const tableOf = () => {
    if (!spec.table) return undefined;
    const bytes = n * spec.dim * (spec.table.dtype === "float16" ? 2 : 4);
    if (spec.table.offset + bytes > weights.byteLength) throw new Error(`item shard ${spec.index}: its table runs past ${spec.weights.file}`);
    return weights.subarray(spec.table.offset, spec.table.offset + bytes);
  };
  if (byScan) {
    const t = spec.table!;
    const table = tableOf()!;
    const s = buildScan(scan, weights, { n, dim: spec.dim, dtype: t.dtype, table: t.offset, bias: t.bias!, norm: t.norm! });
    return { scan: s, usedAt: Date.now(), table };
  }
  return withOrt(wasm, async (ort) => {
    const opts = (): InferenceSession.SessionOptions => ({
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
      externalData: [{ path: spec.weights.file, data: weights }],
    });
    const created: InferenceSession[] = [];
    for (const bytes of graphs) created.push(await ort.InferenceSession.create(bytes, opts()));
    const table = tableOf();
    const rank = "rank" in g;
    return {
      sessions: rank ? { rank: created[0]! } : { score: created[0]!, similar: created[1]! },
      ort,
      usedAt: Date.now(),
      mask: rank ? new Uint8Array(new ArrayBuffer((n + 7) & ~7), 0, n) : new Float32Array(n),
      ...(table ? { table } : {}),
    };
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
    // after the shard's pending runs: `exclusive` is first in, first out (a scan is only memory)
    const sessions = l.sessions;
    if (sessions) await exclusive(() => Promise.all(Object.values(sessions).map((x: InferenceSession) => x.release()))).catch(() => undefined);
  }
}

/** Run one shard graph: (vector, packed mask, k) -> local top-k; `boost`: values added to some rows'
 * scores (int8-scan.ts scanTop), which only the scan serves (every export since it can). */
export async function runShard(l: Loaded, graph: "score" | "similar", spec: ShardSpec, vec: Float32Array, bits: Uint8Array, k: number, boost?: Boost): Promise<ShardTop> {
  const n = spec.rows[1] - spec.rows[0];
  if (vec.length !== spec.dim) throw new Error(`item shard ${spec.index}: a vector of ${vec.length} floats, the model's is ${spec.dim}`);
  if (bits.length !== (n + 7) >> 3) throw new Error(`item shard ${spec.index}: a mask of ${bits.length} bytes for ${n} rows`);
  if (l.scan) return scanTop(l.scan, vec, bits, Math.max(0, k), graph === "similar", boost);
  if (boost?.rows.length) throw new Error(`item shard ${spec.index}: added scores need the int8 scan (its manifest entry has no table offsets)`);
  return exclusive(async () => {
    const mask = l.mask!;
    const free = unpack(bits, mask, n);
    const kk = Math.max(0, Math.min(k, free));
    if (kk === 0) return { rows: new Int32Array(0), scores: new Float32Array(0) };
    const T = l.ort!.Tensor;
    const k1 = new T("int64", BigInt64Array.of(BigInt(kk)), [1]);
    const s = l.sessions!;
    const out =
      "rank" in s
        ? await s.rank.run({
            q: new T("float32", vec, [1, spec.dim]),
            mask: new T("bool", mask as Uint8Array, [1, n]),
            similar: new T("float32", Float32Array.of(graph === "similar" ? 1 : 0), [1]),
            k: k1,
          })
        : await (graph === "score" ? s.score : s.similar).run({
            [graph === "score" ? "q" : "vec"]: new T("float32", vec, [1, spec.dim]),
            mask: new T("float32", mask as Float32Array, [1, n]),
            k: k1,
          });
    const scores = new Float32Array(out.scores!.data as Float32Array);
    const idx = out.indices!.data as BigInt64Array;
    const rows = Int32Array.from(idx, (x) => Number(x));
    out.scores!.dispose();
    out.indices!.dispose();
    return { rows, scores };
  });
}

/** Bytes 0/1 for each bit value, 8 a value as two little-endian Uint32 (low 4 bits, high 4 bits). */
const BYTES_OF = (() => {
  const t = new Uint32Array(512);
  for (let v = 0; v < 256; v++) {
    for (let j = 0; j < 4; j++) {
      t[2 * v] = t[2 * v]! | (((v >> j) & 1) << (8 * j));
      t[2 * v + 1] = t[2 * v + 1]! | (((v >> (j + 4)) & 1) << (8 * j));
    }
  }
  return t;
})();

/** Write the packed mask `bits` as one element a row (1 = never return) into `mask`; returns how many
 * rows it leaves free. A bool mask is written 8 rows at a time. */
function unpack(bits: Uint8Array, mask: Uint8Array | Float32Array, n: number): number {
  let set = 0;
  if (mask instanceof Uint8Array) {
    const words = new Uint32Array(mask.buffer, mask.byteOffset, mask.buffer.byteLength >> 2);
    for (let i = 0; i < bits.length; i++) {
      const v = bits[i]!;
      words[2 * i] = BYTES_OF[2 * v]!;
      words[2 * i + 1] = BYTES_OF[2 * v + 1]!;
      set += BITS_SET[v]!;
    }
    // bits past the last row (none from RowMask.range) are not rows
    if (n & 7) set -= BITS_SET[bits[bits.length - 1]! >> (n & 7)]!;
  } else {
    for (let j = 0; j < n; j++) {
      const b = (bits[j >> 3]! >> (j & 7)) & 1;
      mask[j] = b;
      set += b;
    }
  }
  return n - set;
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
