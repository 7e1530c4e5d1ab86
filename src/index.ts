/**
 * The worker: one Hono app composed of feature sub-apps. Per request it attaches the validated
 * config, the (lazily loaded, per-isolate) model handle and the user state store.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requireApiKey } from "./auth";
import { loadConfig } from "./config";
import type { AppEnv } from "./env";
import { ApiError, errorBody, onError } from "./errors";
import { modelHandle } from "./model/registry";
import { events } from "./routes/events";
import { health } from "./routes/health";
import { users } from "./routes/users";
import { RedisStateStore } from "./state/redis-store";

const app = new Hono<AppEnv>();

app.use("*", async (c, next) => {
  let config;
  try {
    config = loadConfig(c.env as unknown as Record<string, unknown>);
  } catch (e) {
    console.error("invalid configuration", e);
    throw new ApiError(500, "misconfigured", "worker configuration is invalid");
  }
  const model = modelHandle(config.MODEL_NAME, c.env.MODEL_BUCKET);
  const meta = await model.meta();
  c.set("config", config);
  c.set("model", model);
  c.set(
    "store",
    new RedisStateStore({
      url: c.env.UPSTASH_REDIS_REST_URL ?? "",
      token: c.env.UPSTASH_REDIS_REST_TOKEN ?? "",
      modelVersion: meta?.version ?? config.MODEL_NAME,
      stateSize: meta?.stateSize ?? 0,
      ttlSeconds: config.STATE_TTL_SECONDS,
      dedupWindowSeconds: config.DEDUP_WINDOW_SECONDS,
      timeoutMs: config.REDIS_TIMEOUT_MS,
    }),
  );
  await next();
});

app.use("/v1/*", requireApiKey);
app.use("/v1/*", (c, next) =>
  bodyLimit({
    maxSize: c.var.config.MAX_BODY_BYTES,
    onError: () => {
      throw new ApiError(413, "body_too_large", `request body is larger than ${c.var.config.MAX_BODY_BYTES} bytes`, { field: "body" });
    },
  })(c, next),
);

app.route("/health", health);
app.route("/v1/events", events);
app.route("/v1/users", users);

app.notFound((c) => c.json(errorBody("not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`), 404));
app.onError(onError);

export default app;
