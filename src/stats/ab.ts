/**
 * Statistics for A/B tests on per-user data (the user is the unit of randomisation).
 *
 *  - means and ratio metrics (CTR = clicks / exposures summed over users) with the variance of
 *    the estimate (ratio: delta method, Deng et al. 2018, "Applying the Delta Method in Metric
 *    Analytics");
 *  - relative lift treatment/control - 1 with a delta-method standard error, a two-sided normal
 *    p-value and a (1 - alpha) interval;
 *  - sample-ratio mismatch: Pearson's chi-square goodness of fit of users per variant against
 *    the declared weights;
 *  - always-valid p-values and confidence sequences (mSPRT with a normal mixture, Johari et al.
 *    2017/2022), valid under continuous monitoring;
 *  - CUPED (Deng et al. 2013): Y - theta (X - mean X) with theta = cov(Y, X) / var(X) pooled over
 *    the variants, X the user's pre-period value of the same metric.
 * Distributions (normal, chi-square) come from jstat.
 */
import jstatModule from "jstat";

// jstat is UMD: bundlers hand over either the object itself or { jStat }.
const jStat = ((jstatModule as unknown as { jStat?: typeof jstatModule }).jStat ?? jstatModule) as typeof jstatModule;

/** An estimate with the variance of the estimate (not of the data). */
export interface Estimate {
  /** The point estimate (a mean or a ratio of means). */
  value: number;
  /** Variance of the estimate. */
  variance: number;
  /** Users it is computed from. */
  n: number;
}

const sum = (xs: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s;
};

/** Sample covariance (n - 1 in the denominator; 0 for fewer than 2 values). */
export function covariance(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  if (n < 2) return 0;
  const mx = sum(x) / n;
  const my = sum(y) / n;
  let s = 0;
  for (let i = 0; i < n; i++) s += (x[i]! - mx) * (y[i]! - my);
  return s / (n - 1);
}

/** The mean of per-user values and its variance s^2 / n. */
export function meanEstimate(values: ArrayLike<number>): Estimate {
  const n = values.length;
  if (n === 0) return { value: Number.NaN, variance: Number.NaN, n };
  return { value: sum(values) / n, variance: covariance(values, values) / n, n };
}

/**
 * A ratio metric sum(num) / sum(den) over users (e.g. clicks per exposure), with the delta-method
 * variance Var(R) = (s_nn - 2 R s_nd + R^2 s_dd) / (n mean(den)^2).
 */
export function ratioEstimate(num: ArrayLike<number>, den: ArrayLike<number>): Estimate {
  const n = num.length;
  if (n === 0) return { value: Number.NaN, variance: Number.NaN, n };
  const md = sum(den) / n;
  const r = sum(num) / sum(den);
  const v = (covariance(num, num) - 2 * r * covariance(num, den) + r * r * covariance(den, den)) / (n * md * md);
  return { value: r, variance: v, n };
}

/** Standard normal quantile (jstat). */
export const normalQuantile = (p: number) => jStat.normal.inv(p, 0, 1);
/** Two-sided p-value of a z statistic (jstat). */
export const twoSidedP = (z: number) => 2 * (1 - jStat.normal.cdf(Math.abs(z), 0, 1));

export interface Lift {
  /** Relative lift treatment / control - 1. */
  lift: number;
  /** Delta-method standard error of the lift. */
  se: number;
  /** (1 - alpha) interval of the lift. */
  ci: [number, number];
  /** Two-sided p-value of "no difference". */
  p: number;
  /** Absolute difference treatment - control. */
  diff: number;
}

/**
 * Relative lift of `t` over `c` (independent groups): lift = t/c - 1,
 * Var = Var(t)/c^2 + t^2 Var(c)/c^4 (first-order delta method). alpha default 0.05.
 */
