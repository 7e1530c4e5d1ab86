/**
 * Sharded item tables (issue 18): a model whose table does not fit one isolate is exported in row
 * ranges (models/training/export_shards.py); each range is scored by its own Durable Object
 * (`ItemShard`, src/model/item-shard.ts), and the worker merges their top-k lists.
 *
 *   worker (coordinator)                        ItemShard "<prefix>#<i>", one per row range
 *   step graph: next_state, query               the int8 scan of E_i (int8-scan.ts), exactly
 *   the rules -> one mask over all rows  ---->  rank.s<i>.onnx's answers, for both:
 *   merge: best k of the shards' lists   <----    score:   q . E_i + b_i, masked, top-k
 *                                                 similar: cos(vec, E_i), masked, top-k
 *                                               (global rows = lo + local row)
 *   an event's item, a similar-items seed ---->  rows: the item's row of E_i (raw, or normalised)
 *
 * (A shard whose entry does not locate its bias and norms runs rank.s<i>.onnx in onnxruntime;
 * exports before the rank graph have score.s<i>.onnx and similar.s<i>.onnx, each with its own copy
 * of the rows; they are served alike.)
 *
 * The worker holds no item table: a GRURec's step graph takes the event's item as its row, read
 * from the item's shard (`rows`), and a seed's normalised vector comes from there too (older
 * exports and SeqRec models keep the table in the step graph, which then gives both itself).
 *
 * Exact: every shard returns its own best k under the same mask, so the k best of their union are
 * the k best overall (ties ordered by row, as onnxruntime's TopK orders them). The rules reach the
 * shards as a bit mask of their rows (N/8 bytes a request in all), computed once by the worker from
 * its catalog mirror and the user's purchases, recent and seen items, so a shard never returns an
 * item the rules leave out and never needs the catalog itself.
 */
import { timed as timedCall } from "../lib/timing";
import type { Manifest } from "./manifest";

/** What a shard needs to find and check its files; passed with every call (no manifest read). */
export interface ShardSpec {
  /** R2 key prefix of the version's files (`models/<version>`). */
  prefix: string;
  index: number;
  /** Global rows [lo, hi). */
  rows: [number, number];
  /** Its graph files: one rank graph (scores and cosines over one copy of its rows), or, from
   * exports before it, a score graph and a similar graph. */
  graphs: { rank: string } | { score: string; similar: string };
  weights: { file: string; bytes: number; sha256: string };
  /** Embedding size (length of a query or item vector). */
  dim: number;
  /** Where the shard's rows of the table lie in its weights file (row-major, `dim` values a row):
   * present when the worker reads item vectors from the shards. */
  table?: { offset: number; dtype: "float16" | "float32"; bias?: number; norm?: number };
}

/** One shard's answer: local rows and their scores, best first. */
export interface ShardTop {
  rows: Int32Array;
  scores: Float32Array;
}

/** Values added to some of a shard's rows' scores (local rows; the item-transition term, all >= 0,
 * src/model/transitions.ts), which the shard ranks by with its plain scores: still exactly. */
export interface Boost {
  rows: Int32Array;
  values: Float32Array;
}

/** What an ItemShard call returns: its top-k, or why it could not answer (a value, not a throw). */
export type ShardAnswer = ShardTop | { error: string };

/** What an ItemShard `rows` call returns: the rows asked for, `dim` floats each, or why not. */
export type ShardRows = { vectors: Float32Array } | { error: string };

/** The calls a sharded model makes; `ItemShard` stubs in the worker, anything alike in tests. */
export interface ShardBackend {
  readonly specs: readonly ShardSpec[];
  score(i: number, q: Float32Array, mask: Uint8Array, k: number, boost?: Boost): Promise<ShardTop>;
  similar(i: number, vec: Float32Array, mask: Uint8Array, k: number): Promise<ShardTop>;
  /** Shard i's rows `local` (local row numbers) of the table, `dim` floats each, one after another;
   * `normalized`: each divided by its norm as the similar graphs divide (a similar-items seed). */
  rows(i: number, local: Int32Array, normalized: boolean): Promise<Float32Array>;
}

/** A shard could not answer (not bound, timed out, failed to load): the model is unavailable. */
export class ShardUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ShardUnavailableError";
  }
}

