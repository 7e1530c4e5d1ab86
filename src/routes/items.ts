/**
 * /v1/items — the shop's catalog (secret key), and similar items (publishable or secret key).
 *   PUT    /{item_id}          create or replace an item
 *   PATCH  /{item_id}          partial update (availability, price, ...)
 *   GET    /{item_id}          read
 *   DELETE /{item_id}          delete (never recommended again)
 *   POST   /batch              JSON array or NDJSON, up to MAX_CATALOG_BATCH rows; bad rows are
 *                              reported by index while the good ones are stored
 *   GET    /{item_id}/similar  items like this one ("customers also viewed")
 */
import { createRoute, z } from "@hono/zod-openapi";

import type { Context } from "hono";

import { type Db, deleteItem, existingIds, getItem, patchItems, upsertItems } from "../catalog/db";

import { ItemInput, ItemPatch, ItemSchema, toItem } from "../catalog/schemas";

import { similarWith } from "../experiments/strategies";

import { requireUser } from "../user-access";

import { servingDeps } from "./experiment-serving";

import type { AppEnv } from "../env";

import { ApiError } from "../errors";

import { errors, featureApp, json, validationError } from "../lib/openapi";

import { Id } from "../lib/schemas";

import { TaggedRecommendationSchema, experimentQuery, filterQuery, filtersFrom, withMetadata } from "./schemas";


const Params = z.object({ item_id: Id.openapi({ param: { name: "item_id", in: "path" }, example: "sku-123" }) });


/** Does the serving model know these ids? (false for all when the model is unavailable) */
async function modelKnows(c: Context<AppEnv>): Promise<(id: string) => boolean> {
  const loaded = await c.var.model.get();
  return loaded.ok ? (id) => loaded.model.rowOf(id) !== undefined : () => false;
}

/** After a write: publish the revision to other isolates and bring this isolate's copy up to date. */
async function published(c: Context<AppEnv>, rev: number) {
  await Promise.all([
    c.var.shared
      .raiseCatalogRev(rev)
      .catch((e: Error) => console.warn(`catalog revision not published (others sync within CATALOG_MAX_STALE_SECONDS): ${e.message}`)),
    c.var.catalog.sync(c.var.db).catch((e: Error) => console.warn(`catalog sync after write failed: ${e.message}`)),
  ]);
}

const dbCall = async <T>(what: string, retryAfter: number, fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    console.error(`catalog ${what} failed`, (e as Error).stack);
    throw new ApiError(503, "catalog_unavailable", `catalog database unavailable (${what}); retry`, { headers: { "Retry-After": String(retryAfter) } });
  }
};

const ItemOut = json(ItemSchema, "The item");

const put = createRoute({
  method: "put",
  path: "/{item_id}",
  summary: "Create or replace an item",
  tags: ["catalog"],
  request: { params: Params, body: { required: true, content: { "application/json": { schema: ItemInput } } } },
  responses: { 200: ItemOut, ...errors(403, 413, 415, 503) },
});

const patch = createRoute({
  method: "patch",
  path: "/{item_id}",
  summary: "Update some fields of an item",
  description: "Fields not sent keep their values; `null` clears a nullable field. The usual use: availability and price.",
  tags: ["catalog"],
  request: { params: Params, body: { required: true, content: { "application/json": { schema: ItemPatch } } } },
  responses: { 200: ItemOut, ...errors(403, 404, 413, 415, 503) },
});

const get = createRoute({
  method: "get",
  path: "/{item_id}",
  summary: "Read an item",
  tags: ["catalog"],
  request: { params: Params },
  responses: { 200: ItemOut, ...errors(403, 404, 503) },
});

const del = createRoute({
  method: "delete",
  path: "/{item_id}",
  summary: "Delete an item",
  description: "The item is never recommended again. Logged events on it are kept (they are history).",
  tags: ["catalog"],
  request: { params: Params },
  responses: { 200: json(z.object({ id: z.string(), deleted: z.literal(true) }), "Deleted"), ...errors(403, 404, 503) },
});

const RowError = z.object({ index: z.number().int(), id: z.string().optional(), field: z.string(), message: z.string(), code: z.string() });

const BatchResult = z
  .object({
    received: z.number().int(),
    stored: z.number().int().openapi({ description: "Rows written (a repeated id counts once: the last row wins)." }),
    rejected: z.number().int(),
    errors: z.array(RowError).openapi({ description: "One entry per rejected row (at most 1000 listed)." }),
    not_in_model: z.number().int().openapi({ description: "Stored items the serving model was not trained on (ranked with a warm-start row from their category until a retrain)." }),
    catalog_revision: z.number().int(),
  })
  .openapi("CatalogBatchResult");

