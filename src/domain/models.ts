/**
 * The model registry's operations: upload (file by file, each checked against its SHA-256), stage
 * (the whole version verified: manifest, checksums, the graphs load, golden vectors reproduce),
 * activate (serve it, or run it as a shadow that every event advances), retire, and rebuild users'
 * states for a version from the event log ahead of a switch.
 *
 * Files live in R2 under `models/<version>/`; the registry rows in D1 (`models`). A version is
 * immutable once staged. Nothing here touches a live version unless the request is complete and
 * verified, so a corrupt upload never disturbs serving. The bundled demo model is registered as
 * the first version (live, serving) the first time the registry is used.
 *
 * Memory (src/model/memory.ts): one isolate holds onnxruntime's base, every live version and, while
 * one loads, its files. An upload whose manifest says it cannot fit the budget on its own is refused
 * before its weights are sent; staging checks the stored sizes before reading a byte, and loads the
 * graphs only where they fit beside the live versions (else that check waits for the activation);
 * activation counts what stays live after the swap. A failed upload leaves no file behind.
 */
import { and, asc, eq, gt, gte, inArray, sql } from "drizzle-orm";
import { type ModelRow, events, models } from "../../schema/schema";
import type { Db } from "../catalog/db";
import { ApiError } from "../errors";
import { invalidateLive, liveRows, unloadVersions } from "../model/live";
import { type Manifest, manifestFiles, parseManifest } from "../model/manifest";
import { readManifestText } from "../model/manifest-ids";
import { type MemoryEstimate, RUNTIME_BYTES, catalogEstimate, memoryEstimate, shardEstimates } from "../model/memory";
import { shardBackendFor } from "../model/shards";
import { type ModelHandle, versionHandle, versionPrefix } from "../model/registry";
import { GruModel, type ModelFiles } from "../model/runtime";
import type { UserStateStore } from "../state/store";
import { abortParts, isPartMarker } from "./model-parts";
export { putFilePart } from "./model-parts";
import { type RebuildDeps, rebuildAndStore } from "./rebuild";

export { type MemoryEstimate, RUNTIME_BYTES, memoryEstimate } from "../model/memory";

/** Names a version or a file may have (no path separators, no leading dot). */
export const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const FILE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface RegistryDeps {
  db: Db;
  bucket?: R2Bucket;
  wasm: WebAssembly.Module;
  /** Memory one isolate may give to models (MODEL_MEMORY_BUDGET_MB), bytes: onnxruntime's base,
   * every live version, and the files of the one loading. */
  memoryBudgetBytes: number;
  /** Largest file an upload may hold (MAX_MODEL_FILE_BYTES), bytes; unlimited when absent. */
  maxFileBytes?: number;
  /** Largest request body of an upload (MAX_MODEL_BODY_BYTES: a file sent whole or one part), bytes. */
  maxBodyBytes?: number;
  /** The bundled model's name (MODEL_NAME) and files, registered as the first version. */
  bundled?: { name: string; files: ModelFiles };
}

