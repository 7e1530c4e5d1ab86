/**
 * Bindings and per-request variables, typed once for every Hono sub-app.
 * `Env` comes from `wrangler types` (src/worker-configuration.d.ts).
 */
import type { Db } from "./catalog/db";
import type { CatalogMirror } from "./catalog/mirror";
import type { Config } from "./config";
import type { RankContext } from "./domain/recommend";
import type { RebuildDeps } from "./domain/rebuild";
import type { LiveModels } from "./model/live";
import type { ModelHandle } from "./model/registry";
import type { GruModel } from "./model/runtime";
import type { SharedStore } from "./state/shared";
import type { EventOutbox, ForgetLedger, UserStateStore } from "./state/store";

/** Which kind of key authenticated the request. */
export type KeyScope = "publishable" | "secret";

export type AppEnv = {
  /** `Env` plus optional bindings not declared in wrangler.toml (see README). */
  Bindings: Env & {
    MODEL_BUCKET?: R2Bucket;
    /** Item shards of sharded models (src/model/item-shard.ts), one Durable Object per version and row range. */
    ITEM_SHARDS?: DurableObjectNamespace<import("./model/item-shard").ItemShard>;
    /** Batch recommendations (src/batch): one message per part of a job, and where parts are written. */
    BATCH_QUEUE?: Queue<import("./batch/jobs").PartMessage>;
    BATCH_BUCKET?: R2Bucket;
    /** Secret(s) that sign user tokens (src/lib/user-token.ts), comma-separated: the first signs, all verify. */
    USER_TOKEN_SECRETS?: string;
    /** "true": the demo storefront may sign in as a customer (POST /demo/login); `npm start` only. */
    DEMO_LOGIN?: string;
  };
  Variables: {
    config: Config;
    /** User states, write combining, and the event-log outbox. */
    store: UserStateStore & EventOutbox & ForgetLedger;
    /** Lazily loaded serving model; resolving it may fail (model unavailable). */
    model: ModelHandle;
    /** Every live model version (registry), the serving one first. */
    live: LiveModels;
    /** The state store of a model version. */
    storeFor: (v: { version: string; stateSize: number }) => UserStateStore;
    /** What rebuilding a user's state from the event log needs, for a loaded model. */
    rebuildDeps: (model: GruModel) => RebuildDeps;
    db: Db;
    shared: SharedStore;
    catalog: CatalogMirror;
    /** The catalog copy synced as needed (memoised per request). */
    catalogReady: () => Promise<void>;
    /** The catalog synced as needed plus the popularity lists (memoised per request). */
    rankContext: () => Promise<RankContext>;
    /** Run a promise after the response (executionCtx.waitUntil; awaited inline outside a worker). */
    background: (p: Promise<unknown>) => void;
    keyScope: KeyScope;
    /** Short, non-secret id of the key (SHA-256 prefix), for rate limits and logs. */
    keyId: string;
  };
};
