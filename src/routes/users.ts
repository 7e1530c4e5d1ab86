/**
 * /v1/users/{user_id} — recommendations (publishable or secret key), state summary and forgetting
 * a user (secret key).
 */
import { createRoute, z } from "@hono/zod-openapi";

import { servingDeps } from "./experiment-serving";

import { recommendWith, rerankWith } from "../experiments/strategies";

import { MAX_RANK_ITEMS } from "../domain/rerank";

import { arrangeFields, arrangementOf } from "../lib/arrange-input";

import { arrayLimit } from "../lib/guards";

import type { AppEnv } from "../env";

import { CATEGORY_SEPARATOR, parseCategory } from "../catalog/schemas";

import { lazyRebuild } from "../domain/rebuild";


import { ApiError } from "../errors";

import { forgetUser } from "../domain/forget";

import { errors, featureApp, json } from "../lib/openapi";

import { Id } from "../lib/schemas";

import { StoreUnavailableError } from "../state/store";

import { requireUser } from "../user-access";

import { Bool, TaggedRecommendationSchema, experimentQuery, filterQuery, filtersFrom, withMetadata } from "./schemas";

const Params = z.object({ user_id: Id.openapi({ param: { name: "user_id", in: "path" }, example: "shopper-42" }) });

const unavailable = (e: unknown, retryAfter: number): never => {
  if (e instanceof StoreUnavailableError) {
    throw new ApiError(503, "state_unavailable", e.message, { headers: { "Retry-After": String(retryAfter) } });
  }
  throw e;
};

const recs = createRoute({
  method: "get",
  path: "/{user_id}/recommendations",
  summary: "Recommendations for a user",
  description:
    "The k items the user is most likely to want next, from their long-term GRU state. Never an unavailable item (once a catalog is loaded) or one the user purchased; recent items are shown unless exclude_recent=true (repeat views are common in shops; see models/README.md), and every item the user already had, in any session, is left out with exclude_seen=true (shops where an item is had once: films, books). New users and every degradation get popular items, with `source` and `reason`. Publishable or secret key; with a publishable key an identified user needs a signed user token (`X-User-Token`) when REQUIRE_USER_TOKEN names `recommendations`.",
  tags: ["recommendations"],
  request: {
    params: Params,
    query: z.strictObject({
      ...filterQuery,
      exclude_recent: Bool.default("false").openapi({ description: "Leave out the user's recent items (the last RECENT_RING distinct items; default false: a shopper often returns to an item viewed before)." }),
      exclude_seen: Bool.default("false").openapi({
        description:
          "Leave out every item the user already had, across sessions: the seen filter of the user's state (at least the last 300 distinct items, up to 600; about 1% of other items are left out by mistake). For catalogs where an item is had once (films rated, books read); default false.",
      }),
      ...experimentQuery,
    }),
  },
  responses: { 200: json(TaggedRecommendationSchema.extend({ user_id: z.string() }), "Recommendations"), ...errors(403) },
});

const RankBody = z
  .strictObject({
    item_ids: z.array(Id).min(1).max(MAX_RANK_ITEMS).openapi({ description: `The shop's list (search results, a category page): at most ${MAX_RANK_ITEMS} ids; repeats count once.`, example: ["sku-1", "sku-2", "sku-3"] }),
    category: z.string().min(1).max(900).optional().openapi({ description: 'Only items under this category ("Shoes > Running"); the others go to `excluded`.' }),
    min_price: z.number().finite().nonnegative().optional(),
    max_price: z.number().finite().nonnegative().optional(),
    exclude: z.array(Id).max(100).optional().openapi({ description: "Item ids never to return (they go to `excluded`)." }),
    exclude_recent: z.boolean().default(false).openapi({ description: "Leave out the user's recent items (default false)." }),
    exclude_seen: z.boolean().default(false).openapi({ description: "Leave out every item of the user's seen filter (default false)." }),
    include: z.enum(["metadata"]).optional().openapi({ description: "metadata: add each item's catalog fields." }),
    ...arrangeFields,
  })
  .openapi("RankRequest");

