/**
 * Bindings and per-request variables, typed once for every Hono sub-app.
 * `Env` comes from `wrangler types` (src/worker-configuration.d.ts).
 */
import type { Db } from "./catalog/db";
import type { CatalogMirror } from "./catalog/mirror";
import type { Config } from "./config";
import type { RankContext } from "./domain/recommend";
import type { ModelHandle } from "./model/registry";
import type { SharedStore } from "./state/shared";
import type { UserStateStore } from "./state/store";

/** Which kind of key authenticated the request. */
export type KeyScope = "publishable" | "secret";

export type AppEnv = {
  /** `Env` plus optional bindings not declared in wrangler.toml (see README). */
  Bindings: Env & { MODEL_BUCKET?: R2Bucket };
  Variables: {
    config: Config;
    store: UserStateStore;
    /** Lazily loaded model; resolving it may fail (model unavailable). */
    model: ModelHandle;
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