export async function sha256Hex(bytes: ArrayBuffer | Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

const u8 = (b: ArrayBuffer | Uint8Array) => (b instanceof Uint8Array ? b : new Uint8Array(b));

/** A registry refusal as an ApiError (`field`: what it is about). */
export function bad(status: 400 | 404 | 409 | 413 | 422 | 503, code: string, message: string, field?: string): ApiError {
  return new ApiError(status, code, message, field ? { field } : {});
}

/** Register the bundled model as the first version (live, serving) when the registry is empty. */
export async function ensureBundled(deps: RegistryDeps): Promise<void> {
  const b = deps.bundled;
  if (!b) return;
  const any = await deps.db.select({ v: models.version }).from(models).limit(1);
  if (any.length) return;
  const m = parseManifest(b.files.manifest);
  const files: Record<string, { bytes: number; sha256: string }> = {};
  const text = new TextEncoder().encode(JSON.stringify(b.files.manifest));
  files["manifest.json"] = { bytes: text.byteLength, sha256: await sha256Hex(text) };
  for (const [g, key] of [["step", "step"], ["score", "score"], ["similar", "similar"]] as const) {
    const bytes = b.files[key];
    const spec = m.graphs[g];
    if (bytes && spec) files[spec.file] = { bytes: u8(bytes).byteLength, sha256: await sha256Hex(bytes) };
  }
  files[m.weights.file] = { bytes: m.weights.bytes, sha256: m.weights.sha256 };
  const now = Date.now();
  await deps.db
    .insert(models)
    .values({
      version: m.version,
      name: b.name,
      status: "live",
      source: "bundled",
      manifestSha256: files["manifest.json"].sha256,
      files,
      metrics: (m.metrics ?? {}) as Record<string, unknown>,
      memoryBytes: servingBytes(memoryEstimate(files, m)),
      createdAt: now,
      activatedAt: now,
      servedAt: now,
    })
    .onConflictDoNothing();
  invalidateLive();
}

/** Every version, newest first. */
export async function listVersions(deps: RegistryDeps): Promise<ModelRow[]> {
  await ensureBundled(deps);
  return deps.db.select().from(models).orderBy(sql`${models.createdAt} DESC`);
}

export async function getVersion(db: Db, version: string): Promise<ModelRow | undefined> {
  const [row] = await db.select().from(models).where(eq(models.version, version)).limit(1);
  return row;
}

/** The registry's bucket (503 when MODEL_BUCKET is not bound). */
export function needBucket(deps: Pick<RegistryDeps, "bucket">): R2Bucket {
  if (!deps.bucket) throw bad(503, "no_model_bucket", "no MODEL_BUCKET (R2) is bound: the registry stores model files there");
  return deps.bucket;
}

/** Files of an unfinished upload (stored, no registry row) older than this are removed. */
export const UPLOAD_TTL_MS = 24 * 3_600_000;

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

/** Each item shard of a sharded version must fit the budget in its own isolate (413 model_too_large). */
function shardsFit(deps: RegistryDeps, version: string, m: Manifest, field: string): void {
  for (const [i, est] of shardEstimates(m).entries()) {
    const need = est.runtime + est.resident + est.transient;
    if (need > deps.memoryBudgetBytes) {
      throw bad(413, "model_too_large", `${version}: item shard ${i} would need about ${mib(need)} MiB of its isolate (budget ${mib(deps.memoryBudgetBytes)} MiB); export it in more shards`, field);
    }
  }
}

/** The memory check of one version on its own: onnxruntime's base, the model, its load. */
function fitsAlone(deps: RegistryDeps, version: string, est: MemoryEstimate, field: string): void {
  const need = est.runtime + est.resident + est.transient;
  if (need > deps.memoryBudgetBytes) {
    throw bad(
      413,
      "model_too_large",
      `${version} would need about ${mib(need)} MiB of one isolate to load (onnxruntime ${mib(est.runtime)}, the model ${mib(est.resident)}, its files while loading ${mib(est.transient)}); the budget (MODEL_MEMORY_BUDGET_MB) is ${mib(deps.memoryBudgetBytes)} MiB`,
      field,
    );
  }
}

/** Parse a manifest as staging does (422 model_rejected naming the problem). */
function manifestOf(bytes: ArrayBuffer, version: string): { raw: unknown; m: Manifest } {
  let raw: unknown;
  try {
    raw = readManifestText(new TextDecoder().decode(bytes));
  } catch {
    throw bad(422, "model_rejected", "manifest.json is not JSON", "files.manifest.json");
  }
  let m: Manifest;
  try {
    m = parseManifest(raw);
  } catch (e) {
    throw bad(422, "model_rejected", (e as Error).message, "files.manifest.json");
  }
  if (m.version !== version) throw bad(422, "model_rejected", `manifest.version is ${m.version}, the upload is for ${version}`, "version");
  return { raw, m };
}

/** Remove every stored file of a version (an unfinished upload), aborting its files' unfinished
 * uploads in parts (src/domain/model-parts.ts); how many files were removed. */
export async function removeFiles(bucket: R2Bucket, version: string): Promise<number> {
  await abortParts(bucket, version);
  let removed = 0;
  for (;;) {
    const listed = await bucket.list({ prefix: `${versionPrefix(version)}/` });
    if (!listed.objects.length) return removed;
    await bucket.delete(listed.objects.map((o) => o.key));
    removed += listed.objects.filter((o) => !isPartMarker(o.key)).length;
    if (!listed.truncated) return removed;
  }
}

/**
 * Store one file of a version being uploaded. `claimed` is the SHA-256 the uploader computed; a
 * body that does not hash to it is refused (422 checksum_mismatch). Sizes are checked before the
 * body is read: `declared` (the request's content-length) against `maxFileBytes`, and, once the
 * manifest is stored, the weights file against the size the manifest gives it. manifest.json itself
 * is parsed when it arrives: weights over `maxFileBytes` (413 file_too_large) or a model that cannot
 * fit the memory budget on its own (413 model_too_large) are refused before they are sent.
 * Any refusal (413, 422) abandons the upload: the version's files stored so far are removed.
 */
export async function putFile(
  deps: RegistryDeps,
  version: string,
  file: string,
  claimed: string,
  body: () => Promise<ArrayBuffer>,
  declared?: number,
): Promise<{ bytes: number; sha256: string }> {
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  if (!FILE_RE.test(file)) throw bad(400, "invalid_request", "file: letters, digits, '.', '_' or '-', up to 64 characters", "file");
  if (!/^[0-9a-f]{64}$/.test(claimed)) throw bad(400, "invalid_request", "header x-content-sha256: the file's SHA-256 as 64 lowercase hex digits", "header.x-content-sha256");
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is already registered; versions are immutable`, "version");
  const max = deps.maxFileBytes ?? Number.POSITIVE_INFINITY;
  const tooBig = (n: number) => bad(413, "file_too_large", `${file} is ${n} bytes, over MAX_MODEL_FILE_BYTES (${max})`, "body");
  try {
    if (declared !== undefined && declared > max) throw tooBig(declared);
    // The weights' size as the stored manifest gives it (R2 metadata: no manifest body read).
    const plan = file === "manifest.json" ? null : await bucket.head(`${versionPrefix(version)}/manifest.json`);
    const want = plan?.customMetadata?.weights_file === file ? Number(plan.customMetadata.weights_bytes) : undefined;
    const wrongSize = (n: number) =>
      bad(422, "size_mismatch", `${file} is ${n} bytes, the uploaded manifest.json says ${want} (manifest.weights.bytes)`, "body");
    if (want !== undefined && declared !== undefined && declared !== want) throw wrongSize(declared);
    const bytes = await body();
    if (bytes.byteLength > max) throw tooBig(bytes.byteLength);
    if (want !== undefined && bytes.byteLength !== want) throw wrongSize(bytes.byteLength);
    const sum = await sha256Hex(bytes);
    if (sum !== claimed) throw bad(422, "checksum_mismatch", `${file}: the body's SHA-256 is ${sum}, the upload says ${claimed}; nothing was stored`, "body");
    const meta: Record<string, string> = { sha256: sum };
    if (file === "manifest.json") {
      const { m } = manifestOf(bytes, version);
      if (m.weights.bytes > max) {
        throw bad(413, "file_too_large", `${m.weights.file} would be ${m.weights.bytes} bytes (manifest.weights.bytes), over MAX_MODEL_FILE_BYTES (${max})`, "files.manifest.json");
      }
      fitsAlone(deps, version, memoryEstimate({ "manifest.json": { bytes: bytes.byteLength }, [m.weights.file]: { bytes: m.weights.bytes } }, m), "files.manifest.json");
      shardsFit(deps, version, m, "files.manifest.json");
      Object.assign(meta, { weights_file: m.weights.file, weights_bytes: String(m.weights.bytes) });
    }
    await bucket.put(`${versionPrefix(version)}/${file}`, bytes, { customMetadata: meta });
    // A new upload starts with its manifest: the time to clear uploads abandoned long ago.
    if (file === "manifest.json") await sweepUploads(deps).catch((e) => console.warn(`model upload sweep failed: ${(e as Error).message}`));
    return { bytes: bytes.byteLength, sha256: sum };
  } catch (e) {
    if (e instanceof ApiError && (e.status === 413 || e.status === 422)) {
      const removed = await removeFiles(bucket, version).catch(() => 0);
      const note = removed ? `; the upload of ${version} is abandoned: its ${removed} stored file${removed === 1 ? " was" : "s were"} removed` : "";
      throw new ApiError(e.status, e.code, `${e.message}${note}`, e.extra);
    }
    throw e;
  }
}

