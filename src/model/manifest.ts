/**
 * The model manifest (models/<name>/manifest.json): the one contract between the Python
 * export and this runtime. Parsed with zod and cross-checked against the ONNX sessions at load.
 * See models/README.md for the meaning of every field.
 */
import { z } from "zod";

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
  /** `similar` is optional: models exported before it existed still serve (similar items fall back). */
  graphs: z.object({ step: Graph, score: Graph, similar: Graph.optional() }),
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
  items: z.object({ rows: z.number().int().positive(), padding_row: z.literal(0), ids: z.array(z.string()) }),
  popular: z.object({ ids: z.array(z.string()), counts: z.array(z.number()) }).passthrough(),
  session: z.object({ idle_gap_seconds: z.number().positive() }).passthrough(),
  training: z.record(z.string(), z.unknown()).optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
  golden: z.string().optional(),
});

export type Manifest = z.infer<typeof ManifestSchema>;

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
  if (new Set(m.items.ids).size !== m.items.ids.length) throw new ModelLoadError("manifest.items.ids has duplicates");
  for (const [g, spec] of Object.entries(CONTRACT)) {
    const graph = m.graphs[g as keyof typeof CONTRACT];
    if (!graph) continue;
    const names = (ts: { name: string }[]) => ts.map((t) => t.name).join(",");
    if (names(graph.inputs) !== spec.inputs.join(",") || names(graph.outputs) !== spec.outputs.join(",")) {
      throw new ModelLoadError(
        `manifest.graphs.${g}: expected inputs [${spec.inputs}] outputs [${spec.outputs}], got [${names(graph.inputs)}] [${names(graph.outputs)}]`,
      );
    }
  }
  const stateDim = m.graphs.step.inputs[0]!.shape[1];
  if (stateDim !== size) throw new ModelLoadError(`manifest.graphs.step.state has width ${String(stateDim)}, state.size is ${size}`);
  const maskDim = m.graphs.score.inputs[3]!.shape[1];
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
