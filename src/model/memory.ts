/**
 * How much memory a model version takes in one isolate, estimated from its files' sizes and its
 * manifest before anything is loaded: the registry checks uploads, staging and activation against
 * MODEL_MEMORY_BUDGET_MB with it. No worker imports, so scripts/bench-model.ts prints it beside what
 * it measures; the measured table it is held to (within 15%, test/worker/memory-estimate.test.ts)
 * is test/fixtures/model-memory.json, summarised in models/README.md ("Memory per isolate").
 */
import { scanKernelBytes, scannableEntry } from "./int8-scan";

/** What `memoryEstimate` reads: the sizes of a version's files and its manifest (item ids not needed). */
export interface SizedManifest {
  weights: { file: string; bytes?: number; dtype?: string; expanded_bytes?: number };
  graphs: Partial<Record<"step" | "score" | "similar", { file: string; outputs?: { shape: (number | string)[] }[] } | undefined>>;
  items: { rows: number };
  state?: { layout?: { name: string }[] };
  /** The score graph's item-transition term (transitions.py): `bytes` of its constants in the
   * weights file, copied in once and never cast. */
  transitions?: { bytes: number };
  /** A sharded model: the worker holds the step graph; each shard its rows' score and similar graphs. */
  shards?: {
    rows: [number, number];
    weights: { bytes: number; file?: string };
    /** One graph for scores and cosines over one copy of the rows (export_shards.py's rank_graph). */
    rank?: { file: string };
    /** Exports before `rank`: a score graph and a similar graph, each with its copy. */
    score?: { file: string };
    similar?: { file: string };
    /** Where its rows lie in its weights file, which it then keeps (the worker reads item vectors
     * from it); with `bias` and `norm` a rank shard is served by the int8 scan. */
    table?: { dtype: "float16" | "float32"; bias?: number; norm?: number };
  }[];
}

/** A model's memory in one isolate, bytes. */
export interface MemoryEstimate {
  /** onnxruntime itself, once per isolate whatever is loaded: its JS and its initial wasm memory. */
  runtime: number;
  /** This version loaded and settled: its share of ORT's wasm memory and its JS (the item ids). */
  resident: number;
  /** Held only while it loads, on top of `resident`: the files read and the expanded weights. */
  transient: number;
  /** Once it serves, on top of `resident` (none while it loads): masks over its rows, MASKS_PER_ROW
   * bytes a row. */
  masks: number;
}

const MiB = 2 ** 20;

/** Per row of a serving model: once `exclude_seen` is asked for, its rows' seen-filter positions
 * (state/seen.ts rowPositions: 7 Uint16, 14 bytes), the row view's 16 category masks (2 bytes), its
 * availability mask, a request's mask and a copy of it (a bit a row each, RowMask), rounded up.
 * Measured at 1M rows (`bench-model.ts --catalog`): the view and the positions 13.6 MiB. */
const MASKS_PER_ROW = 17;

// Measured with scripts/bench-model.ts (onnxruntime-web 1.30, Node 22); see the fixture.
/** ORT's wasm linear memory when it starts (it only grows from there). */
const ORT_INITIAL_WASM = 16 * MiB;
/** ORT's own JS once started ("ORT started, no model" minus "before ORT": 1.6 MiB). */
const ORT_JS = 1.6 * MiB;
/** Of the initial wasm memory, what is taken before a model's first large allocation (ORT's own
 * state, the graphs' protobufs, the small weights): where the first growth lands, minus the table. */
const USED_AT_FIRST_TABLE = 10.28 * MiB;
/** Per table row, before the score graph's weights: its N-long constants (item bias, padding mask). */
const PER_ROW = 15.2;
/** Memory per byte of manifest.json once loaded: its ids as keys (item-keys.ts: their code units,
 * the key table, the model's row <-> key arrays) and the rest of it parsed (fitted on
 * the fixture, whose sharded rows at 1M items are mostly this). */
const HEAP_PER_MANIFEST_BYTE = 2.8;
/** emscripten grows a full heap to 1.2x; where many small allocations cross it the memory lands
 * anywhere in [needed, 1.2x]: the estimate takes 1.06x (fitted; large allocations grow it exactly). */
