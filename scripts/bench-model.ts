/**
 * Model time per request in the worker's runtime (onnxruntime-web wasm, one thread): one step
 * (advance a state by an event) and one ranking (score every item, mask, top-k) of a model folder,
 * after a warm-up; plus the memory the loaded model takes in what counts against a Workers isolate's
 * 128 MB: the JS heap, array buffers and ORT's wasm linear memory (which only grows), measured
 * before ORT starts, once ORT runs with no model (its base), at the end of the load (the peak: the
 * files and the expanded weights are still alive) and settled after the timed runs; and next to
 * each, what the registry's `memoryEstimate` (src/domain/models.ts) says for the same files.
 *
 *   node --expose-gc --import tsx scripts/bench-model.ts models/amazon-beauty [--runs 2000] [--catalog]
 *
 * (`--catalog`: also the isolate once its catalog copy holds every item of the model and the row
 * view is built, as a worker that serves it from a full catalog.)
 *
 * The memory table (one fresh process per model, since wasm memory never shrinks): synthetic
 * models of the given sizes built with the project's own export (`export.py --fp16 --int8-table`
 * from a randomly initialised GRURec, models/training/random_model.py; `+similar` / `-similar` force the similar graph on or off,
 * `/float32` exports without --fp16), plus any model folders, estimate vs measured and the ratio:
 *
 *   node --import tsx scripts/bench-model.ts --table 10000x64,100000x64 --models models/diginetica \
 *     [--runs 100] [--out test/fixtures/model-memory.json]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-web/wasm";
import { type MemoryEstimate, memoryEstimate, shardEstimates } from "../src/model/memory";
import { compileOrtWasm, compileScanWasm, folderFiles, localShards, readModelFolder } from "../src/model/node-files";
import { runShard, scannable, shardSessions } from "../src/model/shard-sessions";
import { type ShardSpec, shardSpecs } from "../src/model/shards";
import { withOrt } from "../src/model/ort";
import { parseManifest } from "../src/model/manifest";
import { CatalogMirror } from "../src/catalog/mirror";
import { rowPositions } from "../src/state/seen";
import { GruModel, type ModelFiles } from "../src/model/runtime";

const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const runs = Number(arg("--runs") ?? 2000);
const mb = (b: number) => (b / 2 ** 20).toFixed(1);

/** The files of a model folder the registry would store, name -> bytes. */
function folderSizes(dir: string): { manifest: any; files: Record<string, { bytes: number }> } {
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const names = ["manifest.json", manifest.graphs.step.file, manifest.graphs.score?.file, manifest.graphs.similar?.file, manifest.weights.file, manifest.golden];
  const files: Record<string, { bytes: number }> = {};
  for (const n of names) if (n && existsSync(join(dir, n))) files[n] = { bytes: statSync(join(dir, n)).size };
  return { manifest, files };
}

/** Build (or reuse) a synthetic model folder for a spec like `100000x64`, `31000x64+similar`,
 * `50000x64/float32`, `18000x64/seq` (SeqRec with attention over 20 recent items, as the committed
 * shop models; GRURec otherwise), `1000000x64/shards` (in item shards as export_shards.py chooses:
 * the worker's part is measured). */
