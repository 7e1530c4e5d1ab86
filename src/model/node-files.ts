/**
 * Node-only helpers: load an exported model folder and the ORT wasm from disk, for the
 * benchmark, the evaluation replay and the export parity check (never bundled into the worker).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { parseManifest } from "./manifest";
import { readManifestText } from "./manifest-ids";
import { GruModel, type ModelFiles } from "./runtime";
import { readRows, runShard, type ShardFiles, shardSessions } from "./shard-sessions";
import { type Boost, type ShardBackend, shardSpecs } from "./shards";

/** A folder's files as a shard reads them from its bucket (keys are paths). */
export const folderFiles: ShardFiles = { get: async (key: string) => ({ arrayBuffer: async () => new Uint8Array(readFileSync(key)).buffer as ArrayBuffer }) };

/** A sharded model folder's item shards run in this process (benchmarks, evaluation replay): the
 * same loads and runs as the ItemShard Durable Objects (the int8 scan where they use it), without
 * the RPC. */
export function localShards(dir: string, manifest: unknown, wasm: WebAssembly.Module): ShardBackend {
  const specs = shardSpecs(parseManifest(manifest), dir);
  const scan = compileScanWasm();
  const load = (i: number) => shardSessions(folderFiles, specs[i]!, wasm, scan);
  const run = async (graph: "score" | "similar", i: number, vec: Float32Array, mask: Uint8Array, k: number, boost?: Boost) =>
    runShard(await load(i), graph, specs[i]!, vec, mask, k, boost);
  return {
    specs,
    score: (i, q, mask, k, boost) => run("score", i, q, mask, k, boost),
    similar: (i, v, mask, k) => run("similar", i, v, mask, k),
    rows: async (i, local, normalized) => readRows(await load(i), specs[i]!, local, normalized),
  };
}

/** The int8 scan kernel (src/model/kernel/scan.wasm), compiled. */
export function compileScanWasm(): WebAssembly.Module {
  // Worker types declare Module abstract (workerd compiles no bytes); Node compiles them.
  const Module = WebAssembly.Module as unknown as new (bytes: Uint8Array) => WebAssembly.Module;
  return new Module(readFileSync(new URL("./kernel/scan.wasm", import.meta.url)));
}

/** The model folder's files as the runtime takes them. */
export function readModelFolder(dir: string): ModelFiles {
  const manifest = readManifestText(readFileSync(join(dir, "manifest.json"), "utf8")) as {
    graphs?: { step?: { file?: string }; score?: { file?: string }; similar?: { file: string } };
    weights?: { file?: string };
    shards?: unknown;
  };
  return {
    manifest,
    step: readFileSync(join(dir, manifest.graphs?.step?.file ?? "step.onnx")),
    ...(manifest.shards ? {} : { score: readFileSync(join(dir, manifest.graphs?.score?.file ?? "score.onnx")) }),
    ...(manifest.graphs?.similar ? { similar: readFileSync(join(dir, manifest.graphs.similar.file)) } : {}),
    weights: readFileSync(join(dir, manifest.weights?.file ?? "weights.bin")),
  };
}

/** Load a model folder in this process: a sharded one with its item shards in this process too. */
export async function loadModelFolder(dir: string, wasm?: WebAssembly.Module): Promise<GruModel> {
  const w = wasm ?? (await compileOrtWasm());
  const files = readModelFolder(dir);
  return GruModel.load(w, files, (files.manifest as { shards?: unknown }).shards ? localShards(dir, files.manifest, w) : undefined);
}

/** onnxruntime-web's wasm, compiled (Node may compile from bytes; workerd may not). */
export async function compileOrtWasm(): Promise<WebAssembly.Module> {
  const req = createRequire(import.meta.url);
  const path = req.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm");
  // Worker types omit WebAssembly.compile (workerd forbids it); Node has it.
  const wa = WebAssembly as unknown as { compile(bytes: Uint8Array): Promise<WebAssembly.Module> };
  return wa.compile(readFileSync(path));
}
