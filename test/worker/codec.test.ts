import { describe, expect, it } from "vitest";
import { decodeState, encodeState, fromBase64, StateCodecError, toBase64, type UserState } from "../../src/state/codec";

const V = "model-a";
function sample(): UserState {
  const vector = new Float32Array(128).map((_, i) => Math.sin(i) * 0.5);
  return { seq: 7, eventCount: 42, sessionCount: 3, lastEventMs: 1_763_000_000_123, sessionStartMs: 1_762_999_000_000, updatedAtMs: 1_763_000_000_456, ringCapacity: 20, ring: [5, 9, 1], vector };
}

describe("state codec", () => {
  it("round-trips every field through bytes and base64", () => {
    const s = sample();
    const back = decodeState(fromBase64(toBase64(encodeState(s, V))), V, 128);
    expect(back).toEqual(s);
  });

  it("stays compact: a 128-float state with a 20-item ring is under 700 bytes", () => {
    expect(encodeState(sample(), V).length).toBeLessThan(700);
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
    new DataView(b.buffer).setUint16(4, 2, true);
    expect(() => decodeState(b, V, 128)).toThrow(/format 2 is not supported/);
  });

  it("rejects bytes that are not a state record at all", () => {
    expect(() => decodeState(new TextEncoder().encode("not a record ".repeat(20)), V, 128)).toThrow(/magic/);
    expect(() => fromBase64("***")).toThrow(/base64/);
  });

  it("rejects a record whose state size differs from the model's", () => {
    expect(() => decodeState(encodeState(sample(), V), V, 64)).toThrow(/state size/);
  });
});