/** `ranking`, or `fallback()` when a shard failed (logged): a degradation, never an error. */
export async function whenShardsFail<T>(ranking: Promise<T>, fallback: () => T): Promise<T> {
  try {
    return await ranking;
  } catch (e) {
    if (!(e instanceof ShardUnavailableError)) throw e;
    console.warn(`serving without the model: ${e.message}`);
    return fallback();
  }
}

/** The shards' specs of a sharded manifest stored under `prefix`. */
export function shardSpecs(m: Manifest, prefix: string): ShardSpec[] {
  const dim = m.graphs.step.outputs[1]?.shape[1];
  return (m.shards ?? []).map((s, index) => ({
    prefix,
    index,
    rows: [s.rows[0], s.rows[1]],
    graphs: s.rank ? { rank: s.rank.file } : { score: s.score!.file, similar: s.similar!.file },
    weights: s.weights,
    dim: typeof dim === "number" ? dim : 0,
    ...(s.table ? { table: s.table } : {}),
  }));
}

/** The k best of the shards' lists as global rows, best first; equal scores by row. */
export function mergeTops(parts: { lo: number; top: ShardTop }[], k: number): { row: number; score: number }[] {
  const all: { row: number; score: number }[] = [];
  for (const { lo, top } of parts) {
    for (let j = 0; j < top.rows.length; j++) if (Number.isFinite(top.scores[j]!)) all.push({ row: lo + top.rows[j]!, score: top.scores[j]! });
  }
  all.sort((a, b) => b.score - a.score || a.row - b.row);
  return all.slice(0, k);
}

/** The minimal Durable Object namespace this module uses (the `ITEM_SHARDS` binding). */
export interface ShardNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): {
    score(spec: ShardSpec, q: Float32Array, mask: Uint8Array, k: number, boost?: Boost): Promise<ShardAnswer>;
    similar(spec: ShardSpec, vec: Float32Array, mask: Uint8Array, k: number): Promise<ShardAnswer>;
    rows(spec: ShardSpec, local: Int32Array, normalized: boolean): Promise<ShardRows>;
  };
}

function timed<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new ShardUnavailableError(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * Shards as Durable Objects of `ns`, one object per (version prefix, shard): `<prefix>#<i>`.
 * @param timeoutMs per call (SHARD_TIMEOUT_MS, default 3000): a late or failing shard makes the
 *   call throw ShardUnavailableError, which the ranking turns into `reason: "model-unavailable"`.
 */
export function durableShards(ns: ShardNamespace, specs: ShardSpec[], timeoutMs = 3000): ShardBackend {
  // Ids are values (the name's hash), kept for the backend's life; a stub is made per call.
  const ids: (DurableObjectId | undefined)[] = [];
  const stub = (i: number) => ns.get((ids[i] ??= ns.idFromName(`${specs[i]!.prefix}#${i}`)));
  const call = async <A extends object>(what: string, fn: () => Promise<A | { error: string }>): Promise<A> => {
    let a: A | { error: string };
    try {
      a = await timedCall("shard", () => timed(fn(), timeoutMs, what));
    } catch (e) {
      if (e instanceof ShardUnavailableError) throw e;
      throw new ShardUnavailableError(`${what} failed: ${(e as Error).message}`);
    }
    if ("error" in a) throw new ShardUnavailableError(`${what} failed: ${a.error}`);
    return a;
  };
  return {
    specs,
    score: (i, q, mask, k, boost) => call<ShardTop>(`item shard ${i} score`, () => stub(i).score(specs[i]!, q, mask, k, boost)),
    similar: (i, vec, mask, k) => call<ShardTop>(`item shard ${i} similar`, () => stub(i).similar(specs[i]!, vec, mask, k)),
    rows: async (i, local, normalized) => (await call<{ vectors: Float32Array }>(`item shard ${i} rows`, () => stub(i).rows(specs[i]!, local, normalized))).vectors,
  };
}

let namespace: { ns: ShardNamespace; timeoutMs: number } | undefined;

/** Set (per isolate, from the worker's bindings) the namespace sharded models use. */
export function useShardNamespace(ns: ShardNamespace | undefined, timeoutMs?: number): void {
  namespace = ns ? { ns, timeoutMs: timeoutMs ?? 3000 } : undefined;
}

/** The backend for a sharded manifest stored under `prefix`, or undefined when ITEM_SHARDS is not bound. */
export function shardBackendFor(m: Manifest, prefix: string): ShardBackend | undefined {
  if (!m.shards || !namespace) return undefined;
  return durableShards(namespace.ns, shardSpecs(m, prefix), namespace.timeoutMs);
}
