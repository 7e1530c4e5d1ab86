/**
 * /v1/events
 *   POST  one event or a batch: advances each user's state exactly once per event_id, remembers
 *         purchases (src/domain/events.ts: write combining); the log rows it committed go to D1
 *         after the response (src/eventlog/outbox.ts).
 *         `?recommend=k` also answers recommendations from the new states in the same round trip.
 *   GET /export  the event log as NDJSON (secret key), in the format the training code reads.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { limitUsers } from "../auth";

import type { AppEnv } from "../env";

import { arrayLimit } from "../lib/guards";

import { requireUsers } from "../user-access";

import { acceptEvents, recommendAfter } from "../domain/events";

import { rebuildState } from "../domain/rebuild";

import { ApiError } from "../errors";

import { readEvents } from "../eventlog/log";

import { storeCommitted } from "../eventlog/outbox";

import { logRecEvents, recEventRows } from "../experiments/exposures";

import { errors, featureApp, hook, json } from "../lib/openapi";

import { EventSchema } from "../lib/schemas";

import { StoreUnavailableError } from "../state/store";

import { RecommendationSchema } from "./schemas";

const EventOutcome = z.object({
  index: z.number().int(),
  user_id: z.string(),
  status: z.enum(["applied", "duplicate", "logged"]).openapi({
    description:
      "applied: advanced the user's state; duplicate: this event_id was accepted before (answered once it is applied); logged: an item only the catalog knows (logged, state unchanged).",
  }),
  state_version: z.number().int().nullable(),
});

const EventsResponse = z
  .object({
    accepted: z.number().int(),
    applied: z.number().int(),
    duplicates: z.number().int(),
    logged_only: z.number().int(),
    model_version: z.string(),
    results: z.array(EventOutcome),
    users: z.array(z.object({ user_id: z.string(), state_version: z.number().int(), event_count: z.number().int() })),
    recommendations: z.array(RecommendationSchema.extend({ user_id: z.string() })).optional(),
  })
  .openapi("EventsAccepted");

const post = createRoute({
  method: "post",
  path: "/",
  summary: "Track events",
  description:
    "One event or an array of up to MAX_BATCH (default 500). Items must be known to the model or the catalog; events on catalog-only items are logged and count for popularity but leave the GRU state as it is. Publishable or secret key; with a publishable key at most MAX_USERS_PER_PUBLISHABLE_BATCH (5) users per request, RATE_LIMIT_USER_PER_MINUTE requests per user, and a signed user token (`X-User-Token`) for identified users when REQUIRE_USER_TOKEN names `events`.",
  tags: ["events"],
  request: {
    query: z.object({ recommend: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: "Also return k recommendations per user." }) }),
    body: { required: true, content: { "application/json": { schema: z.union([EventSchema, z.array(EventSchema)]) } } },
  },
  middleware: [arrayLimit<AppEnv>((c) => c.var.config.MAX_BATCH, "events", "events")] as const,
  responses: { 200: json(EventsResponse, "Events accepted (see each result's status)"), ...errors(403, 413, 415, 422, 503) },
});

/** A time in a query string: milliseconds since the epoch, or ISO 8601. */
const QueryTime = z
  .string()
  .refine((s) => /^\d+$/.test(s) || !Number.isNaN(Date.parse(s)), "must be milliseconds since the epoch or an ISO 8601 time")
  .transform((s) => (/^\d+$/.test(s) ? Number(s) : Date.parse(s)));

const ExportQuery = z.object({
  since: QueryTime.optional().openapi({ description: "Only events at or after this time (ms or ISO 8601)." }),
  until: QueryTime.optional().openapi({ description: "Only events at or before this time (ms or ISO 8601)." }),
  after_seq: z.coerce.number().int().nonnegative().default(0).openapi({ description: "Resume after this log sequence number (each line carries `seq`)." }),
  user_id: z.string().min(1).max(256).optional(),
});

const exportRoute = createRoute({
  method: "get",
  path: "/export",
  summary: "Export the event log (NDJSON)",
  description:
    "Streams every logged event in log order, one JSON object per line: {seq, user_id, item_id, type, timestamp (ms), event_id?, in_model}. The training code reads this format (`data.event_log`). Secret key.",
  tags: ["events"],
  request: { query: ExportQuery },
  responses: {
    200: { description: "NDJSON stream (`Content-Type: application/x-ndjson`), one event per line." },
    ...errors(403),
  },
});

