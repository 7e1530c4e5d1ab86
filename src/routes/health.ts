/**
 * GET /health: is the model loaded, are Redis and D1 reachable, which versions run. No key
 * needed; 200 when everything works, 503 otherwise (with the same body).
 */
import { createRoute, z } from "@hono/zod-openapi";

import { sql } from "drizzle-orm";

import { featureApp, json } from "../lib/openapi";
import { FORMAT_VERSION } from "../state/codec";

const Health = z
  .object({
    status: z.enum(["ok", "degraded"]),
    model: z.object({
      loaded: z.boolean(),
      name: z.string(),
      version: z.string().nullable(),
      items: z.number().int().optional(),
      error: z.string().optional(),
    }),
    redis: z.object({ reachable: z.boolean(), latency_ms: z.number().optional(), error: z.string().optional() }),
    database: z.object({ reachable: z.boolean(), latency_ms: z.number().optional(), error: z.string().optional() }),
    catalog: z.object({ items: z.number().int(), synced_seconds_ago: z.number().nullable() }),
    versions: z.object({ api: z.string(), state_format: z.number().int() }),
  })
  .openapi("Health");

const route = createRoute({
  method: "get",
  path: "/",
  summary: "Health",
  tags: ["operations"],
  security: [],
  responses: { 200: json(Health, "Everything works"), 503: json(Health, "Something is degraded") },
});

export const health = featureApp().openapi(route, async (c) => {
  const t = Date.now();
  const [loaded, redis, database] = await Promise.all([
    c.var.model.get(),
    c.var.store.ping().then(
      (ms) => ({ reachable: true, latency_ms: ms }),
      (e: Error) => ({ reachable: false, error: e.message }),
    ),
    c.var.db.get(sql`SELECT 1 AS one`).then(
      () => ({ reachable: true, latency_ms: Date.now() - t }),
      (e: Error) => ({ reachable: false, error: e.message }),
    ),
  ]);
  const ok = loaded.ok && redis.reachable && database.reachable;
  const age = c.var.catalog.age();
  const body: z.infer<typeof Health> = {
    status: ok ? "ok" : "degraded",
    model: loaded.ok
      ? { loaded: true, name: c.var.model.name, version: loaded.model.version, items: loaded.model.rows - 1 }
      : { loaded: false, name: c.var.model.name, version: c.var.model.known?.version ?? null, error: loaded.message },
    redis,
    database,
    catalog: { items: c.var.catalog.size, synced_seconds_ago: Number.isFinite(age) ? Math.round(age / 1000) : null },
    versions: { api: "1", state_format: FORMAT_VERSION },
  };
  return ok ? c.json(body, 200) : c.json(body, 503);
});