const batch = createRoute({
  method: "post",
  path: "/batch",
  summary: "Upsert many items",
  description:
    "A JSON array or NDJSON (one item per line, `Content-Type: application/x-ndjson`) of up to MAX_CATALOG_BATCH (default 10,000) items. Rows that fail validation are reported by index; the others are stored in one transaction. With `?partial=true` rows are partial updates of existing items (id required; unknown ids are row errors).",
  tags: ["catalog"],
  request: {
    query: z.object({ partial: z.enum(["true", "false"]).default("false") }),
    body: {
      required: true,
      content: {
        "application/json": { schema: { type: "array", items: { $ref: "#/components/schemas/ItemInput" } } },
        "application/x-ndjson": { schema: { type: "string", description: "One ItemInput (or ItemPatch) JSON object per line." } },
      },
    },
  },
  responses: { 200: json(BatchResult, "Stored rows and per-row errors"), ...errors(403, 413, 415, 503) },
});

/** Rows of a JSON-array or NDJSON body; lines that are not JSON become row errors. */
async function readRows(c: Context<AppEnv>): Promise<{ rows: unknown[]; bad: Map<number, string> }> {
  const type = (c.req.header("content-type") ?? "").toLowerCase();
  // Decoded by hand: workerd warns when .text() reads a body whose type is not text (NDJSON).
  const text = new TextDecoder().decode(await c.req.arrayBuffer());
  const bad = new Map<number, string>();
  if (/^application\/(x-)?ndjson|^application\/jsonl|^application\/x-jsonlines/.test(type)) {
    const rows: unknown[] = [];
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        rows.push(JSON.parse(line));
      } catch (e) {
        bad.set(rows.length, `line is not JSON: ${(e as Error).message}`);
        rows.push(undefined);
      }
    }
    return { rows, bad };
  }
  if (!/^application\/json|\+json/.test(type)) throw new ApiError(415, "unsupported_media_type", "send application/json (an array) or application/x-ndjson");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "malformed_json", `body is not valid JSON: ${(e as Error).message}`, { field: "body" });
  }
  if (!Array.isArray(body)) throw new ApiError(400, "invalid_request", "body: must be a JSON array of items (or NDJSON)", { field: "body" });
  return { rows: body, bad };
}

const similar = createRoute({
  method: "get",
  path: "/{item_id}/similar",
  summary: "Similar items",
  description:
    'Items whose learned embeddings are closest to this one ("customers also viewed"), with the same filters as recommendations. An item only the catalog knows gets popular items of its category (`reason: unknown-item`). Publishable or secret key.',
  tags: ["recommendations"],
  request: {
    params: Params,
    query: z.strictObject({
      ...filterQuery,
      user_id: Id.optional().openapi({ description: "Also leave out what this user purchased; with it the list takes part in the placement's experiment." }),
      ...experimentQuery,
    }),
  },
  responses: { 200: json(TaggedRecommendationSchema.extend({ item_id: z.string() }), "Similar items"), ...errors(403, 404) },
});