/**
 * Discard an unfinished upload: remove the files stored for a version that is not registered
 * (409 version_exists for a registered one: versions are immutable). Returns how many were removed.
 */
export async function discardUpload(deps: RegistryDeps, version: string): Promise<number> {
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is registered; only an unfinished upload can be discarded (retire a version instead)`, "version");
  return removeFiles(bucket, version);
}

/**
 * Remove the files of uploads abandoned without a word (a client that stopped half way): versions
 * with files in R2, no registry row, and no file newer than `olderThanMs`. Returns their names.
 */
export async function sweepUploads(deps: Pick<RegistryDeps, "db" | "bucket">, olderThanMs = UPLOAD_TTL_MS, now = Date.now()): Promise<string[]> {
  const bucket = deps.bucket;
  if (!bucket) return [];
  const root = `${versionPrefix("")}`;
  const listed = await bucket.list({ prefix: root, delimiter: "/" });
  const versions = listed.delimitedPrefixes.map((p) => p.slice(root.length, -1)).filter((v) => VERSION_RE.test(v));
  const known = new Set<string>();
  for (let i = 0; i < versions.length; i += 90) {
    const rows = await deps.db.select({ v: models.version }).from(models).where(inArray(models.version, versions.slice(i, i + 90)));
    for (const r of rows) known.add(r.v);
  }
  const removed: string[] = [];
  for (const v of versions) {
    if (known.has(v)) continue;
    const objs = await bucket.list({ prefix: `${versionPrefix(v)}/` });
    const newest = Math.max(...objs.objects.map((o) => o.uploaded.getTime()));
    if (objs.objects.length && now - newest >= olderThanMs && (await removeFiles(bucket, v))) removed.push(v);
  }
  return removed;
}

/** Read every file of a version from R2 and check it against `expected` (name -> sha256). */
async function readVerified(bucket: R2Bucket, version: string, expected: Record<string, string>): Promise<Map<string, ArrayBuffer>> {
  const out = new Map<string, ArrayBuffer>();
  await Promise.all(
    Object.entries(expected).map(async ([name, sha]) => {
      const obj = await bucket.get(`${versionPrefix(version)}/${name}`);
      if (!obj) throw bad(422, "model_rejected", `${name} was not uploaded for version ${version}`, `files.${name}`);
      const bytes = await obj.arrayBuffer();
      const sum = await sha256Hex(bytes);
      if (sum !== sha) throw bad(422, "model_rejected", `${name}: stored bytes hash to ${sum}, expected ${sha}`, `files.${name}`);
      out.set(name, bytes);
    }),
  );
  return out;
}

/** Replay the golden vectors through a loaded model; the first disagreement, or null. */
export async function checkGolden(model: GruModel, golden: any): Promise<string | null> {
  const tol = Number(golden.tolerance ?? 1e-4);
  let state = model.initialState();
  for (let i = 0; i < golden.events.length; i++) {
    const row = model.rowOf(String(golden.events[i].item_id));
    if (row === undefined) return `golden event ${i}: item ${golden.events[i].item_id} is not in the manifest`;
    state = await model.step(state, row, { newSession: golden.new_session[i] === 1, gapHours: golden.gap_hours[i] });
    const want = golden.states[i] as number[];
    for (let j = 0; j < want.length; j++) {
      if (Math.abs(want[j]! - state[j]!) > tol) return `golden state ${i}[${j}]: ${state[j]} vs ${want[j]} (tolerance ${tol})`;
    }
  }
  const seen = golden.events.map((e: { item_id: string }) => model.rowOf(String(e.item_id))!);
  for (const [name, g] of Object.entries<any>(golden.topk ?? {})) {
    const top = await model.topK(state, { newSession: g.new_session === 1, gapHours: g.gap_hours }, golden.k, g.exclude_seen ? seen : []);
    const ids = top.map((t) => model.idOf(t.row));
    if (JSON.stringify(ids) !== JSON.stringify(g.item_ids)) return `golden top-k ${name} differs: ${ids.join(",")} vs ${g.item_ids.join(",")}`;
  }
  return null;
}

/** Check stored files against their SHA-256 without holding them (streamed through the digest). */
async function verifyStored(bucket: R2Bucket, version: string, expected: Record<string, string>): Promise<void> {
  for (const [name, sha] of Object.entries(expected)) {
    const sum = await storedSha256(bucket, `${versionPrefix(version)}/${name}`);
    if (sum === null) throw bad(422, "model_rejected", `${name} was not uploaded for version ${version}`, `files.${name}`);
    if (sum !== sha) throw bad(422, "model_rejected", `${name}: stored bytes hash to ${sum}, expected ${sha}`, `files.${name}`);
  }
}

/** SHA-256 (hex) of a stored object read as a stream (never all in memory), or null when absent. */
export async function storedSha256(bucket: R2Bucket, key: string): Promise<string | null> {
  const obj = await bucket.get(key);
  if (!obj) return null;
  const Digest = (crypto as unknown as { DigestStream: new (alg: string) => WritableStream<Uint8Array> & { digest: Promise<ArrayBuffer> } }).DigestStream;
  const d = new Digest("SHA-256");
  await obj.body.pipeTo(d);
  return Array.from(new Uint8Array(await d.digest), (x) => x.toString(16).padStart(2, "0")).join("");
}

function goldenOf(bytes: ArrayBuffer | undefined, name: string): unknown {
  if (!bytes) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw bad(422, "model_rejected", `${name} is not JSON`, `files.${name}`);
  }
}

/** Load a version's files in this isolate, replay its golden vectors, release it (staging). */
async function loadAndCheck(deps: RegistryDeps, m: Manifest, raw: unknown, bytes: Map<string, ArrayBuffer>): Promise<void> {
  const files: ModelFiles = {
    manifest: raw,
    step: bytes.get(m.graphs.step.file)!,
    ...(m.graphs.score ? { score: bytes.get(m.graphs.score.file)! } : {}),
    weights: bytes.get(m.weights.file)!,
    ...(m.graphs.similar ? { similar: bytes.get(m.graphs.similar.file)! } : {}),
  };
  let model: GruModel;
  try {
    model = await GruModel.load(deps.wasm, files, shardBackendFor(m, versionPrefix(m.version)));
  } catch (e) {
    throw bad(422, "model_rejected", (e as Error).message, "files");
  }
  try {
    const golden = m.golden ? goldenOf(bytes.get(m.golden), m.golden) : undefined;
    const diff = golden ? await checkGolden(model, golden) : null;
    if (diff) throw bad(422, "model_rejected", `golden vectors do not reproduce: ${diff}`, `files.${m.golden}`);
  } finally {
    await model.release();
  }
}

/** The bytes every live version takes in one isolate, onnxruntime's base included. */
const liveBytes = (rows: readonly ModelRow[]) => RUNTIME_BYTES + rows.reduce((n, r) => n + r.memoryBytes, 0);

/** What a live version takes once it serves (its `memoryBytes`): resident, and its masks. */
const servingBytes = (est: MemoryEstimate) => est.resident + est.masks;

/**
 * A version being added (`est`, `known` item rows; `loading`: its files are read now) with the
 * catalog copy every worker isolate keeps (memory.ts `catalogEstimate`), bytes: its resident part,
 * its files while it loads or its masks once it serves (never both: the masks are built by the
 * requests after the load), and the catalog copy.
 */
async function withCatalog(db: Db, est: MemoryEstimate, loading: boolean, known: number): Promise<{ adding: number; catalog: number; extra: number }> {
  const r = await db.get<{ n: number | null }>(sql`SELECT count(*) AS n FROM items WHERE deleted_at IS NULL`);
  const catalog = catalogEstimate(Number(r?.n ?? 0), known);
  const extra = Math.max(loading ? est.transient : 0, est.masks);
  return { adding: est.resident + extra + catalog, catalog, extra };
}

/**
 * Stage an uploaded version: every file in `claimed` (name -> sha256) must be in R2 with exactly
 * those bytes; the manifest must parse, name this version, and list only uploaded files whose
 * checksums it agrees with; the graphs must load; golden vectors (when uploaded) must reproduce.
 * Sizes come first (R2 metadata and the manifest): a version that cannot fit the memory budget on
 * its own is refused (413 model_too_large) before a byte of it is read or loaded. Where it does not
 * fit beside the live versions, the checksums are verified streaming and the graphs and golden
 * vectors are checked at activation instead (`loaded: false`), once what it replaces is unloaded.
 * Any failure (413, 422 model_rejected): the uploaded files are deleted, the registry is unchanged.
 */
export async function stageVersion(deps: RegistryDeps, version: string, claimed: Record<string, string>): Promise<{ row: ModelRow; loaded: boolean }> {
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is already registered; versions are immutable`, "version");
  for (const [name, sha] of Object.entries(claimed)) {
    if (!FILE_RE.test(name) || !/^[0-9a-f]{64}$/.test(sha)) throw bad(400, "invalid_request", `files.${name}: a file name and its SHA-256 (64 lowercase hex digits)`, `files.${name}`);
  }
  if (!claimed["manifest.json"]) throw bad(400, "invalid_request", "files must include manifest.json", "files");
  await ensureBundled(deps); // the bundled model is the first version, before any upload
  try {
    const sizes: Record<string, { bytes: number; sha256: string }> = {};
    for (const [name, sha] of Object.entries(claimed)) {
      const head = await bucket.head(`${versionPrefix(version)}/${name}`);
      if (!head) throw bad(422, "model_rejected", `${name} was not uploaded for version ${version}`, `files.${name}`);
      sizes[name] = { bytes: head.size, sha256: sha };
    }
    const manifestBytes = (await readVerified(bucket, version, { "manifest.json": claimed["manifest.json"] })).get("manifest.json")!;
    const { raw, m } = manifestOf(manifestBytes, version);
    for (const [i, s] of (m.shards ?? []).entries()) {
      if (claimed[s.weights.file] !== s.weights.sha256) {
        throw bad(422, "model_rejected", `${s.weights.file} hashes to ${claimed[s.weights.file]}, manifest.shards.${i} says ${s.weights.sha256}`, `files.${s.weights.file}`);
      }
    }
    for (const f of manifestFiles(m)) if (!sizes[f]) throw bad(422, "model_rejected", `manifest names ${f}, which was not uploaded`, `files.${f}`);
    if (claimed[m.weights.file] !== m.weights.sha256) {
      throw bad(422, "model_rejected", `${m.weights.file} hashes to ${claimed[m.weights.file]}, the manifest says ${m.weights.sha256}`, `files.${m.weights.file}`);
    }
    const est = memoryEstimate(sizes, m);
    fitsAlone(deps, version, est, "files");
    shardsFit(deps, version, m, "files");
    const live = await liveRows(deps.db);
    const beside = liveBytes(live) + (await withCatalog(deps.db, est, true, m.items.rows - 1)).adding <= deps.memoryBudgetBytes;
    const rest = Object.fromEntries(Object.entries(claimed).filter(([n]) => n !== "manifest.json"));
    if (beside) {
      const bytes = await readVerified(bucket, version, rest);
      bytes.set("manifest.json", manifestBytes);
      await loadAndCheck(deps, m, raw, bytes);
    } else {
      const { [m.golden ?? ""]: goldenSha, ...big } = rest;
      await verifyStored(bucket, version, big);
      if (m.golden && goldenSha) goldenOf((await readVerified(bucket, version, { [m.golden]: goldenSha })).get(m.golden), m.golden);
    }
    const row = {
      version,
      name: m.name,
      status: "staged" as const,
      source: "r2" as const,
      manifestSha256: claimed["manifest.json"],
      files: sizes,
      metrics: (m.metrics ?? {}) as Record<string, unknown>,
      memoryBytes: servingBytes(est),
      createdAt: Date.now(),
      activatedAt: null,
      servedAt: null,
      retiredAt: null,
    };
    await deps.db.insert(models).values(row);
    return { row, loaded: beside };
  } catch (e) {
    // A rejected upload leaves nothing behind.
    if (e instanceof ApiError && (e.status === 422 || e.status === 413)) await removeFiles(bucket, version).catch(() => 0);
    throw e;
  }
}

