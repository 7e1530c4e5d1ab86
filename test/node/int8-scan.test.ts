/**
 * The int8 scan (src/model/int8-scan.ts): its top-k against a float32 reference computed as the
 * rank graph computes (random tables, masks, ties, every k), against onnxruntime's rank graph itself
 * on a fixture shard, and its committed kernel against the kernel's source.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-web/wasm";
import { describe, expect, it } from "vitest";
import { assemble, KERNEL_WASM, KERNEL_WAT } from "../../scripts/build-kernel";
import { fromHalfBits, toHalfBits } from "../../src/model/int8-rows";
import { buildScan, type ScanLayout, scanTop } from "../../src/model/int8-scan";
import { compileOrtWasm, compileScanWasm } from "../../src/model/node-files";
import { withOrt } from "../../src/model/ort";
import { rng } from "../seeded";

const kernel = compileScanWasm();

/** A shard's weights file: the table, then the bias, then the norms (as export_shards.py lays them
 * out), stored as float16 or float32; `values` are the float32 values the graph reads. */
function weightsFile(rows: number[][], bias: number[], dtype: "float16" | "float32") {
  const n = rows.length;
  const d = rows[0]!.length;
  const size = dtype === "float16" ? 2 : 4;
  const store = (x: number) => (dtype === "float16" ? toHalfBits(x) : x);
  const table = rows.flat().map(store);
  const norms = rows.map((r) => store(Math.hypot(...r)));
  const layout: ScanLayout = { n, dim: d, dtype, table: 0, bias: n * d * size, norm: n * d * size + n * size };
  const all = [...table, ...bias.map(store), ...norms];
  const bytes = new Uint8Array(all.length * size);
  const view = new DataView(bytes.buffer);
  all.forEach((x, i) => (dtype === "float16" ? view.setUint16(2 * i, x, true) : view.setFloat32(4 * i, x, true)));
  const read = (i: number) => (dtype === "float16" ? fromHalfBits(view.getUint16(2 * i, true)) : view.getFloat32(4 * i, true));
  return { bytes, layout, value: read, biasOf: (r: number) => read(n * d + r), normOf: (r: number) => Math.max(read(n * d + n + r), Math.fround(1e-12)) };
}

/** The rank graph's answer computed plainly: every row's float32 score (a sum in order, then the
 * bias, or the division by the norm), masked rows left out, the k best, equal scores by row. */
function reference(w: ReturnType<typeof weightsFile>, q: Float32Array, mask: Uint8Array, k: number, similar: boolean) {
  const { n, dim: d } = w.layout;
  const all: { row: number; score: number }[] = [];
  for (let r = 0; r < n; r++) {
    if ((mask[r >> 3]! >> (r & 7)) & 1) continue;
    let acc = 0;
    for (let c = 0; c < d; c++) acc = Math.fround(acc + Math.fround(q[c]! * w.value(r * d + c)));
    all.push({ row: r, score: similar ? Math.fround(acc / w.normOf(r)) : Math.fround(acc + w.biasOf(r)) });
  }
  all.sort((a, b) => b.score - a.score || a.row - b.row);
  return all.slice(0, k);
}

