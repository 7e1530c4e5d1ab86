/**
 * Model files uploaded in parts: a file larger than one request body (MAX_MODEL_BODY_BYTES, at
 * most Cloudflare's 100 MB) is sent as numbered parts into an R2 multipart upload, each part
 * checked against its own SHA-256 as it arrives and the whole file against its SHA-256 once the
 * last part is in. The upload's state lives beside the version's files in R2 (markers under
 * `<version>/.parts/`, a name no model file can take): which multipart upload, how many parts of
 * what size, the whole file's checksum, and one marker per stored part with its etag. Any refusal
 * abandons the version's whole upload, as a refused single-body file does (src/domain/models.ts).
 */
import { ApiError } from "../errors";
import { versionPrefix } from "../model/registry";
import { FILE_RE, VERSION_RE, type RegistryDeps, bad, getVersion, needBucket, removeFiles, sha256Hex, storedSha256 } from "./models";

/** R2's smallest part (every part but the last), bytes. */
export const MIN_PART_BYTES = 5 * 2 ** 20;
/** R2's most parts in one multipart upload. */
export const MAX_PARTS = 10_000;

const PARTS = ".parts";
const markerOf = (version: string, file: string) => `${versionPrefix(version)}/${PARTS}/${file}`;
const partMarker = (version: string, file: string, n: number) => `${markerOf(version, file)}.${String(n).padStart(5, "0")}`;

/** Whether an R2 key is one of the bookkeeping markers of an upload in parts (not a model file). */
export function isPartMarker(key: string): boolean {
  return key.includes(`/${PARTS}/`);
}

/** One part of a file being uploaded in parts (1-based `part` of `parts`). */
export interface PartUpload {
  version: string;
  file: string;
  part: number;
  parts: number;
  /** The part's SHA-256 (hex). */
  partSha256: string;
  /** The whole file's SHA-256 (hex), the same on every part. */
  fileSha256: string;
  /** The part's bytes. */
  body: () => Promise<ArrayBuffer>;
  /** The request's content-length, when given (checked before the body is read). */
  declared?: number;
}

/** The answer to a part: where the file's upload stands; `sha256`/`bytes` once it is complete. */
export type PartResult =
  | { complete: false; part: number; parts: number; received: number }
  | { complete: true; part: number; parts: number; received: number; bytes: number; sha256: string };

interface Plan {
  uploadId: string;
  parts: number;
  partBytes: number;
  sha256: string;
}

async function planOf(bucket: R2Bucket, version: string, file: string): Promise<Plan | null> {
  const head = await bucket.head(markerOf(version, file));
  const m = head?.customMetadata;
  if (!m?.upload_id) return null;
  return { uploadId: m.upload_id, parts: Number(m.parts), partBytes: Number(m.part_bytes), sha256: m.sha256 ?? "" };
}

/** Abort the unfinished multipart uploads of a version's files (before its files are removed). */
export async function abortParts(bucket: R2Bucket, version: string): Promise<void> {
  let cursor: string | undefined;
  do {
    const listed = await bucket.list({ prefix: `${versionPrefix(version)}/${PARTS}/`, include: ["customMetadata"], ...(cursor ? { cursor } : {}) });
    for (const o of listed.objects) {
      const id = o.customMetadata?.upload_id;
      if (id) await bucket.resumeMultipartUpload(o.key.replace(`/${PARTS}/`, "/"), id).abort().catch(() => undefined);
    }
    cursor = listed.truncated ? listed.cursor : undefined;
  } while (cursor);
}

async function partMarkers(bucket: R2Bucket, version: string, file: string): Promise<R2Object[]> {
  const out: R2Object[] = [];
  let cursor: string | undefined;
  do {
    const listed = await bucket.list({ prefix: `${markerOf(version, file)}.`, include: ["customMetadata"], ...(cursor ? { cursor } : {}) });
    out.push(...listed.objects);
    cursor = listed.truncated ? listed.cursor : undefined;
  } while (cursor);
  return out;
}

