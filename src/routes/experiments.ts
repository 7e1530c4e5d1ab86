/**
 * /v1/admin/experiments — A/B experiments (secret key): create, list, read, change (drafts),
 * start, stop, delete, and the results. The work is in src/experiments/.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { METRICS } from "../experiments/analysis";
import { canServeVersion } from "../experiments/models";
import { experimentResults } from "../experiments/results";
import {
  createExperiment,
  deleteExperiment,
  getExperiment,
  listExperiments,
  startExperiment,
  stopExperiment,
  updateExperiment,
} from "../experiments/store";
import { ExperimentInput, ExperimentPatch, ExperimentSchema, experimentOut } from "../experiments/types";
import { ApiError } from "../errors";
import { errors, featureApp, json } from "../lib/openapi";

const Params = z.object({
  id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" }, example: "home-model-vs-popular" }),
});

const canServe = (c: Context<AppEnv>) => (v: string | undefined) => canServeVersion({ model: c.var.model, store: c.var.store, live: c.var.live.all, storeFor: c.var.storeFor }, v);

const Num = z.number().nullable();
const Interval = z.tuple([Num, Num]);
const LiftSchema = {
  lift: Num.openapi({ description: "Relative lift treatment / control - 1." }),
  se: Num.openapi({ description: "Delta-method standard error of the lift." }),
  ci: Interval.openapi({ description: "(1 - alpha) interval of the lift (delta method)." }),
  p: Num.openapi({ description: "Two-sided p-value of no difference." }),
  diff: Num.openapi({ description: "Absolute difference treatment - control." }),
  significant: z.boolean(),
};
const MetricComparison = z.object({
  control: Num,
  treatment: Num,
  ...LiftSchema,
  sequential: z
    .object({ p: Num, ci: Interval, tau: z.number(), significant: z.boolean() })
    .optional()
    .openapi({ description: "mSPRT always-valid p-value and confidence sequence (with sequential=true)." }),
  cuped: z
    .object({ ...LiftSchema, theta: z.number() })
    .optional()
    .openapi({ description: "CUPED-adjusted lift (with cuped=true; not for ctr)." }),
});
const Guardrail = z.object({ control: Num, treatment: Num, diff: Num, p: Num, flagged: z.boolean() });

const ResultsSchema = z
  .object({
    experiment: z.string(),
    status: z.string(),
    started_at: z.string().nullable(),
    stopped_at: z.string().nullable(),
    attribution_window_hours: z.number(),
    control: z.string(),
    alpha: z.number(),
    cuped_pre_period_days: z.number().nullable(),
    excluded: z.object({ forced_requests: z.number().int(), users_in_several_variants: z.number().int() }),
    variants: z.array(
      z.object({
        key: z.string(),
        weight: z.number(),
        users: z.number().int(),
        exposures: z.number().int(),
        clicks: z.number().int(),
        add_to_carts: z.number().int(),
        purchases: z.number().int(),
        revenue: z.number(),
        ctr: Num,
        add_to_cart_rate: Num,
        conversion: Num,
        revenue_per_user: Num,
        guardrails: z.object({
          requests: z.number().int(),
          fallback_rate: Num,
          error_rate: Num,
          latency_ms: z.object({ mean: Num, p50: Num, p95: Num }),
        }),
      }),
    ),
    srm: z
      .object({ chi2: z.number(), df: z.number().int(), p: z.number(), flagged: z.boolean(), observed: z.record(z.string(), z.number()), expected: z.record(z.string(), z.number()) })
      .openapi({ description: "Sample-ratio mismatch: chi-square of users per variant against the weights; flagged at p < 0.001." }),
    comparisons: z.array(
      z.object({
        variant: z.string(),
        metrics: z.object(Object.fromEntries(METRICS.map((m) => [m, MetricComparison])) as Record<(typeof METRICS)[number], typeof MetricComparison>),
        guardrails: z.object({ fallback_rate: Guardrail, error_rate: Guardrail, latency_ms: Guardrail }),
      }),
    ),
  })
  .openapi("ExperimentResults");

const ExpOut = json(ExperimentSchema, "The experiment");
const tags = ["experiments"];

const create = createRoute({
  method: "post",
  path: "/",
  summary: "Create an experiment (draft)",
  description: "Variants are strategies (a model version, or popular items, either with a rules preset) with traffic weights. Start it to serve it.",
  tags,
  request: { body: { required: true, content: { "application/json": { schema: ExperimentInput } } } },
  responses: { 201: ExpOut, ...errors(403, 409, 415, 422) },
});

const list = createRoute({
  method: "get",
  path: "/",
  summary: "List experiments",
  tags,
  request: { query: z.object({ status: z.enum(["draft", "running", "stopped"]).optional(), placement: z.string().max(64).optional() }) },
  responses: { 200: json(z.object({ experiments: z.array(ExperimentSchema) }), "Experiments, newest first (at most 500)"), ...errors(403) },
});

const read = createRoute({ method: "get", path: "/{id}", summary: "Read an experiment", tags, request: { params: Params }, responses: { 200: ExpOut, ...errors(403, 404) } });

const patch = createRoute({
  method: "patch",
  path: "/{id}",
  summary: "Change a draft",
  description: "Only drafts change: a running experiment keeps its split (changing weights mid-run reshuffles users).",
  tags,
  request: { params: Params, body: { required: true, content: { "application/json": { schema: ExperimentPatch } } } },
  responses: { 200: ExpOut, ...errors(403, 404, 409, 415, 422) },
});

const start = createRoute({
  method: "post",
  path: "/{id}/start",
  summary: "Start an experiment",
  description: "One running experiment per placement (409 otherwise). Isolates pick it up within EXPERIMENT_CACHE_SECONDS.",
  tags,
  request: { params: Params },
  responses: { 200: ExpOut, ...errors(403, 404, 409) },
});

const stop = createRoute({ method: "post", path: "/{id}/stop", summary: "Stop an experiment", tags, request: { params: Params }, responses: { 200: ExpOut, ...errors(403, 404) } });

const remove = createRoute({
  method: "delete",
  path: "/{id}",
  summary: "Delete an experiment with its exposures",
  tags,
  request: { params: Params },
  responses: { 200: json(z.object({ id: z.string(), deleted: z.literal(true) }), "Deleted"), ...errors(403, 404) },
});

const results = createRoute({
  method: "get",
  path: "/{id}/results",
  summary: "Results of an experiment",
  description:
    "Per variant: users, exposures, CTR, add-to-cart rate, conversion, revenue per user and guardrails (fallback rate, error rate, latency); per treatment: relative lift over the control with a delta-method interval and p-value; sample-ratio mismatch. Options: always-valid (mSPRT) intervals, CUPED with pre-period events.",
  tags,
  request: {
    params: Params,
    query: z.object({
      control: z.string().max(64).optional().openapi({ description: "Control variant (default: the first)." }),
      alpha: z.coerce.number().gt(0).lt(0.5).default(0.05),
      sequential: z.enum(["true", "false"]).default("false").openapi({ description: "Add mSPRT always-valid p-values and intervals (valid under continuous monitoring)." }),
      tau: z.coerce.number().positive().max(10).default(0.1).openapi({ description: "mSPRT mixture scale: the relative lift you expect (default 0.1)." }),
      cuped: z.enum(["true", "false"]).default("false").openapi({ description: "Add CUPED-adjusted lifts with the users' pre-period events as covariate." }),
      pre_period_days: z.coerce.number().positive().max(365).default(14).openapi({ description: "CUPED pre-period before the start, days (default 14)." }),
    }),
  },
  responses: { 200: json(ResultsSchema, "Results"), ...errors(403, 404) },
});

const dbCall = async <T>(retryAfter: number, fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    console.error("experiments: D1 failed", (e as Error).stack);
    throw new ApiError(503, "experiments_unavailable", "experiment database unavailable; retry", { headers: { "Retry-After": String(retryAfter) } });
  }
};

export const experimentsApp = featureApp()
  .openapi(create, async (c) => {
    const e = await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => createExperiment(c.var.db, c.req.valid("json"), canServe(c)));
    return c.json(experimentOut(e), 201);
  })
  .openapi(list, async (c) => {
    const q = c.req.valid("query");
    const es = await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => listExperiments(c.var.db, q));
    return c.json({ experiments: es.map(experimentOut) }, 200);
  })
  .openapi(read, async (c) => c.json(experimentOut(await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => getExperiment(c.var.db, c.req.valid("param").id))), 200))
  .openapi(patch, async (c) => {
    const e = await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => updateExperiment(c.var.db, c.req.valid("param").id, c.req.valid("json"), canServe(c)));
    return c.json(experimentOut(e), 200);
  })
  .openapi(start, async (c) => c.json(experimentOut(await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => startExperiment(c.var.db, c.req.valid("param").id))), 200))
  .openapi(stop, async (c) => c.json(experimentOut(await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => stopExperiment(c.var.db, c.req.valid("param").id))), 200))
  .openapi(remove, async (c) => {
    const { id } = c.req.valid("param");
    await dbCall(c.var.config.RETRY_AFTER_SECONDS, () => deleteExperiment(c.var.db, id));
    return c.json({ id, deleted: true as const }, 200);
  })
  .openapi(results, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    const retry = c.var.config.RETRY_AFTER_SECONDS;
    const exp = await dbCall(retry, () => getExperiment(c.var.db, id));
    if (q.control !== undefined && !exp.variants.some((v) => v.key === q.control)) {
      throw new ApiError(400, "invalid_request", `query.control: experiment ${id} has no variant ${q.control}`, { field: "query.control" });
    }
    const r = await dbCall(retry, () =>
      experimentResults(c.var.db, exp, {
        control: q.control,
        alpha: q.alpha,
        sequentialTau: q.sequential === "true" ? q.tau : undefined,
        cupedPreDays: q.cuped === "true" ? q.pre_period_days : undefined,
      }),
    );
    return c.json(r as z.infer<typeof ResultsSchema>, 200);
  });
