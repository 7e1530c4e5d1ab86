/**
 * /v1/admin/models — the model registry (secret key).
 *   GET    /                           every version with status, metrics, digests; which one serves
 *   GET    /{version}                  one version
 *   PUT    /{version}/files/{file}     upload one file (raw body, `x-content-sha256` required)
 *   PUT    /{version}/files/{file}/parts/{n}  one part of a file too large for one body
 *   DELETE /{version}                  discard an unfinished upload (its stored files)
 *   POST   /{version}                  stage the uploaded files ({files: {name: sha256}}): verified
 *   POST   /{version}/activate         serve it ({shadow: true}: live, advanced, not serving;
 *                                      {previous: "auto" | "shadow" | "retire"}: the replaced one)
 *   POST   /{version}/retire           stop serving and advancing it
 *   POST   /{version}/rebuild          rebuild active users' states for it from the event log (paged)
 *   GET    /{version}/files/{file}     download a file (what `npm run retrain` warm-starts from)
 *   GET    /catalog                    the catalog's ids and categories as NDJSON (retraining input)
 * Orchestration is in src/domain/models.ts; `npm run model` is the command line for all of it.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { asc, gt } from "drizzle-orm";

import { items } from "../../schema/schema";

import { type ModelRow } from "../../schema/schema";

import {
  type RegistryDeps,
  RUNTIME_BYTES,
  activateVersion,
  discardUpload,
  ensureBundled,
  getVersion,
  listVersions,
  putFile,
  putFilePart,
  rebuildVersion,
  retireVersion,
  stageVersion,
} from "../domain/models";

import { ApiError } from "../errors";

import { errors, featureApp, json } from "../lib/openapi";

import { bundledFiles, bundledWasm, versionPrefix } from "../model/registry";

import type { AppEnv } from "../env";

import type { Context } from "hono";

const Version = z.string().min(1).max(128).openapi({ param: { name: "version", in: "path" }, example: "ml-small-20261123-44d4aff1" });
const FileName = z.string().min(1).max(64).openapi({ param: { name: "file", in: "path" }, example: "weights.bin" });

const ModelVersion = z
  .object({
    version: z.string(),
    name: z.string(),
    status: z.enum(["staged", "live", "retired"]),
    serving: z.boolean().openapi({ description: "This live version answers recommendations (the others are shadows)." }),
    source: z.enum(["r2", "bundled"]),
    manifest_sha256: z.string(),
    files: z.record(z.string(), z.object({ bytes: z.number().int(), sha256: z.string() })),
    metrics: z.record(z.string(), z.unknown()),
    memory_mb: z.number().openapi({
      description: "Estimated memory this version takes in an isolate once loaded (MiB), onnxruntime's own base (`memory.runtime_mb` of the list) not included.",
    }),
    created_at: z.string(),
    activated_at: z.string().nullable(),
    served_at: z.string().nullable(),
    retired_at: z.string().nullable(),
  })
  .openapi("ModelVersion");

const Memory = z
  .object({
    budget_mb: z.number().openapi({ description: "MODEL_MEMORY_BUDGET_MB: what one isolate may give to models (onnxruntime, the live versions, one load's files)." }),
    runtime_mb: z.number().openapi({ description: "onnxruntime's own base, once per isolate (measured)." }),
    live_mb: z.number().openapi({ description: "Estimated: onnxruntime plus every live version, settled." }),
  })
  .openapi("ModelMemory");
const Registry = z
  .object({ serving: z.string().nullable(), live: z.array(z.string()), memory: Memory, versions: z.array(ModelVersion) })
  .openapi("ModelRegistry");
const Change = z
  .object({
    version: ModelVersion,
    live: z.array(z.string()),
    serving: z.string().nullable(),
    retired: z.array(z.string()).openapi({ description: "Versions this request retired (an activation that had no room to keep the replaced version as a shadow)." }),
  })
  .openapi("ModelChange");
const Staged = ModelVersion.extend({
  loaded: z.boolean().openapi({
    description:
      "The graphs were loaded and the golden vectors replayed while staging. False: the version does not fit the memory budget beside the live versions, so that check runs at activation, after the version it replaces is unloaded.",
  }),
}).openapi("StagedModelVersion");

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function view(r: ModelRow, serving: string | null): z.infer<typeof ModelVersion> {
  return {
    version: r.version,
    name: r.name,
    status: r.status,
    serving: r.status === "live" && r.version === serving,
    source: r.source,
    manifest_sha256: r.manifestSha256,
    files: r.files,
    metrics: r.metrics,
    memory_mb: Math.round((r.memoryBytes / 2 ** 20) * 100) / 100,
    created_at: iso(r.createdAt)!,
    activated_at: iso(r.activatedAt),
    served_at: iso(r.servedAt),
    retired_at: iso(r.retiredAt),
  };
}

function deps(c: Context<AppEnv>): RegistryDeps {
  const cfg = c.var.config;
  const files = bundledFiles(cfg.MODEL_NAME);
  return {
    db: c.var.db,
    bucket: c.env.MODEL_BUCKET,
    wasm: bundledWasm(),
    memoryBudgetBytes: cfg.MODEL_MEMORY_BUDGET_MB * 2 ** 20,
    maxFileBytes: cfg.MAX_MODEL_FILE_BYTES,
    maxBodyBytes: cfg.MAX_MODEL_BODY_BYTES,
    ...(files ? { bundled: { name: cfg.MODEL_NAME, files } } : {}),
  };
}

const change = (r: { row: ModelRow; live: ModelRow[]; retired?: string[] }) => {
  const serving = r.live[0]?.version ?? null;
  return { version: view(r.row, serving), live: r.live.map((x) => x.version), serving, retired: r.retired ?? [] };
};

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 100) / 100;

const list = createRoute({
  method: "get",
  path: "/",
  summary: "List model versions",
  tags: ["models"],
  responses: { 200: json(Registry, "Every version, newest first"), ...errors(403) },
});

const catalogRoute = createRoute({
  method: "get",
  path: "/catalog",
  summary: "The catalog's ids and categories (NDJSON)",
  description: "One `{id, category_path}` per line for every item not deleted: what retraining initialises new items' rows from.",
  tags: ["models"],
  responses: { 200: { description: "NDJSON stream" }, ...errors(403) },
});

const one = createRoute({
  method: "get",
  path: "/{version}",
  summary: "One model version",
  tags: ["models"],
  request: { params: z.object({ version: Version }) },
  responses: { 200: json(ModelVersion, "The version"), ...errors(403, 404) },
});

const upload = createRoute({
  method: "put",
  path: "/{version}/files/{file}",
  summary: "Upload one file of a new version",
  description:
    "Raw bytes (any content type), with header `x-content-sha256` (the file's SHA-256, hex). Up to MAX_MODEL_BODY_BYTES (64 MiB) in one body (413 `body_too_large`): a larger file, up to MAX_MODEL_FILE_BYTES, is sent in parts (`PUT .../files/{file}/parts/{n}`). Upload manifest.json first: it is checked as it arrives, so weights over MAX_MODEL_FILE_BYTES (413 `file_too_large`) or a model that cannot fit the memory budget (MODEL_MEMORY_BUDGET_MB) even on its own (413 `model_too_large`) are refused before they are sent; later files are checked against its sizes before their body is read (422 `size_mismatch`). A body that does not hash to its header is refused (422 `checksum_mismatch`). Any refusal abandons the upload: every file stored for the version so far is removed (the message says how many). Uploads left unfinished are removed after 24 hours, or at once with DELETE.",
  tags: ["models"],
  request: { params: z.object({ version: Version, file: FileName }), headers: z.object({ "x-content-sha256": z.string().length(64) }) },
  responses: {
    200: json(z.object({ version: z.string(), file: z.string(), bytes: z.number().int(), sha256: z.string() }), "Stored"),
    ...errors(403, 409, 413, 422, 503),
  },
});

const uploadPart = createRoute({
  method: "put",
  path: "/{version}/files/{file}/parts/{part}",
  summary: "Upload one part of a file too large for one request body",
  description:
    "A model file larger than MAX_MODEL_BODY_BYTES (64 MiB; Cloudflare refuses bodies over 100 MB) is sent as parts 1..N (an R2 multipart upload). Headers: `x-content-sha256` (this part's SHA-256), `x-file-sha256` (the whole file's, the same on every part), `x-upload-parts` (N). Part 1 starts the file (sending it again starts over); the others follow one at a time in any order. Every part but the last has part 1's size, at least 5 MiB (R2's rule), at most MAX_MODEL_BODY_BYTES; the whole file is at most MAX_MODEL_FILE_BYTES and, for the weights, the size the uploaded manifest gives them (checked from the first part). The answer says how many parts are stored; the part that completes the set completes the file, checks its SHA-256 and answers `complete: true` with its size and checksum, as a file sent whole. manifest.json is always sent whole. Refusals: 409 `upload_not_started` (a part before part 1) or `upload_mismatch` (another N or checksum than part 1's); 413 and 422 (`size_mismatch`, `checksum_mismatch`) abandon the version's upload, every file stored for it removed.",
  tags: ["models"],
  request: {
    params: z.object({ version: Version, file: FileName, part: z.coerce.number().int().min(1).openapi({ param: { name: "part", in: "path" }, example: 1 }) }),
    headers: z.object({ "x-content-sha256": z.string().length(64), "x-file-sha256": z.string().length(64), "x-upload-parts": z.coerce.number().int().min(1) }),
  },
  responses: {
    200: json(
      z.object({
        version: z.string(),
        file: z.string(),
        part: z.number().int(),
        parts: z.number().int(),
        received: z.number().int().openapi({ description: "Parts of this file stored so far." }),
        complete: z.boolean(),
        bytes: z.number().int().optional().openapi({ description: "Once complete: the file's size." }),
        sha256: z.string().optional().openapi({ description: "Once complete: the file's SHA-256 (what staging names)." }),
      }),
      "Stored",
    ),
    ...errors(400, 403, 409, 413, 422, 503),
  },
});

const discard = createRoute({
  method: "delete",
  path: "/{version}",
  summary: "Discard an unfinished upload",
  description: "Removes the files stored for a version that was uploaded but never staged. A registered version is immutable (409 `version_exists`): retire it instead.",
  tags: ["models"],
  request: { params: z.object({ version: Version }) },
  responses: { 200: json(z.object({ version: z.string(), removed: z.number().int() }), "Removed"), ...errors(400, 403, 409, 503) },
});

const stage = createRoute({
  method: "post",
  path: "/{version}",
  summary: "Stage an uploaded version",
  description:
    "Verifies the uploaded files (each against its SHA-256; the manifest parses, names this version and agrees with the weights' checksum; the graphs load; the golden vectors reproduce) and registers the version as `staged`. Sizes are checked first, from the stored files' metadata and the manifest: a version that cannot fit the memory budget on its own is refused (413 `model_too_large`) before anything is read or loaded. The graphs are loaded only where the version fits beside the live versions (`loaded: true`); otherwise that check runs at activation. A failure (413, 422 model_rejected) deletes the uploaded files and changes nothing else.",
  tags: ["models"],
  request: {
    params: z.object({ version: Version }),
    body: { required: true, content: { "application/json": { schema: z.object({ files: z.record(z.string(), z.string()) }) } } },
  },
  responses: { 201: json(Staged, "Staged"), ...errors(400, 403, 409, 413, 422, 503) },
});

const activate = createRoute({
  method: "post",
  path: "/{version}/activate",
  summary: "Activate a version",
  description:
    "Checks its files again and the memory budget (MODEL_MEMORY_BUDGET_MB) of what will be live afterwards (onnxruntime's base, every version that stays live, this one and its files while it loads), loads it, replays its golden vectors, then makes it live and serving. The version that served before is what `previous` says: `auto` (default) keeps it live as a shadow (its users' states keep advancing, a rollback is instant) when both fit, and retires it when they do not, so a replacement never needs room for two; `shadow` insists on keeping it (409 `over_memory_budget` when both do not fit); `retire` retires it. A retired version is unloaded before the new one loads; should the new one fail to load, the previous one serves again and nothing changed (422). `retired` in the answer lists what was retired (its files stay: activate it again to roll back). `{shadow: true}`: live and advanced by every event, but not serving (rebuild states, then activate); it must fit beside every live version.",
  tags: ["models"],
  request: {
    params: z.object({ version: Version }),
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z.object({
            shadow: z.boolean().default(false),
            previous: z.enum(["auto", "shadow", "retire"]).default("auto").openapi({ description: "What becomes of the version serving before (ignored with shadow: true)." }),
          }),
        },
      },
    },
  },
  responses: { 200: json(Change, "Live"), ...errors(403, 404, 409, 422) },
});

const retire = createRoute({
  method: "post",
  path: "/{version}/retire",
  summary: "Retire a version",
  description:
    "Neither served nor advanced any more, and unloaded from the isolates (each when it next reads the live set); its files stay in R2 (activate it again to roll back). The last live version cannot be retired: activate its replacement, which retires it when both do not fit the memory budget.",
  tags: ["models"],
  request: { params: z.object({ version: Version }) },
  responses: { 200: json(Change, "Retired"), ...errors(403, 404, 409) },
});

const rebuild = createRoute({
  method: "post",
  path: "/{version}/rebuild",
  summary: "Rebuild users' states for a live version from the event log",
  description:
    "For users with events since `since` (default: 30 days ago) who have no state for this version: replay their last REBUILD_EVENTS logged events through it. Paged by user id: pass `next_after_user` back as `after_user` until it is null.",
  tags: ["models"],
  request: {
    params: z.object({ version: Version }),
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z.object({
            since: z.number().int().nonnegative().optional().openapi({ description: "ms since the epoch" }),
            after_user: z.string().max(256).default(""),
            limit: z.number().int().min(1).max(1000).default(200),
          }),
        },
      },
    },
  },
  responses: {
    200: json(
      z.object({
        users: z.number().int(),
        rebuilt: z.number().int(),
        kept: z.number().int(),
        cold: z.number().int(),
        events_replayed: z.number().int(),
        next_after_user: z.string().nullable(),
        ms: z.number(),
      }),
      "One page",
    ),
    ...errors(403, 404, 409, 503),
  },
});

const download = createRoute({
  method: "get",
  path: "/{version}/files/{file}",
  summary: "Download a file of a version",
  tags: ["models"],
  request: { params: z.object({ version: Version, file: FileName }) },
  responses: { 200: { description: "The bytes (`x-content-sha256` says their SHA-256)" }, ...errors(403, 404) },
});

const servingOf = (c: Context<AppEnv>) => c.var.live.rows[0]?.version ?? c.var.model.known?.version ?? null;

export const models = featureApp()
  .openapi(list, async (c) => {
    const rows = await listVersions(deps(c));
    const live = rows.filter((r) => r.status === "live").sort((a, b) => (b.servedAt ?? -1) - (a.servedAt ?? -1) || (b.activatedAt ?? 0) - (a.activatedAt ?? 0));
    const serving = live[0]?.version ?? null;
    const memory = {
      budget_mb: c.var.config.MODEL_MEMORY_BUDGET_MB,
      runtime_mb: mb(RUNTIME_BYTES),
      live_mb: mb(live.reduce((n, r) => n + r.memoryBytes, RUNTIME_BYTES)),
    };
    return c.json({ serving, live: live.map((r) => r.version), memory, versions: rows.map((r) => view(r, serving)) }, 200);
  })
  .openapi(catalogRoute, async (c) => {
    const db = c.var.db;
    const enc = new TextEncoder();
    let after = "";
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        const page = await db
          .select({ id: items.id, categoryPath: items.categoryPath, deletedAt: items.deletedAt })
          .from(items)
          .where(gt(items.id, after))
          .orderBy(asc(items.id))
          .limit(2000);
        if (!page.length) return ctrl.close();
        after = page[page.length - 1]!.id;
        ctrl.enqueue(enc.encode(page.filter((r) => r.deletedAt === null).map((r) => `${JSON.stringify({ id: r.id, category_path: r.categoryPath })}\n`).join("")));
      },
    });
    return c.body(stream, 200, { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" });
  })
  .openapi(one, async (c) => {
    const d = deps(c);
    await ensureBundled(d);
    const row = await getVersion(d.db, c.req.valid("param").version);
    if (!row) throw new ApiError(404, "model_not_found", "no such version in the registry", { field: "version" });
    return c.json(view(row, servingOf(c)), 200);
  })
  .openapi(upload, async (c) => {
    const { version, file } = c.req.valid("param");
    const length = Number(c.req.header("content-length"));
    const stored = await putFile(
      deps(c),
      version,
      file,
      c.req.valid("header")["x-content-sha256"].toLowerCase(),
      () => c.req.arrayBuffer(),
      Number.isFinite(length) && length >= 0 ? length : undefined,
    );
    return c.json({ version, file, ...stored }, 200);
  })
  .openapi(uploadPart, async (c) => {
    const { version, file, part } = c.req.valid("param");
    const h = c.req.valid("header");
    const length = Number(c.req.header("content-length"));
    const stored = await putFilePart(deps(c), {
      version,
      file,
      part,
      parts: h["x-upload-parts"],
      partSha256: h["x-content-sha256"].toLowerCase(),
      fileSha256: h["x-file-sha256"].toLowerCase(),
      body: () => c.req.arrayBuffer(),
      ...(Number.isFinite(length) && length >= 0 ? { declared: length } : {}),
    });
    return c.json({ version, file, ...stored }, 200);
  })
  .openapi(discard, async (c) => {
    const version = c.req.valid("param").version;
    return c.json({ version, removed: await discardUpload(deps(c), version) }, 200);
  })
  .openapi(stage, async (c) => {
    const { row, loaded } = await stageVersion(deps(c), c.req.valid("param").version, c.req.valid("json").files);
    return c.json({ ...view(row, servingOf(c)), loaded }, 201);
  })
  .openapi(activate, async (c) => {
    const body = c.req.header("content-type")?.includes("json") ? c.req.valid("json") : { shadow: false, previous: "auto" as const };
    return c.json(
      change(await activateVersion(deps(c), c.req.valid("param").version, { shadow: body?.shadow ?? false, previous: body?.previous ?? "auto" })),
      200,
    );
  })
  .openapi(retire, async (c) => c.json(change(await retireVersion(deps(c), c.req.valid("param").version)), 200))
  .openapi(rebuild, async (c) => {
    const body = c.req.header("content-type")?.includes("json") ? c.req.valid("json") : { after_user: "", limit: 200, since: undefined };
    const cfg = c.var.config;
    const page = await rebuildVersion(
      {
        ...deps(c),
        storeFor: (m) => c.var.storeFor({ version: m.version, stateSize: m.stateSize }),
        rebuild: { ringCapacity: cfg.RECENT_RING, maxEvents: cfg.REBUILD_EVENTS, dedupWindowMs: cfg.DEDUP_WINDOW_SECONDS * 1000, timeoutMs: cfg.DB_TIMEOUT_MS * 5 },
      },
      c.req.valid("param").version,
      { sinceMs: body.since ?? Date.now() - 30 * 86_400_000, afterUser: body.after_user ?? "", limit: body.limit ?? 200 },
    );
    return c.json(page, 200);
  })
  .openapi(download, async (c) => {
    const { version, file } = c.req.valid("param");
    const row = await getVersion(c.var.db, version);
    if (!row || !row.files[file]) throw new ApiError(404, "not_found", `version ${version} has no file ${file}`, { field: "file" });
    const headers = { "content-type": "application/octet-stream", "x-content-sha256": row.files[file].sha256 };
    if (row.source === "bundled") {
      const files = bundledFiles(row.name);
      if (!files) throw new ApiError(404, "not_found", `the bundled model ${row.name} is not in this worker`);
      if (file === "manifest.json") return c.body(JSON.stringify(files.manifest), 200, { ...headers, "content-type": "application/json" });
      const m = files.manifest as { graphs: Record<string, { file: string } | undefined>; weights: { file: string } };
      const key = (["step", "score", "similar"] as const).find((g) => m.graphs[g]?.file === file);
      const bytes = key ? files[key] : file === m.weights.file ? files.weights : undefined;
      if (!bytes) throw new ApiError(404, "not_found", `the bundled model has no file ${file}`);
      return c.body(new Uint8Array(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) as Uint8Array<ArrayBuffer>, 200, headers);
    }
    const obj = await c.env.MODEL_BUCKET?.get(`${versionPrefix(version)}/${file}`);
    if (!obj) throw new ApiError(404, "not_found", `${file} of ${version} is not in the model bucket`);
    return c.body(obj.body, 200, headers);
  });
