/**
 * /v1/admin — operations (secret key): recompute the popularity lists now, look at them, move
 * event-log rows still waiting in the outbox (D1 was failing) into D1.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { drainOutbox } from "../eventlog/outbox";

import { errors, featureApp, json } from "../lib/openapi";

import { popularLists, refreshPopular } from "../popular/lists";

import { popularOptions } from "../services";

const PopularSummary = z
  .object({
    computed_at: z.string().nullable(),
    events: z.number().int(),
    overall: z.array(z.tuple([z.string(), z.number()])),
    categories: z.number().int(),
  })
  .openapi("PopularSummary");

const summarize = (l: Awaited<ReturnType<typeof refreshPopular>> | null, top: number) => ({
  computed_at: l ? new Date(l.computed_at).toISOString() : null,
  events: l?.events ?? 0,
  overall: (l?.overall ?? []).slice(0, top),
  categories: Object.keys(l?.by_category ?? {}).length,
});

const refresh = createRoute({
  method: "post",
  path: "/popular/refresh",
  summary: "Recompute the popularity lists now",
  tags: ["admin"],
  responses: { 200: json(PopularSummary, "The new lists (top 20 shown)"), ...errors(403, 503) },
});

const show = createRoute({
  method: "get",
  path: "/popular",
  summary: "The current popularity lists",
  tags: ["admin"],
  request: { query: z.object({ top: z.coerce.number().int().min(1).max(500).default(20) }) },
  responses: { 200: json(PopularSummary, "The cached lists"), ...errors(403) },
});

const drain = createRoute({
  method: "post",
  path: "/eventlog/drain",
  summary: "Move event-log rows waiting in the outbox into D1",
  tags: ["admin"],
  responses: { 200: json(z.object({ replayed: z.number().int() }), "Replayed rows"), ...errors(403, 503) },
});

export const admin = featureApp()
  .openapi(refresh, async (c) => {
    const lists = await refreshPopular({ db: c.var.db, shared: c.var.shared, catalog: c.var.catalog, options: popularOptions(c.var.config) });
    return c.json(summarize(lists, 20), 200);
  })
  .openapi(show, async (c) => {
    const lists = await popularLists({
      db: c.var.db,
      shared: c.var.shared,
      catalog: c.var.catalog,
      options: popularOptions(c.var.config),
      refreshMs: c.var.config.POPULAR_REFRESH_SECONDS * 1000,
      background: c.var.background,
    });
    return c.json(summarize(lists, c.req.valid("query").top), 200);
  })
  .openapi(drain, async (c) => {
    const replayed = await drainOutbox({ db: c.var.db, outbox: c.var.store, shared: c.var.shared });
    return c.json({ replayed }, 200);
  });