export const items = featureApp()
  .openapi(put, async (c) => {
    const { item_id } = c.req.valid("param");
    const body = c.req.valid("json");
    if (body.id !== undefined && body.id !== item_id) throw new ApiError(400, "invalid_request", "id: differs from the id in the path", { field: "id" });
    const db = c.var.db;
    const retry = c.var.config.RETRY_AFTER_SECONDS;
    const rev = await dbCall("write", retry, () => upsertItems(db, [{ ...body, id: item_id }], Date.now()));
    await published(c, rev);
    const row = await dbCall("read", retry, () => getItem(db, item_id));
    if (!row) throw new ApiError(503, "catalog_unavailable", "item written but not readable yet; retry");
    return c.json(toItem(row, (await modelKnows(c))(item_id)), 200);
  })
  .openapi(patch, async (c) => {
    const { item_id } = c.req.valid("param");
    const body = c.req.valid("json");
    if (body.id !== undefined && body.id !== item_id) throw new ApiError(400, "invalid_request", "id: differs from the id in the path", { field: "id" });
    const db = c.var.db;
    const retry = c.var.config.RETRY_AFTER_SECONDS;
    if (!(await dbCall("read", retry, () => existingIds(db, [item_id]))).has(item_id)) {
      throw new ApiError(404, "item_not_found", `no item ${item_id} in the catalog`, { field: "item_id" });
    }
    const rev = await dbCall("write", retry, () => patchItems(db, [{ ...body, id: item_id }], Date.now()));
    await published(c, rev);
    const row = await dbCall("read", retry, () => getItem(db, item_id));
    if (!row) throw new ApiError(404, "item_not_found", `no item ${item_id} in the catalog`, { field: "item_id" });
    return c.json(toItem(row, (await modelKnows(c))(item_id)), 200);
  })
  .openapi(get, async (c) => {
    const { item_id } = c.req.valid("param");
    const row = await dbCall("read", c.var.config.RETRY_AFTER_SECONDS, () => getItem(c.var.db, item_id));
    if (!row) throw new ApiError(404, "item_not_found", `no item ${item_id} in the catalog`, { field: "item_id" });
    return c.json(toItem(row, (await modelKnows(c))(item_id)), 200);
  })
  .openapi(del, async (c) => {
    const { item_id } = c.req.valid("param");
    const rev = await dbCall("write", c.var.config.RETRY_AFTER_SECONDS, () => deleteItem(c.var.db, item_id, Date.now()));
    if (rev === null) throw new ApiError(404, "item_not_found", `no item ${item_id} in the catalog`, { field: "item_id" });
    await published(c, rev);
    return c.json({ id: item_id, deleted: true as const }, 200);
  })
  .openapi(batch, async (c) => {
    const partial = c.req.valid("query").partial === "true";
    const max = c.var.config.MAX_CATALOG_BATCH;
    const { rows, bad } = await readRows(c);
    if (rows.length === 0) throw new ApiError(400, "empty_batch", "send at least one item", { field: "items" });
    if (rows.length > max) throw new ApiError(413, "batch_too_large", `a catalog batch holds at most ${max} items, got ${rows.length}`, { field: "items" });
    const errs: z.infer<typeof RowError>[] = [];
    const good = new Map<string, (ItemInput & { id: string }) | (ItemPatch & { id: string })>();
    const lastIndex = new Map<string, number>();
    const schema = partial ? ItemPatch : ItemInput;
    rows.forEach((raw, index) => {
      const id = raw && typeof raw === "object" && typeof (raw as { id?: unknown }).id === "string" ? (raw as { id: string }).id : undefined;
      if (bad.has(index)) return void errs.push({ index, field: `items[${index}]`, message: bad.get(index)!, code: "malformed_json" });
      const r = schema.safeParse(raw);
      if (!r.success) {
        const e = validationError("json", r.error, raw, `items[${index}]`);
        return void errs.push({ index, id, field: e.extra.field ?? `items[${index}]`, message: e.message, code: "invalid_request" });
      }
      if (r.data.id === undefined)
        return void errs.push({ index, field: `items[${index}].id`, message: `items[${index}].id: required`, code: "invalid_request" });
      good.delete(r.data.id); // the last row of an id wins
      good.set(r.data.id, r.data as ItemInput & { id: string });
      lastIndex.set(r.data.id, index);
    });
    const db = c.var.db;
    const retry = c.var.config.RETRY_AFTER_SECONDS;
    let list = [...good.values()];
    if (partial && list.length) {
      const exist = await dbCall("read", retry, () => existingIds(db, [...good.keys()]));
      list = list.filter((r) => {
        if (exist.has(r.id)) return true;
        const index = lastIndex.get(r.id)!;
        errs.push({ index, id: r.id, field: `items[${index}].id`, message: `no item ${r.id} in the catalog`, code: "item_not_found" });
        return false;
      });
    }
    let rev = 0;
    if (list.length) {
      const now = Date.now();
      rev = await dbCall("write", retry, () =>
        partial ? patchItems(db, list as (ItemPatch & { id: string })[], now) : upsertItems(db, list as (ItemInput & { id: string })[], now),
      );
      await published(c, rev);
    }
    const knows = await modelKnows(c);
    errs.sort((a, b) => a.index - b.index);
    return c.json(
      {
        received: rows.length,
        stored: list.length,
        rejected: errs.length,
        errors: errs.slice(0, 1000),
        not_in_model: list.filter((r) => !knows(r.id)).length,
        catalog_revision: rev,
      },
      200,
    );
  })
  .openapi(similar, async (c) => {
    const { item_id } = c.req.valid("param");
    const q = c.req.valid("query");
    if (q.user_id !== undefined) await requireUser(c, q.user_id, "recommendations");
    const f = filtersFrom(q, c.var.config.MAX_K);
    const rec = await servingDeps(c, q.variant).serve({ placement: q.placement ?? "product", userId: q.user_id, forceVariant: q.variant }, async (strategy) => {
      let never: ReadonlySet<string> | undefined;
      if (q.user_id)
        never = await c.var.store.read(q.user_id).then(
          (s) => s.purchased,
          () => undefined,
        );
      const r = await similarWith({ store: c.var.store, model: c.var.model, context: c.var.rankContext }, strategy, item_id, { ...f, never });
      if (!r) throw new ApiError(404, "item_not_found", `neither the catalog nor the model knows item ${item_id}`, { field: "item_id" });
      return q.include === "metadata" ? withMetadata(c.var.db as Db, r, c.var.config.DB_TIMEOUT_MS) : r;
    });
    return c.json({ item_id, ...rec }, 200);
  });
