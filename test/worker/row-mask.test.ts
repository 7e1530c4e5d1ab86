/**
 * RowMask (src/model/row-mask.ts): the bit mask of rows a ranking never returns, checked against a
 * plain array of booleans over masks of every length around byte boundaries (fixed seed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RowMask } from "../../src/model/row-mask";

const masks = fc.integer({ min: 1, max: 70 }).chain((rows) => fc.tuple(fc.constant(rows), fc.array(fc.boolean(), { minLength: rows, maxLength: rows })));

function build(set: boolean[]): RowMask {
  const m = new RowMask(set.length);
  set.forEach((s, r) => s && m.set(r));
  return m;
}

describe("a row mask", () => {
  it("holds exactly the rows set, counts the free ones and converts to and from a float mask", () => {
    fc.assert(
      fc.property(masks, ([rows, set]) => {
        const m = build(set);
        expect(Array.from({ length: rows }, (_, r) => m.has(r))).toEqual(set);
        expect(m.free()).toBe(set.filter((s) => !s).length);
        expect(Array.from(m.toFloats())).toEqual(set.map((s) => (s ? 1 : 0)));
        expect(RowMask.fromFloats(m.toFloats()).bits).toEqual(m.bits);
      }),
      { seed: 18, numRuns: 300 },
    );
  });

  it("gives any row range its own bits, aligned or not, with the rows it leaves free", () => {
    fc.assert(
      fc.property(
        masks.chain(([rows, set]) => fc.tuple(fc.constant(set), fc.integer({ min: 0, max: rows - 1 })).chain(([s, lo]) => fc.tuple(fc.constant(s), fc.constant(lo), fc.integer({ min: lo + 1, max: rows })))),
        ([set, lo, hi]) => {
          const { bits, free } = build(set).range(lo, hi);
          expect(bits.length).toBe((hi - lo + 7) >> 3);
          const part = new RowMask(hi - lo, bits);
          expect(Array.from({ length: hi - lo }, (_, j) => part.has(j))).toEqual(set.slice(lo, hi));
          expect(free).toBe(set.slice(lo, hi).filter((s) => !s).length);
          // nothing past the range's last row
          if ((hi - lo) & 7) expect(bits[bits.length - 1]! >> ((hi - lo) & 7)).toBe(0);
        },
      ),
      { seed: 18, numRuns: 300 },
    );
  });

  it("starts full with no bit past the last row, clears, adds and copies", () => {
    for (const rows of [2, 7, 8, 9, 16, 61]) {
      const m = RowMask.full(rows);
      expect(m.free()).toBe(0);
      m.clear(rows - 1);
      m.clear(rows + 3); // outside: ignored
      expect(m.free()).toBe(1);
      const c = m.copy();
      c.clear(0);
      expect(m.has(0)).toBe(true);
      const other = new RowMask(rows);
      other.set(rows - 1);
      c.add(other);
      expect(c.has(rows - 1) && !c.has(0)).toBe(true);
      expect(() => c.add(new RowMask(rows + 1))).toThrow(/rows/);
    }
  });
});