function synthetic(spec: string): string {
  const m = /^(\d+)x(\d+)([+-]similar)?(\/float32)?(\/seq)?(\/shards)?$/.exec(spec);
  if (!m) throw new Error(`bad size ${spec}: items x dim, e.g. 100000x64, 43000x128+similar, 50000x64/float32, 18000x64/seq, 1000000x64/shards`);
  const dir = join(tmpdir(), "gru-bench-model", spec.replace("+", "_with_").replace("-", "_without_").replaceAll("/", "_"));
  if (existsSync(join(dir, "manifest.json"))) return dir;
  mkdirSync(dir, { recursive: true });
  const flags = [...(m[4] ? [] : ["--fp16", "--int8-table"]), ...(m[3] ? ["--similar", m[3][0] === "+" ? "yes" : "no"] : []), ...(m[6] ? ["--shards", "auto"] : [])];
  const py = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  console.error(`building ${spec} (export.py ${flags.join(" ")}) in ${dir} ...`);
  execFileSync(py, ["-W", "ignore", "models/training/random_model.py", "--items", m[1]!, "--dim", m[2]!, "--kind", m[5] ? "seq" : "hrnn", "--out", dir, ...flags], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return dir;
}

interface Measured {
  /** ORT started, no model: its JS and its initial wasm memory (bytes above "before ORT"). */
  runtime: number;
  /** End of the load, the files still held: the isolate's peak for this model. */
  peak: number;
  /** After the timed runs, files dropped, collected. */
  settled: number;
}

/** The memory table: each model measured in a fresh process, estimate beside it. */
async function table(): Promise<void> {
  const specs = (arg("--table") ?? "").split(",").filter(Boolean);
  const dirs = [...specs.map((s) => ({ label: s, dir: synthetic(s) })), ...(arg("--models") ?? "").split(",").filter(Boolean).map((d) => ({ label: d, dir: d }))];
  const rows: any[] = [];
  for (const { label, dir } of dirs) {
    const out = execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", process.argv[1]!, dir, "--runs", String(Math.min(runs, 200)), "--json"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 64 << 20,
    });
    const measured = JSON.parse(out.trim().split("\n").pop()!) as Measured & { items: number; dim: number | null };
    const { manifest, files } = folderSizes(dir);
    const est = memoryEstimate(files, manifest);
    const m = manifest;
    rows.push({
      model: label,
      items: m.items.rows - 1,
      dim: m.weights.int8_rows?.[0]?.cols ?? m.training?.config?.dim ?? null,
      kind: m.training?.config?.kind ?? "hrnn",
      similar: Boolean(m.graphs.similar),
      // What memoryEstimate reads: the files' sizes and the manifest without its item ids.
      files,
      manifest: {
        graphs: Object.fromEntries(Object.entries(m.graphs).map(([g, s]: [string, any]) => [g, { file: s.file }])),
        weights: { ...m.weights, sha256: undefined },
        items: { rows: m.items.rows },
        state: { size: m.state.size, layout: m.state.layout.map((p: any) => ({ name: p.name, size: p.size })) },
        ...(m.transitions ? { transitions: { bytes: m.transitions.bytes } } : {}),
        ...(m.shards ? { shards: m.shards.map((s: any) => ({ rows: s.rows, weights: { file: s.weights.file, bytes: s.weights.bytes }, ...(s.rank ? { rank: s.rank } : { score: s.score, similar: s.similar }), ...(s.table ? { table: { dtype: s.table.dtype, ...(s.table.bias === undefined ? {} : { bias: s.table.bias, norm: s.table.norm }) } } : {}) })) } : {}),
      },
      measured_mib: { runtime: +mb(measured.runtime), settled: +mb(measured.settled), peak: +mb(measured.peak) },
      estimate_mib: { settled: +mb(est.runtime + est.resident), peak: +mb(est.runtime + est.resident + est.transient) },
    });
    const r = rows[rows.length - 1];
    console.error(`${label}: settled ${r.estimate_mib.settled} est / ${r.measured_mib.settled} measured, peak ${r.estimate_mib.peak} / ${r.measured_mib.peak}`);
  }
  console.log("\n| model | items x dim | similar | estimate settled | measured settled | ratio | estimate peak (load) | measured peak | ratio |\n|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    console.log(
      `| ${r.model} | ${r.items.toLocaleString("en")} x ${r.dim ?? "?"} | ${r.similar ? "yes" : "no"} | ${r.estimate_mib.settled} MiB | ${r.measured_mib.settled} MiB | ${ratio(r.estimate_mib.settled, r.measured_mib.settled)} | ${r.estimate_mib.peak} MiB | ${r.measured_mib.peak} MiB | ${ratio(r.estimate_mib.peak, r.measured_mib.peak)} |`,
    );
  }
  const outFile = arg("--out");
  if (outFile) {
    const command = `node --import tsx scripts/bench-model.ts --table ${specs.join(",")}${arg("--models") ? ` --models ${arg("--models")}` : ""} --runs ${Math.min(runs, 200)} --out ${outFile}`;
    writeFileSync(outFile, `${JSON.stringify({ command, node: process.version, measured_at: new Date().toISOString().slice(0, 10), rows }, null, 1)}\n`);
    console.error(`wrote ${outFile}`);
  }
}

type Reading = { heap: number; buffers: number; wasm: number; total: number };

/** One item shard of a sharded model folder in this process: its load and 200 masked top-10 runs
 * of each graph (random vectors), memory measured as for a whole model, `shardEstimates` beside it. */
