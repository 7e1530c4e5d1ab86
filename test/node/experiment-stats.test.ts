/**
 * The statistics of experiments against reference values computed independently, the
 * assignment's uniformity, and the attribution rules. Reference numbers were computed once with
 * /usr/bin/python3 (numpy 1.x, scipy): the script's lines are quoted next to each constant.
 */
import { describe, expect, it } from "vitest";
import { analyze, type UserOutcome } from "../../src/experiments/analysis";
import { assign } from "../../src/experiments/assign";
import { attribute, CLOCK_SKEW_MS } from "../../src/experiments/results";
import { cuped, meanEstimate, msprt, ratioEstimate, relativeLift, sampleRatioMismatch } from "../../src/stats/ab";

const close = (got: number, want: number, tol = 1e-9) => expect(Math.abs(got - want), `${got} vs ${want}`).toBeLessThan(tol);

describe("statistics against scipy", () => {
  it("gives the delta-method relative lift, its 95% interval and p-value of two means", () => {
    // t, c as below; lift = mt/mc - 1, se = sqrt(vt/mc^2 + mt^2 vc/mc^4) with v = var(ddof=1)/n,
    // interval lift -+ scipy.stats.norm.ppf(0.975) se, p = 2 norm.sf(|lift/se|).
    const t = [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 3, 0, 1, 0, 2];
    const c = [0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0];
    const l = relativeLift(meanEstimate(t), meanEstimate(c));
    close(l.lift, 1.6666666666666665);
    close(l.se, 1.6741821892751108);
    close(l.ci[0], -1.6146701278709705, 1e-7);
    close(l.ci[1], 4.948003461204303, 1e-7);
    close(l.p, 0.31948783147586823, 1e-7);
  });

  it("gives the delta-method variance of a ratio metric over users", () => {
    // R = sum(n)/sum(d); Var = (C_nn - 2R C_nd + R^2 C_dd) / (k mean(d)^2), C = np.cov(ddof=1).
    const a = ratioEstimate([1, 0, 2, 0, 3, 1, 0, 0, 1, 2], [3, 1, 4, 2, 5, 2, 1, 1, 2, 3]);
    const b = ratioEstimate([0, 1, 0, 0, 1, 0, 2, 0], [2, 2, 1, 3, 4, 1, 3, 2]);
    close(a.value, 0.4166666666666667);
    close(a.variance, 0.0054923268175583, 1e-12);
    close(b.value, 0.2222222222222222);
    close(b.variance, 0.01071265268796133, 1e-12);
    const l = relativeLift(a, b);
    close(l.lift, 0.8750000000000002);
    close(l.se, 0.9348093001138603);
    close(l.p, 0.3492630011492095, 1e-7);
  });

  it("flags a sample-ratio mismatch as scipy.stats.chisquare computes it, at p < 0.001", () => {
    // chisquare([5500,4500],[5000,5000]) = (100.0, 1.52e-23); chisquare([1010,990,2000],[1000,1000,2000])
    // = (0.2, 0.9048374180359595); chisquare([5040,4960],[5000,5000]) = (0.64, 0.4237107971667936).
    const planted = sampleRatioMismatch([5500, 4500], [1, 1]);
    close(planted.chi2, 100);
    expect(planted.p).toBeLessThan(1e-10);
    expect(planted.flagged).toBe(true);
    const three = sampleRatioMismatch([1010, 990, 2000], [1, 1, 2]);
    close(three.chi2, 0.2);
    close(three.p, 0.9048374180359595, 1e-7);
    expect(three.flagged).toBe(false);
    const fine = sampleRatioMismatch([5040, 4960], [0.5, 0.5]);
    close(fine.p, 0.4237107971667936, 1e-7);
  });

  it("gives the mSPRT always-valid p-value and confidence sequence", () => {
    // Lambda = sqrt(v/(v+t2)) exp(t2 est^2 / (2 v (v+t2))), p = min(1, 1/Lambda),
    // half = sqrt(v (v+t2)/t2 (log((v+t2)/v) - 2 log 0.05)); v = 0.0004, tau = 0.1.
    const a = msprt(0.05, 0.0004, 0.05, 0.1);
    close(a.p, 0.2526476564161468, 1e-9);
    close(a.ci[0], -0.012030777936552245, 1e-9);
    close(a.ci[1], 0.11203077793655225, 1e-9);
    const b = msprt(0.12, 0.0004, 0.05, 0.1);
    close(b.p, 1.5518559663643558e-7, 1e-12);
    close(b.ci[0], 0.05796922206344775, 1e-9);
    // Wider than the fixed-horizon interval (est -+ 1.96 * 0.02) at the same data: the price of peeking.
    expect(b.ci[1] - b.ci[0]).toBeGreaterThan(2 * 1.959964 * 0.02);
  });

  it("adjusts with CUPED as numpy does (theta pooled over groups)", () => {
    // theta = np.cov(y, x)[0,1] / x.var(ddof=1) over both groups; adjusted y - theta (x - mean x);
    // then the delta-method lift of the adjusted means.
    const g = [
      { y: [3, 5, 2, 8, 6, 4, 7], x: [2, 4, 1, 7, 5, 3, 5] },
      { y: [2, 4, 1, 6, 3, 5], x: [2, 5, 1, 6, 2, 4] },
    ];
    const { adjusted, theta } = cuped(g);
    close(theta, 1.0102389078498293);
    const l = relativeLift(meanEstimate(adjusted[0]!), meanEstimate(adjusted[1]!));
    close(l.lift, 0.256497447593504);
    close(l.se, 0.10945927871884097);
    close(l.p, 0.019113295620340705, 1e-7);
    // Without the covariate the same data are not significant: CUPED removed variance.
    expect(relativeLift(meanEstimate(g[0]!.y), meanEstimate(g[1]!.y)).p).toBeGreaterThan(0.05);
  });
});

