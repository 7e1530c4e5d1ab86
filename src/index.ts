/**
 * The worker: one OpenAPIHono app composed of feature sub-apps. Per request it attaches the
 * validated config and the services (model handle, state store, shared store, D1, catalog copy);
 * /v1 adds CORS, key scopes, rate limits and a body limit. The cron trigger refreshes the
 * popularity lists and drains the event-log outbox.
 *
 * Exports: the fetch/scheduled handlers (default) and `AppType` for the typed client.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { authenticate, corsPolicy, rateLimit } from "./auth";
import { loadConfig } from "./config";
import type { AppEnv } from "./env";
import { ApiError, onError } from "./errors";
import { drainOutbox } from "./eventlog/outbox";
import { notFoundOrMethod, urlLimit } from "./lib/guards";
import { observe } from "./lib/observe";
import { hook } from "./lib/openapi";
import { currentTiming } from "./lib/timing";
import { refreshPopular } from "./popular/lists";
import { admin } from "./routes/admin";
import { consoleViews } from "./routes/console";
import { device, userState } from "./routes/device";
import { docs } from "./routes/docs";
import { events } from "./routes/events";
import { experimentsApp } from "./routes/experiments";
import { health } from "./routes/health";
import { items } from "./routes/items";
import { models } from "./routes/models";
import { demo, pages } from "./routes/pages";
import { users } from "./routes/users";
import { batch } from "./routes/batch";
import { placements } from "./routes/placements";
import { type PartMessage, runPart } from "./batch/jobs";
import { lazyRebuild } from "./domain/rebuild";
import { popularOptions, services } from "./services";

const app = new OpenAPIHono<AppEnv>({ defaultHook: hook() });

function config(env: unknown) {
  try {
    return loadConfig(env as Record<string, unknown>);
  } catch (e) {
    console.error("invalid configuration", e);
    throw new ApiError(500, "misconfigured", "worker configuration is invalid");
  }
}

// Server-Timing on every response and one JSON log line per request (src/lib/observe.ts).
app.use("*", observe);
app.use("*", urlLimit);
app.use("*", async (c, next) => {
  const cfg = config(c.env);
  const background = (p: Promise<unknown>) => {
    const safe = p.catch((e) => console.warn(`background task failed: ${(e as Error).message}`));
    currentTiming()?.track(safe);
    try {
      c.executionCtx.waitUntil(safe);
    } catch {
      // No execution context (app.request in scripts): the promise simply runs on.
    }
  };
  const s = await services(c.env, cfg, background);
  c.set("config", cfg);
  c.set("background", background);
  c.set("model", s.model);
  c.set("live", s.live);
  c.set("storeFor", s.storeFor);
  c.set("rebuildDeps", s.rebuildDeps);
  c.set("store", s.store);
  c.set("shared", s.shared);
  c.set("db", s.db);
  c.set("catalog", s.catalog);
  c.set("catalogReady", s.catalogReady);
  c.set("rankContext", s.rankContext);
  await next();
});

app.use("/v1/*", corsPolicy);
app.use("/v1/*", authenticate);
app.use("/v1/*", rateLimit);
app.use("/v1/*", (c, next) => {
  const model = c.req.method === "PUT" && c.req.path.startsWith("/v1/admin/models/");
  const max =
    c.req.path === "/v1/items/batch" ? c.var.config.MAX_CATALOG_BODY_BYTES : model ? c.var.config.MAX_MODEL_BODY_BYTES : c.var.config.MAX_BODY_BYTES;
  return bodyLimit({
    maxSize: max,
    onError: () => {
      const hint = model ? " (MAX_MODEL_BODY_BYTES): send a larger model file in parts, PUT /v1/admin/models/{version}/files/{file}/parts/{n}" : "";
      throw new ApiError(413, "body_too_large", `request body is larger than ${max} bytes${hint}`, { field: "body" });
    },
  })(c, next);
});

const routes = app
  .route("/health", health)
  .route("/v1/events", events)
  .route("/v1/users", users)
  .route("/v1/items", items)
  .route("/v1/admin", admin)
  .route("/v1/admin/models", models)
  // On-device scoring (sdk/gru-device.js) and the demo pages' config (public/).
  .route("/v1/device", device)
  .route("/v1/users", userState)
  .route("/v1/console", consoleViews)
  .route("/config.json", pages)
  .route("/demo", demo)
  // A/B experiments (src/experiments).
  .route("/v1/admin/experiments", experimentsApp)
  // Per-placement rules presets (src/experiments/placements.ts).
  .route("/v1/admin/placements", placements)
  // Batch recommendations (src/batch).
  .route("/v1/admin/batch", batch);

app.openAPIRegistry.registerComponent("securitySchemes", "apiKey", {
  type: "http",
  scheme: "bearer",
  description: "A secret key (server side) or a publishable key (browser: events, recommendations, similar items).",
});
app.doc31("/openapi.json", {
  openapi: "3.1.0",
  info: {
    title: "GRU edge recommender",
    version: "1.0.0",
    description:
      "Personalised recommendations from a GRU user-interest model at the edge. Errors are `{\"error\":{\"code\",\"message\",\"field\"?}}`. Limits: ids 256 characters; event batches MAX_BATCH (500); catalog batches MAX_CATALOG_BATCH (10,000); bodies MAX_BODY_BYTES (1 MiB; catalog batches MAX_CATALOG_BODY_BYTES, 16 MiB).",
  },
  security: [{ apiKey: [] }],
});
app.route("/docs", docs({ title: "GRU edge recommender API", specUrl: "/openapi.json" }));

app.notFound(notFoundOrMethod(() => app.routes));
app.onError(onError);

/** The app's routes and their types, for `hono/client` (see src/client.ts). */
export type AppType = typeof routes;

