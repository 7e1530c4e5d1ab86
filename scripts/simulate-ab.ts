/**
 * `npm run simulate:ab`: an A/B test of popular items vs the model, run on the local stack with
 * replayed real sessions and a simulated shopper, then the two checks every experiment platform
 * owes its users: a planted sample-ratio mismatch must be flagged, and A/A tests must come out
 * significant about alpha = 5% of the time.
 *
 * 1. A/B over HTTP (a throwaway local stack, demo catalog): every MovieLens latest-small user
 *    (../shared/data) becomes a shopper. Their first ratings (up to HISTORY) are replayed as views
 *    before the experiment starts (ratings >= 4.5 as purchases: the CUPED pre-period); then, in
 *    ROUNDS rounds, the shopper asks for 10 recommendations on placement `home` and reacts to
 *    them, then views their next real items. The shopper model is the same for both variants: an
 *    item is relevant when it is among the user's next INTEREST (50) real ratings (>= 3.5: strongly);
 *    P(click) = position decay x (0.45 strongly relevant, 0.25 relevant, 0.03 other);
 *    P(add to cart | click) = 0.5 relevant, 0.15 other; P(purchase | cart) = 0.3 + 0.5 x the user's
 *    share of ratings >= 4. Clicks carry the list's rec_id; carts and purchases carry nothing
 *    (attributed by the window). Primary metric, declared before the run: CTR.
 *    The results endpoint's counts are checked against what the simulator sent.
 * 2. Planted SRM over HTTP: an experiment declared 50/50 (both variants popular) on placement
 *    `srm`, where 18% of variant b's shoppers never request their list (as when one variant's page
 *    fails before asking), so the logged split is about 55/45. The SRM check must flag it.
 * 3. A/A: AA_RUNS experiments on the statistics code directly (not HTTP): each draws as many
 *    shoppers as the A/B had, with replacement, from the per-user outcomes of one arm of the A/B run
 *    (the arms take turns), splits them 50/50 with the real assignment code under a fresh salt and
 *    analyses them with the real analysis code. The false-positive rate on the primary metric must
 *    land in [0.02, 0.08].
 *
 * Options: --users N (A/B shoppers, default all 610)  --rounds R (default 3)  --srm-users N
 * (default 3000)  --aa N (default 1000)  --seed S.
 * Last line: AB lift=<x> ci=[<lo>,<hi>] detected=<true|false> srm_flagged=<true|false> aa_fpr=<x>
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "../local/redis-server.ts";
import { ROOT, startStack } from "../local/stack.ts";
import { analyze, METRICS, type UserOutcome } from "../src/experiments/analysis";
import { assign } from "../src/experiments/assign";
import type { Results } from "../src/experiments/results";
import { demoCatalog } from "./demo-catalog.ts";
import { formatResults } from "./experiment-report.ts";

const { values: opt } = parseArgs({
  options: {
    users: { type: "string", default: "100000" },
    rounds: { type: "string", default: "3" },
    "srm-users": { type: "string", default: "3000" },
    aa: { type: "string", default: "1000" },
    seed: { type: "string", default: "42" },
    concurrency: { type: "string", default: "8" },
  },
});
const ROUNDS = Number(opt.rounds);
const HISTORY = 30;
const INTEREST = 50;
const K = 10;
const AA_RUNS = Number(opt.aa);
const CONCURRENCY = Number(opt.concurrency);
const KEY = "sim-key";
const RUN = Date.now().toString(36);

// ---- a seeded PRNG (mulberry32): the shopper's coin flips are reproducible --------------------
let seed = Number(opt.seed) >>> 0;
function random(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

// ---- real sessions: MovieLens latest-small ratings in time order, items the catalog holds ------
const catalog = demoCatalog();
const price = new Map(catalog.map((i) => [i.id, i.price]));
const available = new Set(catalog.filter((i) => i.available).map((i) => i.id));
const ratingsPath = join(ROOT, "..", "shared", "data", "movielens-latest-small", "ratings.csv");
const byUser = new Map<string, { item: string; rating: number; ts: number }[]>();
for (const line of readFileSync(ratingsPath, "utf8").split("\n").slice(1)) {
  const [u, item, rating, ts] = line.split(",");
  if (!u || !item || !price.has(item)) continue;
  const l = byUser.get(u) ?? [];
  l.push({ item, rating: Number(rating), ts: Number(ts) });
  byUser.set(u, l);
}
for (const l of byUser.values()) l.sort((a, b) => a.ts - b.ts);
const mlUsers = [...byUser.keys()].filter((u) => byUser.get(u)!.length >= HISTORY + 10).slice(0, Number(opt.users));

interface Shopper {
  id: string;
  past: { item: string; rating: number }[];
  future: { item: string; rating: number }[];
  /** Item -> 2 (rated >= 3.5 later), 1 (rated lower later). */
  relevance: Map<string, number>;
  buyer: number;
  variant?: string;
  outcome: UserOutcome;
}

