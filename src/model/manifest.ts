/**
 * The model manifest (models/<name>/manifest.json): the one contract between the Python
 * export and this runtime. Parsed with zod and cross-checked against the ONNX sessions at load.
 * See models/README.md for the meaning of every field.
 */
import { z } from "zod";
import { IdList } from "./manifest-ids";

const Dim = z.union([z.number().int().nonnegative(), z.string()]);
const Tensor = z.object({
  name: z.string().min(1),
  dtype: z.enum(["float32", "int64", "float16"]),
  shape: z.array(Dim),
});
const Graph = z.object({ file: z.string().min(1), inputs: z.array(Tensor), outputs: z.array(Tensor) });

export const ManifestSchema = z.object({
  format: z.literal(1),
  name: z.string().min(1),
  version: z.string().min(1).max(128),
  created_at: z.string(),
  opset: z.number().int(),
  /** `similar` is optional: models exported before it existed still serve (similar items fall back).
   * `score` is absent from a sharded model (its shards score). */
  graphs: z.object({ step: Graph, score: Graph.optional(), similar: Graph.optional() }),
  weights: z.object({
    file: z.string(),
    bytes: z.number().int().positive(),
    sha256: z.string().length(64),
    dtype: z.enum(["float32", "float16"]).default("float32"),
    /** Float16 tables stored as int8 rows + scales (src/model/int8-rows.ts); bytes/sha256 are of the packed file. */
    int8_rows: z
      .array(z.object({ offset: z.number().int().nonnegative(), rows: z.number().int().positive(), cols: z.number().int().positive(), packed_offset: z.number().int().nonnegative() }))
      .optional(),
    /** Size of weights.bin once the int8 tables are expanded (bytes). */
    expanded_bytes: z.number().int().positive().optional(),
  }),
  state: z.object({
    size: z.number().int().positive().max(65536),
    dtype: z.literal("float32"),
    initial: z.literal("zeros"),
    layout: z.array(z.object({ name: z.string(), offset: z.number().int().nonnegative(), size: z.number().int().positive() })),
  }),
  /** The score graph's item-transition term (models/training/transitions.py): its settings and the
   * bytes its constants take in the weights file (the memory estimate counts them apart). */
  transitions: z
    .object({
      bytes: z.number().int().nonnegative(),
      successors: z.number().int().positive(),
      alpha: z.number(),
      eps: z.number().positive(),
      decay: z.number().nonnegative(),
      /** A sharded model's: where the constants lie past the step graph's in the worker's weights file. */
      offsets: z.object({ idx: z.number().int().nonnegative(), q: z.number().int().nonnegative(), scale: z.number().int().nonnegative() }).optional(),
    })
    .passthrough()
    .optional(),
  /** `ids`: an array, or an IdList left in the manifest's text (readManifestText, manifest-ids.ts). */
  items: z.object({ rows: z.number().int().positive(), padding_row: z.literal(0), ids: z.union([z.instanceof(IdList), z.array(z.string())]) }),
  popular: z.object({ ids: z.array(z.string()), counts: z.array(z.number()) }).passthrough(),
  session: z.object({ idle_gap_seconds: z.number().positive() }).passthrough(),
  training: z.record(z.string(), z.unknown()).optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
  golden: z.string().optional(),
  /** A sharded model (models/training/export_shards.py): the item table split in contiguous row
   * ranges, each scored by one Durable Object (src/model/shards.ts); the step graph also outputs
   * `query`, and either takes the event's item as its table row (`item_vector`, read from its
   * shard: VECTOR_STEP) or holds the table and also outputs `item_vector` (a seed's vector). */
  shards: z
    .array(
      z.object({
        rows: z.tuple([z.number().int().nonnegative(), z.number().int().positive()]),
        /** One graph for scores and cosines over one copy of the rows (export_shards.py's `rank_graph`). */
        rank: z.object({ file: z.string().min(1) }).optional(),
        /** Exports before `rank`: a graph for scores and one for cosines, each with its table. */
        score: z.object({ file: z.string().min(1) }).optional(),
        similar: z.object({ file: z.string().min(1) }).optional(),
        weights: z.object({ file: z.string().min(1), bytes: z.number().int().positive(), sha256: z.string().length(64) }),
        /** Where the shard's rows of the table lie in its weights file (every rank export since the
         * int8 scan; before it, only a step graph that takes item vectors): byte offsets of its rows,
         * and of its item bias and row norms (stored as the rows), which the int8 scan needs. */
        table: z
          .object({
            offset: z.number().int().nonnegative(),
            dtype: z.enum(["float16", "float32"]),
            bias: z.number().int().nonnegative().optional(),
            norm: z.number().int().nonnegative().optional(),
          })
          .optional(),
      }),
    )
    .min(1)
    .max(256)
    .optional(),
});

