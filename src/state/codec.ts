/**
 * Binary record of one user's state for one model version, stored base64 in Redis.
 *
 * Layout (little endian), format version 2:
 *   0  u32  magic "GRUS" (0x53555247)
 *   4  u16  format version (2)
 *   6  u16  state size S (floats)
 *   8  u32  model fingerprint (FNV-1a of the model version string)
 *  12  u32  seq: state version, +1 on every write
 *  16  u32  event count
 *  20  u32  session count
 *  24  f64  last event time (ms since epoch)
 *  32  f64  session start time (ms)
 *  40  f64  updated at (ms, wall clock of the write)
 *  48  u16  ring capacity R
 *  50  u16  ring length n (most recent first)
 *  52  u16  seen-filter bytes per generation G (seen.ts; 384)
 *  54  u16  items in the seen filter's current generation
 *  56  u32 x R  ring: embedding rows of the last distinct items
 *  56+4R  f32 x S  GRU state
 *  56+4R+4S  u8 x 2G  seen filter: current generation, then previous
 *  end-4  u32  CRC-32 of everything before it
 * Format 1 (no seen filter: 52-byte header, ring, state, CRC) is still read, with an empty filter;
 * the next write stores format 2.
 */
import { emptySeen, SEEN_GEN_BYTES, type SeenFilter } from "./seen";

export const MAGIC = 0x53555247;
export const FORMAT_VERSION = 2;
const HEADER_V1 = 52;
const HEADER = 56;

export interface UserState {
  /** State version, incremented by every write. */
  seq: number;
  eventCount: number;
  sessionCount: number;
  lastEventMs: number;
  sessionStartMs: number;
  updatedAtMs: number;
  ringCapacity: number;
  /** Embedding rows of the most recent distinct items, most recent first. */
  ring: number[];
  /** The GRU state vector (manifest `state.size` floats). */
  vector: Float32Array;
  /** Items the user had, across sessions (seen.ts): what `exclude_seen` leaves out. */
  seen: SeenFilter;
}

/** A stored record could not be used: corrupt, foreign format, or for another model. */
export class StateCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateCodecError";
  }
}

/** FNV-1a 32-bit of a string (model version fingerprint). */
export function fingerprint(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function encodeState(s: UserState, modelVersion: string): Uint8Array {
  const S = s.vector.length;
  const R = s.ringCapacity;
  const G = SEEN_GEN_BYTES;
  if (s.ring.length > R) throw new StateCodecError(`ring holds ${s.ring.length} items, capacity is ${R}`);
  if (s.seen.bits.length !== 2 * G) throw new StateCodecError(`seen filter holds ${s.seen.bits.length} bytes, expected ${2 * G}`);
  const size = HEADER + 4 * R + 4 * S + 2 * G + 4;
  const buf = new ArrayBuffer(size);
  const v = new DataView(buf);
  v.setUint32(0, MAGIC, true);
  v.setUint16(4, FORMAT_VERSION, true);
  v.setUint16(6, S, true);
  v.setUint32(8, fingerprint(modelVersion), true);
  v.setUint32(12, s.seq >>> 0, true);
  v.setUint32(16, s.eventCount >>> 0, true);
  v.setUint32(20, s.sessionCount >>> 0, true);
  v.setFloat64(24, s.lastEventMs, true);
  v.setFloat64(32, s.sessionStartMs, true);
  v.setFloat64(40, s.updatedAtMs, true);
  v.setUint16(48, R, true);
  v.setUint16(50, s.ring.length, true);
  v.setUint16(52, G, true);
  v.setUint16(54, s.seen.count, true);
  s.ring.forEach((r, i) => v.setUint32(HEADER + 4 * i, r, true));
  const off = HEADER + 4 * R;
  for (let i = 0; i < S; i++) v.setFloat32(off + 4 * i, s.vector[i]!, true);
  const bytes = new Uint8Array(buf);
  bytes.set(s.seen.bits, off + 4 * S);
  v.setUint32(size - 4, crc32(bytes.subarray(0, size - 4)), true);
  return bytes;
}

export function decodeState(bytes: Uint8Array, modelVersion: string, stateSize: number): UserState {
  if (bytes.length < HEADER_V1 + 4) throw new StateCodecError(`state record too short (${bytes.length} bytes)`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(0, true) !== MAGIC) throw new StateCodecError("not a state record (bad magic)");
  const fmt = v.getUint16(4, true);
  if (fmt !== FORMAT_VERSION && fmt !== 1) throw new StateCodecError(`state record format ${fmt} is not supported (expected 1 or ${FORMAT_VERSION})`);
  const head = fmt === 1 ? HEADER_V1 : HEADER;
  if (bytes.length < head + 4) throw new StateCodecError(`state record too short (${bytes.length} bytes)`);
  const S = v.getUint16(6, true);
  const R = v.getUint16(48, true);
  const n = v.getUint16(50, true);
  const G = fmt === 1 ? 0 : v.getUint16(52, true);
  const size = head + 4 * R + 4 * S + 2 * G + 4;
  if (bytes.length !== size) throw new StateCodecError(`state record is ${bytes.length} bytes, its header implies ${size}`);
  if (crc32(bytes.subarray(0, size - 4)) !== v.getUint32(size - 4, true)) throw new StateCodecError("state record checksum mismatch (corrupt)");
  if (v.getUint32(8, true) !== fingerprint(modelVersion)) throw new StateCodecError("state record belongs to another model version");
  if (S !== stateSize) throw new StateCodecError(`state record holds ${S} floats, model state size is ${stateSize}`);
  if (n > R) throw new StateCodecError("state record ring length exceeds its capacity");
  if (G !== 0 && G !== SEEN_GEN_BYTES) throw new StateCodecError(`seen filter of ${G} bytes per generation is not supported (expected ${SEEN_GEN_BYTES})`);
  const ring: number[] = [];
  for (let i = 0; i < n; i++) ring.push(v.getUint32(head + 4 * i, true));
  const vector = new Float32Array(S);
  const off = head + 4 * R;
  for (let i = 0; i < S; i++) vector[i] = v.getFloat32(off + 4 * i, true);
  const seen = emptySeen();
  if (G) {
    seen.bits.set(bytes.subarray(off + 4 * S, off + 4 * S + 2 * G));
    seen.count = v.getUint16(54, true);
  }
  return {
    seq: v.getUint32(12, true),
    eventCount: v.getUint32(16, true),
    sessionCount: v.getUint32(20, true),
    lastEventMs: v.getFloat64(24, true),
    sessionStartMs: v.getFloat64(32, true),
    updatedAtMs: v.getFloat64(40, true),
    ringCapacity: R,
    ring,
    vector,
    seen,
  };
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  let bin: string;
  try {
    bin = atob(text);
  } catch {
    throw new StateCodecError("state record is not valid base64");
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
