/**
 * The HTTP side of serving lists inside experiments: builds the domain's ServeDeps from the
 * request and checks that a QA override (`?variant=`) comes with a secret key.
 */
import type { Context } from "hono";
import type { Recommendation } from "../domain/recommend";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { type ServeRequest, type Tagged, serveList } from "../experiments/serve";
import type { Strategy } from "../experiments/types";

export function servingDeps(c: Context<AppEnv>, forceVariant: string | undefined) {
  if (forceVariant !== undefined && c.var.keyScope !== "secret") {
    throw new ApiError(403, "insufficient_scope", "query.variant (a QA override) needs a secret key", { field: "query.variant" });
  }
  const deps = {
    db: c.var.db,
    background: c.var.background,
    cacheMs: c.var.config.EXPERIMENT_CACHE_SECONDS * 1000,
    timeoutMs: c.var.config.DB_TIMEOUT_MS,
  };
  return {
    serve: <T extends Recommendation>(req: ServeRequest, run: (s: Strategy | null) => Promise<T>): Promise<T & Tagged> => serveList(deps, req, run),
  };
}
