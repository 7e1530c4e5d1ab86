/**
 * Bindings and per-request variables, typed once for every Hono sub-app.
 * `Env` comes from `wrangler types` (src/worker-configuration.d.ts).
 */
import type { Config } from "./config";
import type { UserStateStore } from "./state/store";
import type { ModelHandle } from "./model/registry";

export type AppEnv = {
  Bindings: Env;
  Variables: {
    config: Config;
    store: UserStateStore;
    /** Lazily loaded model; resolving it may fail (model unavailable). */
    model: ModelHandle;
  };
};