/**
 * Store one part of a model file sent in parts. Part 1 starts the file's upload (a file started
 * before is started over); the others may come in any order, one at a time, with the same `parts`
 * and `fileSha256`. Every part but the last has part 1's size (at least 5 MiB, R2's rule); each is
 * at most `maxBodyBytes`, and the whole file at most `maxFileBytes` and, for the weights, the size
 * the stored manifest gives them. The part that completes the set completes the file and checks
 * its SHA-256 (streamed). Refusals: 400 (malformed), 409 (version registered; a part before part 1
 * or of a different plan), 413 (too large), 422 (a checksum or size that does not match): the
 * 413/422 ones abandon the version's upload, every file stored so far removed.
 */
export async function putFilePart(deps: RegistryDeps & { maxBodyBytes?: number }, p: PartUpload): Promise<PartResult> {
  const { version, file, part, parts } = p;
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  if (!FILE_RE.test(file)) throw bad(400, "invalid_request", "file: letters, digits, '.', '_' or '-', up to 64 characters", "file");
  if (file === "manifest.json") throw bad(400, "invalid_request", "manifest.json is sent whole (PUT .../files/manifest.json): it is checked as it arrives", "file");
  if (!Number.isInteger(parts) || parts < 1 || parts > MAX_PARTS) throw bad(400, "invalid_request", `header x-upload-parts: the number of parts, 1 to ${MAX_PARTS}`, "header.x-upload-parts");
  if (!Number.isInteger(part) || part < 1 || part > parts) throw bad(400, "invalid_request", `part: 1 to ${parts} (x-upload-parts)`, "part");
  for (const [h, v] of [["x-content-sha256", p.partSha256], ["x-file-sha256", p.fileSha256]] as const) {
    if (!/^[0-9a-f]{64}$/.test(v)) throw bad(400, "invalid_request", `header ${h}: a SHA-256 as 64 lowercase hex digits`, `header.${h}`);
  }
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is already registered; versions are immutable`, "version");
  const maxFile = deps.maxFileBytes ?? Number.POSITIVE_INFINITY;
  const maxBody = deps.maxBodyBytes ?? Number.POSITIVE_INFINITY;
  const key = `${versionPrefix(version)}/${file}`;
  try {
    // The weights' size as the stored manifest gives it (R2 metadata), as for a file sent whole.
    const manifest = await bucket.head(`${versionPrefix(version)}/manifest.json`);
    const want = manifest?.customMetadata?.weights_file === file ? Number(manifest.customMetadata.weights_bytes) : undefined;
    if (p.declared !== undefined && p.declared > maxBody) {
      throw bad(413, "body_too_large", `part ${part} of ${file} is ${p.declared} bytes, over MAX_MODEL_BODY_BYTES (${maxBody})`, "body");
    }
    let plan = await planOf(bucket, version, file);
    if (part === 1) {
      if (plan) await bucket.resumeMultipartUpload(key, plan.uploadId).abort().catch(() => undefined);
      const old = await partMarkers(bucket, version, file);
      if (old.length) await bucket.delete(old.map((o) => o.key));
      plan = null;
    } else if (!plan) {
      throw bad(409, "upload_not_started", `${file}: part 1 starts an upload in parts; send it first`, "part");
    } else if (plan.parts !== parts || plan.sha256 !== p.fileSha256) {
      throw bad(409, "upload_mismatch", `${file} is being uploaded as ${plan.parts} parts of SHA-256 ${plan.sha256.slice(0, 12)}…; this part says ${parts} parts of ${p.fileSha256.slice(0, 12)}… (send part 1 again to start over)`, "part");
    }
    const bytes = await p.body();
    const n = bytes.byteLength;
    if (n > maxBody) throw bad(413, "body_too_large", `part ${part} of ${file} is ${n} bytes, over MAX_MODEL_BODY_BYTES (${maxBody})`, "body");
    const size = plan?.partBytes ?? n; // every part but the last: part 1's size
    if (part < parts && n !== size) throw bad(422, "size_mismatch", `part ${part} of ${file} is ${n} bytes; every part but the last has part 1's ${size}`, "body");
    if (part < parts && n < MIN_PART_BYTES) throw bad(422, "size_mismatch", `part ${part} of ${file} is ${n} bytes; every part but the last is at least ${MIN_PART_BYTES} (5 MiB)`, "body");
    if (part === parts && (n === 0 || n > size)) throw bad(422, "size_mismatch", `the last part of ${file} is ${n} bytes; it holds 1 to ${size}`, "body");
    // The whole file's size lies in ((parts - 1) x size, parts x size]: checked as soon as it is known.
    const lo = (parts - 1) * size + 1;
    const hi = parts * size;
    if (lo > maxFile) throw bad(413, "file_too_large", `${file} in ${parts} parts of ${size} bytes is over MAX_MODEL_FILE_BYTES (${maxFile})`, "body");
    if (want !== undefined && (want < lo || want > hi)) {
      throw bad(422, "size_mismatch", `${file} in ${parts} parts of ${size} bytes cannot be the ${want} bytes the uploaded manifest.json says (manifest.weights.bytes)`, "body");
    }
    const sum = await sha256Hex(bytes);
    if (sum !== p.partSha256) throw bad(422, "checksum_mismatch", `part ${part} of ${file}: the body's SHA-256 is ${sum}, the upload says ${p.partSha256}`, "body");

    if (!plan) {
      const started = await bucket.createMultipartUpload(key, { customMetadata: { sha256: p.fileSha256 } });
      plan = { uploadId: started.uploadId, parts, partBytes: n, sha256: p.fileSha256 };
      await bucket.put(markerOf(version, file), null, {
        customMetadata: { upload_id: plan.uploadId, parts: String(parts), part_bytes: String(n), sha256: p.fileSha256 },
      });
    }
    const upload = bucket.resumeMultipartUpload(key, plan.uploadId);
    const stored = await upload.uploadPart(part, bytes);
    await bucket.put(partMarker(version, file, part), null, { customMetadata: { etag: stored.etag, bytes: String(n) } });
    const markers = await partMarkers(bucket, version, file);
    if (markers.length < parts) return { complete: false, part, parts, received: markers.length };

    const done = await upload.complete(
      markers.map((m) => ({ partNumber: Number(m.key.slice(m.key.lastIndexOf(".") + 1)), etag: m.customMetadata!.etag! })).sort((a, b) => a.partNumber - b.partNumber),
    );
    await bucket.delete([markerOf(version, file), ...markers.map((m) => m.key)]);
    if (done.size > maxFile) throw bad(413, "file_too_large", `${file} is ${done.size} bytes, over MAX_MODEL_FILE_BYTES (${maxFile})`, "body");
    if (want !== undefined && done.size !== want) {
      throw bad(422, "size_mismatch", `${file} is ${done.size} bytes, the uploaded manifest.json says ${want} (manifest.weights.bytes)`, "body");
    }
    const whole = await storedSha256(bucket, key);
    if (whole !== p.fileSha256) throw bad(422, "checksum_mismatch", `${file}: its ${parts} parts hash to ${whole}, the upload says ${p.fileSha256} (x-file-sha256)`, "header.x-file-sha256");
    return { complete: true, part, parts, received: parts, bytes: done.size, sha256: whole };
  } catch (e) {
    if (e instanceof ApiError && (e.status === 413 || e.status === 422)) {
      const removed = await removeFiles(bucket, version).catch(() => 0);
      const note = `; the upload of ${version} is abandoned${removed ? `: its ${removed} stored file${removed === 1 ? " was" : "s were"} removed` : ""}`;
      throw new ApiError(e.status, e.code, `${e.message}${note}`, e.extra);
    }
    throw e;
  }
}