/** A registry row as the worker's model handle. */
export function handleOf(row: ModelRow, bucket: R2Bucket | undefined): ModelHandle {
  return versionHandle({ version: row.version, name: row.name, bundled: row.source === "bundled" }, bucket);
}

/** What becomes of the version serving before an activation: see `activateVersion`. */
export type Previous = "auto" | "shadow" | "retire";

/**
 * A version's memory for an activation: its resident share, recomputed from the stored manifest
 * (a row staged by an older estimate is counted as it is now), the files it loads with, and its
 * golden vectors. Checksums are verified streaming (nothing held but the manifest and golden).
 */
async function prepare(deps: RegistryDeps, row: ModelRow): Promise<{ est: MemoryEstimate; golden: unknown; rows: number }> {
  if (row.source !== "r2") {
    const b = deps.bundled && deps.bundled.name === row.name ? deps.bundled : undefined;
    const m = b ? parseManifest(b.files.manifest) : undefined;
    const est = m ? memoryEstimate(row.files, m) : { runtime: RUNTIME_BYTES, resident: row.memoryBytes, transient: 0, masks: 0 };
    return { est, golden: undefined, rows: m?.items.rows ?? 0 };
  }
  const bucket = needBucket(deps);
  const small = ["manifest.json"];
  const manifestBytes = (await readVerified(bucket, row.version, { "manifest.json": row.files["manifest.json"]?.sha256 ?? "" })).get("manifest.json")!;
  const { m } = manifestOf(manifestBytes, row.version);
  if (m.golden && row.files[m.golden]) small.push(m.golden);
  await verifyStored(bucket, row.version, Object.fromEntries(Object.entries(row.files).filter(([n]) => !small.includes(n)).map(([n, f]) => [n, f.sha256])));
  const golden = m.golden && row.files[m.golden] ? goldenOf((await readVerified(bucket, row.version, { [m.golden]: row.files[m.golden]!.sha256 })).get(m.golden), m.golden) : undefined;
  return { est: memoryEstimate(row.files, m), golden, rows: m.items.rows };
}