const GEOMETRIC_GROWTH = 1.06;

/** The wasm memory after `allocs` (bytes, load order, none freed), from `size` with `used` taken. */
function grow(size: number, used: number, allocs: number[]): number {
  for (const a of allocs) {
    used += a;
    if (used > size) size = a >= 0.2 * size ? used : Math.max(size, used * GEOMETRIC_GROWTH);
  }
  return size;
}

/**
 * Estimated memory of a version in one isolate, from its file sizes and manifest. T is the weights'
 * bytes as the graphs read them (float16 once an int8 table is expanded) less the item-transition
 * constants, N the table's rows.
 *   - step graph: keeps its own copy of the table (it gathers rows from it): T.
 *   - score graph: its N-long constants (15 bytes a row), then the table copied in, the float16 ->
 *     float32 cast folded and the transposed table prepacked for the MatMul: 5T at the high-water
 *     mark (2T for a float32 export, which needs no cast). The wasm memory keeps that mark: it
 *     never shrinks.
 *   - similar graph: the normalised table and its transposes, folded in many smaller pieces: 8T
 *     (11T for a SeqRec model, whose state has `recent_items`; 3T for float32), rounded up by
 *     emscripten's 1.2x growth steps.
 *   - the item-transition constants (`transitions.bytes`, not part of T): in the files read and the
 *     expanded weights (transient) like any weight, but the score graph's copy adds nothing measured
 *     once settled (models/diginetica: 77.9 MiB with 2.2 MB of them and with 4.4 MB, 78.1 without),
 *     so they are not counted in the wasm memory; a sharded model's worker copies them into JS.
 *   - JS: the manifest loaded (its ids as keys, the row <-> key arrays), 2.8 bytes per manifest byte.
 * `runtime` (ORT's base) is paid once per isolate; `transient` (every file read plus the expanded
 * weights, alive while the graphs load) once per load.
 */
export function memoryEstimate(files: Record<string, { bytes: number }>, manifest: SizedManifest): MemoryEstimate {
  const w = manifest.weights;
  const stored = files[w.file]?.bytes ?? w.bytes ?? 0;
  const X = manifest.transitions?.bytes ?? 0;
  const T = (w.expanded_bytes ?? stored) - X;
  const f32 = w.dtype !== "float16";
  const N = manifest.items.rows;
  const seq = manifest.state?.layout?.some((p) => p.name === "recent_items") ?? false;
  // A sharded model's worker isolate holds only the step graph: its table (rows are gathered) and
  // its other weights, 1.4T at the load's high-water mark (fitted on models/diginetica-sharded);
  // a step graph that takes item vectors has no table, and T is its recurrent weights alone, so
  // the parsed manifest (ids and their index) is most of it (the fixture's `/shards` rows).
  const allocs = manifest.shards ? [1.4 * T] : [T, PER_ROW * N, ...(f32 ? [T, T] : [T, T, T, 2 * T])];
  if (manifest.graphs.similar) {
    const k = f32 ? 3 : seq ? 11 : 8;
    for (let i = 0; i < 8; i++) allocs.push((k * T) / 8);
  }
  const wasm = grow(ORT_INITIAL_WASM, USED_AT_FIRST_TABLE, allocs) - ORT_INITIAL_WASM;
  // a sharded model's worker copies the transition constants out of its weights file (transitions.ts)
  const heap = HEAP_PER_MANIFEST_BYTE * (files["manifest.json"]?.bytes ?? 0) + (manifest.shards ? X : 0);
  // The files this isolate reads while loading (a sharded model's shard files are read by its shards).
  const elsewhere = new Set((manifest.shards ?? []).flatMap((s) => [s.weights.file, s.rank?.file, s.score?.file, s.similar?.file]));
  const transient = Object.entries(files).reduce((n, [name, f]) => n + (elsewhere.has(name) ? 0 : f.bytes), 0) + (w.expanded_bytes ?? 0);
  return { runtime: ORT_INITIAL_WASM + ORT_JS, resident: Math.round(wasm + heap), transient, masks: MASKS_PER_ROW * N };
}

