/**
 * The parity tolerances: fp16 similar graphs get the float16 rounding bound, top-k lists may swap
 * only near-ties.
 */
import { describe, expect, it } from "vitest";
import { FP16_UNIT_ROUNDOFF, sameTopK, similarTolerance } from "../../scripts/parity-tolerance";

describe("parity tolerance", () => {
  it("keeps the golden tolerance for float32 weights and widens it to 2u + golden for float16", () => {
    expect(similarTolerance("float32", 1e-4)).toBe(1e-4);
    expect(similarTolerance(undefined, 1e-4)).toBe(1e-4);
    expect(similarTolerance("float16", 1e-4)).toBeCloseTo(2 * 2 ** -11 + 1e-4, 12);
    // the 4.6e-4 measured on fresh fp16 builds fits, the float32 tolerance does not
    expect(4.6e-4).toBeLessThan(similarTolerance("float16", 1e-4));
    expect(4.6e-4).toBeGreaterThan(similarTolerance("float32", 1e-4));
  });

  it("bounds the cosine of two float16-rounded unit vectors (random check of the derivation)", () => {
    let worst = 0;
    const f16 = (x: number) => {
      // round to float16's 11 significant bits (normal range)
      const e = Math.floor(Math.log2(Math.abs(x)));
      const q = 2 ** (e - 10);
      return Math.round(x / q) * q;
    };
    // A seeded generator (mulberry32): the same 200 pairs on every run.
    let seed = 0x9e3779b9;
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (let t = 0; t < 200; t++) {
      const a = Array.from({ length: 64 }, () => random() - 0.5);
      const b = a.map((x) => x + (random() - 0.5) * 0.1);
      const na = Math.hypot(...a), nb = Math.hypot(...b);
      const ua = a.map((x) => x / na), ub = b.map((x) => x / nb);
      const exact = ua.reduce((s, x, i) => s + x * ub[i]!, 0);
      const rounded = ua.reduce((s, x, i) => s + f16(x) * f16(ub[i]!), 0);
      worst = Math.max(worst, Math.abs(exact - rounded));
    }
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(2 * FP16_UNIT_ROUNDOFF);
  });

  it("accepts identical lists and swaps of near-ties, refuses other differences", () => {
    const ids = ["a", "b", "c", "d"];
    const g = [0.9, 0.8, 0.7995, 0.5];
    expect(sameTopK(ids, g, ["a", "b", "c", "d"], g, 1e-4)).toBe(true);
    expect(sameTopK(ids, g, ["a", "c", "b", "d"], [0.9, 0.7998, 0.7997, 0.5], 1e-3)).toBe(true);
    expect(sameTopK(ids, g, ["a", "c", "b", "d"], [0.9, 0.7998, 0.7997, 0.5], 1e-4)).toBe(false);
    expect(sameTopK(ids, g, ["b", "a", "c", "d"], g, 1e-3)).toBe(false);
    // an item beyond the golden list may take the last place only when both are at the cut-off
    expect(sameTopK(ids, g, ["a", "b", "c", "x"], [0.9, 0.8, 0.7995, 0.6], 1e-3)).toBe(false);
    expect(sameTopK(ids, [0.9, 0.8, 0.7, 0.6999], ["a", "b", "c", "x"], [0.9, 0.8, 0.7, 0.69995], 1e-4)).toBe(true);
    expect(sameTopK(ids, g, ["a", "b", "c"], g, 1e-3)).toBe(false);
    expect(sameTopK(ids, g, ["a", "a", "c", "d"], g, 1)).toBe(false);
  });
});