/** Load a version through its isolate handle (what serving uses) and replay its golden vectors. */
async function loadLive(deps: RegistryDeps, row: ModelRow, golden: unknown): Promise<void> {
  const h = handleOf(row, deps.bucket);
  const loaded = await h.get();
  if (!loaded.ok) throw bad(422, "model_rejected", loaded.message, "version");
  const diff = golden ? await checkGolden(loaded.model, golden) : null;
  if (diff) {
    await h.unload();
    throw bad(422, "model_rejected", `golden vectors do not reproduce: ${diff}`, "version");
  }
}

/**
 * Make `version` live: verify its files again (checksums against the registry), check the memory
 * budget of what will be live afterwards, load it in this isolate and replay its golden vectors,
 * then mark it live and serving (or, with `shadow`, live and advanced by every event, not serving).
 *
 * The version serving before (A) is what `previous` says: "shadow" keeps it live as a shadow (its
 * users' states keep advancing, a rollback is instant) and refuses (409 over_memory_budget) when
 * both do not fit; "retire" retires it; "auto" (the default) keeps it as a shadow when both fit
 * and retires it otherwise, so replacing a version never needs room for two. The budget counts
 * onnxruntime's base, every version that stays live, the new one and its files while it loads.
 * When A is retired, it is unloaded here before the new version loads (the new one reuses its
 * memory; other isolates unload it when they next read the live set); should the new version
 * then fail to load, A is put back serving and the registry is as before (422 model_rejected).
 * `retired` lists the versions this activation retired (files stay in R2: activate to roll back).
 */
