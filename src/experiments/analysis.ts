/**
 * The analysis of an experiment from per-user outcomes (pure: the results endpoint, the CLI and
 * the simulation all call it). The user is the unit of randomisation and of every variance.
 *
 * Metrics per variant:
 *   users             users with at least one logged request (QA overrides excluded)
 *   exposures         lists served
 *   ctr               clicks on shown items (distinct list and item) / exposures: a ratio metric,
 *                     its variance by the delta method over users
 *   add_to_cart_rate  share of users with an attributed add-to-cart
 *   conversion        share of users with an attributed purchase
 *   revenue_per_user  attributed revenue (catalog price) / users
 * Each treatment is compared with the control: relative lift with a delta-method interval and a
 * two-sided p-value; optionally the mSPRT always-valid p-value and interval, and CUPED (users'
 * pre-period value of the same metric as covariate; not for the ratio metric ctr).
 * Sample-ratio mismatch: chi-square of users per variant against the weights (flag p < 0.001).
 * Guardrails per treatment: fallback rate and error rate per request and mean latency, each
 * compared with the control (flagged when worse with p < alpha).
 */
import { type Estimate, type Lift, type Sequential, cuped, meanEstimate, msprt, quantile, ratioEstimate, relativeLift, sampleRatioMismatch, twoSidedP } from "../stats/ab";

export const METRICS = ["ctr", "add_to_cart_rate", "conversion", "revenue_per_user"] as const;
export type Metric = (typeof METRICS)[number];

/** One user's outcome in one variant. */
export interface UserOutcome {
  user: string;
  variant: string;
  /** Requests logged (lists served + failed requests). */
  requests: number;
  exposures: number;
  fallbacks: number;
  errors: number;
  /** Sum of request latencies, ms. */
  latencyMs: number;
  clicks: number;
  addToCarts: number;
  purchases: number;
  revenue: number;
  /** Pre-period values (CUPED): add-to-carts, purchases and revenue before the start. */
  pre?: { addToCarts: number; purchases: number; revenue: number };
}

export interface AnalysisOptions {
  /** Variant keys and weights, in definition order. */
  variants: readonly { key: string; weight: number }[];
  /** Control variant key (default: the first). */
  control?: string;
  /** Two-sided level (default 0.05). */
  alpha?: number;
  /** Add always-valid (mSPRT) p-values and intervals with this mixture scale (relative lift). */
  sequentialTau?: number;
  /** Add CUPED-adjusted lifts (needs `pre` on the outcomes). */
  cuped?: boolean;
  /** Per-request latencies per variant, ms (for percentiles). */
  latencies?: Record<string, number[]>;
}

export interface MetricComparison extends Lift {
  control: number;
  treatment: number;
  significant: boolean;
  sequential?: Sequential & { significant: boolean };
  cuped?: Lift & { theta: number; significant: boolean };
}

export interface GuardrailComparison {
  control: number;
  treatment: number;
  diff: number;
  p: number;
  /** The treatment is worse with p < alpha. */
  flagged: boolean;
}

export interface VariantSummary {
  key: string;
  weight: number;
  users: number;
  exposures: number;
  clicks: number;
  add_to_carts: number;
  purchases: number;
  revenue: number;
  ctr: number;
  add_to_cart_rate: number;
  conversion: number;
  revenue_per_user: number;
  guardrails: { requests: number; fallback_rate: number; error_rate: number; latency_ms: { mean: number; p50: number | null; p95: number | null } };
}

export interface Analysis {
  control: string;
  alpha: number;
  variants: VariantSummary[];
  srm: { chi2: number; df: number; p: number; flagged: boolean; observed: Record<string, number>; expected: Record<string, number> };
  comparisons: {
    variant: string;
    metrics: Record<Metric, MetricComparison>;
    guardrails: { fallback_rate: GuardrailComparison; error_rate: GuardrailComparison; latency_ms: GuardrailComparison };
  }[];
}

const ind = (x: number) => (x > 0 ? 1 : 0);

/** Per-user values of a user-level metric (and its pre-period covariate). */
function userValues(us: readonly UserOutcome[], m: Exclude<Metric, "ctr">): { y: Float64Array; x: Float64Array } {
  const y = new Float64Array(us.length);
  const x = new Float64Array(us.length);
  us.forEach((u, i) => {
    if (m === "add_to_cart_rate") {
      y[i] = ind(u.addToCarts);
      x[i] = ind(u.pre?.addToCarts ?? 0);
    } else if (m === "conversion") {
      y[i] = ind(u.purchases);
      x[i] = ind(u.pre?.purchases ?? 0);
    } else {
      y[i] = u.revenue;
      x[i] = u.pre?.revenue ?? 0;
    }
  });
  return { y, x };
}

function estimate(us: readonly UserOutcome[], m: Metric): Estimate {
  if (m === "ctr") return ratioEstimate(us.map((u) => u.clicks), us.map((u) => u.exposures));
  return meanEstimate(userValues(us, m).y);
}

