import { describe, expect, it } from "vitest";
import { crc32, decodeState, encodeState, fromBase64, StateCodecError, toBase64, type UserState } from "../../src/state/codec";
import { emptySeen, SEEN_GEN_BYTES, seenAdd, seenHas } from "../../src/state/seen";

const V = "model-a";
function sample(): UserState {
  const vector = new Float32Array(128).map((_, i) => Math.sin(i) * 0.5);
  const seen = emptySeen();
  for (const id of ["sku-1", "sku-2", "película"]) seenAdd(seen, id);
  return { seq: 7, eventCount: 42, sessionCount: 3, lastEventMs: 1_763_000_000_123, sessionStartMs: 1_762_999_000_000, updatedAtMs: 1_763_000_000_456, ringCapacity: 20, ring: [5, 9, 1], vector, seen };
}

/** The same state as format 1 wrote it (52-byte header, no seen filter). */
function formatOne(s: UserState): Uint8Array {
  const v2 = encodeState(s, V);
  const body = 4 * s.ringCapacity + 4 * s.vector.length;
  const out = new Uint8Array(52 + body + 4);
  out.set(v2.subarray(0, 52));
  out.set(v2.subarray(56, 56 + body), 52);
  const v = new DataView(out.buffer);
  v.setUint16(4, 1, true);
  v.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

describe("state codec", () => {
  it("round-trips every field through bytes and base64", () => {
    const s = sample();
    const back = decodeState(fromBase64(toBase64(encodeState(s, V))), V, 128);
    expect(back).toEqual(s);
  });

  it("stays within the 2 KB budget: a 148-float state, a 20-item ring and the seen filter, even as base64", () => {
    const s = { ...sample(), vector: new Float32Array(148) };
    expect(encodeState(s, V).length).toBe(56 + 80 + 592 + 2 * SEEN_GEN_BYTES + 4);
    expect(toBase64(encodeState(s, V)).length).toBeLessThanOrEqual(2048);
  });

  it("reads a format-1 record (before the seen filter) with an empty filter", () => {
    const s = sample();
    const back = decodeState(formatOne(s), V, 128);
    expect(back).toEqual({ ...s, seen: emptySeen() });
    expect(seenHas(back.seen, "sku-1")).toBe(false);
  });

  it("rejects a record with a flipped byte as corrupt", () => {
    const b = encodeState(sample(), V);
    b[100] = b[100]! ^ 0xff;
    expect(() => decodeState(b, V, 128)).toThrow(/checksum/);
  });

  it("rejects a truncated record", () => {
    const b = encodeState(sample(), V);
    expect(() => decodeState(b.subarray(0, b.length - 8), V, 128)).toThrow(StateCodecError);
  });

  it("rejects a record written for another model version", () => {
    const b = encodeState(sample(), "model-b");
    expect(() => decodeState(b, V, 128)).toThrow(/another model version/);
  });

  it("rejects a record of a foreign format version", () => {
    const b = encodeState(sample(), V);
    new DataView(b.buffer).setUint16(4, 3, true);
    expect(() => decodeState(b, V, 128)).toThrow(/format 3 is not supported/);
  });

  it("rejects bytes that are not a state record at all", () => {
    expect(() => decodeState(new TextEncoder().encode("not a record ".repeat(20)), V, 128)).toThrow(/magic/);
    expect(() => fromBase64("***")).toThrow(/base64/);
  });

  it("rejects a record whose state size differs from the model's", () => {
    expect(() => decodeState(encodeState(sample(), V), V, 64)).toThrow(/state size/);
  });
});