const shoppers: Shopper[] = mlUsers.map((u) => {
  const all = byUser.get(u)!;
  const past = all.slice(0, HISTORY);
  const future = all.slice(HISTORY);
  const relevance = new Map<string, number>();
  // Current interest: the next INTEREST items the user really rated.
  for (const f of future.slice(0, INTEREST)) relevance.set(f.item, Math.max(relevance.get(f.item) ?? 0, f.rating >= 3.5 ? 2 : 1));
  const buyer = all.filter((r) => r.rating >= 4).length / all.length;
  const id = `sim-${RUN}-ml${u}`;
  return {
    id,
    past,
    future,
    relevance,
    buyer,
    outcome: { user: id, variant: "", requests: 0, exposures: 0, fallbacks: 0, errors: 0, latencyMs: 0, clicks: 0, addToCarts: 0, purchases: 0, revenue: 0 },
  };
});

// ---- HTTP -----------------------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), "gru-sim-ab-"));
console.log(`A/B simulation: ${shoppers.length} MovieLens shoppers, ${ROUNDS} rounds of ${K} recommendations; planted SRM with ${opt["srm-users"]} shoppers; ${AA_RUNS} A/A runs`);
const stack = await startStack({
  port: await freePort(),
  apiKey: KEY,
  dataDir: dir,
  vars: { RATE_LIMIT_SECRET_PER_MINUTE: "0", EXPERIMENT_CACHE_SECONDS: "1" },
});
const H = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };

async function call(method: string, path: string, body?: unknown): Promise<any> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${stack.url}${path}`, { method, headers: H, body: body === undefined ? undefined : JSON.stringify(body) });
    const out: any = await res.json().catch(() => null);
    if (res.ok) return out;
    if (res.status >= 500 && attempt < 5) {
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
      continue;
    }
    throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(out)}`);
  }
}

