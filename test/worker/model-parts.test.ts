/**
 * Model files larger than one request body, sent in parts (src/domain/model-parts.ts) on real parts
 * (miniflare's R2 multipart uploads, D1, the ItemShard Durable Objects): the committed
 * diginetica-sharded model is uploaded with its weights over the body limit in parts and stages
 * (checksums, graphs and golden vectors through its shards); a part out of plan is refused without
 * harm, and a part or a file that does not match its checksum abandons the upload, leaving nothing
 * in R2.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import app from "../../src/index";
import { DIG_SHARDED_FILES, digManifest } from "./dig-sharded";
import { MIN_PART_BYTES } from "../../src/domain/model-parts";
import { KEY } from "./helpers";

const MiB = 2 ** 20;
/** The worker's bindings with a 5 MiB body limit, so the 6 MB weights must go in parts. */
const LIMITED = { ...env, MAX_MODEL_BODY_BYTES: String(5 * MiB) } as unknown as Env;
const bucket = (env as unknown as { MODEL_BUCKET: R2Bucket }).MODEL_BUCKET;

async function sha(bytes: Uint8Array): Promise<string> {
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (x) => x.toString(16).padStart(2, "0")).join("");
}

async function call(method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}) {
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
  const init: RequestInit = { method, headers: { authorization: `Bearer ${KEY}`, ...headers } };
  if (body !== undefined) init.body = body;
  const res = await app.fetch(new Request(`http://worker.test/v1/admin/models/${path}`, init), LIMITED, ctx);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const putWhole = async (version: string, file: string, bytes: Uint8Array) =>
  call("PUT", `${version}/files/${file}`, bytes, { "x-content-sha256": await sha(bytes), "content-type": "application/octet-stream" });

/** Part `n` (1-based) of `bytes` cut in parts of `size`, claiming `fileSha` for the whole. */
async function putPart(version: string, file: string, bytes: Uint8Array, n: number, size: number, o: { parts?: number; fileSha?: string; partSha?: string } = {}) {
  const part = bytes.subarray((n - 1) * size, Math.min(bytes.byteLength, n * size));
  return call("PUT", `${version}/files/${file}/parts/${n}`, part, {
    "x-content-sha256": o.partSha ?? (await sha(part)),
    "x-file-sha256": o.fileSha ?? (await sha(bytes)),
    "x-upload-parts": String(o.parts ?? Math.ceil(bytes.byteLength / size)),
    "content-type": "application/octet-stream",
  });
}

async function stored(version: string): Promise<string[]> {
  return (await bucket.list({ prefix: `models/${version}/` })).objects.map((o) => o.key);
}

const u8 = (b: ArrayBuffer | string) => (typeof b === "string" ? new TextEncoder().encode(b) : new Uint8Array(b));
const weights = u8(DIG_SHARDED_FILES["weights.bin"]!);
const manifestBytes = u8(JSON.stringify(digManifest));

describe("model files sent in parts", { timeout: 120_000 }, () => {
  it("uploads diginetica-sharded with its weights over the body limit in parts, and stages it", async () => {
    const version = digManifest.version;
    expect(weights.byteLength).toBeGreaterThan(5 * MiB);
    expect((await putWhole(version, "manifest.json", manifestBytes)).status).toBe(200);
    // One body over MAX_MODEL_BODY_BYTES is refused, and says how to send it.
    const whole = await putWhole(version, "weights.bin", weights);
    expect(whole.status).toBe(413);
    expect(whole.body.error.code).toBe("body_too_large");
    expect(whole.body.error.message).toMatch(/in parts/);

    const first = await putPart(version, "weights.bin", weights, 1, MIN_PART_BYTES);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ part: 1, parts: 2, received: 1, complete: false });
    const last = await putPart(version, "weights.bin", weights, 2, MIN_PART_BYTES);
    expect(last.status, JSON.stringify(last.body)).toBe(200);
    expect(last.body).toMatchObject({ part: 2, parts: 2, received: 2, complete: true, bytes: weights.byteLength, sha256: digManifest.weights.sha256 });
    // Only model files are left: the upload's bookkeeping is gone.
    expect((await stored(version)).filter((k) => k.includes("/.parts/"))).toEqual([]);

    const sums: Record<string, string> = { "manifest.json": await sha(manifestBytes), "weights.bin": last.body.sha256 };
    const rest = Object.entries(DIG_SHARDED_FILES).filter(([name]) => name !== "manifest.json" && name !== "weights.bin");
    for (const [name, body] of rest) {
      const r = await putWhole(version, name, u8(body));
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      sums[name] = r.body.sha256;
    }
    const staged = await call("POST", version, JSON.stringify({ files: sums }), { "content-type": "application/json" });
    expect(staged.status, JSON.stringify(staged.body)).toBe(201);
    expect(staged.body).toMatchObject({ version, status: "staged", files: { "weights.bin": { bytes: weights.byteLength, sha256: digManifest.weights.sha256 } } });
  });

  it("refuses parts out of plan without storing them, and starts over from part 1", async () => {
    const version = "parts-plan";
    const file = new Uint8Array(MIN_PART_BYTES + 1000).map((_, i) => (i * 7) & 255);
    const early = await putPart(version, "weights.bin", file, 2, MIN_PART_BYTES);
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("upload_not_started");
    expect(await stored(version)).toEqual([]);
    expect((await putPart(version, "weights.bin", file, 1, MIN_PART_BYTES)).status).toBe(200);
    const other = await putPart(version, "weights.bin", file, 2, MIN_PART_BYTES, { parts: 3 });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("upload_mismatch");
    const manifestInParts = await putPart(version, "manifest.json", file, 1, MIN_PART_BYTES);
    expect(manifestInParts.status).toBe(400);
    // Part 1 again starts over; the file then completes from its two parts.
    expect((await putPart(version, "weights.bin", file, 1, MIN_PART_BYTES)).body).toMatchObject({ received: 1, complete: false });
    const done = await putPart(version, "weights.bin", file, 2, MIN_PART_BYTES);
    expect(done.body).toMatchObject({ complete: true, bytes: file.byteLength, sha256: await sha(file) });
    const obj = await bucket.get(`models/${version}/weights.bin`);
    expect(await sha(new Uint8Array(await obj!.arrayBuffer()))).toBe(await sha(file));
  });

  it("abandons the upload when a part is under R2's smallest size or does not match its checksum", async () => {
    const version = "parts-bad";
    const file = new Uint8Array(2 * MIN_PART_BYTES).map((_, i) => (i * 13) & 255);
    expect((await putWhole(version, "step.onnx", u8(DIG_SHARDED_FILES["step.onnx"]!))).status).toBe(200);
    const small = await putPart(version, "weights.bin", file, 1, MiB);
    expect(small.status).toBe(422);
    expect(small.body.error).toMatchObject({ code: "size_mismatch" });
    expect(small.body.error.message).toMatch(/its 1 stored file was removed/);
    expect(await stored(version)).toEqual([]);

    expect((await putPart(version, "weights.bin", file, 1, MIN_PART_BYTES)).status).toBe(200);
    const corrupt = await putPart(version, "weights.bin", file, 2, MIN_PART_BYTES, { partSha: "0".repeat(64) });
    expect(corrupt.status).toBe(422);
    expect(corrupt.body.error.code).toBe("checksum_mismatch");
    expect(await stored(version)).toEqual([]);
  });

  it("abandons the upload when the completed file does not hash to x-file-sha256", async () => {
    const version = "parts-whole";
    const file = new Uint8Array(MIN_PART_BYTES + 10).map((_, i) => (i * 3) & 255);
    const wrong = "ab".repeat(32);
    expect((await putPart(version, "weights.bin", file, 1, MIN_PART_BYTES, { fileSha: wrong })).status).toBe(200);
    const last = await putPart(version, "weights.bin", file, 2, MIN_PART_BYTES, { fileSha: wrong });
    expect(last.status).toBe(422);
    expect(last.body.error).toMatchObject({ code: "checksum_mismatch", field: "header.x-file-sha256" });
    expect(await stored(version)).toEqual([]);
  });

  it("checks the weights' size against the uploaded manifest from the first part", async () => {
    const version = "parts-size";
    const m = JSON.stringify({ ...digManifest, version, weights: { ...digManifest.weights, bytes: 3 * MIN_PART_BYTES } });
    expect((await putWhole(version, "manifest.json", u8(m))).status).toBe(200);
    const r = await putPart(version, "weights.bin", weights, 1, MIN_PART_BYTES);
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe("size_mismatch");
    expect(await stored(version)).toEqual([]);
  });
});
