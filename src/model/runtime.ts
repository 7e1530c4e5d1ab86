/**
 * GruModel: the two ONNX graphs of one model version behind a small typed API.
 *   step(state, row, {newSession, gapHours})         -> next state      (one event)
 *   topK(state, {newSession, gapHours}, k, exclude)  -> [{row, score}]  (full ranking, masked)
 *   similar(row, k, mask)                            -> [{row, score}]  (cosine of item embeddings)
 * Sessions are created once per isolate and reused; every ORT call of the isolate (any model's,
 * any shard's) waits for the previous one (ort.ts's `exclusive`: the one wasm instance is
 * single-threaded and not re-entrant across sessions).
 * A sharded model (manifest `shards`) holds only the step graph here: it forms the query (or the
 * seed's vector) and the item shards rank their row ranges (src/model/shards.ts).
 */
import type { InferenceSession } from "onnxruntime-web/wasm";
import { checkSessions, type LoadedManifest, type Manifest, ModelLoadError, parseManifest, stepRing, stepTakesVectors } from "./manifest";
import { RowKeys } from "./item-keys";
import { exclusive, withOrt } from "./ort";
import { expandInt8Rows } from "./int8-rows";
import { RowMask } from "./row-mask";
import { type Boost, type ShardBackend, mergeTops } from "./shards";
import { type Transitions, boostsByShard, loadTransitions, transitionScores } from "./transitions";

/** The bytes of one exported model folder. */
export interface ModelFiles {
  manifest: unknown;
  step: ArrayBuffer | Uint8Array;
  /** Absent for a sharded model (its shards score). */
  score?: ArrayBuffer | Uint8Array;
  /** Optional (older exports have no similar graph). */
  similar?: ArrayBuffer | Uint8Array;
  weights: ArrayBuffer | Uint8Array;
}

/** Where an event or a request sits in the user's timeline. */
export interface Moment {
  /** After the idle gap (or the user's first event): the session rule applies. */
  newSession: boolean;
  /** Hours since the user's previous event (0 when there is none). */
  gapHours: number;
}

export interface Scored {
  row: number;
  score: number;
}

const u8 = (b: ArrayBuffer | Uint8Array) => (b instanceof Uint8Array ? b : new Uint8Array(b));

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Item rows a model that takes item vectors keeps from its shards (d floats each). */
const ROW_CACHE = 4096;

export class GruModel {
  readonly version: string;
  readonly stateSize: number;
  /** Rows in the item table, padding row 0 included. */
  readonly rows: number;
  /** Idle gap after which the next event starts a new session, milliseconds. */
  readonly idleGapMs: number;
  /** Rows <-> the isolate's item keys (the ids themselves are kept once, in `itemKeys`). */
  private readonly keys: RowKeys;
  /** Embedding size d (the length of a query or item vector). */
  readonly dim: number;
  /** A sharded model whose step graph takes the event's item as its row, read from the shards. */
  private readonly byVector: boolean;
  /** Where the state records its recent items, for a vector step whose query attends over their
   * rows (a sharded SeqRec: manifest.ts's RING_VECTOR_STEP). */
  private readonly ring?: { offset: number; size: number };
  /** Item rows read from the shards lately (row -> d floats; raw rows, negative keys normalised). */
  private readonly rowCache = new Map<number, Float32Array>();
  /** A sharded model's item-transition term, which the worker adds (src/model/transitions.ts);
   * with the state's recent items it reads. */
  private readonly transitions?: { t: Transitions; recent: { offset: number; size: number } };

  /** The manifest without its item ids (rowOf / idOf / rowKeys answer for them). */
  readonly manifest: LoadedManifest;

  private constructor(
    manifest: Manifest,
    keys: RowKeys,
    private readonly ort: typeof import("onnxruntime-web/wasm"),
    private readonly stepSession: InferenceSession,
    private readonly scoreSession: InferenceSession | undefined,
    private readonly similarSession: InferenceSession | undefined,
    private readonly shards?: ShardBackend,
    transitions?: { t: Transitions; recent: { offset: number; size: number } },
  ) {
    this.transitions = transitions;
    this.manifest = { ...manifest, items: { rows: manifest.items.rows, padding_row: manifest.items.padding_row } };
    this.keys = keys;
    this.version = manifest.version;
    this.stateSize = manifest.state.size;
    this.rows = manifest.items.rows;
    this.idleGapMs = manifest.session.idle_gap_seconds * 1000;
    const d = manifest.graphs.step.outputs[1]?.shape[1];
    this.dim = typeof d === "number" ? d : 0;
    this.byVector = shards !== undefined && stepTakesVectors(manifest);
    this.ring = this.byVector ? stepRing(manifest) : undefined;
  }

