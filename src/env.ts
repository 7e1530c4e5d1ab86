/**
 * Bindings and per-request variables, typed once for every Hono sub-app.
 * `Env` comes from `wrangler types` (src/worker-configuration.d.ts).
 */
import type { Config } from "./config";
import type { UserStateStore } from "./state/store";
import type { ModelHandle } from "./model/registry";

export type AppEnv = {
  /** `Env` plus optional bindings not declared in wrangler.toml (see README). */
  Bindings: Env & { MODEL_BUCKET?: R2Bucket };
  Variables: {
    config: Config;
    store: UserStateStore;
    /** Lazily loaded model; resolving it may fail (model unavailable). */
    model: ModelHandle;
  };
};
