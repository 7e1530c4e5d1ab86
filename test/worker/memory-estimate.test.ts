/**
 * The registry's memory estimate against measured memory: test/fixtures/model-memory.json is what
 * scripts/bench-model.ts measured (its `command` field says how; each model loaded in a fresh Node
 * process exactly as the worker loads it: JS heap, array buffers and onnxruntime's wasm memory),
 * for synthetic models built with the project's own export (10k to 1M items, with and without the
 * similar graph, GRURec and SeqRec, float16 with int8 tables and float32) and the committed models.
 * The estimate is computed here from the same file sizes and manifest fields the registry has.
 */
import { describe, expect, it } from "vitest";
import table from "../fixtures/model-memory.json";
import { memoryEstimate } from "../../src/domain/models";
import { loadConfig } from "../../src/config";

type Row = (typeof table.rows)[number];
const MiB = 2 ** 20;
const estimate = (r: Row) => memoryEstimate(r.files as Record<string, { bytes: number }>, r.manifest as Parameters<typeof memoryEstimate>[1]);

describe("memory estimate of a model version", () => {
  it("was measured over the sizes a shop needs, up to a million items", () => {
    const items = table.rows.map((r) => r.items);
    expect(Math.max(...items)).toBeGreaterThanOrEqual(1_000_000);
    expect(table.rows.some((r) => r.similar)).toBe(true);
    expect(table.rows.some((r) => r.model === "models/diginetica")).toBe(true);
    // the worker's part of sharded models, up to a million items (its shards: bench:scale)
    expect(table.rows.some((r) => "shards" in r.manifest && r.items >= 1_000_000)).toBe(true);
    expect(table.command).toMatch(/scripts\/bench-model\.ts --table/);
  });

  it.each(table.rows.map((r) => [r.model, r] as const))("is within 15%% of what %s measured, settled and at the peak of its load", (_, r) => {
    const e = estimate(r);
    const settled = (e.runtime + e.resident) / MiB;
    const peak = (e.runtime + e.resident + e.transient) / MiB;
    expect(settled / r.measured_mib.settled).toBeGreaterThan(0.85);
    expect(settled / r.measured_mib.settled).toBeLessThan(1.15);
    expect(peak / r.measured_mib.peak).toBeGreaterThan(0.85);
    expect(peak / r.measured_mib.peak).toBeLessThan(1.15);
  });

  it("counts onnxruntime's base once per isolate, apart from every version, as measured", () => {
    for (const r of table.rows) {
      const e = estimate(r);
      expect(e.runtime / MiB / r.measured_mib.runtime).toBeGreaterThan(0.85);
      expect(e.runtime / MiB / r.measured_mib.runtime).toBeLessThan(1.15);
    }
  });

  it("lets the committed diginetica model load from the default budget, though two of it do not fit", () => {
    const budget = loadConfig({}).MODEL_MEMORY_BUDGET_MB * MiB;
    const e = estimate(table.rows.find((r) => r.model === "models/diginetica")!);
    expect(e.runtime + e.resident + e.transient).toBeLessThanOrEqual(budget);
    // Replacing one diginetica version by another therefore has to retire the first (activation).
    expect(e.runtime + 2 * e.resident + e.transient).toBeGreaterThan(budget);
  });

  it("costs the similar graph far more than the weights it shares", () => {
    const bySpec = (m: string) => table.rows.find((r) => r.model === m)!;
    const without = estimate(bySpec("10000x64-similar"));
    const withSimilar = estimate(bySpec("10000x64"));
    const weights = bySpec("10000x64").manifest.weights.expanded_bytes!;
    // What the measurement shows (and the old 2x-the-weights estimate missed).
    const measured = (bySpec("10000x64").measured_mib.settled - bySpec("10000x64-similar").measured_mib.settled) * MiB;
    expect(measured).toBeGreaterThan(4 * weights);
    expect(withSimilar.resident - without.resident).toBeGreaterThan(4 * weights);
  });
});