export type Manifest = z.infer<typeof ManifestSchema>;

/** A loaded model's manifest: its item ids are in the isolate's `itemKeys` instead (item-keys.ts). */
export type LoadedManifest = Omit<Manifest, "items"> & { items: Omit<Manifest["items"], "ids"> };

/** Thrown when a model cannot be used: bad manifest, or manifest and ONNX graphs disagree. */
export class ModelLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelLoadError";
  }
}

/** The exact graph interface this runtime drives (names and ranks). */
export const CONTRACT = {
  step: { inputs: ["state", "item", "new_session", "gap"], outputs: ["next_state"] },
  score: { inputs: ["state", "new_session", "gap", "mask", "k"], outputs: ["scores", "indices"] },
  similar: { inputs: ["item", "mask", "k"], outputs: ["scores", "indices"] },
} as const;

/** The step graph's outputs in a sharded model that keeps the table in its step graph. */
export const SHARDED_STEP_OUTPUTS = ["next_state", "query", "item_vector"] as const;
/** The step graph of a sharded model whose worker holds no table: the event's item comes as its row
 * (`item_vector`, read from its shard), and the query is the only extra output. */
export const VECTOR_STEP = { inputs: ["state", "item_vector", "new_session", "gap"], outputs: ["next_state", "query"] } as const;
/** The same for a model whose state records its recent items' rows (SeqRec: the `recent_items`
 * ring of the state's layout): it also takes the event's row index (`item`, which it shifts into
 * the ring) and the rows of the ring's items (`recent_vectors` (B, R, d), ring order, zeros for
 * empty slots), which its query attends over. */
export const RING_VECTOR_STEP = {
  inputs: ["state", "item", "item_vector", "recent_vectors", "new_session", "gap"],
  outputs: ["next_state", "query"],
} as const;

/** Whether a manifest's step graph takes the event's item as its table row (read from the shards). */
export function stepTakesVectors(m: Manifest): boolean {
  return m.graphs.step.inputs.some((t) => t.name === "item_vector");
}

/** Where a vector step's state records its recent items (the layout's `recent_items`), when its
 * step graph takes their rows (`recent_vectors`, RING_VECTOR_STEP); else undefined. */
export function stepRing(m: Manifest): { offset: number; size: number } | undefined {
  if (!m.graphs.step.inputs.some((t) => t.name === "recent_vectors")) return undefined;
  const p = m.state.layout.find((l) => l.name === "recent_items");
  return p && { offset: p.offset, size: p.size };
}

/** Every file a manifest names (graphs, weights, shards' files, golden vectors). */
export function manifestFiles(m: Manifest): string[] {
  const out = [m.graphs.step.file, m.weights.file];
  if (m.graphs.score) out.push(m.graphs.score.file);
  if (m.graphs.similar) out.push(m.graphs.similar.file);
  for (const s of m.shards ?? []) out.push(...shardGraphFiles(s), s.weights.file);
  if (m.golden) out.push(m.golden);
  return out;
}

/** The graph files of one shard of a parsed manifest: its rank graph, or (older exports) its score
 * and similar graphs (parseManifest checks that it has one or the other). */
export function shardGraphFiles(s: NonNullable<Manifest["shards"]>[number]): string[] {
  return s.rank ? [s.rank.file] : [s.score!.file, s.similar!.file];
}

