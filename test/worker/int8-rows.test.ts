// Int8 item tables: float16 rounding and the expansion of a packed weights file, by hand.
import { describe, expect, it } from "vitest";
import { expandInt8Rows, fromHalfBits, toHalfBits } from "../../src/model/int8-rows";

describe("int8 item tables", () => {
  it("rounds numbers to float16 bits as IEEE round-to-nearest-even does", () => {
    expect(toHalfBits(1)).toBe(0x3c00);
    expect(toHalfBits(-2)).toBe(0xc000);
    expect(toHalfBits(0.1)).toBe(0x2e66);
    expect(toHalfBits(65504)).toBe(0x7bff);
    expect(toHalfBits(65520)).toBe(0x7c00); // halfway above the largest finite value: infinity
    expect(toHalfBits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalfBits(2 ** -26)).toBe(0x0000);
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie: to even
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: to even (up)
  });

  it("reads float16 bits back exactly: every one of the 65,536 round-trips through its value", () => {
    expect([fromHalfBits(0x3c00), fromHalfBits(0xc000), fromHalfBits(0x0001), fromHalfBits(0x7bff)]).toEqual([1, -2, 2 ** -24, 65504]);
    expect(fromHalfBits(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(fromHalfBits(0x7e00)).toBeNaN();
    let back = 0;
    for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00 && toHalfBits(fromHalfBits(h)) === h) back++;
    expect(back).toBe(0x10000 - 2 * 1024); // every finite float16 (the two exponent-31 blocks are inf/NaN)
  });

  it("rebuilds the float16 table between untouched bytes, and refuses a layout that does not add up", () => {
    // expanded: 3 bytes head | table 2 x 3 float16 (12 bytes) | 2 bytes tail = 17 bytes
    const rows = 2, cols = 3;
    const packed = new Uint8Array(3 + 6 + 2 + 8 + 2);
    packed.set([7, 8, 9], 0);
    new Int8Array(packed.buffer, 3, 6).set([127, -127, 0, 2, 4, -6]);
    const dv = new DataView(packed.buffer);
    dv.setFloat32(3 + 6 + 2, 0.5, true);
    dv.setFloat32(3 + 6 + 2 + 4, 0.25, true);
    packed.set([1, 2], 19);
    const t = [{ offset: 3, rows, cols, packed_offset: 3 }];
    const out = expandInt8Rows(packed, t, 17);
    expect([...out.subarray(0, 3)]).toEqual([7, 8, 9]);
    expect([...out.subarray(15)]).toEqual([1, 2]);
    const half = new DataView(out.buffer, 3, 12);
    const bits = [0, 1, 2, 3, 4, 5].map((i) => half.getUint16(2 * i, true));
    expect(bits).toEqual([63.5, -63.5, 0, 0.5, 1, -1.5].map(toHalfBits));
    expect(() => expandInt8Rows(packed, t, 18)).toThrow(/tail/);
    expect(() => expandInt8Rows(packed, [{ ...t[0]!, packed_offset: 4 }], 17)).toThrow(/layout/);
  });
});
