/**
 * GET /health: is the model loaded, is Redis reachable, which versions run. No key needed;
 * 200 when everything works, 503 otherwise (with the same body).
 */
import { Hono } from "hono";
import type { AppEnv } from "../env";

export const health = new Hono<AppEnv>();

health.get("/", async (c) => {
  const [loaded, redis] = await Promise.all([
    c.var.model.get(),
    c.var.store.ping().then(
      (ms) => ({ reachable: true, latency_ms: ms }),
      (e: Error) => ({ reachable: false, error: e.message }),
    ),
  ]);
  const ok = loaded.ok && redis.reachable;
  return c.json(
    {
      status: ok ? "ok" : "degraded",
      model: loaded.ok
        ? { loaded: true, name: c.var.model.name, version: loaded.model.version, items: loaded.model.rows - 1 }
        : { loaded: false, name: c.var.model.name, version: c.var.model.known?.version ?? null, error: loaded.message },
      redis,
      versions: { api: "1", state_format: 1 },
    },
    ok ? 200 : 503,
  );
});
