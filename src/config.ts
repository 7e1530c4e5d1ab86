/**
 * Runtime configuration from Worker vars, validated once per isolate.
 * Every number has a documented default; see README "Configuration".
 */
import { z } from "zod";

const int = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def);

const ConfigSchema = z.object({
  /** Sliding TTL of a user's state in Redis, seconds. Default 180 days. */
  STATE_TTL_SECONDS: int(180 * 24 * 3600, 60, 5 * 365 * 24 * 3600),
  /** How long an event_id is remembered for de-duplication, seconds. Default 24 h. */
  DEDUP_WINDOW_SECONDS: int(24 * 3600, 60, 30 * 24 * 3600),
  /** Timeout of each Redis call on the request path, milliseconds. Default 1000. */
  REDIS_TIMEOUT_MS: int(1000, 10, 30_000),
  /** Longest an event request waits for its events to be folded into the state, ms. Default 5000. */
  WRITE_WAIT_MS: int(5000, 100, 60_000),
  /** Time to live of a user's fold lease, ms: how long a writer that died blocks that user. Default 2000. */
  FOLD_LEASE_MS: int(2000, 100, 60_000),
  /** Largest request body accepted, bytes. Default 1 MiB. */
  MAX_BODY_BYTES: int(1024 * 1024, 1024, 100 * 1024 * 1024),
  /** Largest body of a catalog batch (POST /v1/items/batch), bytes. Default 16 MiB. */
  MAX_CATALOG_BODY_BYTES: int(16 * 1024 * 1024, 1024, 100 * 1024 * 1024),
  /** Largest batch of events in one request. Default 500. */
  MAX_BATCH: int(500, 1, 500),
  /** Items remembered in the user's recent ring (excluded from recommendations). Default 20. */
  RECENT_RING: int(20, 0, 200),
  /** Largest k a request may ask for. Default 100. */
  MAX_K: int(100, 1, 1000),
  /** Seconds a client should wait before retrying a 503. Default 2. */
  RETRY_AFTER_SECONDS: int(2, 1, 3600),
  /** Requests per minute per secret key (0: unlimited). Default 6000. */
  RATE_LIMIT_SECRET_PER_MINUTE: int(6000, 0, 10_000_000),
  /** Requests per minute per publishable key and client IP (0: unlimited). Default 600. */
  RATE_LIMIT_PUBLISHABLE_PER_MINUTE: int(600, 0, 10_000_000),
  /** Largest number of items in one POST /v1/items/batch. Default 10000. */
  MAX_CATALOG_BATCH: int(10_000, 1, 10_000),
  /** Popularity lists older than this are recomputed from the event log, seconds. Default 300. */
  POPULAR_REFRESH_SECONDS: int(300, 1, 7 * 24 * 3600),
  /** Half-life of an event's weight in the popularity lists, days. Default 7. */
  POPULAR_HALF_LIFE_DAYS: z.coerce.number().positive().max(3650).default(7),
  /** Events older than this do not count for popularity, days. Default 60. */
  POPULAR_WINDOW_DAYS: int(60, 1, 3650),
  /** How often an isolate reads the shared catalog revision stamp, ms (0: every request). Default 1000. */
  CATALOG_CHECK_MS: int(1000, 0, 60_000),
  /** A per-isolate catalog copy is re-synced from D1 at least this often, seconds. Default 30. */
  CATALOG_MAX_STALE_SECONDS: int(30, 0, 24 * 3600),
  /** Timeout of each D1 query on the request path, milliseconds. Default 2000. */
  DB_TIMEOUT_MS: int(2000, 10, 60_000),
  /** Browser origins allowed to call /v1 (CORS), comma-separated; "*" allows any. Default none. */
  CORS_ORIGINS: z.string().default("").transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean)),
  /** How long an isolate keeps its copy of the running experiments, seconds (0: read every request). Default 10. */
  EXPERIMENT_CACHE_SECONDS: int(10, 0, 3600),
  /** Model to serve while the model registry is empty (a bundled folder under models/, or one in MODEL_BUCKET). */
  MODEL_NAME: z.string().min(1).default("ml-small"),
  /** How often an isolate re-reads the model registry's live versions, ms. Default 5000. */
  MODEL_CHECK_MS: int(5000, 0, 600_000),
  /**
   * Memory one isolate may give to models, MiB: onnxruntime's own base, every live version settled,
   * and the files of one version while it loads (src/model/memory.ts, within 15% of what
   * scripts/bench-model.ts measures). Default 104: a Workers isolate's 128 MB (122 MiB) less about
   * 18 MiB for the worker's own code, caches and requests (an allowance: workerd reports no memory
   * figures to measure it by). Diginetica (43k x 128) is estimated at about 98 of it while it loads.
   */
  MODEL_MEMORY_BUDGET_MB: int(104, 1, 1024),
  /** Timeout of one item shard call (a sharded model's ranking, src/model/shards.ts), ms. Default 3000. */
  SHARD_TIMEOUT_MS: int(3000, 50, 60_000),
  /** Largest model file accepted by the registry upload, bytes, whole (a file over
   * MAX_MODEL_BODY_BYTES is sent in parts). Default 64 MiB, at most 4 GiB. */
  MAX_MODEL_FILE_BYTES: int(64 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024),
  /** Largest request body of a registry upload (a file sent whole, or one part of a larger one),
   * bytes. Default 64 MiB; at least 5 MiB (R2's smallest part), at most 100 MiB (Cloudflare refuses
   * larger bodies on the Free and Pro plans). */
  MAX_MODEL_BODY_BYTES: int(64 * 1024 * 1024, 5 * 1024 * 1024, 100 * 1024 * 1024),
  /**
   * What a publishable key may do for an identified (non-anonymous) user only with a signed user
   * token (X-User-Token): comma-separated "events", "recommendations", or "all". Reading a user's
   * state, purchases or summary always needs one. Default none.
   */
  REQUIRE_USER_TOKEN: z
    .string()
    .default("")
    .transform((s, ctx) => {
      const out = new Set<"events" | "recommendations">();
      for (const w of s.split(",").map((x) => x.trim().toLowerCase()).filter(Boolean)) {
        if (w === "all") out.add("events").add("recommendations");
        else if (w === "events" || w === "recommendations") out.add(w);
        else ctx.addIssue({ code: "custom", message: `REQUIRE_USER_TOKEN: unknown entry ${JSON.stringify(w)} (use events, recommendations or all)` });
      }
      return out;
    }),
  /** Publishable-key events per minute per user id (0: unlimited). Default 300. */
  RATE_LIMIT_USER_PER_MINUTE: int(300, 0, 10_000_000),
  /** Most distinct user ids in one publishable-key events request (a browser sends its own). Default 5. */
  MAX_USERS_PER_PUBLISHABLE_BATCH: int(5, 1, 500),
  /** A state rebuilt from the event log (a user new to a model version) replays at most this many of their latest events (0: never rebuild). Default 200. */
  REBUILD_EVENTS: int(200, 0, 10_000),
});

export type Config = z.infer<typeof ConfigSchema>;

/** The names of every var the config reads (the local stack passes these through). */
export const CONFIG_VARS = Object.keys(ConfigSchema.shape) as (keyof Config)[];

let cached: { source: unknown; config: Config } | undefined;

/** Parse vars into a Config (cached per isolate while the env object is the same). */
export function loadConfig(env: Record<string, unknown>): Config {
  if (cached && cached.source === env) return cached.config;
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== "") picked[key] = v;
  }
  const config = ConfigSchema.parse(picked);
  cached = { source: env, config };
  return config;
}