  /** Validate the manifest, check the weights' checksum, create the sessions, cross-check them.
   * A sharded manifest needs `shards` (the item shards of this version). */
  static async load(wasm: WebAssembly.Module, files: ModelFiles, shards?: ShardBackend): Promise<GruModel> {
    const m = parseManifest(files.manifest);
    let keys: RowKeys;
    try {
      keys = new RowKeys(m.items.ids);
    } catch (e) {
      throw new ModelLoadError(`model ${m.name}: manifest.items.ids has duplicates: ${(e as Error).message}`);
    }
    if (m.shards && !shards) throw new ModelLoadError(`model ${m.name}: sharded (${m.shards.length} item shards) and no ITEM_SHARDS Durable Object namespace is bound`);
    const stored = u8(files.weights);
    if (stored.byteLength !== m.weights.bytes) {
      throw new ModelLoadError(`model ${m.name}: ${m.weights.file} has ${stored.byteLength} bytes, manifest says ${m.weights.bytes}`);
    }
    const sum = await sha256Hex(stored);
    if (sum !== m.weights.sha256) throw new ModelLoadError(`model ${m.name}: ${m.weights.file} checksum differs from the manifest`);
    let weights = stored;
    if (m.weights.int8_rows?.length) {
      if (!m.weights.expanded_bytes) throw new ModelLoadError(`model ${m.name}: int8_rows without expanded_bytes`);
      try {
        weights = expandInt8Rows(stored, m.weights.int8_rows, m.weights.expanded_bytes);
      } catch (e) {
        throw new ModelLoadError(`model ${m.name}: ${(e as Error).message}`);
      }
    }
    return withOrt(wasm, async (ort) => {
      const opts = (): InferenceSession.SessionOptions => ({
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
        externalData: [{ path: m.weights.file, data: weights }],
      });
      let step: InferenceSession;
      let score: InferenceSession | undefined;
      let similar: InferenceSession | undefined;
      try {
        step = await ort.InferenceSession.create(u8(files.step), opts());
        if (m.graphs.score && files.score) score = await ort.InferenceSession.create(u8(files.score), opts());
        if (m.graphs.similar && files.similar) similar = await ort.InferenceSession.create(u8(files.similar), opts());
      } catch (e) {
        throw new ModelLoadError(`model ${m.name}: onnxruntime could not load the graphs: ${(e as Error).message}`);
      }
      if (m.graphs.similar && !similar) throw new ModelLoadError(`model ${m.name}: manifest names ${m.graphs.similar.file} but it was not supplied`);
      checkSessions(m, { step, score, similar });
      return new GruModel(m, keys, ort, step, score, similar, m.shards ? shards : undefined, m.shards ? workerTransitions(m, weights) : undefined);
    });
  }

  /** Free the ONNX sessions (their wasm memory). The model must not be used afterwards. */
  async release(): Promise<void> {
    await exclusive(async () => {
      await Promise.all([this.stepSession.release(), this.scoreSession?.release(), this.similarSession?.release()]);
    });
  }

  /** Embedding row of a catalog item id, or undefined when the model does not know it. */
  rowOf(itemId: string): number | undefined {
    return this.keys.rowOf(itemId);
  }

  /** Catalog item id of an embedding row (1..rows-1). */
  idOf(row: number): string {
    return this.keys.idOf(row);
  }

  /** Does the model have a row for the item of key k (the isolate's `itemKeys`). */
  knowsKey(k: number): boolean {
    return this.keys.hasKey(k);
  }

  /** Row -> the item's key in the isolate's `itemKeys` (0 for the padding row): how the catalog
   * copy reads its facts for the model's rows without the ids. */
  get rowKeys(): Int32Array {
    return this.keys.rowKey;
  }

  /** The timeline position of an event or request at `atMs` for a user last active at `lastMs`
   * (`lastMs` undefined: no earlier event). */
  moment(atMs: number, lastMs: number | undefined): Moment {
    if (lastMs === undefined) return { newSession: true, gapHours: 0 };
    const gap = Math.max(0, atMs - lastMs);
    return { newSession: gap > this.idleGapMs, gapHours: gap / 3_600_000 };
  }

  /** A fresh state (all zeros, as the manifest's `state.initial`). */
  initialState(): Float32Array {
    return new Float32Array(this.stateSize);
  }

