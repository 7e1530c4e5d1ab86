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
 */
import { and, asc, eq, gt, gte, inArray, sql } from "drizzle-orm";
import { type ModelRow, events, models } from "../../schema/schema";
import type { Db } from "../catalog/db";
import { ApiError } from "../errors";
import { invalidateLive, liveRows } from "../model/live";
import { parseManifest } from "../model/manifest";
import { type ModelHandle, versionHandle, versionPrefix } from "../model/registry";
import { GruModel, type ModelFiles } from "../model/runtime";
import type { UserStateStore } from "../state/store";
import { type RebuildDeps, rebuildAndStore } from "./rebuild";

/** Names a version or a file may have (no path separators, no leading dot). */
export const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const FILE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface RegistryDeps {
  db: Db;
  bucket?: R2Bucket;
  wasm: WebAssembly.Module;
  /** Memory budget for all live versions of one isolate, bytes. */
  memoryBudgetBytes: number;
  /** The bundled model's name (MODEL_NAME) and files, registered as the first version. */
  bundled?: { name: string; files: ModelFiles };
}

export async function sha256Hex(bytes: ArrayBuffer | Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

const u8 = (b: ArrayBuffer | Uint8Array) => (b instanceof Uint8Array ? b : new Uint8Array(b));

/**
 * Estimated memory of a loaded model in one isolate, bytes: every ONNX session holds its own copy
 * of the weights (external data), float16 weights cast to float32 at load (twice the bytes per
 * session), plus the graphs, the parsed manifest (item ids) and the JS-side weight bytes. An
 * estimate from file sizes; measured (`scripts/bench-model.ts`, JS heap + array buffers + ORT wasm
 * memory) the committed 43k-item diginetica model takes 90 MiB and the 12k-item amazon-beauty one
 * 53 MiB, of which ORT's own wasm start-up share (20-35 MiB, once per isolate) is not counted here.
 */
export function memoryEstimate(
  files: Record<string, { bytes: number }>,
  manifest: { weights: { file: string; dtype?: string; expanded_bytes?: number }; graphs: Record<string, unknown> },
): number {
  const stored = files[manifest.weights.file]?.bytes ?? 0;
  const weights = manifest.weights.expanded_bytes ?? stored;     // int8 tables are expanded at load
  const graphs = Object.keys(manifest.graphs).filter((g) => manifest.graphs[g]).length;
  const perSession = manifest.weights.dtype === "float16" ? 2 : 1;
  let total = (weights !== stored ? stored : 0) + weights * (1 + graphs * perSession);
  for (const [name, f] of Object.entries(files)) if (name !== manifest.weights.file) total += name === "manifest.json" ? f.bytes * 3 : f.bytes;
  return total;
}

function bad(status: 400 | 404 | 409 | 422 | 503, code: string, message: string, field?: string): ApiError {
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
      memoryBytes: memoryEstimate(files, m),
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

function needBucket(deps: RegistryDeps): R2Bucket {
  if (!deps.bucket) throw bad(503, "no_model_bucket", "no MODEL_BUCKET (R2) is bound: the registry stores model files there");
  return deps.bucket;
}

/**
 * Store one file of a version being uploaded. `claimed` is the SHA-256 the uploader computed; a
 * body that does not hash to it is refused (422 checksum_mismatch) and nothing is stored.
 */
export async function putFile(deps: RegistryDeps, version: string, file: string, body: ArrayBuffer, claimed: string): Promise<{ bytes: number; sha256: string }> {
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  if (!FILE_RE.test(file)) throw bad(400, "invalid_request", "file: letters, digits, '.', '_' or '-', up to 64 characters", "file");
  if (!/^[0-9a-f]{64}$/.test(claimed)) throw bad(400, "invalid_request", "header x-content-sha256: the file's SHA-256 as 64 lowercase hex digits", "header.x-content-sha256");
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is already registered; versions are immutable`, "version");
  const sum = await sha256Hex(body);
  if (sum !== claimed) throw bad(422, "checksum_mismatch", `${file}: the body's SHA-256 is ${sum}, the upload says ${claimed}; nothing was stored`, "body");
  await bucket.put(`${versionPrefix(version)}/${file}`, body, { customMetadata: { sha256: sum } });
  return { bytes: body.byteLength, sha256: sum };
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
async function checkGolden(model: GruModel, golden: any): Promise<string | null> {
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

/**
 * Stage an uploaded version: every file in `claimed` (name -> sha256) must be in R2 with exactly
 * those bytes; the manifest must parse, name this version, and list only uploaded files whose
 * checksums it agrees with; the graphs must load; golden vectors (when uploaded) must reproduce.
 * Any failure: 422 model_rejected, the uploaded files are deleted, the registry is unchanged.
 */
export async function stageVersion(deps: RegistryDeps, version: string, claimed: Record<string, string>): Promise<ModelRow> {
  if (!VERSION_RE.test(version)) throw bad(400, "invalid_request", "version: letters, digits, '.', '_' or '-', up to 128 characters", "version");
  const bucket = needBucket(deps);
  if (await getVersion(deps.db, version)) throw bad(409, "version_exists", `version ${version} is already registered; versions are immutable`, "version");
  for (const [name, sha] of Object.entries(claimed)) {
    if (!FILE_RE.test(name) || !/^[0-9a-f]{64}$/.test(sha)) throw bad(400, "invalid_request", `files.${name}: a file name and its SHA-256 (64 lowercase hex digits)`, `files.${name}`);
  }
  if (!claimed["manifest.json"]) throw bad(400, "invalid_request", "files must include manifest.json", "files");
  await ensureBundled(deps); // the bundled model is the first version, before any upload
  try {
    const bytes = await readVerified(bucket, version, claimed);
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(bytes.get("manifest.json")!));
    } catch {
      throw bad(422, "model_rejected", "manifest.json is not JSON", "files.manifest.json");
    }
    let m;
    try {
      m = parseManifest(raw);
    } catch (e) {
      throw bad(422, "model_rejected", (e as Error).message, "files.manifest.json");
    }
    if (m.version !== version) throw bad(422, "model_rejected", `manifest.version is ${m.version}, the upload is for ${version}`, "version");
    const need = [m.graphs.step.file, m.graphs.score.file, m.weights.file, ...(m.graphs.similar ? [m.graphs.similar.file] : []), ...(m.golden ? [m.golden] : [])];
    for (const f of need) if (!bytes.has(f)) throw bad(422, "model_rejected", `manifest names ${f}, which was not uploaded`, `files.${f}`);
    if (claimed[m.weights.file] !== m.weights.sha256) {
      throw bad(422, "model_rejected", `${m.weights.file} hashes to ${claimed[m.weights.file]}, the manifest says ${m.weights.sha256}`, `files.${m.weights.file}`);
    }
    const files: ModelFiles = {
      manifest: raw,
      step: bytes.get(m.graphs.step.file)!,
      score: bytes.get(m.graphs.score.file)!,
      weights: bytes.get(m.weights.file)!,
      ...(m.graphs.similar ? { similar: bytes.get(m.graphs.similar.file)! } : {}),
    };
    let model: GruModel;
    try {
      model = await GruModel.load(deps.wasm, files);
    } catch (e) {
      throw bad(422, "model_rejected", (e as Error).message, "files");
    }
    try {
      if (m.golden) {
        let golden: unknown;
        try {
          golden = JSON.parse(new TextDecoder().decode(bytes.get(m.golden)!));
        } catch {
          throw bad(422, "model_rejected", `${m.golden} is not JSON`, `files.${m.golden}`);
        }
        const diff = await checkGolden(model, golden);
        if (diff) throw bad(422, "model_rejected", `golden vectors do not reproduce: ${diff}`, `files.${m.golden}`);
      }
    } finally {
      await model.release();
    }
    const sizes = Object.fromEntries([...bytes].map(([n, b]) => [n, { bytes: b.byteLength, sha256: claimed[n]! }]));
    const row = {
      version,
      name: m.name,
      status: "staged" as const,
      source: "r2" as const,
      manifestSha256: claimed["manifest.json"],
      files: sizes,
      metrics: (m.metrics ?? {}) as Record<string, unknown>,
      memoryBytes: memoryEstimate(sizes, m),
      createdAt: Date.now(),
      activatedAt: null,
      servedAt: null,
      retiredAt: null,
    };
    await deps.db.insert(models).values(row);
    return row;
  } catch (e) {
    if (e instanceof ApiError && e.status === 422) {
      // A rejected upload leaves nothing behind.
      const listed = await bucket.list({ prefix: `${versionPrefix(version)}/` }).catch(() => null);
      if (listed?.objects.length) await bucket.delete(listed.objects.map((o) => o.key)).catch(() => undefined);
    }
    throw e;
  }
}

/** A registry row as the worker's model handle. */
export function handleOf(row: ModelRow, bucket: R2Bucket | undefined): ModelHandle {
  return versionHandle({ version: row.version, name: row.name, bundled: row.source === "bundled" }, bucket);
}

/**
 * Make `version` live: verify its files again (checksums against the registry), load it in this
 * isolate, check the memory budget of all live versions, then mark it live and serving (or a
 * shadow: advanced by every event, not serving). The previously serving version stays live (a
 * shadow) until retired, so its users' states keep advancing and a rollback is instant.
 */
export async function activateVersion(deps: RegistryDeps, version: string, o: { shadow?: boolean } = {}): Promise<{ row: ModelRow; live: ModelRow[] }> {
  await ensureBundled(deps);
  const row = await getVersion(deps.db, version);
  if (!row) throw bad(404, "model_not_found", `no version ${version} in the registry`, "version");
  if (row.source === "r2") await readVerified(needBucket(deps), version, Object.fromEntries(Object.entries(row.files).map(([n, f]) => [n, f.sha256])));
  const live = await liveRows(deps.db);
  const others = live.filter((r) => r.version !== version);
  const total = others.reduce((n, r) => n + r.memoryBytes, 0) + row.memoryBytes;
  if (total > deps.memoryBudgetBytes) {
    throw bad(
      409,
      "over_memory_budget",
      `live versions would need about ${(total / 2 ** 20).toFixed(1)} MiB per isolate, the budget (MODEL_MEMORY_BUDGET_MB) is ${(deps.memoryBudgetBytes / 2 ** 20).toFixed(0)} MiB; retire a version first (${others.map((r) => r.version).join(", ")})`,
      "version",
    );
  }
  const loaded = await handleOf(row, deps.bucket).get();
  if (!loaded.ok) throw bad(422, "model_rejected", loaded.message, "version");
  const now = Date.now();
  const servedAt = o.shadow ? (row.status === "live" ? row.servedAt : null) : now;
  await deps.db
    .update(models)
    .set({ status: "live", activatedAt: row.status === "live" ? row.activatedAt : now, servedAt, retiredAt: null })
    .where(eq(models.version, version));
  invalidateLive();
  return { row: (await getVersion(deps.db, version))!, live: await liveRows(deps.db) };
}

/** Retire a version (kept in R2 for a rollback). The last live version cannot be retired. */
export async function retireVersion(deps: RegistryDeps, version: string): Promise<{ row: ModelRow; live: ModelRow[] }> {
  await ensureBundled(deps);
  const row = await getVersion(deps.db, version);
  if (!row) throw bad(404, "model_not_found", `no version ${version} in the registry`, "version");
  const live = await liveRows(deps.db);
  if (row.status === "live" && live.length === 1) {
    throw bad(409, "last_live_version", `${version} is the only live version; activate another one first`, "version");
  }
  if (row.status === "live" && live[0]?.version === version) {
    // The next live version serves from now on.
    const next = live.find((r) => r.version !== version)!;
    await deps.db.update(models).set({ servedAt: Date.now() }).where(eq(models.version, next.version));
  }
  await deps.db.update(models).set({ status: "retired", retiredAt: Date.now() }).where(eq(models.version, version));
  invalidateLive();
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