describe("the int8 scan of an item shard", () => {
  it("returns exactly the rank graph's top-k (rows and float32 scores) under masks, ties and every k", () => {
    const r = rng(7);
    let compared = 0;
    for (const [n, d, dtype] of [[1, 16, "float16"], [37, 24, "float16"], [500, 64, "float16"], [301, 40, "float32"], [800, 32, "float32"]] as const) {
      // rows of very different norms, a few exact duplicates (equal scores), and an all-zero row
      const rows = Array.from({ length: n }, (_, i) => {
        const s = i % 5 === 0 ? 8 : i % 7 === 0 ? 0.01 : 1;
        return Array.from({ length: d }, () => Math.fround((r() - 0.5) * s));
      });
      for (let i = 3; i < n; i += 11) rows[i] = [...rows[i - 2]!];
      if (n > 5) rows[5] = Array(d).fill(0);
      const bias = rows.map((_, i) => (i % 11 === 3 ? 0 : Math.fround((r() - 0.5) * 0.3)));
      for (let i = 3; i < n; i += 11) bias[i] = bias[i - 2]!;
      const w = weightsFile(rows, bias, dtype);
      const t = buildScan(kernel, w.bytes, w.layout);
      for (let trial = 0; trial < 12; trial++) {
        const similar = trial % 2 === 1;
        const q = new Float32Array(d);
        if (trial === 2) q.fill(0);
        else for (let c = 0; c < d; c++) q[c] = Math.fround((r() - 0.5) * (trial % 3 === 0 ? 30 : 1));
        const mask = new Uint8Array((n + 7) >> 3);
        const kind = trial % 4;
        for (let j = 0; j < n; j++) {
          const out = kind === 1 ? r() < 0.5 : kind === 2 ? r() < 0.97 : kind === 3 ? j >= n / 2 : false;
          if (out) mask[j >> 3] = mask[j >> 3]! | (1 << (j & 7));
        }
        for (const k of [0, 1, 7, 50, n + 5]) {
          const want = reference(w, q, mask, k, similar);
          const got = scanTop(t, q, mask, k, similar);
          expect(Array.from(got.rows)).toEqual(want.map((x) => x.row));
          expect(Array.from(got.scores)).toEqual(want.map((x) => x.score));
          compared++;
        }
      }
      // every row masked: nothing
      const none = scanTop(t, new Float32Array(d).fill(1), new Uint8Array((n + 7) >> 3).fill(255), 10, false);
      expect(none.rows.length).toBe(0);
    }
    expect(compared).toBe(5 * 12 * 5);
  });

  it("scores as onnxruntime's rank graph does, bit for bit (its Gemm sums in order): a fixture shard", async () => {
    const dir = join(import.meta.dirname, "../fixtures/shard-model-seq/sharded");
    const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
    const s = m.shards[1];
    const n = s.rows[1] - s.rows[0];
    const d = m.graphs.step.outputs[1].shape[1] as number;
    const weights = new Uint8Array(readFileSync(join(dir, s.weights.file)));
    const t = buildScan(kernel, weights, { n, dim: d, dtype: s.table.dtype, table: s.table.offset, bias: s.table.bias, norm: s.table.norm });
    const r = rng(9);
    await withOrt(await compileOrtWasm(), async (o: typeof ort) => {
      const session = await o.InferenceSession.create(readFileSync(join(dir, s.rank.file)), { executionProviders: ["wasm"], externalData: [{ path: s.weights.file, data: weights }] });
      for (let trial = 0; trial < 8; trial++) {
        const similar = trial % 2;
        const q = Float32Array.from({ length: d }, () => (r() - 0.5) * 4);
        const bits = new Uint8Array((n + 7) >> 3);
        const mask = new Uint8Array(n);
        for (let j = 0; j < n; j++) if (trial >= 4 && r() < 0.4) (mask[j] = 1), (bits[j >> 3] = bits[j >> 3]! | (1 << (j & 7)));
        const free = n - mask.reduce((a, b) => a + b, 0);
        const out = await session.run({
          q: new o.Tensor("float32", q, [1, d]),
          mask: new o.Tensor("bool", mask, [1, n]),
          similar: new o.Tensor("float32", Float32Array.of(similar), [1]),
          k: new o.Tensor("int64", BigInt64Array.of(BigInt(free)), [1]),
        });
        const got = scanTop(t, q, bits, free, similar === 1);
        expect(Array.from(got.scores)).toEqual(Array.from(out.scores!.data as Float32Array));
        expect(Array.from(got.rows)).toEqual(Array.from(out.indices!.data as BigInt64Array, Number));
      }
      await session.release();
    });
  });

  it("runs the committed kernel, which is the build of its source", async () => {
    const built = await assemble(readFileSync(KERNEL_WAT, "utf8"));
    expect(Buffer.from(built).equals(readFileSync(KERNEL_WASM))).toBe(true);
  });
});