  /** Advance `state` by one event on item `row`. Returns a new array. */
  step(state: Float32Array, row: number, at: Moment): Promise<Float32Array> {
    return this.runStep(state, row, at, (out) => new Float32Array(out.next_state!.data as Float32Array));
  }

  /**
   * Item `rows` of the table from their shards (`normalized`: as similar-items seeds), for a model
   * whose worker holds no table: one `rows` call per shard for the rows not among the last
   * ROW_CACHE read (popular items recur).
   */
  private async shardRows(rows: readonly number[], normalized: boolean): Promise<Float32Array[]> {
    const key = (r: number) => (normalized ? -r : r);
    const got = new Map<number, Float32Array>();
    const want = new Map<number, Set<number>>();
    for (const r of rows) {
      const hit = this.rowCache.get(key(r));
      if (hit) got.set(r, hit);
      else {
        const i = this.shardOf(r);
        if (!want.has(i)) want.set(i, new Set());
        want.get(i)!.add(r);
      }
    }
    await Promise.all(
      [...want].map(async ([i, set]) => {
        const list = [...set];
        const lo = this.shards!.specs[i]!.rows[0];
        const v = await this.shards!.rows(i, Int32Array.from(list, (r) => r - lo), normalized);
        list.forEach((r, j) => {
          const vec = v.slice(j * this.dim, (j + 1) * this.dim);
          got.set(r, vec);
          this.remember(key(r), vec);
        });
      }),
    );
    return rows.map((r) => got.get(r)!);
  }

  /** Keep a row read from the shards (the oldest goes past ROW_CACHE). */
  private remember(key: number, v: Float32Array): void {
    if (this.rowCache.size >= ROW_CACHE) this.rowCache.delete(this.rowCache.keys().next().value!);
    this.rowCache.set(key, v);
  }