describe("assignment", () => {
  it("gives every runtime the same variants: Node here, workerd in test/worker/experiments.test.ts, Python for the constants", () => {
    // fnv1a32(str(fnv1a32("sticky-salt" + user))) % 10000 / 10000 into [0,.2) [.2,.5) [.5,1), in Python.
    const python = [2, 2, 2, 2, 0, 0, 2, 2, 1, 0, 1, 1];
    const exp = { id: "any-key", salt: "sticky-salt", variants: [2, 3, 5].map((w, i) => ({ key: `v${i}`, weight: w })) };
    expect(python.map((_, i) => assign(exp, `shopper-${i}`)!.index)).toEqual(python);
    // Hash values of ("s1", "alice") and ("s1", "bob") computed with the same Python function.
    const two = { id: "e", salt: "s1", variants: [{ key: "a", weight: 1 }, { key: "b", weight: 1 }] };
    close(assign(two, "alice")!.bucket, 0.6444);
    close(assign(two, "bob")!.bucket, 0.8333);
  });

  it("splits 20,000 users in proportion to the weights (chi-square p > 0.01), for two and three variants", () => {
    const users = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
    for (const weights of [[1, 1], [2, 3, 5]]) {
      const exp = { id: "uniform", salt: "salt-u", variants: weights.map((w, i) => ({ key: `v${i}`, weight: w })) };
      const counts = weights.map(() => 0);
      for (const u of users) counts[assign(exp, u)!.index]!++;
      const srm = sampleRatioMismatch(counts, weights);
      expect(srm.p, `counts ${counts}`).toBeGreaterThan(0.01);
    }
  });

  it("puts the hash of users uniformly in [0, 1) (20 equal bins, chi-square p > 0.01) and changes the split with the salt", () => {
    const bins = new Array(20).fill(0);
    const a = { id: "e", salt: "one", variants: [{ key: "a", weight: 1 }, { key: "b", weight: 1 }] };
    const b = { ...a, salt: "two" };
    let same = 0;
    for (let i = 0; i < 20_000; i++) {
      const x = assign(a, `u${i}`)!;
      bins[Math.floor(x.bucket * 20)]++;
      if (x.index === assign(b, `u${i}`)!.index) same++;
    }
    expect(sampleRatioMismatch(bins, new Array(20).fill(1)).p).toBeGreaterThan(0.01);
    // Independent salts agree about half the time.
    expect(same / 20_000).toBeGreaterThan(0.48);
    expect(same / 20_000).toBeLessThan(0.52);
  });
});

