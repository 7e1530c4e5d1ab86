/**
 * Which models this worker can serve and how they are loaded.
 *
 * Models are bundled into the worker (wrangler `Data` rule for .onnx/.bin, `CompiledWasm` for ORT):
 * the demo model plus the ORT wasm stay well under the 10 MB compressed Worker limit. A model too
 * large to bundle would be fetched from R2 at first use through the same `ModelFiles` shape
 * (see README "Where the model lives"). Loading is lazy and happens once per isolate; a failed
 * load is remembered for a short while so a broken model does not cost every request a reload.
 */
// wrangler resolves .wasm module imports by path, not through package exports.
import ortWasm from "../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm";
import mlSmallManifest from "../../models/ml-small/manifest.json";
import mlSmallScore from "../../models/ml-small/score.onnx";
import mlSmallStep from "../../models/ml-small/step.onnx";
import mlSmallWeights from "../../models/ml-small/weights.bin";
import { ModelLoadError } from "./manifest";
import { GruModel, type ModelFiles } from "./runtime";

const BUNDLED: Record<string, ModelFiles> = {
  "ml-small": { manifest: mlSmallManifest, step: mlSmallStep, score: mlSmallScore, weights: mlSmallWeights },
};

/** A model that may or may not be loadable; `get()` resolves to a value, never throws. */
export interface ModelHandle {
  readonly name: string;
  /** Version string from the manifest (readable without loading the graphs), or null if unknown. */
  readonly version: string | null;
  /** State vector length from the manifest (0 when unknown). */
  readonly stateSize: number;
  /** Popular item ids from the manifest's training counts, best first. */
  readonly popular: { ids: string[]; counts: number[] };
  get(): Promise<{ ok: true; model: GruModel } | { ok: false; reason: "model-unavailable"; message: string }>;
}

const RETRY_FAILED_LOAD_MS = 30_000;
const handles = new Map<string, ModelHandle>();

/** The per-isolate handle of a bundled model. */
export function modelHandle(name: string, wasm: WebAssembly.Module = ortWasm, files: ModelFiles | undefined = BUNDLED[name]): ModelHandle {
  const key = name;
  const existing = handles.get(key);
  if (existing) return existing;
  let loading: Promise<GruModel> | undefined;
  let failedAt = 0;
  let failure = "";
  const m = (files?.manifest ?? {}) as { version?: string; state?: { size?: number }; popular?: { ids: string[]; counts: number[] } };
  const handle: ModelHandle = {
    name,
    version: typeof m.version === "string" ? m.version : null,
    stateSize: Number(m.state?.size ?? 0),
    popular: m.popular ?? { ids: [], counts: [] },
    async get() {
      if (!files) return { ok: false, reason: "model-unavailable", message: `model ${name} is not bundled in this worker` };
      if (!loading && Date.now() - failedAt < RETRY_FAILED_LOAD_MS) return { ok: false, reason: "model-unavailable", message: failure };
      loading ??= GruModel.load(wasm, files);
      try {
        return { ok: true, model: await loading };
      } catch (e) {
        loading = undefined;
        failedAt = Date.now();
        failure = e instanceof ModelLoadError ? e.message : `model ${name} failed to load: ${(e as Error).message}`;
        console.error(failure);
        return { ok: false, reason: "model-unavailable", message: failure };
      }
    },
  };
  handles.set(key, handle);
  return handle;
}

export function bundledModelNames(): string[] {
  return Object.keys(BUNDLED);
}