async function oneShard(
  spec: ShardSpec,
  est: MemoryEstimate,
  wasm: WebAssembly.Module,
  o: { base: Reading; started: Reading; settle: () => Promise<Reading>; isolate: () => Reading; track: (m: WebAssembly.Memory) => void; json: boolean },
): Promise<void> {
  const i = spec.index;
  const l = await shardSessions(folderFiles, spec, wasm, compileScanWasm());
  if (l.scan) o.track(l.scan.kernel.memory);
  const peak = o.isolate();
  const n = spec.rows[1] - spec.rows[0];
  const mask = new Uint8Array((n + 7) >> 3);
  const times: number[] = [];
  for (let r = 0; r < Math.min(runs, 200); r++) {
    const v = Float32Array.from({ length: spec.dim }, () => Math.random() - 0.5);
    const t = performance.now();
    await runShard(l, r % 2 ? "similar" : "score", spec, v, mask, 10);
    times.push(performance.now() - t);
  }
  const ran = await o.settle();
  const measured: Measured = { runtime: o.started.total - o.base.total, peak: peak.total - o.base.total, settled: ran.total - o.base.total };
  const p50 = [...times].sort((a, b) => a - b)[times.length >> 1]!;
  if (o.json) console.log(JSON.stringify({ ...measured, rows: n, p50 }));
  else console.log(`shard ${i} (${n} rows): settled ${mb(measured.settled)} MiB (estimate ${mb(est.runtime + est.resident)}), peak ${mb(measured.peak)} MiB (estimate ${mb(est.runtime + est.resident + est.transient)}), run p50 ${p50.toFixed(3)} ms`);
}

/** A catalog copy holding every item of a model folder (in a function of its own, so no frame of
 * the caller keeps the parsed ids alive). */
function fullCatalog(dir: string): CatalogMirror {
  const mirror = new CatalogMirror();
  const ids: string[] = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")).items.ids;
  ids.forEach((id, i) => mirror.note(id, { available: i % 10 !== 9, price: 1 + (i % 997) / 10, categoryKey: `Dept ${i % 20} > Cat ${i % 400}`, createdMs: 1_700_000_000_000 + i }));
  return mirror;
}

