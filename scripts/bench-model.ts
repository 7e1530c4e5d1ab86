/**
 * Model time per request in the worker's runtime (onnxruntime-web wasm, one thread): one step
 * (advance a state by an event) and one ranking (score every item, mask, top-k) of a model folder,
 * after a warm-up; plus the memory the loaded model takes in what counts against a Workers isolate's
 * 128 MB: the JS heap, array buffers and ORT's wasm linear memory (which only grows), measured
 * after loading and again after the timed runs.
 *
 *   npx tsx scripts/bench-model.ts models/amazon-beauty [--runs 2000]
 */
import { compileOrtWasm, readModelFolder } from "../src/model/node-files";
import { GruModel } from "../src/model/runtime";

const dir = process.argv[2] ?? "models/ml-small";
const runsAt = process.argv.indexOf("--runs");
const runs = runsAt > 0 ? Number(process.argv[runsAt + 1]) : 2000;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const mb = (b: number) => (b / 2 ** 20).toFixed(1);

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
  const m = process.memoryUsage();
  const wasm = wasmMemories.reduce((s, x) => s + x.buffer.byteLength, 0);
  return { heap: m.heapUsed, buffers: m.arrayBuffers, wasm, total: m.heapUsed + m.arrayBuffers + wasm };
};
const base = isolate();
const before = process.memoryUsage();
const t0 = performance.now();
const model = await GruModel.load(await compileOrtWasm(), readModelFolder(dir));
const loadMs = performance.now() - t0;
const after = process.memoryUsage();
const loaded = isolate();

let state = model.initialState();
const rows = Math.min(model.rows - 1, 50);
for (let i = 1; i <= rows; i++) state = await model.step(state, i, { newSession: i === 1, gapHours: 0.01 });
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
const line = (name: string, xs: number[]) =>
  xs.length ? `| ${name} | ${pct(xs, 50).toFixed(3)} | ${pct(xs, 90).toFixed(3)} | ${pct(xs, 99).toFixed(3)} |` : `| ${name} | - | - | - |`;
console.log(`model ${model.version}: ${model.rows - 1} items, state ${model.stateSize} floats (${4 * model.stateSize} bytes), weights ${model.manifest.weights.dtype}`);
console.log(`load ${loadMs.toFixed(0)} ms; process memory added: rss ${mb(after.rss - before.rss)} MiB, array buffers ${mb(after.arrayBuffers - before.arrayBuffers)} MiB`);
const ran = isolate();
const row = (name: string, m: ReturnType<typeof isolate>) =>
  `| ${name} | ${mb(m.heap)} | ${mb(m.buffers)} | ${mb(m.wasm)} | ${mb(m.total)} |`;
console.log(`\nisolate-counted memory, MiB${gc ? "" : " (run with --expose-gc for settled figures)"}\n| when | JS heap used | array buffers | wasm linear memory | total |\n|---|---|---|---|---|`);
console.log(row("before loading (ORT not started)", base));
console.log(row("model loaded", loaded));
console.log(row(`after ${runs} runs`, ran));
console.log(`model's share: ${mb(ran.total - base.total)} MiB of a 128 MiB isolate`);
console.log(`\n| ${runs} runs, ms | p50 | p90 | p99 |\n|---|---|---|---|`);
console.log(line("step (one event)", step));
console.log(line("score all items + top-10", score));
console.log(line("similar items top-10", similar));
console.log(line("step + score", step.map((s, i) => s + score[i]!)));
