/**
 * /v1/admin/models — the model registry (secret key).
 *   GET    /                           every version with status, metrics, digests; which one serves
 *   GET    /{version}                  one version
 *   PUT    /{version}/files/{file}     upload one file (raw body, `x-content-sha256` required)
 *   POST   /{version}                  stage the uploaded files ({files: {name: sha256}}): verified
 *   POST   /{version}/activate         serve it ({shadow: true}: live, advanced, not serving)
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
  activateVersion,
  ensureBundled,
  getVersion,
  listVersions,
  putFile,
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
    memory_mb: z.number().openapi({ description: "Estimated memory per isolate when loaded (MiB)." }),
    created_at: z.string(),
    activated_at: z.string().nullable(),
    served_at: z.string().nullable(),
    retired_at: z.string().nullable(),
  })
  .openapi("ModelVersion");

const Registry = z.object({ serving: z.string().nullable(), live: z.array(z.string()), versions: z.array(ModelVersion) }).openapi("ModelRegistry");
const Change = z.object({ version: ModelVersion, live: z.array(z.string()), serving: z.string().nullable() }).openapi("ModelChange");

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
    ...(files ? { bundled: { name: cfg.MODEL_NAME, files } } : {}),
  };
}

const change = (r: { row: ModelRow; live: ModelRow[] }) => {
  const serving = r.live[0]?.version ?? null;
  return { version: view(r.row, serving), live: r.live.map((x) => x.version), serving };
};

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
    "Raw bytes (any content type), with header `x-content-sha256` (the file's SHA-256, hex). A body that does not hash to it is refused and nothing is stored. Up to MAX_MODEL_FILE_BYTES (64 MiB).",
  tags: ["models"],
  request: { params: z.object({ version: Version, file: FileName }), headers: z.object({ "x-content-sha256": z.string().length(64) }) },
  responses: {
    200: json(z.object({ version: z.string(), file: z.string(), bytes: z.number().int(), sha256: z.string() }), "Stored"),
    ...errors(403, 409, 413, 422, 503),
  },
});

const stage = createRoute({
  method: "post",
  path: "/{version}",
  summary: "Stage an uploaded version",
  description:
    "Verifies the uploaded files (each against its SHA-256; the manifest parses, names this version and agrees with the weights' checksum; the graphs load; the golden vectors reproduce) and registers the version as `staged`. A failure (422 model_rejected) deletes the uploaded files and changes nothing else.",
  tags: ["models"],
  request: {
    params: z.object({ version: Version }),
    body: { required: true, content: { "application/json": { schema: z.object({ files: z.record(z.string(), z.string()) }) } } },
  },
  responses: { 201: json(ModelVersion, "Staged"), ...errors(400, 403, 409, 422, 503) },
});

const activate = createRoute({
  method: "post",
  path: "/{version}/activate",
  summary: "Activate a version",
  description:
    "Checks its files again, loads it, checks the memory budget of all live versions (MODEL_MEMORY_BUDGET_MB), then makes it live and serving. The version that served before stays live as a shadow (its users' states keep advancing) until retired. `{shadow: true}`: live and advanced by every event, but not serving (rebuild states, then activate).",
  tags: ["models"],
  request: {
    params: z.object({ version: Version }),
    body: { required: false, content: { "application/json": { schema: z.object({ shadow: z.boolean().default(false) }) } } },
  },
  responses: { 200: json(Change, "Live"), ...errors(403, 404, 409, 422) },
});

const retire = createRoute({
  method: "post",
  path: "/{version}/retire",
  summary: "Retire a version",
  description: "Neither served nor advanced any more; its files stay in R2 (activate it again to roll back). The last live version cannot be retired.",
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
    return c.json({ serving, live: live.map((r) => r.version), versions: rows.map((r) => view(r, serving)) }, 200);
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
    const stored = await putFile(deps(c), version, file, await c.req.arrayBuffer(), c.req.valid("header")["x-content-sha256"].toLowerCase());
    return c.json({ version, file, ...stored }, 200);
  })
  .openapi(stage, async (c) => {
    const row = await stageVersion(deps(c), c.req.valid("param").version, c.req.valid("json").files);
    return c.json(view(row, servingOf(c)), 201);
  })
  .openapi(activate, async (c) => {
    const body = c.req.header("content-type")?.includes("json") ? c.req.valid("json") : { shadow: false };
    return c.json(change(await activateVersion(deps(c), c.req.valid("param").version, { shadow: body?.shadow ?? false })), 200);
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
