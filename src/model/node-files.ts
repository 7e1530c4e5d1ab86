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
import { readRows, runShard, shardSessions } from "./shard-sessions";
import { type ShardBackend, shardSpecs } from "./shards";

/** A sharded model folder's item shards run in this process (benchmarks, evaluation replay): the
 * same sessions and runs as the ItemShard Durable Objects, without the RPC. */
export function localShards(dir: string, manifest: unknown, wasm: WebAssembly.Module): ShardBackend {
  const specs = shardSpecs(parseManifest(manifest), dir);
  const files = { get: async (key: string) => ({ arrayBuffer: async () => new Uint8Array(readFileSync(key)).buffer as ArrayBuffer }) };
  const run = async (graph: "score" | "similar", i: number, vec: Float32Array, mask: Uint8Array, k: number) => runShard(await shardSessions(files, specs[i]!, wasm), graph, specs[i]!, vec, mask, k);
  return {
    specs,
    score: (i, q, mask, k) => run("score", i, q, mask, k),
    similar: (i, v, mask, k) => run("similar", i, v, mask, k),
    rows: async (i, local, normalized) => readRows(await shardSessions(files, specs[i]!, wasm), specs[i]!, local, normalized),
  };
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