/**
 * Estimated memory of each item shard of a sharded model in its Durable Object's isolate, T being
 * the shard's weights file (its rows of the table, of the item bias and of the row norms):
 *   - a rank graph (one session): the stored rows copied in, the float16 -> float32 cast folded and
 *     the Gemm's prepacked copy, T + 2T + 2T at the load's high-water mark (T + T for float32);
 *   - exports before it: the score and similar graphs over its rows, as `memoryEstimate` counts
 *     them for a whole table (5T and 8T);
 *   - where the worker reads item vectors from it, the weights file, kept (its rows are a view of it).
 * No item ids: a shard has none.
 */
export function shardEstimates(manifest: SizedManifest): MemoryEstimate[] {
  const f32 = manifest.weights.dtype !== "float16";
  const dim = Number(manifest.graphs.step?.outputs?.[1]?.shape[1] ?? 0);
  return (manifest.shards ?? []).map((s) => {
    const T = s.weights.bytes;
    if (scannableEntry(s.rank !== undefined, s.table, dim)) return scanEstimate(s.rows[1] - s.rows[0], dim, T);
    const allocs: number[] = [];
    if (s.rank) allocs.push(T, ...(f32 ? [T] : [2 * T, 2 * T]));
    else {
      allocs.push(T, PER_ROW * (s.rows[1] - s.rows[0]), ...(f32 ? [T, T] : [T, T, T, 2 * T]));
      const k = f32 ? 3 : 8;
      for (let i = 0; i < 8; i++) allocs.push((k * T) / 8);
    }
    const wasm = grow(ORT_INITIAL_WASM, USED_AT_FIRST_TABLE, allocs) - ORT_INITIAL_WASM;
    // A shard the worker reads rows from keeps its weights file (shard-sessions.ts: its rows are a
    // view of it); any other lets it go once its sessions are made.
    return { runtime: ORT_INITIAL_WASM + ORT_JS, resident: Math.round(wasm + (s.table ? T : 0)), transient: (s.table ? 0 : T) + 4096, masks: 0 };
  });
}

/** The float16 widening table of the int8 scan (256 KiB) and its kernel's first memory page. */
const SCAN_RUNTIME = 0.32 * MiB;

/**
 * A shard served by the int8 scan (int8-scan.ts), n rows of `dim`, T its weights file: no
 * onnxruntime; the weights file, kept (its rows are rescored from it), the kernel's memory (int8
 * codes, the dim rounded up to 16 bytes a row, and six float32 arrays a row, in whole 64 KiB pages:
 * `scanKernelBytes`), and the bias and norms as float32 in JS.
 */
function scanEstimate(n: number, dim: number, T: number): MemoryEstimate {
  return { runtime: SCAN_RUNTIME, resident: T + scanKernelBytes(n, dim) + 8 * n, transient: 8 * n + 4096, masks: 0 };
}

/** Per catalog item, the catalog copy's fact columns (catalog/mirror.ts: live, available, price,
 * created, category), bytes; the arrays grow by doubling. */
const CATALOG_COLUMNS = 22;
/** An item id's key (item-keys.ts) where no model's manifest counted it: 16 UTF-16 code units
 * assumed and its table slots, bytes. */
const KEY_BYTES = 44;

/**
 * The catalog copy a worker isolate keeps beside its models, bytes: its fact columns and the keys of
 * its ids beyond the `known` ones a model's estimate counts (a model's ids are taken to be catalog
 * items). Measured at 1M items (`bench-model.ts --catalog`): the columns 22 MiB.
 */
export function catalogEstimate(items: number, known = 0): number {
  if (items <= 0) return 0;
  let cap = 1024;
  while (cap < items + 1) cap *= 2;
  return cap * CATALOG_COLUMNS + Math.max(0, items - known) * KEY_BYTES;
}

/** ORT's base in one isolate, bytes (the `runtime` of every estimate). */
export const RUNTIME_BYTES = ORT_INITIAL_WASM + ORT_JS;