/** Difference of two per-request rates (ratio metrics over users), two-sided z-test. */
function guardrail(t: readonly UserOutcome[], c: readonly UserOutcome[], num: (u: UserOutcome) => number, den: (u: UserOutcome) => number, alpha: number): GuardrailComparison {
  const et = ratioEstimate(t.map(num), t.map(den));
  const ec = ratioEstimate(c.map(num), c.map(den));
  const diff = et.value - ec.value;
  const se = Math.sqrt(et.variance + ec.variance);
  const p = se > 0 ? twoSidedP(diff / se) : diff === 0 ? 1 : 0;
  return { control: ec.value, treatment: et.value, diff, p, flagged: diff > 0 && p < alpha };
}

/** Analyse per-user outcomes (users in more than one variant must be removed beforehand). */
export function analyze(outcomes: readonly UserOutcome[], o: AnalysisOptions): Analysis {
  const alpha = o.alpha ?? 0.05;
  const control = o.control ?? o.variants[0]!.key;
  const by = new Map<string, UserOutcome[]>(o.variants.map((v) => [v.key, []]));
  for (const u of outcomes) by.get(u.variant)?.push(u);
  const total = (us: readonly UserOutcome[], f: (u: UserOutcome) => number) => us.reduce((a, u) => a + f(u), 0);

  const variants: VariantSummary[] = o.variants.map((v) => {
    const us = by.get(v.key)!;
    const n = us.length;
    const exposures = total(us, (u) => u.exposures);
    const requests = total(us, (u) => u.requests);
    const lat = [...(o.latencies?.[v.key] ?? [])].sort((a, b) => a - b);
    return {
      key: v.key,
      weight: v.weight,
      users: n,
      exposures,
      clicks: total(us, (u) => u.clicks),
      add_to_carts: total(us, (u) => u.addToCarts),
      purchases: total(us, (u) => u.purchases),
      revenue: total(us, (u) => u.revenue),
      ctr: exposures ? total(us, (u) => u.clicks) / exposures : Number.NaN,
      add_to_cart_rate: n ? total(us, (u) => ind(u.addToCarts)) / n : Number.NaN,
      conversion: n ? total(us, (u) => ind(u.purchases)) / n : Number.NaN,
      revenue_per_user: n ? total(us, (u) => u.revenue) / n : Number.NaN,
      guardrails: {
        requests,
        fallback_rate: requests ? total(us, (u) => u.fallbacks) / requests : Number.NaN,
        error_rate: requests ? total(us, (u) => u.errors) / requests : Number.NaN,
        latency_ms: { mean: requests ? total(us, (u) => u.latencyMs) / requests : Number.NaN, p50: lat.length ? quantile(lat, 0.5) : null, p95: lat.length ? quantile(lat, 0.95) : null },
      },
    };
  });

  const observed = o.variants.map((v) => by.get(v.key)!.length);
  const s = sampleRatioMismatch(observed, o.variants.map((v) => v.weight));
  const srm = {
    chi2: s.chi2,
    df: s.df,
    p: s.p,
    flagged: s.flagged,
    observed: Object.fromEntries(o.variants.map((v, i) => [v.key, observed[i]!])),
    expected: Object.fromEntries(o.variants.map((v, i) => [v.key, s.expected[i]!])),
  };

  const cu = by.get(control)!;
  const comparisons = o.variants
    .filter((v) => v.key !== control)
    .map((v) => {
      const tu = by.get(v.key)!;
      const metrics = {} as Record<Metric, MetricComparison>;
      for (const m of METRICS) {
        const et = estimate(tu, m);
        const ec = estimate(cu, m);
        const lift = relativeLift(et, ec, alpha);
        const mc: MetricComparison = { ...lift, control: ec.value, treatment: et.value, significant: lift.p < alpha };
        if (o.sequentialTau !== undefined) {
          const sq = msprt(lift.lift, lift.se ** 2, alpha, o.sequentialTau);
          mc.sequential = { ...sq, significant: sq.p < alpha };
        }
        if (o.cuped && m !== "ctr") {
          const gt = userValues(tu, m);
          const gc = userValues(cu, m);
          const { adjusted, theta } = cuped([gt, gc]);
          const l = relativeLift(meanEstimate(adjusted[0]!), meanEstimate(adjusted[1]!), alpha);
          mc.cuped = { ...l, theta, significant: l.p < alpha };
        }
        metrics[m] = mc;
      }
      return {
        variant: v.key,
        metrics,
        guardrails: {
          fallback_rate: guardrail(tu, cu, (u) => u.fallbacks, (u) => u.requests, alpha),
          error_rate: guardrail(tu, cu, (u) => u.errors, (u) => u.requests, alpha),
          latency_ms: guardrail(tu, cu, (u) => u.latencyMs, (u) => u.requests, alpha),
        },
      };
    });
  return { control, alpha, variants, srm, comparisons };
}