async function pool<T>(items: readonly T[], n: number, f: (x: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Results once every exposure and event the simulator caused is in D1 (written after responses). */
async function settledResults(id: string, expected: number, query = ""): Promise<Results> {
  for (let i = 0; ; i++) {
    const r = (await call("GET", `/v1/admin/experiments/${id}/results${query}`)) as Results;
    const got = r.variants.reduce((a, v) => a + v.exposures, 0);
    if (got >= expected || i > 100) {
      await sleep(1500); // conversions are logged after their responses too
      return (await call("GET", `/v1/admin/experiments/${id}/results${query}`)) as Results;
    }
    await sleep(200);
  }
}

let lastLine = "";
try {
  console.log(`local stack up at ${stack.url}`);
  const loaded = await call("POST", "/v1/items/batch", catalog);
  console.log(`demo catalog: ${loaded.stored} items`);

  // ---- 1. A/B: popular vs model ---------------------------------------------------------------------
  const abId = `sim-ab-${RUN}`;
  await call("POST", "/v1/admin/experiments", {
    id: abId,
    name: "popular vs model (simulation)",
    placement: "home",
    attribution_window_hours: 24,
    variants: [
      { key: "popular", weight: 1, strategy: { type: "popular" } },
      { key: "model", weight: 1, strategy: { type: "model" } },
    ],
  });
  const t0 = performance.now();
  // Pre-period: the shoppers' earlier sessions, before the experiment starts.
  await pool(shoppers, CONCURRENCY, async (s) => {
    const events = s.past.map((p, i) => ({ event_id: `${s.id}-p${i}`, user_id: s.id, item_id: p.item, type: p.rating >= 4.5 && available.has(p.item) ? "purchase" : "view" }));
    await call("POST", "/v1/events", events);
  });
  await call("POST", "/v1/admin/popular/refresh");
  await call("POST", `/v1/admin/experiments/${abId}/start`);
  console.log(`pre-period replayed (${shoppers.reduce((a, s) => a + s.past.length, 0)} events) in ${((performance.now() - t0) / 1000).toFixed(1)} s; experiment ${abId} started`);

  const t1 = performance.now();
  for (let round = 0; round < ROUNDS; round++) {
    await pool(shoppers, CONCURRENCY, async (s) => {
      const list = await call("GET", `/v1/users/${encodeURIComponent(s.id)}/recommendations?k=${K}`);
      s.variant = list.variant;
      const o = s.outcome;
      o.variant = list.variant;
      o.requests++;
      o.exposures++;
      const events: Record<string, unknown>[] = [];
      list.items.forEach((it: { item_id: string }, pos: number) => {
        const rel = s.relevance.get(it.item_id) ?? 0;
        const pClick = (1 / Math.log2(pos + 2)) * (rel === 2 ? 0.45 : rel === 1 ? 0.25 : 0.03);
        if (random() >= pClick) return;
        o.clicks++;
        events.push({ event_id: `${s.id}-r${round}-c${pos}`, user_id: s.id, item_id: it.item_id, type: "click", rec_id: list.rec_id });
        if (random() >= (rel ? 0.5 : 0.15)) return;
        o.addToCarts++;
        events.push({ event_id: `${s.id}-r${round}-a${pos}`, user_id: s.id, item_id: it.item_id, type: "add_to_cart" });
        if (random() >= 0.3 + 0.5 * s.buyer) return;
        o.purchases++;
        o.revenue += price.get(it.item_id) ?? 0;
        events.push({ event_id: `${s.id}-r${round}-b${pos}`, user_id: s.id, item_id: it.item_id, type: "purchase" });
      });
      // Then the shopper goes on browsing: their next real items.
      for (const [i, f] of s.future.slice(round * 3, round * 3 + 3).entries()) {
        events.push({ event_id: `${s.id}-r${round}-v${i}`, user_id: s.id, item_id: f.item, type: "view" });
      }
      if (events.length) await call("POST", "/v1/events", events);
    });
    console.log(`round ${round + 1}/${ROUNDS}: ${shoppers.length} lists served and reacted to (${((performance.now() - t1) / 1000).toFixed(1)} s)`);
  }
  const abSecs = (performance.now() - t1) / 1000;
  const expected = shoppers.length * ROUNDS;
  const ab = await settledResults(abId, expected, "?sequential=true&cuped=true&pre_period_days=1");
  console.log(`\n== A/B: ${expected} lists served in ${abSecs.toFixed(1)} s ==`);
  console.log(formatResults(ab));

  // Recompute the server's counts from what the simulator sent (users with at least one outcome).
  for (const v of ab.variants) {
    const mine = shoppers.filter((s) => s.variant === v.key).map((s) => s.outcome);
    const sum = (f: (o: UserOutcome) => number) => mine.reduce((a, o) => a + f(o), 0);
    const simulated = { users: mine.length, exposures: sum((o) => o.exposures), clicks: sum((o) => o.clicks), add_to_carts: sum((o) => o.addToCarts), purchases: sum((o) => o.purchases), revenue: Math.round(sum((o) => o.revenue) * 100) / 100 };
    const server = { users: v.users, exposures: v.exposures, clicks: v.clicks, add_to_carts: v.add_to_carts, purchases: v.purchases, revenue: Math.round(v.revenue * 100) / 100 };
    const same = JSON.stringify(simulated) === JSON.stringify(server);
    console.log(`${v.key}: server ${JSON.stringify(server)} ${same ? "== simulator's own counts" : `!= simulator's ${JSON.stringify(simulated)}`}`);
  }
  await call("POST", `/v1/admin/experiments/${abId}/stop`);

  // ---- 2. planted SRM: declared 50/50, logged about 55/45 ----------------------------------------------
  const srmId = `sim-srm-${RUN}`;
  const srmDef = {
    id: srmId,
    name: "planted sample-ratio mismatch",
    placement: "srm",
    variants: [
      { key: "a", weight: 1, strategy: { type: "popular" } },
      { key: "b", weight: 1, strategy: { type: "popular" } },
    ],
  };
  await call("POST", "/v1/admin/experiments", srmDef);
  await call("POST", `/v1/admin/experiments/${srmId}/start`);
  const srmUsers = Array.from({ length: Number(opt["srm-users"]) }, (_, i) => `srm-${RUN}-${i}`);
  const kept = srmUsers.filter((u) => assign({ id: srmId, salt: srmId, variants: srmDef.variants }, u)!.variant === "a" || random() >= 1 - 0.45 / 0.55);
  const t2 = performance.now();
  await pool(kept, CONCURRENCY * 2, async (u) => {
    await call("GET", `/v1/users/${u}/recommendations?k=5&placement=srm`);
  });
  const srm = await settledResults(srmId, kept.length);
  console.log(`\n== planted SRM: ${kept.length} of ${srmUsers.length} shoppers requested a list (${((performance.now() - t2) / 1000).toFixed(1)} s) ==`);
  console.log(
    `observed ${JSON.stringify(srm.srm.observed)}, expected ${JSON.stringify(Object.fromEntries(Object.entries(srm.srm.expected).map(([k, v]) => [k, Math.round(v)])))}: chi2 ${srm.srm.chi2.toFixed(2)}, p ${srm.srm.p.toExponential(2)}, flagged ${srm.srm.flagged}`,
  );
  await call("POST", `/v1/admin/experiments/${srmId}/stop`);

  // ---- 3. A/A on the statistics code: shoppers drawn from one arm, split 50/50 ------------------------
  // Each run draws as many shoppers as the A/B had (with replacement, from one arm's outcomes, the
  // arms taking turns), splits them 50/50 with the real assignment code under a fresh salt and
  // analyses them with the real analysis code: an A/A test at the A/B test's own sample size.
  const arms = [...new Set(shoppers.map((s) => s.variant!))];
  const byArm = new Map(arms.map((a) => [a, shoppers.filter((s) => s.variant === a).map((s) => s.outcome)]));
  const positives: Record<string, number> = Object.fromEntries(METRICS.map((m) => [m, 0]));
  const variants = [{ key: "x", weight: 1 }, { key: "y", weight: 1 }];
  for (let run = 0; run < AA_RUNS; run++) {
    const pool = byArm.get(arms[run % arms.length]!)!;
    const salt = `aa-${opt.seed}-${run}`;
    const outcomes = Array.from({ length: shoppers.length }, (_, k) => {
      const o = pool[Math.floor(random() * pool.length)]!;
      const user = `${o.user}#${k}`;
      return { ...o, user, variant: assign({ id: salt, salt, variants }, user)!.variant };
    });
    const a = analyze(outcomes, { variants });
    for (const m of METRICS) if (a.comparisons[0]!.metrics[m].p < 0.05) positives[m]!++;
  }
  const fpr = Object.fromEntries(METRICS.map((m) => [m, positives[m]! / AA_RUNS]));
  console.log(`\n== A/A: ${AA_RUNS} tests of ${shoppers.length} shoppers drawn from one arm, split 50/50 (statistics code, no HTTP), alpha 0.05 ==`);
  console.log(`false-positive rate per metric: ${METRICS.map((m) => `${m} ${fpr[m]!.toFixed(3)}`).join(", ")} (primary: ctr)`);

  const primary = ab.comparisons[0]!.metrics.ctr;
  const inRange = fpr.ctr! >= 0.02 && fpr.ctr! <= 0.08;
  console.log(
    `\nprimary metric ctr: ${ab.comparisons[0]!.variant} vs ${ab.control} lift ${(primary.lift * 100).toFixed(1)}%, 95% CI [${(primary.ci[0] * 100).toFixed(1)}%, ${(primary.ci[1] * 100).toFixed(1)}%], p ${primary.p.toExponential(2)}; SRM planted and ${srm.srm.flagged ? "flagged" : "NOT flagged"}; A/A false-positive rate ${fpr.ctr!.toFixed(3)} ${inRange ? "within" : "OUTSIDE"} [0.02, 0.08]`,
  );
  lastLine = `AB lift=${primary.lift.toFixed(4)} ci=[${primary.ci[0].toFixed(4)},${primary.ci[1].toFixed(4)}] detected=${primary.p < 0.05} srm_flagged=${srm.srm.flagged} aa_fpr=${fpr.ctr!.toFixed(4)}`;
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(lastLine);
