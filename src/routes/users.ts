/**
 * /v1/users/:user_id — recommendations, state summary, and forgetting a user.
 */
import { Hono } from "hono";
import { z } from "zod";
import { recommend } from "../domain/recommend";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { Id } from "../lib/schemas";
import { parseOr400 } from "../lib/validate";
import { StoreUnavailableError } from "../state/store";

export const users = new Hono<AppEnv>();

const userId = (raw: string) => parseOr400(z.object({ user_id: Id }), { user_id: raw }).user_id;

const unavailable = (e: unknown, retryAfter: number): never => {
  if (e instanceof StoreUnavailableError) {
    throw new ApiError(503, "state_unavailable", e.message, { headers: { "Retry-After": String(retryAfter) } });
  }
  throw e;
};

users.get("/:user_id/recommendations", async (c) => {
  const { config } = c.var;
  const id = userId(c.req.param("user_id"));
  const q = parseOr400(
    z.strictObject({
      k: z.coerce.number().int().min(1).max(config.MAX_K).default(10),
      exclude_recent: z.enum(["true", "false"]).default("true"),
    }),
    c.req.query(),
    "query",
  );
  const rec = await recommend({ store: c.var.store, model: c.var.model }, id, { k: q.k, excludeRecent: q.exclude_recent === "true" });
  return c.json({ user_id: id, ...rec });
});

users.get("/:user_id", async (c) => {
  const id = userId(c.req.param("user_id"));
  const snap = await c.var.store.read(id).catch((e) => unavailable(e, c.var.config.RETRY_AFTER_SECONDS));
  if (!snap.raw) throw new ApiError(404, "user_not_found", "no state is stored for this user", { field: "user_id" });
  if (!snap.state) throw new ApiError(409, "state_corrupt", snap.corrupt ?? "state unreadable", { field: "user_id" });
  const s = snap.state;
  return c.json({
    user_id: id,
    model_version: c.var.store.modelVersion,
    state_version: s.seq,
    event_count: s.eventCount,
    session_count: s.sessionCount,
    updated_at: new Date(s.updatedAtMs).toISOString(),
    last_event_at: new Date(s.lastEventMs).toISOString(),
    session_started_at: new Date(s.sessionStartMs).toISOString(),
    recent_items: s.ring.length,
  });
});

users.delete("/:user_id", async (c) => {
  const id = userId(c.req.param("user_id"));
  const existed = await c.var.store.remove(id).catch((e) => unavailable(e, c.var.config.RETRY_AFTER_SECONDS));
  return c.json({ user_id: id, deleted: existed });
});
