/**
 * Which models this worker can serve and where their files come from.
 *
 * Bundled models (wrangler `Data` rule for .onnx/.bin, `CompiledWasm` for the ORT wasm) are used
 * when they fit the Worker size limit; the demo model does. A model that does not fit is read from
 * an R2 bucket bound as MODEL_BUCKET, under `<MODEL_NAME>/` (manifest.json and the files it
 * names), at first use. Either way the files are loaded once per isolate and kept; a failed load is
 * remembered for 30 s so a broken model does not cost every request a reload.
 *
 * Versions in the model registry (D1 `models`, see src/model/live.ts) are read from R2 under
 * `models/<version>/` (`versionHandle`), or are the bundled model itself (the first version).
 */
// wrangler resolves .wasm module imports by path, not through package exports.
import ortWasm from "../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm";
import scanWasm from "./kernel/scan.wasm";
import mlSmallManifest from "../../models/ml-small/manifest.json";
import mlSmallScore from "../../models/ml-small/score.onnx";
import mlSmallSimilar from "../../models/ml-small/similar.onnx";
import mlSmallStep from "../../models/ml-small/step.onnx";
import mlSmallWeights from "../../models/ml-small/weights.bin";
import { ModelLoadError, parseManifest } from "./manifest";
import { readManifestText } from "./manifest-ids";
import { GruModel, type ModelFiles } from "./runtime";
import { shardBackendFor } from "./shards";

export const BUNDLED: Record<string, ModelFiles> = {
  "ml-small": { manifest: mlSmallManifest, step: mlSmallStep, score: mlSmallScore, similar: mlSmallSimilar, weights: mlSmallWeights },
};

/** Where a model's files come from. */
export interface ModelSource {
  /** The parsed manifest.json (cheap: no graphs, no weights). */
  manifest(): Promise<unknown>;
  /** All files (a sharded model's shard files stay in R2: its item shards read them). */
  files(): Promise<ModelFiles>;
  /** R2 key prefix of the files, when they are in R2 (item shards read theirs from there). */
  prefix?: string;
}

/** Facts from the manifest that are needed before (or without) loading the graphs. */
export interface ModelMeta {
  version: string;
  stateSize: number;
  popular: { ids: string[]; counts: number[] };
}

/** A model that may or may not be loadable; nothing here throws. */
export interface ModelHandle {
  readonly name: string;
  /** The manifest's facts, or null when the manifest cannot be read. */
  meta(): Promise<ModelMeta | null>;
  /** Last known manifest facts (null before `meta()` first succeeded). */
  readonly known: ModelMeta | null;
  get(): Promise<{ ok: true; model: GruModel } | { ok: false; reason: "model-unavailable"; message: string }>;
  /** The model's files as stored (for browsers that score on the device); null when there are none. */
  files(): Promise<ModelFiles | null>;
  /** Whether the model is loaded (or loading) in this isolate. */
  readonly loaded: boolean;
  /**
   * Free the loaded model's sessions in this isolate (after the runs queued on it), so that a model
   * loaded next reuses its wasm memory; a later `get()` loads it again. False when none was loaded.
   */
  unload(): Promise<boolean>;
}

export function bundledSource(files: ModelFiles): ModelSource {
  return { manifest: async () => files.manifest, files: async () => files };
}

/** Files under `<prefix>/` in an R2 bucket: manifest.json plus the graph and weight files it names. */
export function r2Source(bucket: R2Bucket, prefix: string): ModelSource {
  const read = async (key: string) => {
    const obj = await bucket.get(`${prefix}/${key}`);
    if (!obj) throw new ModelLoadError(`model ${prefix}: ${key} not found in the model bucket`);
    return obj;
  };
  // The manifest's facts are kept without the item ids (a million-item manifest's ids are tens of
  // MiB as strings); a load reads the whole file again, its ids left in the text (manifest-ids.ts).
  let manifest: Promise<unknown> | undefined;
  const full = async () => readManifestText(await (await read("manifest.json")).text());
  const getManifest = () => {
    manifest ??= full().then((m) => {
      const items = (m as { items?: object }).items;
      return items ? { ...(m as object), items: { ...items, ids: [] } } : m;
    });
    manifest.catch(() => (manifest = undefined));
    return manifest;
  };
  return {
    prefix,
    manifest: getManifest,
    async files() {
      const m = (await full()) as {
        graphs?: { step?: { file?: string }; score?: { file?: string }; similar?: { file?: string } };
        weights?: { file?: string };
      };
      const name = (f: string | undefined, what: string) => {
        if (!f || f.includes("/") || f.includes("..")) throw new ModelLoadError(`model ${prefix}: manifest names no valid ${what} file`);
        return f;
      };
      const files = [name(m.graphs?.step?.file, "step"), name(m.weights?.file, "weights")];
      const score = m.graphs?.score ? files.push(name(m.graphs.score.file, "score")) - 1 : -1;
      const similar = m.graphs?.similar ? files.push(name(m.graphs.similar.file, "similar")) - 1 : -1;
      const got = await Promise.all(files.map(async (f) => (await read(f)).arrayBuffer()));
      return { manifest: m, step: got[0]!, weights: got[1]!, ...(score > 0 ? { score: got[score] } : {}), ...(similar > 0 ? { similar: got[similar] } : {}) };
    },
  };
}