export async function activateVersion(
  deps: RegistryDeps,
  version: string,
  o: { shadow?: boolean; previous?: Previous } = {},
): Promise<{ row: ModelRow; live: ModelRow[]; retired: string[] }> {
  await ensureBundled(deps);
  const row = await getVersion(deps.db, version);
  if (!row) throw bad(404, "model_not_found", `no version ${version} in the registry`, "version");
  const { est, golden, rows } = await prepare(deps, row);
  const live = await liveRows(deps.db);
  const isLive = row.status === "live";
  // A live version is loaded already: its files are not read again. The catalog copy every worker
  // isolate keeps is counted with it.
  const { adding, catalog, extra } = await withCatalog(deps.db, est, !isLive, Math.max(0, rows - 1));
  const others = live.filter((r) => r.version !== version);
  const serving = live[0];
  const budget = deps.memoryBudgetBytes;
  const previous = o.previous ?? "auto";
  let replaced: ModelRow | undefined;
  if (!o.shadow && serving && serving.version !== version) {
    const rest = others.filter((r) => r.version !== serving.version);
    const withPrevious = liveBytes(others) + adding;
    if (previous === "retire" || (previous === "auto" && withPrevious > budget)) replaced = serving;
    const total = replaced ? liveBytes(rest) + adding : withPrevious;
    if (total > budget) {
      const keep = replaced ? rest : others;
      const hint = replaced
        ? rest.length
          ? `retire a shadow first (${rest.map((r) => r.version).join(", ")})`
          : "it does not fit on its own"
        : `activate with {"previous":"retire"} to retire ${serving.version} instead of keeping it as a shadow${rest.length ? `, or retire a shadow first (${rest.map((r) => r.version).join(", ")})` : ""}`;
      throw bad(
        409,
        "over_memory_budget",
        `${version} beside ${keep.length ? keep.map((r) => r.version).join(", ") : "nothing else"} would need about ${mib(total)} MiB per isolate (onnxruntime ${mib(RUNTIME_BYTES)}, the catalog copy ${mib(catalog)}, ${version} ${mib(est.resident)} and ${mib(extra)} more while it loads or for its masks over the catalog, the others ${mib(total - RUNTIME_BYTES - adding)}); the budget (MODEL_MEMORY_BUDGET_MB) is ${mib(budget)} MiB: ${hint}`,
        "version",
      );
    }
  } else {
    const total = liveBytes(others) + adding;
    if (total > budget) {
      throw bad(
        409,
        "over_memory_budget",
        `live versions would need about ${mib(total)} MiB per isolate (the catalog copy ${mib(catalog)} of it), the budget (MODEL_MEMORY_BUDGET_MB) is ${mib(budget)} MiB; retire a version first (${others.map((r) => r.version).join(", ")})`,
        "version",
      );
    }
  }
  const now = Date.now();
  const servedAt = o.shadow ? (isLive ? row.servedAt : null) : now;
  const goLive = deps.db
    .update(models)
    .set({ status: "live", activatedAt: isLive ? row.activatedAt : now, servedAt, retiredAt: null, memoryBytes: servingBytes(est) })
    .where(eq(models.version, version));
  if (!replaced) {
    if (!isLive) await loadLive(deps, row, golden);
    await goLive;
    invalidateLive();
    return { row: (await getVersion(deps.db, version))!, live: await liveRows(deps.db), retired: [] };
  }
  // The swap: the new version serves, the previous one is retired and unloaded before it loads.
  const prev = replaced;
  await deps.db.batch([goLive, deps.db.update(models).set({ status: "retired", retiredAt: now }).where(eq(models.version, prev.version))]);
  invalidateLive();
  await unloadVersions([prev], deps.bucket);
  try {
    if (!isLive) await loadLive(deps, row, golden);
  } catch (e) {
    await deps.db.batch([
      deps.db.update(models).set({ status: "live", retiredAt: null, servedAt: Date.now() }).where(eq(models.version, prev.version)),
      deps.db
        .update(models)
        .set({ status: row.status, activatedAt: row.activatedAt, servedAt: row.servedAt, retiredAt: row.retiredAt })
        .where(eq(models.version, version)),
    ]);
    invalidateLive();
    throw e;
  }
  return { row: (await getVersion(deps.db, version))!, live: await liveRows(deps.db), retired: [prev.version] };
}