/** One model folder in this process. */
async function one(dir: string, json: boolean): Promise<void> {
  const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
  // Record every wasm Memory ORT's instance exports, so its linear memory can be read after the runs.
  const wasmMemories: WebAssembly.Memory[] = [];
  const wa = WebAssembly as unknown as { instantiate: (...a: unknown[]) => Promise<unknown> };
  const realInstantiate = wa.instantiate;
  wa.instantiate = async (...a: unknown[]) => {
    const out = (await realInstantiate.apply(WebAssembly, a)) as WebAssembly.Instance | { instance: WebAssembly.Instance };
    const instance = out instanceof WebAssembly.Instance ? out : out.instance;
    const imported = Object.values((a[1] ?? {}) as Record<string, Record<string, unknown>>).flatMap((ns) => Object.values(ns ?? {}));
    for (const v of [...Object.values(instance.exports), ...imported])
      if (v instanceof WebAssembly.Memory && !wasmMemories.includes(v)) wasmMemories.push(v);
    return out;
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  const isolate = () => {
    gc?.();
    return read();
  };
  // Settled: collected, and array buffers' backing stores swept (V8 frees them after the collection).
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    return read();
  };
  const read = () => {
    const m = process.memoryUsage();
    const wasm = wasmMemories.reduce((s, x) => s + x.buffer.byteLength, 0);
    return { heap: m.heapUsed, buffers: m.arrayBuffers, wasm, total: m.heapUsed + m.arrayBuffers + wasm };
  };
  // One shard (`--shard i`): only its spec and estimate are kept, so the folder's other files and
  // the parsed manifest (its item ids) are not counted as the shard's.
  const shardArg = arg("--shard");
  const shard = shardArg === undefined ? undefined : (() => {
    const m = parseManifest(JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")));
    return { spec: shardSpecs(m, dir)[Number(shardArg)]!, est: shardEstimates(m)[Number(shardArg)]! };
  })();
  const wasmModule = await compileOrtWasm();
  const base = await settle();
  // a shard served by the int8 scan loads no onnxruntime
  if (!(shard && scannable(shard.spec))) await withOrt(wasmModule, async () => undefined);
  const started = await settle();
  // The peak of the load: sampled as each session is created (the files, the expanded weights and
  // every session before it are alive then); wasm memory only grows, so the last sample is the top.
  let peak = started;
  const IS = ort.InferenceSession as unknown as { create: (...a: unknown[]) => Promise<unknown> };
  const create = IS.create;
  IS.create = async function (this: unknown, ...a: unknown[]) {
    const s = await create.apply(this, a);
    const now = isolate();
    if (now.total > peak.total) peak = now;
    return s;
  };
  const track = (m: WebAssembly.Memory) => void wasmMemories.push(m);
  if (shard) return oneShard(shard.spec, shard.est, wasmModule, { base, started, settle, isolate, track, json });
  // `--catalog`: the worker isolate as it serves, its catalog copy holding every item of the model
  // (facts in 400 categories) before the model loads; every figure below then includes it.
  const mirror = process.argv.includes("--catalog") ? fullCatalog(dir) : undefined;
  const withCatalog = mirror ? await settle() : undefined;
  let files: ModelFiles | undefined = readModelFolder(dir);
  const t0 = performance.now();
  // A sharded model: its item shards run in this process after the load (the memory figures are
  // the worker's isolate alone; `--shard i` measures one shard).
  const model = await GruModel.load(wasmModule, files, (files.manifest as { shards?: unknown }).shards ? localShards(dir, files.manifest, wasmModule) : undefined);
  const loadMs = performance.now() - t0;
  const loaded = isolate();
  if (loaded.total > peak.total) peak = loaded;
  IS.create = create;
  files = undefined;
  // A sharded model's worker isolate holds only what loaded so far (its shards load on first use).
  const afterLoad = model.sharded ? await settle() : undefined;
  // The row view of the model over its catalog copy (what filtering reads) and its rows' seen-filter
  // positions (`exclude_seen`), built before any run (a sharded model's shards run in this process
  // once it serves).
  if (mirror) {
    mirror.rowView(model);
    rowPositions(model);
  }
  const withView = mirror ? await settle() : undefined;

  let state = model.initialState();
  const warm = Math.min(model.rows - 1, 50);
  for (let i = 1; i <= warm; i++) state = await model.step(state, i, { newSession: i === 1, gapHours: 0.01 });
  const step: number[] = [];
  const score: number[] = [];
  const similar: number[] = [];
  for (let i = 0; i < runs; i++) {
    const row = 1 + (i % (model.rows - 1));
    let t = performance.now();
    const next = await model.step(state, row, { newSession: false, gapHours: 0.01 });
    step.push(performance.now() - t);
    const mask = model.mask([row]);
    t = performance.now();
    await model.topKMasked(next, { newSession: false, gapHours: 0.01 }, 10, mask);
    score.push(performance.now() - t);
    if (model.hasSimilar) {
      t = performance.now();
      await model.similar(row, 10);
      similar.push(performance.now() - t);
    }
  }
  const ran = await settle();
  const measured: Measured = { runtime: started.total - base.total, peak: peak.total - base.total, settled: (afterLoad ?? ran).total - base.total };
  const { manifest, files: sizes } = folderSizes(dir);
  const est = memoryEstimate(sizes, manifest);
  if (json) {
    console.log(JSON.stringify({ ...measured, items: model.rows - 1, loadMs, ...(withCatalog && withView ? { catalog: withCatalog.total - started.total, withView: withView.total - base.total } : {}) }));
    return;
  }
  const line = (name: string, xs: number[]) =>
    xs.length ? `| ${name} | ${pct(xs, 50).toFixed(3)} | ${pct(xs, 90).toFixed(3)} | ${pct(xs, 99).toFixed(3)} |` : `| ${name} | - | - | - |`;
  console.log(`model ${model.version}: ${model.rows - 1} items, state ${model.stateSize} floats (${4 * model.stateSize} bytes), weights ${model.manifest.weights.dtype}`);
  console.log(`load ${loadMs.toFixed(0)} ms`);
  const row = (name: string, m: ReturnType<typeof isolate>) => `| ${name} | ${mb(m.heap)} | ${mb(m.buffers)} | ${mb(m.wasm)} | ${mb(m.total)} |`;
  console.log(`\nisolate-counted memory, MiB${gc ? "" : " (run with --expose-gc for settled figures)"}\n| when | JS heap used | array buffers | wasm linear memory | total |\n|---|---|---|---|---|`);
  console.log(row("before ORT", base));
  console.log(row("ORT started, no model", started));
  if (withCatalog) console.log(row(`ORT and the catalog copy (${model.rows - 1} items), no model`, withCatalog));
  console.log(row("peak of the load (files held)", peak));
  if (withView) console.log(row("loaded, the row view and seen positions built", withView));
  console.log(row(`after ${runs} runs`, ran));
  console.log(`\n| above "before ORT", MiB | measured | memoryEstimate | ratio |\n|---|---|---|---|`);
  const cmp = (name: string, m: number, e: number) => console.log(`| ${name} | ${mb(m)} | ${mb(e)} | ${(e / m).toFixed(2)} |`);
  cmp("runtime base (ORT, no model)", measured.runtime, est.runtime);
  cmp("settled (runtime + model)", measured.settled, est.runtime + est.resident);
  cmp("peak of the load", measured.peak, est.runtime + est.resident + est.transient);
  console.log(`\n| ${runs} runs, ms | p50 | p90 | p99 |\n|---|---|---|---|`);
  console.log(line("step (one event)", step));
  console.log(line("score all items + top-10", score));
  console.log(line("similar items top-10", similar));
  console.log(line("step + score", step.map((s, i) => s + score[i]!)));
}

if (arg("--table") !== undefined || arg("--models") !== undefined) await table();
else await one(process.argv[2] && !process.argv[2].startsWith("--") ? process.argv[2] : "models/ml-small", process.argv.includes("--json"));
