/**
 * POST /v1/events: one event or a batch; advances each user's state exactly once per event_id.
 * `?recommend=k` also answers recommendations from the new states in the same round trip.
 */
import { Hono } from "hono";
import { z } from "zod";
import { type ResolvedEvent, applyUserEvents } from "../domain/advance";
import { rankFromState } from "../domain/recommend";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { EventSchema } from "../lib/schemas";
import { parseOr400, readJson } from "../lib/validate";
import { StoreUnavailableError } from "../state/store";

export const events = new Hono<AppEnv>();

events.post("/", async (c) => {
  const { config, store } = c.var;
  const q = parseOr400(z.object({ recommend: z.coerce.number().int().min(1).max(config.MAX_K).optional() }), c.req.query(), "query");
  const body = await readJson(c.req);
  const list = Array.isArray(body) ? body : [body];
  const root = Array.isArray(body) ? "events" : "";
  if (list.length === 0) throw new ApiError(400, "empty_batch", "send at least one event", { field: "events" });
  if (list.length > config.MAX_BATCH) {
    throw new ApiError(413, "batch_too_large", `a batch holds at most ${config.MAX_BATCH} events, got ${list.length}`, { field: "events" });
  }
  const parsed = Array.isArray(body) ? parseOr400(z.array(EventSchema), body, root) : [parseOr400(EventSchema, body)];

  const loaded = await c.var.model.get();
  if (!loaded.ok) {
    throw new ApiError(503, "model_unavailable", loaded.message, { headers: { "Retry-After": String(config.RETRY_AFTER_SECONDS) } });
  }
  const model = loaded.model;
  const now = Date.now();
  const unknown: { index: number; field: string; item_id: string }[] = [];
  const resolved: ResolvedEvent[] = parsed.map((e, index) => {
    const row = model.rowOf(e.item_id);
    if (row === undefined) unknown.push({ index, field: root ? `events[${index}].item_id` : "item_id", item_id: e.item_id });
    return { index, eventId: e.event_id, userId: e.user_id, itemId: e.item_id, row: row ?? 0, type: e.type, timestampMs: e.timestamp ?? now };
  });
  if (unknown.length) {
    throw new ApiError(422, "unknown_item", `${unknown.length} event(s) name an item the model does not know; nothing was applied`, {
      field: unknown[0]!.field,
      details: unknown,
    });
  }

  const byUser = new Map<string, ResolvedEvent[]>();
  for (const e of resolved) {
    const list = byUser.get(e.userId);
    if (list) list.push(e);
    else byUser.set(e.userId, [e]);
  }
  const deps = { store, model, ringCapacity: config.RECENT_RING, casBudgetMs: config.CAS_BUDGET_MS, retryAfterSeconds: config.RETRY_AFTER_SECONDS };
  let done;
  try {
    done = await Promise.all([...byUser].map(([userId, evs]) => applyUserEvents(deps, userId, evs)));
  } catch (e) {
    if (e instanceof StoreUnavailableError) {
      throw new ApiError(503, "state_unavailable", `user state store unavailable; events with an event_id are safe to resend (${e.message})`, {
        headers: { "Retry-After": String(config.RETRY_AFTER_SECONDS) },
      });
    }
    throw e;
  }
  const results = done.flatMap((d) => d.outcomes).sort((a, b) => a.index - b.index);
  const duplicates = results.filter((r) => r.status === "duplicate").length;
  const response: Record<string, unknown> = {
    accepted: results.length,
    applied: results.length - duplicates,
    duplicates,
    model_version: model.version,
    results,
    users: done.map((d) => ({ user_id: d.user.user_id, state_version: d.user.state_version, event_count: d.user.event_count })),
  };
  if (q.recommend) {
    response.recommendations = await Promise.all(
      done.map(async (d) => ({ user_id: d.user.user_id, ...(await rankFromState(model, d.user.state, { k: q.recommend! }, Date.now())) })),
    );
  }
  return c.json(response);
});