/**
 * Retire a version (kept in R2 for a rollback) and unload it from this isolate (the others unload
 * it when they next read the live set). The last live version cannot be retired: activate its
 * replacement instead, which retires it when both do not fit (see `activateVersion`).
 */
export async function retireVersion(deps: RegistryDeps, version: string): Promise<{ row: ModelRow; live: ModelRow[] }> {
  await ensureBundled(deps);
  const row = await getVersion(deps.db, version);
  if (!row) throw bad(404, "model_not_found", `no version ${version} in the registry`, "version");
  const live = await liveRows(deps.db);
  if (row.status === "live" && live.length === 1) {
    throw bad(409, "last_live_version", `${version} is the only live version; activate its replacement (it retires this one when both do not fit the memory budget)`, "version");
  }
  if (row.status === "live" && live[0]?.version === version) {
    // The next live version serves from now on.
    const next = live.find((r) => r.version !== version)!;
    await deps.db.update(models).set({ servedAt: Date.now() }).where(eq(models.version, next.version));
  }
  await deps.db.update(models).set({ status: "retired", retiredAt: Date.now() }).where(eq(models.version, version));
  invalidateLive();
  if (row.status === "live") await unloadVersions([row], deps.bucket);
  return { row: (await getVersion(deps.db, version))!, live: await liveRows(deps.db) };
}