export const events = featureApp()
  .openapi(
    post,
    async (c) => {
      const { config, store } = c.var;
      const q = c.req.valid("query");
      if (q.recommend !== undefined && q.recommend > config.MAX_K) {
        throw new ApiError(400, "invalid_request", `query.recommend: must be at most ${config.MAX_K}`, { field: "query.recommend" });
      }
      const body = c.req.valid("json");
      const batch = Array.isArray(body);
      const list = batch ? body : [body];
      if (list.length === 0) throw new ApiError(400, "empty_batch", "send at least one event", { field: "events" });
      if (list.length > config.MAX_BATCH) {
        throw new ApiError(413, "batch_too_large", `a batch holds at most ${config.MAX_BATCH} events, got ${list.length}`, { field: "events" });
      }
      if (c.var.keyScope === "publishable") {
        // A browser sends its own shopper's events: few users, each with a token where required.
        const users = [...new Set(list.map((e) => e.user_id))];
        if (users.length > config.MAX_USERS_PER_PUBLISHABLE_BATCH) {
          throw new ApiError(400, "too_many_users", `a publishable key may send events of at most ${config.MAX_USERS_PER_PUBLISHABLE_BATCH} users per request, got ${users.length}`, {
            field: "events",
          });
        }
        await requireUsers(c, users, "events");
        if (q.recommend !== undefined) await requireUsers(c, users, "recommendations");
        await limitUsers(c, users);
      }
      const loaded = await c.var.model.get();
      if (!loaded.ok) {
        throw new ApiError(503, "model_unavailable", loaded.message, { headers: { "Retry-After": String(config.RETRY_AFTER_SECONDS) } });
      }
      const model = loaded.model;
      // Every live version of the registry advances with the serving one (a shadow that cannot load is skipped).
      const shadows = await Promise.all(c.var.live.all.filter((h) => h.known?.version !== model.version).map((h) => h.get()));
      const now = Date.now();
      let done;
      try {
        done = await acceptEvents(
          {
            store,
            models: [model, ...shadows.flatMap((r) => (r.ok && r.model.version !== model.version ? [r.model] : []))],
            rebuild: (m, userId, exclude, forgottenAt) => rebuildState(c.var.rebuildDeps(m), userId, exclude, Date.now(), forgottenAt),
            catalog: { ready: c.var.catalogReady, has: (id) => c.var.catalog.get(id) !== undefined },
            ringCapacity: config.RECENT_RING,
            leaseMs: config.FOLD_LEASE_MS,
            waitMs: config.WRITE_WAIT_MS,
            retryAfterSeconds: config.RETRY_AFTER_SECONDS,
            wantPurchased: q.recommend !== undefined,
          },
          list,
          { batch, nowMs: now },
        );
      } catch (e) {
        if (e instanceof StoreUnavailableError) {
          throw new ApiError(503, "state_unavailable", `user state store unavailable; events with an event_id are safe to resend (${e.message})`, {
            headers: { "Retry-After": String(config.RETRY_AFTER_SECONDS) },
          });
        }
        throw e;
      }
      // The log: what this request folded (its own events and other requests') goes to D1 now;
      // the outbox keeps it until D1 confirmed.
      c.var.background(storeCommitted({ db: c.var.db, outbox: store }, done.committed));

      // Events naming a rec_id tie back to the list that showed the item (experiments); the keys
      // are the log's (generated ones included), so both tables name an event alike.
      c.var.background(logRecEvents(c.var.db, recEventRows(done.outcomes, list.map((e, i) => ({ ...e, event_id: done.keys[i] })), now)));

      const count = (s: string) => done.outcomes.filter((r) => r.status === s).length;
      const response: z.infer<typeof EventsResponse> = {
        accepted: done.outcomes.length,
        applied: count("applied"),
        duplicates: count("duplicate"),
        logged_only: count("logged"),
        model_version: model.version,
        results: done.outcomes,
        users: done.users.map((u) => ({ user_id: u.user_id, state_version: u.state_version, event_count: u.event_count })),
      };
      if (q.recommend) response.recommendations = await recommendAfter(model, done.users, await c.var.rankContext(), q.recommend);
      return c.json(response, 200);
    },
    hook("events"),
  )
  .openapi(exportRoute, async (c) => {
    const q = c.req.valid("query");
    const db = c.var.db;
    const enc = new TextEncoder();
    let after = q.after_seq;
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        const page = await readEvents(db, { afterSeq: after, since: q.since, until: q.until, userId: q.user_id, limit: 2000 });
        if (!page.length) return ctrl.close();
        let out = "";
        for (const e of page) {
          const line: Record<string, unknown> = { seq: e.seq, user_id: e.userId, item_id: e.itemId, type: e.type, timestamp: e.ts, in_model: e.inModel };
          if (!e.eventKey.startsWith("auto:")) line.event_id = e.eventKey;
          out += `${JSON.stringify(line)}\n`;
        }
        after = page[page.length - 1]!.seq;
        ctrl.enqueue(enc.encode(out));
      },
    });
    return c.body(stream, 200, { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" });
  });