const RankResponse = TaggedRecommendationSchema.extend({
  user_id: z.string(),
  excluded: z.array(z.string()).openapi({ description: "Given items the rules leave out (unavailable, purchased, excluded or outside the filters), in the given order." }),
}).openapi("RankedList");

const rank = createRoute({
  method: "post",
  path: "/{user_id}/rank",
  summary: "Re-rank a shop's list for a user",
  description:
    `Personalized ranking of the shop's own items (search results, a category page; at most ${MAX_RANK_ITEMS}): every given item that passes the rules, in the model's order with its score, items the model does not know after them in popularity order (source \`popular\`), items the rules leave out in \`excluded\`. Boosts, the cap per category (over-cap items follow the capped list, none is dropped) and the exploration share apply as on recommendations. A new or unknown user, and every degradation, gets popularity order with the reason. Lists are served in experiments on placement \`rank\` by default (a variant's strategy ranks: a model version, popular, or \`given_order\`: the shop's own order). Publishable or secret key, as recommendations.`,
  tags: ["recommendations"],
  request: {
    params: Params,
    query: z.strictObject(experimentQuery),
    body: { required: true, content: { "application/json": { schema: RankBody } } },
  },
  middleware: [arrayLimit<AppEnv>(() => MAX_RANK_ITEMS, "items to rank", "item_ids", "item_ids")] as const,
  responses: { 200: json(RankResponse, "The list re-ranked"), ...errors(403, 413, 415) },
});

const UserSummary = z
  .object({
    user_id: z.string(),
    model_version: z.string(),
    state_version: z.number().int(),
    event_count: z.number().int(),
    session_count: z.number().int(),
    updated_at: z.string(),
    last_event_at: z.string(),
    session_started_at: z.string(),
    recent_items: z.number().int(),
  })
  .openapi("UserSummary");

const summary = createRoute({
  method: "get",
  path: "/{user_id}",
  summary: "A user's state summary",
  description:
    "Counts and times of the stored state (never the vector itself). Secret key, or a publishable key with the user's signed token (`X-User-Token`; anonymous `anon-<uuid>` visitors need none).",
  tags: ["users"],
  request: { params: Params },
  responses: { 200: json(UserSummary, "The summary"), ...errors(403, 404, 409, 503) },
});

const ForgetResult = z
  .object({
    user_id: z.string(),
    deleted: z.boolean().openapi({ description: "Whether the state store held anything of the user." }),
    events_deleted: z.number().int().nullable().openapi({ description: "Logged events deleted (null while the log part is pending)." }),
    log: z.enum(["deleted", "pending"]),
  })
  .openapi("ForgetResult");

const remove = createRoute({
  method: "delete",
  path: "/{user_id}",
  summary: "Forget a user",
  description:
    "Deletes the user's states (every model version), pending events, de-duplication memory, purchases, the events still waiting to be logged, the logged events, experiment exposures and list events; a later drain or rebuild never brings them back. With the event log (D1) unavailable the answer is 202 with `log: \"pending\"`: everything in Redis is gone at once, the log part is done by the next drain (cron or POST /v1/admin/eventlog/drain), and until then no rebuild replays the user's old events. Repeating the call is safe. Secret key.",
  tags: ["users"],
  request: { params: Params },
  responses: {
    200: json(ForgetResult, "Forgotten"),
    202: json(ForgetResult, "Forgotten in the state store; the event log's part is owed to the next drain"),
    ...errors(403, 503),
  },
});

