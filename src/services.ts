/**
 * Per-request wiring: builds the stores and helpers a request (or a cron run) needs from the
 * bindings and the validated config. Domain code receives these as arguments.
 */
import { useShardNamespace } from "./model/shards";
import { database } from "./catalog/db";
import { catalogMirror } from "./catalog/mirror";
import type { Config } from "./config";
import type { RankContext } from "./domain/recommend";
import type { AppEnv } from "./env";
import { timed, timedD1, timedMethods, timedR2 } from "./lib/timing";
import { type RebuildDeps } from "./domain/rebuild";
import { type LiveModels, liveModels } from "./model/live";
import type { ModelHandle } from "./model/registry";
import type { GruModel } from "./model/runtime";
import { type PopularOptions, popularLists } from "./popular/lists";
import { RedisSharedStore } from "./state/redis-shared";
import { RedisStateStore } from "./state/redis-store";

export function popularOptions(config: Config): PopularOptions {
  return { halfLifeDays: config.POPULAR_HALF_LIFE_DAYS, windowDays: config.POPULAR_WINDOW_DAYS };
}

export interface Services {
  /** The serving model version. */
  model: ModelHandle;
  /** Every live model version (the serving one first). */
  live: LiveModels;
  /** The state store of a model version. */
  storeFor: (v: { version: string; stateSize: number }) => RedisStateStore;
  /** What rebuilding a user's state from the event log needs, for a loaded model. */
  rebuildDeps: (model: GruModel) => RebuildDeps;
  store: RedisStateStore;
  shared: RedisSharedStore;
  db: ReturnType<typeof database>;
  catalog: typeof catalogMirror;
  /**
   * The catalog copy, synced as needed (memoised per request). `stamp`: the catalog revision
   * stamp when the caller reads it anyway (the recommendation read does, in its one round trip).
   */
  catalogReady: (stamp?: Promise<number | null>) => Promise<void>;
  rankContext: (stamp?: Promise<number | null>) => Promise<RankContext>;
}

/** Each model's timed view, one per model per isolate: callers may key caches by the model object. */
const timedModels = new WeakMap<GruModel, GruModel>();

/**
 * The model handle with its load (first use in an isolate) and every run (step, score, similar)
 * timed as `model` for the current request (src/lib/timing.ts). The model it hands out is the
 * same object on every request.
 */
export function timedModel(handle: ModelHandle): ModelHandle {
  const get: ModelHandle["get"] = async () => {
    const r = await timed("model", () => handle.get(), false);
    if (!r.ok) return r;
    let m = timedModels.get(r.model);
    if (!m) timedModels.set(r.model, (m = timedMethods(r.model, "model")));
    return { ok: true, model: m };
  };
  // Delegates everything else (including the live `known`) to the handle.
  return Object.create(handle, { get: { value: get } }) as ModelHandle;
}

/** When this isolate last read the catalog revision stamp (ms). */
let stampReadAt = 0;

/** Everything a request needs; `background` schedules work after the response. */
export async function services(env: AppEnv["Bindings"], config: Config, background: (p: Promise<unknown>) => void): Promise<Services> {
  const db = database(timedD1(env.DB));
  const bucket = env.MODEL_BUCKET && timedR2(env.MODEL_BUCKET);
  useShardNamespace(env.ITEM_SHARDS, config.SHARD_TIMEOUT_MS);
  const live = await liveModels({ db, bucket, defaultName: config.MODEL_NAME, checkMs: config.MODEL_CHECK_MS, timeoutMs: config.DB_TIMEOUT_MS });
  const model = timedModel(live.serving);
  const meta = await model.meta();
  const redis = { url: env.UPSTASH_REDIS_REST_URL ?? "", token: env.UPSTASH_REDIS_REST_TOKEN ?? "", timeoutMs: config.REDIS_TIMEOUT_MS };
  const storeFor = (v: { version: string; stateSize: number }) =>
    new RedisStateStore({
      ...redis,
      modelVersion: v.version,
      stateSize: v.stateSize,
      ttlSeconds: config.STATE_TTL_SECONDS,
      dedupWindowSeconds: config.DEDUP_WINDOW_SECONDS,
    });
  const store = storeFor({ version: meta?.version ?? config.MODEL_NAME, stateSize: meta?.stateSize ?? 0 });
  const rebuildDeps = (m: GruModel): RebuildDeps => ({
    db,
    model: m,
    ringCapacity: config.RECENT_RING,
    maxEvents: config.REBUILD_EVENTS,
    dedupWindowMs: config.DEDUP_WINDOW_SECONDS * 1000,
    timeoutMs: config.DB_TIMEOUT_MS,
  });
  const shared = new RedisSharedStore(redis);
  const catalog = catalogMirror;
  let ready: Promise<void> | undefined;
  const catalogReady = (given?: Promise<number | null>) =>
    (ready ??= (async () => {
      // The stamp is read at most every CATALOG_CHECK_MS per isolate: another isolate's catalog
      // write shows here within that time (this isolate's own writes show at once).
      const now = Date.now();
      let stamp: number | null = null;
      if (now - stampReadAt >= config.CATALOG_CHECK_MS) {
        stampReadAt = now;
        stamp = await (given ?? shared.catalogRev()).catch(() => null);
      }
      await catalog.refresh(db, stamp, config.CATALOG_MAX_STALE_SECONDS * 1000, config.DB_TIMEOUT_MS);
    })());
  let ctx: Promise<RankContext> | undefined;
  const rankContext = (stamp?: Promise<number | null>) =>
    (ctx ??= (async () => {
      const [lists] = await Promise.all([
        popularLists({ db, shared, catalog, options: popularOptions(config), refreshMs: config.POPULAR_REFRESH_SECONDS * 1000, background }),
        catalogReady(stamp),
      ]);
      return { catalog, lists, trained: model.known?.popular ?? { ids: [], counts: [] } };
    })());
  return { model, live, storeFor, rebuildDeps, store, shared, db, catalog, catalogReady, rankContext };
}
