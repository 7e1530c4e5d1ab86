/**
 * One ORT wasm instance per isolate (src/model/ort.ts): its calls are not re-entrant across
 * sessions, so every creation, run and release waits for the isolate's earlier ones (`exclusive`).
 * Without it, the concurrent requests of one isolate (here: 8 recommendations at once on a model in
 * 3 item shards served in this process, whose step and shard sessions share the instance) failed
 * with "failed to call OrtRun()" within a few hundred rounds, or returned another request's list.
 */
import { describe, expect, it } from "vitest";
import { loadModelFolder } from "../../src/model/node-files";
import type { GruModel } from "../../src/model/runtime";

/** A seeded PRNG (an LCG), so a failure replays. */
function rng(seed: number) {
  let x = seed;
  return () => (x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
}

async function states(model: GruModel, n: number): Promise<Float32Array[]> {
  const r = rng(7);
  const out: Float32Array[] = [];
  let s = model.initialState();
  for (let i = 0; i < n; i++) {
    s = await model.step(s, 1 + Math.floor(r() * (model.rows - 1)), { newSession: i % 5 === 0, gapHours: 0.1 });
    out.push(s);
  }
  return out;
}

describe("onnxruntime's calls in one isolate", { timeout: 120_000 }, () => {
  for (const fixture of ["shard-model", "shard-model-seq"]) {
    it(`answer concurrent requests as they answer them one at a time (${fixture}, 1,000 rounds of 8)`, async () => {
      const model = await loadModelFolder(`test/fixtures/${fixture}/sharded`);
      const at = { newSession: false, gapHours: 0.1 };
      const ss = await states(model, 8);
      const want: Awaited<ReturnType<GruModel["topK"]>>[] = [];
      for (const s of ss) want.push(await model.topK(s, at, 10));
      let differ = 0;
      for (let round = 0; round < 1000; round++) {
        const got = await Promise.all(ss.map((s) => model.topK(s, at, 10)));
        got.forEach((g, i) => (differ += JSON.stringify(g) === JSON.stringify(want[i]) ? 0 : 1));
      }
      expect(differ).toBe(0);
    });
  }
});