export interface RebuildPage {
  users: number;
  rebuilt: number;
  /** Users that already had a state for the version (advanced by their events). */
  kept: number;
  /** Users with no logged event on an item the version knows. */
  cold: number;
  events_replayed: number;
  /** Pass as `after_user` for the next page; null when done. */
  next_after_user: string | null;
  ms: number;
}

/**
 * Rebuild, for a live version, the states of users active since `sinceMs` who have none for it
 * (a page of `limit` users in user-id order after `afterUser`). Run ahead of a switch: activate
 * the version as a shadow, rebuild, then activate it.
 */
export async function rebuildVersion(
  deps: RegistryDeps & { storeFor: (model: GruModel) => UserStateStore; rebuild: Omit<RebuildDeps, "db" | "model"> },
  version: string,
  o: { sinceMs: number; afterUser: string; limit: number },
): Promise<RebuildPage> {
  const t0 = Date.now();
  const row = await getVersion(deps.db, version);
  if (!row) throw bad(404, "model_not_found", `no version ${version} in the registry`, "version");
  if (row.status !== "live") {
    throw bad(409, "not_live", `${version} is ${row.status}: activate it first (as a shadow with {"shadow":true} to rebuild ahead of a switch)`, "version");
  }
  const loaded = await handleOf(row, deps.bucket).get();
  if (!loaded.ok) throw bad(503, "model_unavailable", loaded.message);
  const model = loaded.model;
  const store = deps.storeFor(model);
  const users = (
    await deps.db
      .selectDistinct({ u: events.userId })
      .from(events)
      .where(and(gte(events.ts, o.sinceMs), gt(events.userId, o.afterUser)))
      .orderBy(asc(events.userId))
      .limit(o.limit)
  ).map((r) => r.u);
  const page: RebuildPage = { users: users.length, rebuilt: 0, kept: 0, cold: 0, events_replayed: 0, next_after_user: null, ms: 0 };
  const queue = [...users];
  const worker = async () => {
    for (let u = queue.shift(); u !== undefined; u = queue.shift()) {
      const snap = await store.read(u);
      if (snap.state) {
        page.kept++;
        continue;
      }
      const r = await rebuildAndStore({ ...deps.rebuild, db: deps.db, model, store }, u);
      if (!r.rebuilt) page.cold++;
      else if (r.stored) {
        page.rebuilt++;
        page.events_replayed += r.rebuilt.replayed;
      } else page.kept++;
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  page.next_after_user = users.length === o.limit ? users[users.length - 1]! : null;
  page.ms = Date.now() - t0;
  return page;
}

/** Versions by name (for the admin list of one model family). */
export async function versionsIn(db: Db, versions: string[]): Promise<ModelRow[]> {
  if (!versions.length) return [];
  return db.select().from(models).where(inArray(models.version, versions));
}
