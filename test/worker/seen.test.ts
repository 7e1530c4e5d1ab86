import { describe, expect, it } from "vitest";
import { emptySeen, maskSeenRows, rowPositions, SEEN_BITS, SEEN_CAPACITY, SEEN_GEN_BYTES, SEEN_K, seenAdd, seenHas, seenHasAt, seenPositions } from "../../src/state/seen";
import { RowMask } from "../../src/model/row-mask";
import golden from "../fixtures/seen-golden.json";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

describe("seen-items filter", () => {
  it("uses the constants the Python harness measures with (models/training/seen.py)", () => {
    expect([SEEN_GEN_BYTES, SEEN_K, SEEN_CAPACITY]).toEqual([golden.gen_bytes, golden.k, golden.capacity]);
  });

  it("hashes ids to the same bit positions as the Python harness, non-ASCII ids included", () => {
    for (const [id, pos] of Object.entries(golden.positions)) expect(Array.from(seenPositions(id)), id).toEqual(pos);
  });

  it("holds exactly the Python filter's bytes after the same 702 ids (two rotations)", () => {
    const f = emptySeen();
    for (const id of golden.ids) seenAdd(f, id);
    expect(f.count).toBe(golden.count);
    expect(hex(f.bits)).toBe(golden.bytes_hex);
    for (const [id, has] of Object.entries(golden.has)) expect(seenHas(f, id), id).toBe(has);
  });

  it("remembers at least the last SEEN_CAPACITY distinct items and forgets the oldest after two rotations", () => {
    const f = emptySeen();
    const n = 2 * SEEN_CAPACITY + 50;
    for (let i = 0; i < n; i++) seenAdd(f, `sku-${i}`);
    for (let i = n - SEEN_CAPACITY; i < n; i++) expect(seenHas(f, `sku-${i}`)).toBe(true);
    const forgotten = Array.from({ length: 40 }, (_, i) => seenHas(f, `sku-${i}`)).filter(Boolean).length;
    expect(forgotten).toBeLessThan(4); // false positives only (~0.5% each)
  });

  it("leaves out few other items: under 2% false positives with both generations full", () => {
    const f = emptySeen();
    for (let i = 0; i < 2 * SEEN_CAPACITY - 1; i++) seenAdd(f, `sku-${i}`);
    let fp = 0;
    for (let i = 0; i < 5000; i++) if (seenHas(f, `other-${i}`)) fp++;
    expect(fp / 5000).toBeLessThan(0.02);
  });

  it("answers per embedding row as it does per id, row 0 never", () => {
    const ids = ["a", "b", "c", "d"];
    const model = { rows: ids.length + 1, idOf: (r: number) => ids[r - 1]! };
    const f = emptySeen();
    seenAdd(f, "b");
    seenAdd(f, "d");
    const pos = rowPositions(model);
    expect(pos.length).toBe(5 * SEEN_K);
    expect([1, 2, 3, 4].map((r) => seenHasAt(f, pos, r * SEEN_K))).toEqual([false, true, false, true]);
    const mask = new RowMask(5);
    mask.set(3); // already left out by another rule: stays so
    maskSeenRows(f, pos, mask);
    expect(Array.from(mask.toFloats())).toEqual([0, 0, 1, 1, 1]);
    expect(Math.max(...pos)).toBeLessThan(SEEN_BITS);
  });
});