export function relativeLift(t: Estimate, c: Estimate, alpha = 0.05): Lift {
  const lift = t.value / c.value - 1;
  const se = Math.sqrt(t.variance / c.value ** 2 + (t.value ** 2 * c.variance) / c.value ** 4);
  const z = normalQuantile(1 - alpha / 2);
  const ok = Number.isFinite(lift) && Number.isFinite(se) && se > 0;
  return {
    lift,
    se,
    ci: ok ? [lift - z * se, lift + z * se] : [Number.NaN, Number.NaN],
    p: ok ? twoSidedP(lift / se) : Number.NaN,
    diff: t.value - c.value,
  };
}

export interface Srm {
  chi2: number;
  df: number;
  p: number;
  /** p < threshold (default 0.001). */
  flagged: boolean;
  expected: number[];
}

/** Sample-ratio mismatch: chi-square goodness of fit of `observed` counts to `weights`. */
export function sampleRatioMismatch(observed: readonly number[], weights: readonly number[], threshold = 0.001): Srm {
  const total = sum(observed);
  const wsum = sum(weights);
  const expected = weights.map((w) => (total * w) / wsum);
  let chi2 = 0;
  for (let i = 0; i < observed.length; i++) if (expected[i]! > 0) chi2 += (observed[i]! - expected[i]!) ** 2 / expected[i]!;
  const df = observed.length - 1;
  const p = total > 0 && df > 0 ? 1 - jStat.chisquare.cdf(chi2, df) : 1;
  return { chi2, df, p, flagged: p < threshold, expected };
}

export interface Sequential {
  /** Always-valid p-value (valid whenever the results are looked at). */
  p: number;
  /** Always-valid (1 - alpha) confidence sequence for the lift. */
  ci: [number, number];
  tau: number;
}

/**
 * mSPRT with a normal mixture N(0, tau^2) over the effect, for an asymptotically normal estimate
 * `est` with variance `v` (Johari, Pekelis, Walsh: "Always valid inference", 2017/2022):
 *   Lambda = sqrt(v / (v + tau^2)) exp(tau^2 est^2 / (2 v (v + tau^2))),  p = min(1, 1 / Lambda);
 * the confidence sequence is {theta: Lambda(theta) < 1/alpha}:
 *   est +- sqrt(v (v + tau^2) / tau^2 * (log((v + tau^2) / v) - 2 log alpha)).
 * `tau`: the mixture's scale, the size of effect expected (default 0.1 for a relative lift).
 */
export function msprt(est: number, v: number, alpha = 0.05, tau = 0.1): Sequential {
  if (!(v > 0) || !Number.isFinite(est)) return { p: Number.NaN, ci: [Number.NaN, Number.NaN], tau };
  const t2 = tau * tau;
  const logLambda = 0.5 * Math.log(v / (v + t2)) + (t2 * est * est) / (2 * v * (v + t2));
  const p = Math.min(1, Math.exp(-logLambda));
  const half = Math.sqrt(((v * (v + t2)) / t2) * (Math.log((v + t2) / v) - 2 * Math.log(alpha)));
  return { p, ci: [est - half, est + half], tau };
}

/**
 * CUPED: per-user values adjusted with a pre-period covariate, theta estimated on all groups
 * pooled. Returns the adjusted values per group and theta. A covariate without variance leaves
 * the values as they are (theta 0).
 */
export function cuped(groups: { y: ArrayLike<number>; x: ArrayLike<number> }[]): { adjusted: Float64Array[]; theta: number } {
  const ys: number[] = [];
  const xs: number[] = [];
  for (const g of groups) for (let i = 0; i < g.y.length; i++) {
    ys.push(g.y[i]!);
    xs.push(g.x[i]!);
  }
  const vx = covariance(xs, xs);
  const theta = vx > 0 ? covariance(ys, xs) / vx : 0;
  const mx = xs.length ? sum(xs) / xs.length : 0;
  const adjusted = groups.map((g) => {
    const out = new Float64Array(g.y.length);
    for (let i = 0; i < g.y.length; i++) out[i] = g.y[i]! - theta * (g.x[i]! - mx);
    return out;
  });
  return { adjusted, theta };
}

/** Quantile of sorted values (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