  /** The shard whose row range holds `row`. */
  private shardOf(row: number): number {
    const specs = this.shards!.specs;
    let lo = 0;
    let hi = specs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (specs[mid]!.rows[0] <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** One step-graph run; `read` copies what it needs before every output is disposed. A model that
   * takes item vectors reads the item's row from its shard first (row 0, a query alone: zeros), and
   * with `ring` (its `query` is wanted) the rows of the state's recent items. */
  private async runStep<R>(state: Float32Array, row: number, at: Moment, read: (out: InferenceSession.OnnxValueMapType) => R, ring = false): Promise<R> {
    const T = this.ort.Tensor;
    const item = this.byVector ? await this.vectorInputs(state, row, ring) : { item: new T("int64", BigInt64Array.of(BigInt(row)), [1]) };
    return exclusive(async () => {
      const out = await this.stepSession.run({
        state: new T("float32", state, [1, this.stateSize]),
        ...item,
        new_session: new T("float32", Float32Array.of(at.newSession ? 1 : 0), [1]),
        gap: new T("float32", Float32Array.of(Math.max(0, at.gapHours)), [1]),
      });
      try {
        return read(out);
      } finally {
        for (const t of Object.values(out)) t.dispose();
      }
    });
  }

  /**
   * A vector step's item inputs: `item_vector` (the event's row from its shard; zeros for row 0),
   * and where the state records its recent items also `item` and `recent_vectors`: their rows with
   * `ring` (the query attends over them), else zeros (an event's step, whose query is not read).
   * One `rows` call per shard for all of them, fewer with the row cache.
   */
  private async vectorInputs(state: Float32Array, row: number, ring: boolean): Promise<InferenceSession.OnnxValueMapType> {
    const T = this.ort.Tensor;
    const d = this.dim;
    const r = this.ring;
    const recent = r && ring ? Array.from(state.subarray(r.offset, r.offset + r.size), (x) => (x >= 1 && x < this.rows ? Math.round(x) : 0)) : [];
    const wanted = [row, ...recent].filter((x) => x > 0);
    const got = new Map<number, Float32Array>();
    if (wanted.length) (await this.shardRows(wanted, false)).forEach((v, i) => got.set(wanted[i]!, v));
    const item_vector = new T("float32", got.get(row) ?? new Float32Array(d), [1, d]);
    if (!r) return { item_vector };
    const rows = new Float32Array(r.size * d);
    recent.forEach((x, slot) => x > 0 && rows.set(got.get(x)!, slot * d));
    return { item: new T("int64", BigInt64Array.of(BigInt(row)), [1]), item_vector, recent_vectors: new T("float32", rows, [1, r.size, d]) };
  }

  /** Whether this model can rank items by similarity to an item. */
  get hasSimilar(): boolean {
    return this.similarSession !== undefined || this.shards !== undefined;
  }

  /** Whether the item table is in Durable Object shards. */
  get sharded(): boolean {
    return this.shards !== undefined;
  }

  /** A sharded model's item-transition term for `state`, per shard (none without the term). */
  private boosts(state: Float32Array): Boost[] | undefined {
    const tr = this.transitions;
    if (!tr) return undefined;
    const recent = state.subarray(tr.recent.offset, tr.recent.offset + tr.recent.size);
    return boostsByShard(transitionScores(tr.t, recent), this.shards!.specs.map((s) => s.rows));
  }

  /** A sharded model's query for `state` at `at` (the step graph's `query` output). */
  private query(state: Float32Array, at: Moment): Promise<Float32Array> {
    return this.runStep(state, 0, at, (out) => new Float32Array(out.query!.data as Float32Array), true);
  }

  /** The normalised vector of item `row`, the seed of its similar items: from its shard, or the
   * step graph's `item_vector` output where the step graph holds the table. */
  private async itemVector(row: number): Promise<Float32Array> {
    if (this.byVector) return (await this.shardRows([row], true))[0]!;
    return this.runStep(this.initialState(), row, { newSession: false, gapHours: 0 }, (out) => new Float32Array(out.item_vector!.data as Float32Array));
  }

  /**
   * Ask every shard for its best k under `mask` and merge (exact: see shards.ts). Each shard's range
   * of the mask's bits is taken first (which also counts what each leaves free), so nothing
   * runs when the rules leave no row; `vector` (the step graph's run) comes after that.
   */
  private async fanOut(graph: "score" | "similar", vector: () => Promise<Float32Array>, k: number, mask: RowMask, boosts?: Boost[]): Promise<Scored[]> {
    const b = this.shards!;
    const packed = b.specs.map((s) => mask.range(s.rows[0], s.rows[1]));
    if (k <= 0 || packed.every((p) => p.free === 0)) return [];
    const vec = await vector();
    const parts = await Promise.all(
      b.specs.map(async (s, i) => {
        const { bits, free } = packed[i]!;
        const kk = Math.min(k, free);
        const top = kk > 0 ? await (graph === "score" ? b.score(i, vec, bits, kk, boosts?.[i]) : b.similar(i, vec, bits, kk)) : { rows: new Int32Array(0), scores: new Float32Array(0) };
        return { lo: s.rows[0], top };
      }),
    );
    return mergeTops(parts, k);
  }

  /** The normalised vectors of `rows` (a sharded model's: from the shards, or its step graph),
   * as its similar graphs see them: cos(i, j) = itemVectors([i])[0] . itemVectors([j])[0]. */
  async itemVectors(rows: readonly number[]): Promise<Float32Array[]> {
    if (!this.shards) throw new Error(`model ${this.version} is not sharded: its similar graph gives cosines, not vectors`);
    return this.byVector ? this.shardRows(rows, true) : Promise.all(rows.map((r) => this.itemVector(r)));
  }

  /** A sharded model's k rows closest (cosine) to the unit vector `vec`, never a masked row, best
   * first: what `similar` does for a seed row, for any direction (a new item's). */
  similarTo(vec: Float32Array, k: number, mask: RowMask): Promise<Scored[]> {
    if (!this.shards) return Promise.reject(new Error(`model ${this.version} is not sharded`));
    mask.set(0);
    return this.fanOut("similar", async () => vec, k, mask);
  }

  /** A mask over this model's rows with the padding row and `exclude` set. */
  mask(exclude: Iterable<number> = []): RowMask {
    const mask = new RowMask(this.rows);
    mask.set(0);
    for (const r of exclude) mask.set(r);
    return mask;
  }

  /**
   * The k best rows for `state`, best first, never a row in `exclude` nor the padding row.
   * `at`: when the request comes (after the idle gap the session rule is applied first).
   */
  topK(state: Float32Array, at: Moment, k: number, exclude: Iterable<number> = []): Promise<Scored[]> {
    return this.topKMasked(state, at, k, this.mask(exclude));
  }

  /** As topK, with a ready mask over all rows (row 0 is always excluded). */
  topKMasked(state: Float32Array, at: Moment, k: number, mask: RowMask): Promise<Scored[]> {
    const T = this.ort.Tensor;
    mask.set(0);
    if (this.shards) return this.fanOut("score", () => this.query(state, at), k, mask, this.boosts(state));
    const kk = this.clampK(k, mask);
    if (kk === 0) return Promise.resolve([]);
    const session = this.scoreSession!;
    return exclusive(async () => {
      const out = await session.run({
        state: new T("float32", state, [1, this.stateSize]),
        new_session: new T("float32", Float32Array.of(at.newSession ? 1 : 0), [1]),
        gap: new T("float32", Float32Array.of(Math.max(0, at.gapHours)), [1]),
        mask: new T("float32", mask.toFloats(), [1, this.rows]),
        k: new T("int64", BigInt64Array.of(BigInt(kk)), [1]),
      });
      return this.collect(out);
    });
  }

  /** The k rows most similar to `row` (cosine of item embeddings), never `row` itself nor a masked row. */
  similar(row: number, k: number, mask: RowMask = this.mask()): Promise<Scored[]> {
    const session = this.similarSession;
    if (!session && !this.shards) return Promise.reject(new Error(`model ${this.version} has no similar graph`));
    const T = this.ort.Tensor;
    mask.set(0);
    mask.set(row);
    if (!session) return this.fanOut("similar", () => this.itemVector(row), k, mask);
    const kk = this.clampK(k, mask);
    if (kk === 0) return Promise.resolve([]);
    return exclusive(async () => {
      const out = await session.run({
        item: new T("int64", BigInt64Array.of(BigInt(row)), [1]),
        mask: new T("float32", mask.toFloats(), [1, this.rows]),
        k: new T("int64", BigInt64Array.of(BigInt(kk)), [1]),
      });
      return this.collect(out);
    });
  }

  /**
   * Cosine of each of `rows` with every row (one similar-graph run for the batch, nothing masked
   * but the padding row): one array per given row, indexed by row (index 0 unused).
   */
  similarityRows(rows: readonly number[]): Promise<Float32Array[]> {
    const session = this.similarSession;
    if (!session && !this.shards) return Promise.reject(new Error(`model ${this.version} has no similar graph`));
    if (!rows.length) return Promise.resolve([]);
    if (!session) return Promise.all(rows.map((r) => this.similarityRow(r)));
    const T = this.ort.Tensor;
    const B = rows.length;
    const N = this.rows;
    const mask = new Float32Array(B * N);
    for (let b = 0; b < B; b++) mask[b * N] = 1;
    return exclusive(async () => {
      const out = await session.run({
        item: new T("int64", BigInt64Array.from(rows, (r) => BigInt(r)), [B]),
        mask: new T("float32", mask, [B, N]),
        k: new T("int64", BigInt64Array.of(BigInt(N - 1)), [1]),
      });
      const scores = out.scores!.data as Float32Array;
      const indices = out.indices!.data as BigInt64Array;
      const result: Float32Array[] = [];
      for (let b = 0; b < B; b++) {
        const row = new Float32Array(N);
        for (let j = 0; j < N - 1; j++) row[Number(indices[b * (N - 1) + j]!)] = scores[b * (N - 1) + j]!;
        result.push(row);
      }
      out.scores!.dispose();
      out.indices!.dispose();
      return result;
    });
  }

  /** similarityRows for one row of a sharded model: every row's cosine from the shards. */
  private async similarityRow(row: number): Promise<Float32Array> {
    const top = await this.fanOut("similar", () => this.itemVector(row), this.rows - 1, this.mask());
    const out = new Float32Array(this.rows);
    for (const t of top) out[t.row] = t.score;
    return out;
  }

  private clampK(k: number, mask: RowMask): number {
    return Math.max(0, Math.min(k, mask.free()));
  }

  private collect(out: InferenceSession.OnnxValueMapType): Scored[] {
    const scores = out.scores!.data as Float32Array;
    const indices = out.indices!.data as BigInt64Array;
    const result: Scored[] = [];
    for (let i = 0; i < scores.length; i++) {
      if (Number.isFinite(scores[i]!)) result.push({ row: Number(indices[i]!), score: scores[i]! });
    }
    out.scores!.dispose();
    out.indices!.dispose();
    return result;
  }
}

/** A sharded manifest's item-transition term (`transitions` with the offsets of its constants in
 * the worker's weights file), read from `weights`; undefined without one. */
function workerTransitions(m: Manifest, weights: Uint8Array): { t: Transitions; recent: { offset: number; size: number } } | undefined {
  const e = m.transitions;
  if (!e) return undefined;
  const recent = m.state.layout.find((p) => p.name === "recent_items");
  if (!e.offsets || !recent) throw new ModelLoadError(`model ${m.name}: a sharded model's item-transition term needs its constants' offsets and the state's recent_items`);
  try {
    return { t: loadTransitions(e, weights, m.items.rows, recent.size), recent };
  } catch (err) {
    throw new ModelLoadError(`model ${m.name}: ${(err as Error).message}`);
  }
}
