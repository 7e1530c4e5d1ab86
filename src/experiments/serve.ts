/**
 * Serving a recommendation-style list inside an experiment: find the running experiment of the
 * placement, assign the user (or honour a QA override), run the variant's strategy (with the
 * placement's rules preset under it, placements.ts), give the
 * response its `experiment`, `variant` and `rec_id`, and log the exposure after the response.
 * A request that fails (5xx) after assignment is logged too (with its error code), for the errors
 * guardrail. Outside any experiment a list still gets a rec_id (and nothing is logged).
 */
import type { Db } from "../catalog/db";
import type { Recommendation } from "../domain/recommend";
import { ApiError } from "../errors";
import { assign } from "./assign";
import { type Exposure, logExposure } from "./exposures";
import { placementPresets, withPlacement } from "./placements";
import { runningExperiments } from "./store";
import type { Experiment, Strategy, Variant } from "./types";

export interface ServeDeps {
  db: Db;
  /** Runs a promise after the response (executionCtx.waitUntil). */
  background: (p: Promise<unknown>) => void;
  /** How long an isolate keeps its copy of the running experiments, ms. */
  cacheMs: number;
  /** Timeout of the D1 read of the running experiments, ms. */
  timeoutMs: number;
}

export interface ServeRequest {
  placement: string;
  /** The shopper; lists without one (similar items without user_id) are never in an experiment. */
  userId: string | undefined;
  /** QA override: serve this variant (secret key only; never counted in results). */
  forceVariant?: string;
}

/** What every recommendation-style response carries. */
export interface Tagged {
  experiment: string | null;
  variant: string | null;
  rec_id: string;
}

export interface Choice {
  experiment: Experiment;
  variant: Variant;
  forced: boolean;
}

/** The experiment and variant of this request, or null. */
export async function chooseVariant(deps: ServeDeps, req: ServeRequest): Promise<Choice | null> {
  const running = await runningExperiments(deps.db, { maxAgeMs: deps.cacheMs, timeoutMs: deps.timeoutMs });
  const exp = running.get(req.placement);
  if (req.forceVariant !== undefined) {
    if (!exp) throw new ApiError(400, "no_experiment", `query.variant: no experiment is running on placement ${req.placement}`, { field: "query.variant" });
    const v = exp.variants.find((x) => x.key === req.forceVariant);
    if (!v) throw new ApiError(400, "unknown_variant", `query.variant: experiment ${exp.id} has no variant ${req.forceVariant}`, { field: "query.variant" });
    if (req.userId === undefined) return null;
    return { experiment: exp, variant: v, forced: true };
  }
  if (!exp || req.userId === undefined) return null;
  const a = assign(exp, req.userId);
  return a ? { experiment: exp, variant: exp.variants[a.index]!, forced: false } : null;
}

/** Degradations that mean the variant could not be served as designed (the fallback guardrail). */
const FALLBACK = new Set(["state-corrupt", "state-unavailable", "model-unavailable"]);

/**
 * Serve one list: `run` ranks under the variant's strategy (null outside experiments). Returns
 * the list with its tags; the exposure is written in the background.
 */
export async function serveList<T extends Recommendation>(deps: ServeDeps, req: ServeRequest, run: (strategy: Strategy | null) => Promise<T>): Promise<T & Tagged> {
  const t0 = performance.now();
  const choice = await chooseVariant(deps, req);
  const recId = crypto.randomUUID();
  const log = (rec: Recommendation | null, error: string | null) => {
    if (!choice) return;
    const x: Exposure = {
      rec_id: recId,
      experiment_id: choice.experiment.id,
      variant: choice.variant.key,
      user_id: req.userId!,
      placement: req.placement,
      items: rec ? rec.items.map((i) => i.item_id) : [],
      source: rec?.source ?? null,
      reason: rec?.reason ?? null,
      fallback: rec?.reason !== undefined && FALLBACK.has(rec.reason),
      model_version: rec?.model_version ?? null,
      latency_ms: Math.round((performance.now() - t0) * 1000) / 1000,
      error,
      forced: choice.forced,
      ts: Date.now(),
    };
    deps.background(logExposure(deps.db, x));
  };
  let rec: T;
  try {
    const presets = await placementPresets(deps.db, { maxAgeMs: deps.cacheMs, timeoutMs: deps.timeoutMs });
    rec = await run(withPlacement(choice?.variant.strategy ?? null, presets.get(req.placement)?.rules));
  } catch (e) {
    // Server-side failures only: a 4xx (an unknown item) says nothing about the variant.
    if (!(e instanceof ApiError) || e.status >= 500) log(null, e instanceof ApiError ? e.code : "internal");
    throw e;
  }
  log(rec, null);
  return { ...rec, experiment: choice?.experiment.id ?? null, variant: choice?.variant.key ?? null, rec_id: recId };
}