describe("attribution windows", () => {
  const H = 3_600_000;
  const lists = [{ recId: "r1", ts: 1_000 * H, items: ["a", "b"] }];

  it("counts a purchase of a shown item from the list's time to the end of the window, inclusive, and nothing outside", () => {
    const at = (ts: number, itemId = "a", type = "purchase") => ({ itemId, type, ts, price: 7 });
    const t0 = lists[0]!.ts;
    expect(attribute(lists, [], [at(t0)], H).purchases).toBe(1);
    expect(attribute(lists, [], [at(t0 + H)], H).purchases).toBe(1);
    expect(attribute(lists, [], [at(t0 + H + 1)], H).purchases).toBe(0);
    expect(attribute(lists, [], [at(t0 - 1)], H).purchases).toBe(0);
    expect(attribute(lists, [], [at(t0 + 10, "z")], H).purchases).toBe(0);
    const r = attribute(lists, [], [at(t0 + 5, "a", "add_to_cart"), at(t0 + 6), at(t0 + 7, "b")], H);
    expect(r).toEqual({ clicks: 0, addToCarts: 1, purchases: 2, revenue: 14 });
  });

  it("counts each listed item's click once, only for the list it names, within the window and the clock skew", () => {
    const t0 = lists[0]!.ts;
    const click = (ts: number, itemId = "a", recId = "r1") => ({ recId, itemId, ts });
    expect(attribute(lists, [click(t0 + 1), click(t0 + 2), click(t0 + 3, "b")], [], H).clicks).toBe(2);
    expect(attribute(lists, [click(t0 + 1, "z"), click(t0 + 1, "a", "other")], [], H).clicks).toBe(0);
    expect(attribute(lists, [click(t0 - CLOCK_SKEW_MS)], [], H).clicks).toBe(1);
    expect(attribute(lists, [click(t0 - CLOCK_SKEW_MS - 1)], [], H).clicks).toBe(0);
    expect(attribute(lists, [click(t0 + H + 1)], [], H).clicks).toBe(0);
  });
});

describe("analysis", () => {
  const user = (variant: string, i: number, o: Partial<UserOutcome>): UserOutcome => ({
    user: `${variant}${i}`,
    variant,
    requests: 2,
    exposures: 2,
    fallbacks: 0,
    errors: 0,
    latencyMs: 20,
    clicks: 0,
    addToCarts: 0,
    purchases: 0,
    revenue: 0,
    ...o,
  });

  it("computes per-variant metrics and guardrails by their definitions", () => {
    const users = [
      user("a", 1, { clicks: 1, purchases: 1, revenue: 10 }),
      user("a", 2, {}),
      user("b", 1, { clicks: 2, addToCarts: 1, fallbacks: 1, latencyMs: 60 }),
      user("b", 2, { clicks: 1, exposures: 1, requests: 2, errors: 1 }),
    ];
    const r = analyze(users, { variants: [{ key: "a", weight: 1 }, { key: "b", weight: 1 }], latencies: { a: [5, 15, 10, 10], b: [30, 30, 10, 10] } });
    const [a, b] = r.variants;
    expect(a).toMatchObject({ users: 2, exposures: 4, clicks: 1, ctr: 0.25, conversion: 0.5, revenue_per_user: 5, add_to_cart_rate: 0 });
    expect(b).toMatchObject({ users: 2, exposures: 3, clicks: 3, ctr: 1, conversion: 0, add_to_cart_rate: 0.5 });
    expect(b!.guardrails).toMatchObject({ requests: 4, fallback_rate: 0.25, error_rate: 0.25, latency_ms: { mean: 20, p50: 10, p95: 30 } });
    close(r.comparisons[0]!.metrics.ctr.lift, 3);
    expect(r.srm.p).toBe(1);
  });
});