/** Cron: move event-log rows left in the outbox into D1, then refresh popularity. */
async function scheduled(_event: ScheduledController, env: AppEnv["Bindings"], ctx: ExecutionContext) {
  const cfg = loadConfig(env as unknown as Record<string, unknown>);
  const s = await services(env, cfg, (p) => ctx.waitUntil(p));
  const deps = { db: s.db, shared: s.shared };
  // Replay first, so that the replayed events count for popularity.
  await drainOutbox({ ...deps, outbox: s.store }).catch((e) => console.error("event-log outbox drain failed", e));
  await refreshPopular({ ...deps, catalog: s.catalog, options: popularOptions(cfg) }).catch((e) => console.error("popularity refresh failed", e));
}

/** Queue consumer: one part of a batch job per message (src/batch/jobs.ts); a failed part is retried. */
async function queue(batchOf: MessageBatch<PartMessage>, env: AppEnv["Bindings"], ctx: ExecutionContext) {
  const cfg = loadConfig(env as unknown as Record<string, unknown>);
  const bucket = env.BATCH_BUCKET;
  const s = await services(env, cfg, (p) => ctx.waitUntil(p));
  const deps = { store: s.store, model: s.model, context: s.rankContext, rebuild: lazyRebuild(s.rebuildDeps, s.storeFor, (p) => ctx.waitUntil(p)) };
  for (const m of batchOf.messages) {
    try {
      if (!bucket) throw new Error("BATCH_BUCKET is not bound");
      await runPart(s.db, bucket, deps, m.body);
      m.ack();
    } catch (e) {
      console.error(`batch ${m.body.job} part ${m.body.part} failed (attempt ${m.attempts}), retried: ${(e as Error).message}`);
      m.retry({ delaySeconds: Math.min(60, 2 ** m.attempts) });
    }
  }
}

export { app };
/** Durable Object classes (wrangler.toml `durable_objects`). */
export { ItemShard } from "./model/item-shard";
export default { fetch: app.fetch, scheduled, queue } satisfies ExportedHandler<AppEnv["Bindings"], PartMessage>;