export const users = featureApp()
  .openapi(recs, async (c) => {
    const { user_id } = c.req.valid("param");
    const q = c.req.valid("query");
    await requireUser(c, user_id, "recommendations");
    const f = filtersFrom(q, c.var.config.MAX_K);
    const rebuild = lazyRebuild(c.var.rebuildDeps, c.var.storeFor, c.var.background);
    const rec = await servingDeps(c, q.variant).serve({ placement: q.placement ?? "home", userId: user_id, forceVariant: q.variant }, async (strategy) => {
      const deps = { store: c.var.store, model: c.var.model, context: c.var.rankContext, rebuild, live: c.var.live.all, storeFor: c.var.storeFor };
      const r = await recommendWith(deps, strategy, user_id, {
        ...f,
        excludeRecent: q.exclude_recent === "true",
        excludeSeen: q.exclude_seen === "true",
      });
      if (r.rebuilt) {
        c.header("Server-Timing", `rebuild;dur=${r.rebuilt.ms};desc="${r.rebuilt.events} events replayed from the log"`);
        delete r.rebuilt;
      }
      return q.include === "metadata" ? withMetadata(c.var.db, r, c.var.config.DB_TIMEOUT_MS) : r;
    });
    return c.json({ user_id, ...rec }, 200);
  })
  .openapi(rank, async (c) => {
    const { user_id } = c.req.valid("param");
    const q = c.req.valid("query");
    const b = c.req.valid("json");
    await requireUser(c, user_id, "recommendations");
    if (b.min_price !== undefined && b.max_price !== undefined && b.min_price > b.max_price) {
      throw new ApiError(400, "invalid_request", "body.min_price: must not exceed max_price", { field: "body.min_price" });
    }
    const category = b.category !== undefined ? parseCategory(b.category).join(CATEGORY_SEPARATOR) : undefined;
    if (category === "") throw new ApiError(400, "invalid_request", "body.category: names no category", { field: "body.category" });
    const rebuild = lazyRebuild(c.var.rebuildDeps, c.var.storeFor, c.var.background);
    const rec = await servingDeps(c, q.variant).serve({ placement: q.placement ?? "rank", userId: user_id, forceVariant: q.variant }, async (strategy) => {
      const deps = { store: c.var.store, model: c.var.model, context: c.var.rankContext, rebuild, live: c.var.live.all, storeFor: c.var.storeFor };
      const r = await rerankWith(deps, strategy, user_id, b.item_ids, {
        category,
        minPrice: b.min_price,
        maxPrice: b.max_price,
        exclude: b.exclude,
        excludeRecent: b.exclude_recent,
        excludeSeen: b.exclude_seen,
        arrange: arrangementOf(b),
      });
      if (r.rebuilt) {
        c.header("Server-Timing", `rebuild;dur=${r.rebuilt.ms};desc="${r.rebuilt.events} events replayed from the log"`);
        delete r.rebuilt;
      }
      return b.include === "metadata" ? withMetadata(c.var.db, r, c.var.config.DB_TIMEOUT_MS) : r;
    });
    return c.json({ user_id, ...rec }, 200);
  })
  .openapi(summary, async (c) => {
    const { user_id: id } = c.req.valid("param");
    await requireUser(c, id, "read");
    const snap = await c.var.store.read(id).catch((e) => unavailable(e, c.var.config.RETRY_AFTER_SECONDS));
    if (!snap.raw) throw new ApiError(404, "user_not_found", "no state is stored for this user", { field: "user_id" });
    if (!snap.state) throw new ApiError(409, "state_corrupt", snap.corrupt ?? "state unreadable", { field: "user_id" });
    const s = snap.state;
    return c.json(
      {
        user_id: id,
        model_version: c.var.store.modelVersion,
        state_version: s.seq,
        event_count: s.eventCount,
        session_count: s.sessionCount,
        updated_at: new Date(s.updatedAtMs).toISOString(),
        last_event_at: new Date(s.lastEventMs).toISOString(),
        session_started_at: new Date(s.sessionStartMs).toISOString(),
        recent_items: s.ring.length,
      },
      200,
    );
  })
  .openapi(remove, async (c) => {
    const { user_id: id } = c.req.valid("param");
    const deps = { store: c.var.store, db: c.var.db, liveVersions: c.var.live.rows.map((r) => r.version), timeoutMs: c.var.config.DB_TIMEOUT_MS };
    const r = await forgetUser(deps, id).catch((e) => unavailable(e, c.var.config.RETRY_AFTER_SECONDS));
    return c.json({ user_id: id, deleted: r.existed, events_deleted: r.eventsDeleted, log: r.log }, r.log === "deleted" ? 200 : 202);
  });