/** Parse and check a manifest's internal consistency. Throws ModelLoadError naming the problem. */
export function parseManifest(raw: unknown): Manifest {
  const r = ManifestSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ModelLoadError(`manifest.${i.path.join(".")}: ${i.message}`);
  }
  const m = r.data;
  const { size, layout } = m.state;
  const covered = layout.reduce((n, p) => n + p.size, 0);
  if (covered !== size) throw new ModelLoadError(`manifest.state.layout covers ${covered} floats, state.size is ${size}`);
  for (const p of layout) {
    if (p.offset + p.size > size) throw new ModelLoadError(`manifest.state.layout.${p.name} runs past state.size`);
  }
  if (m.items.ids.length !== m.items.rows - 1) {
    throw new ModelLoadError(`manifest.items.ids has ${m.items.ids.length} ids, rows - 1 is ${m.items.rows - 1}`);
  }
  if (!m.graphs.score === !m.shards) throw new ModelLoadError("manifest: a model has either graphs.score or shards, not both nor neither");
  if (m.shards) {
    let next = 0;
    for (const [i, s] of m.shards.entries()) {
      if (s.rows[0] !== next || s.rows[1] <= s.rows[0]) throw new ModelLoadError(`manifest.shards.${i}.rows: [${s.rows}] does not continue from row ${next}`);
      if (!s.rank === !(s.score && s.similar) || (s.rank && (s.score || s.similar))) {
        throw new ModelLoadError(`manifest.shards.${i}: a shard has either a rank graph or a score and a similar graph`);
      }
      next = s.rows[1];
    }
    if (next !== m.items.rows) throw new ModelLoadError(`manifest.shards cover ${next} rows, items.rows is ${m.items.rows}`);
    if (m.graphs.similar) throw new ModelLoadError("manifest: a sharded model's similar graphs are in its shards");
  }
  for (const [g, spec] of Object.entries(CONTRACT)) {
    const graph = m.graphs[g as keyof typeof CONTRACT];
    if (!graph) continue;
    const names = (ts: { name: string }[]) => ts.map((t) => t.name).join(",");
    const byVector = g === "step" && m.shards && stepTakesVectors(m);
    const vectorStep = graph.inputs.some((t) => t.name === "recent_vectors") ? RING_VECTOR_STEP : VECTOR_STEP;
    const inputs = byVector ? vectorStep.inputs : spec.inputs;
    const outputs = byVector ? vectorStep.outputs : g === "step" && m.shards ? SHARDED_STEP_OUTPUTS : spec.outputs;
    if (names(graph.inputs) !== inputs.join(",") || names(graph.outputs) !== outputs.join(",")) {
      throw new ModelLoadError(
        `manifest.graphs.${g}: expected inputs [${inputs}] outputs [${outputs}], got [${names(graph.inputs)}] [${names(graph.outputs)}]`,
      );
    }
    if (byVector) {
      const bare = m.shards!.findIndex((s) => !s.table);
      if (bare >= 0) throw new ModelLoadError(`manifest.shards.${bare}.table: the step graph takes item vectors, so every shard says where its rows are`);
      const ring = graph.inputs.find((t) => t.name === "recent_vectors");
      if (ring) {
        const p = stepRing(m);
        if (!p || ring.shape[1] !== p.size) {
          throw new ModelLoadError(`manifest.graphs.step.recent_vectors: ${String(ring.shape[1])} rows, and the state's recent_items ring holds ${p?.size ?? "none"}`);
        }
      }
    }
  }
  const stateDim = m.graphs.step.inputs[0]!.shape[1];
  if (stateDim !== size) throw new ModelLoadError(`manifest.graphs.step.state has width ${String(stateDim)}, state.size is ${size}`);
  const maskDim = m.graphs.score?.inputs[3]!.shape[1] ?? m.items.rows;
  if (maskDim !== m.items.rows) throw new ModelLoadError(`manifest.graphs.score.mask has width ${String(maskDim)}, items.rows is ${m.items.rows}`);
  const simDim = m.graphs.similar?.inputs[1]!.shape[1];
  if (m.graphs.similar && simDim !== m.items.rows) {
    throw new ModelLoadError(`manifest.graphs.similar.mask has width ${String(simDim)}, items.rows is ${m.items.rows}`);
  }
  return m;
}

/** Check the ONNX sessions' declared inputs/outputs against the manifest. */
export function checkSessions(
  m: Manifest,
  sessions: Partial<Record<"step" | "score" | "similar", { inputNames: readonly string[]; outputNames: readonly string[] }>>,
): void {
  for (const g of ["step", "score", "similar"] as const) {
    const s = sessions[g];
    const want = m.graphs[g];
    if (!want && !s) continue;
    if (!want || !s) throw new ModelLoadError(`model ${m.name}: ${g} graph ${want ? "missing" : "not in the manifest"}`);
    const got = `${s.inputNames.join(",")} -> ${s.outputNames.join(",")}`;
    const exp = `${want.inputs.map((t) => t.name).join(",")} -> ${want.outputs.map((t) => t.name).join(",")}`;
    if (got !== exp) throw new ModelLoadError(`model ${m.name}: ${g}.onnx has ${got}, manifest says ${exp}`);
  }
}
