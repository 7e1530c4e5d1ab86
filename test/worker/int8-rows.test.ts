// Int8 item tables: float16 rounding and the expansion of a packed weights file, by hand.
import { describe, expect, it } from "vitest";
import { expandInt8Rows, toHalfBits } from "../../src/model/int8-rows";

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