const RETRY_FAILED_LOAD_MS = 30_000;
const handles = new Map<string, ModelHandle>();

/**
 * The per-isolate handle of model `name`: bundled if this worker bundles it, else from `bucket`
 * (R2) when one is bound. `source` overrides both (tests).
 */
export function modelHandle(name: string, bucket?: R2Bucket, source?: ModelSource, wasm: WebAssembly.Module = ortWasm): ModelHandle {
  const key = `${name}\n${BUNDLED[name] ? "bundled" : bucket ? "r2" : "none"}`;
  const existing = source ? undefined : handles.get(key);
  if (existing) return existing;
  const src = source ?? (BUNDLED[name] ? bundledSource(BUNDLED[name]) : bucket ? r2Source(bucket, name) : undefined);
  let loading: Promise<GruModel> | undefined;
  let failedAt = 0;
  let failure = "";
  const fail = (e: unknown) => {
    loading = undefined;
    failedAt = Date.now();
    failure = e instanceof ModelLoadError ? e.message : `model ${name} failed to load: ${(e as Error).message}`;
    console.error(failure);
    return { ok: false as const, reason: "model-unavailable" as const, message: failure };
  };
  const handle: ModelHandle = {
    name,
    known: null,
    files: async () => (src ? src.files() : null),
    get loaded() {
      return loading !== undefined;
    },
    async unload() {
      const was = loading;
      if (!was) return false;
      loading = undefined;
      try {
        await (await was).release();
      } catch {
        // A load that failed holds nothing.
      }
      return true;
    },
    async meta() {
      if (handle.known) return handle.known;
      if (!src) return null;
      try {
        const m = (await src.manifest()) as { version?: unknown; state?: { size?: unknown }; popular?: ModelMeta["popular"] };
        if (typeof m.version !== "string") return null;
        const meta = { version: m.version, stateSize: Number(m.state?.size ?? 0), popular: m.popular ?? { ids: [], counts: [] } };
        (handle as { known: ModelMeta | null }).known = meta;
        return meta;
      } catch (e) {
        console.error(`model ${name}: manifest unavailable: ${(e as Error).message}`);
        return null;
      }
    },
    async get() {
      if (!src) return { ok: false, reason: "model-unavailable", message: `model ${name} is not bundled and no MODEL_BUCKET is bound` };
      if (!loading && Date.now() - failedAt < RETRY_FAILED_LOAD_MS) return { ok: false, reason: "model-unavailable", message: failure };
      loading ??= src.files().then((files) => {
        let shards;
        try {
          shards = src.prefix ? shardBackendFor(parseManifest(files.manifest), src.prefix) : undefined;
        } catch {
          shards = undefined; // GruModel.load reports the manifest's problem
        }
        return GruModel.load(wasm, files, shards);
      });
      try {
        return { ok: true, model: await loading };
      } catch (e) {
        return fail(e);
      }
    },
  };
  if (!source) handles.set(key, handle);
  return handle;
}

/** R2 key prefix of a registry version's files. */
export function versionPrefix(version: string): string {
  return `models/${version}`;
}

const versionHandles = new Map<string, ModelHandle>();

/**
 * The per-isolate handle of registry version `version`: the bundled model `name` when `bundled`,
 * else the files under `models/<version>/` in `bucket`. Kept for the isolate's life (a version's
 * files never change: versions are immutable).
 */
export function versionHandle(v: { version: string; name: string; bundled: boolean }, bucket?: R2Bucket, wasm: WebAssembly.Module = ortWasm): ModelHandle {
  if (v.bundled) return modelHandle(v.name, bucket, undefined, wasm);
  const existing = versionHandles.get(v.version);
  if (existing) return existing;
  const h = modelHandle(v.version, undefined, bucket ? r2Source(bucket, versionPrefix(v.version)) : undefined, wasm);
  if (bucket) versionHandles.set(v.version, h);
  return h;
}

/** The bundled model's files (for registering it as the first version), or undefined. */
export function bundledFiles(name: string): ModelFiles | undefined {
  return BUNDLED[name];
}

/** The ORT wasm module this worker bundles. */
export function bundledWasm(): WebAssembly.Module {
  return ortWasm;
}

/** The int8 scan kernel this worker bundles (item shards' top-k, src/model/int8-scan.ts). */
export function bundledScan(): WebAssembly.Module {
  return scanWasm;
}
