/**
 * `npx tsx scripts/eval-arrange.ts [--model models/ml-small] [--max-targets N] [--seed S]`
 *
 * The offline effect of a business arrangement (src/domain/arrange.ts: boosts, a cap per
 * category, an exploration share for new arrivals) on MovieLens latest-small, through the code the
 * worker serves with: every list is `rankFromState` (src/domain/recommend.ts) on a CatalogMirror
 * filled with `note` (no database), the user's state replayed with the serving runtime GruModel.
 *
 * Replay: exactly scripts/eval.ts's time-split protocol with memory (each user's last session is
 * test, every event of it a target, predicted from the whole history before it), under the API's
 * default rules (nothing left out: no purchases, exclude_recent and exclude_seen off). Targets on
 * items the model does not know count as misses, as in eval.ts (no list is built for them).
 *
 * Catalog: every model item, available, no price, no attributes, category ["Films", <first genre
 * of movies.csv>] (movies.csv lists genres alphabetically, so this is the alphabetically first
 * genre); arrival (createdMs) = Date.UTC(<year in the title>, 0, 1), 0 (unknown) without a year.
 * The cap counts level 2 (the genre).
 *
 * "New arrivals", two definitions (newWithinDays = explore.newDays = 1095, three years):
 *   fixed: the request clock for the arrangement is Date.UTC(<max film year>, 0, 1) (2018-01-01),
 *     so the new arrivals are the films of the data's last three years (2016-2018); the boost is
 *     the full weight for 2018, 2/3 for 2017, 1/3 for 2016. The same set for every target.
 *   relative: the clock is the target's own time, the new arrivals are the films dated within
 *     1095 days before it (about the target's calendar year and the two before). Films dated after
 *     the target (not released yet at request time) are noted with createdMs 0 (arrival unknown) while
 *     the replay is before their year: arrange.ts has no upper bound on arrival (a future arrival
 *     counts as new, with the full boost), which a live catalog never meets but a replay would.
 *     They stay in the catalog, available, so nothing is left out.
 * The model's moment (new session, gap) is the served one, model.moment(request, last kept event):
 * with the fixed clock the state's lastEventMs is shifted by the same amount, so the gap is the
 * true one. The script also checks that the unarranged list equals eval.ts's served top-20.
 *
 * Per arrangement: Recall@20, NDCG@20, MRR@20 (the target's place in the served list, every
 * target in the denominator), paired bootstrap 95% intervals of the Recall@20 and NDCG@20
 * differences against no arrangement (resamples of targets, fixed seed), and over the lists
 * built: mean distinct genres in the top-20, mean share of the most frequent genre, catalog
 * coverage (distinct items served / model items), mean new arrivals per list, the model's score
 * runs per list (pickBest fetches more rounds when the cap or a boost needs them), and how many
 * exploration picks were already in the unarranged top-20 (and were placed lower than there).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Seq, csvRows, timeSplit } from "./replay-data.ts";
import { CatalogMirror, type ItemFacts } from "../src/catalog/mirror";
import { CATEGORY_SEPARATOR } from "../src/catalog/schemas";
import { type Arrangement, capGroup, isNew } from "../src/domain/arrange";
import { emptyState } from "../src/domain/advance";
import { type RankContext, rankFromState } from "../src/domain/recommend";
import { loadModelFolder } from "../src/model/node-files";
import type { GruModel } from "../src/model/runtime";

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const modelDir = opt("model") ?? "models/ml-small";
const maxTargets = Number(opt("max-targets") ?? Infinity);
const seed = Number(opt("seed") ?? 20240601);
const K = 20;
const LEVEL = 2;
const NEW_DAYS = 1095;
const DAY_MS = 86_400_000;
const RING = 20;
const DATA = join(import.meta.dirname, "..", "..", "shared", "data", "movielens-latest-small");

// ---------------------------------------------------------------- data (scripts/replay-data.ts)

/** movies.csv: id -> first genre and year (title "Name (1995)"; quoted titles with commas). */
function movies(file: string): Map<string, { genre: string; year: number | undefined }> {
  const out = new Map<string, { genre: string; year: number | undefined }>();
  for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
    if (!line.trim()) continue;
    const id = line.slice(0, line.indexOf(","));
    const genres = line.slice(line.lastIndexOf(",") + 1).trim();
    const title = line.slice(line.indexOf(",") + 1, line.lastIndexOf(",")).replace(/^"|"$/g, "").trim();
    const m = /\((\d{4})(?:[-–]\d{4})?\)\s*$/.exec(title) ?? /\((\d{4})\)/.exec(title);
    out.set(id, { genre: genres.split("|")[0]!, year: m ? Number(m[1]) : undefined });
  }
  return out;
}

// ---------------------------------------------------------------- model, catalogs, arrangements

const model = await loadModelFolder(modelDir);
const seqs = timeSplit(csvRows(join(DATA, "ratings.csv")), model.idleGapMs);
const films = movies(join(DATA, "movies.csv"));

const modelIds = Array.from({ length: model.rows - 1 }, (_, i) => model.idOf(i + 1));
const yearOf = new Map<string, number | undefined>();
const categoryOf = new Map<string, string>();
let maxYear = 0;
for (const id of modelIds) {
  const f = films.get(id);
  const y = f?.year;
  yearOf.set(id, y);
  if (y !== undefined) maxYear = Math.max(maxYear, y);
  categoryOf.set(id, ["Films", f?.genre || "(no genres listed)"].join(CATEGORY_SEPARATOR));
}
const created = (id: string) => {
  const y = yearOf.get(id);
  return y === undefined ? 0 : Date.UTC(y, 0, 1);
};
const facts = (id: string, createdMs: number): ItemFacts => ({ available: true, price: Number.NaN, categoryKey: categoryOf.get(id)!, createdMs });

/** Every model item with its film year as arrival: the unarranged, capped and "fixed" lists. */
const fixedCatalog = new CatalogMirror();
for (const id of modelIds) fixedCatalog.note(id, facts(id, created(id)));
/** The same catalog, films dated after the replay's year noted with an unknown arrival (0). */
const relCatalog = new CatalogMirror();
let relYear = Number.NaN;
function relativeAt(ms: number) {
  const y = new Date(ms).getUTCFullYear();
  if (y === relYear) return;
  relYear = y;
  for (const id of modelIds) {
    const c = created(id);
    relCatalog.note(id, facts(id, c > ms ? 0 : c));
  }
}
const FIXED_NOW = Date.UTC(maxYear, 0, 1);

/** Count the model's score runs (pickBest fetches more rounds when a cap or boost needs them). */
let scoreRuns = 0;
const topKMasked = model.topKMasked.bind(model);
model.topKMasked = (...a: Parameters<GruModel["topKMasked"]>) => {
  scoreRuns++;
  return topKMasked(...a);
};

const popular = model.manifest.popular as { ids: string[]; counts: number[] };
const ctxOf = (catalog: CatalogMirror): RankContext => ({ catalog, lists: null, trained: popular });
const fixedCtx = ctxOf(fixedCatalog);
const relCtx = ctxOf(relCatalog);

type Clock = "target" | "fixed";
interface Variant {
  name: string;
  arrange?: Arrangement;
  /** Which catalog and request clock: the target's time on the relative catalog, or FIXED_NOW. */
  clock: Clock;
  rel: boolean;
}
const cap = (n: number): Arrangement => ({ boosts: [], maxPerCategory: n, categoryLevel: LEVEL });
const boostNew = (w: number): Arrangement => ({ boosts: [{ weight: w, newWithinDays: NEW_DAYS }] });
const explore = (share: number): Arrangement => ({ boosts: [], explore: { share, newDays: NEW_DAYS } });
const variants: Variant[] = [
  { name: "none", clock: "target", rel: false },
  { name: "max_per_category 5 (genre)", arrange: cap(5), clock: "target", rel: false },
  { name: "max_per_category 3 (genre)", arrange: cap(3), clock: "target", rel: false },
  { name: "boost new (fixed) +0.5", arrange: boostNew(0.5), clock: "fixed", rel: false },
  { name: "boost new (fixed) +1", arrange: boostNew(1), clock: "fixed", rel: false },
  { name: "explore new (fixed) 0.1", arrange: explore(0.1), clock: "fixed", rel: false },
  { name: "boost new (relative) +0.5", arrange: boostNew(0.5), clock: "target", rel: true },
  { name: "boost new (relative) +1", arrange: boostNew(1), clock: "target", rel: true },
  { name: "explore new (relative) 0.1", arrange: explore(0.1), clock: "target", rel: true },
  {
    name: "cap 3 + boost new (relative) +0.5 + explore 0.1",
    arrange: { boosts: [{ weight: 0.5, newWithinDays: NEW_DAYS }], maxPerCategory: 3, categoryLevel: LEVEL, explore: { share: 0.1, newDays: NEW_DAYS } },
    clock: "target",
    rel: true,
  },
];

// ---------------------------------------------------------------- tallies

class Tally {
  /** Per target: the target's place in the list (0 = not in it). */
  ranks: number[] = [];
  lists = 0;
  distinct = 0;
  topShare = 0;
  newFixed = 0;
  newRel = 0;
  /** Model score runs (topKMasked calls) spent on the lists. */
  runs = 0;
  /** Exploration picks, those already in the unarranged top-20, those placed lower than there. */
  explored = 0;
  exploredInNone = 0;
  exploredDemoted = 0;
  served = new Set<string>();
  add(rank: number) {
    this.ranks.push(rank);
  }
  list(ids: readonly string[], requestMs: number) {
    this.lists++;
    const per = new Map<string, number>();
    for (const id of ids) {
      const g = capGroup(fixedCatalog.get(id), LEVEL);
      per.set(g, (per.get(g) ?? 0) + 1);
      this.served.add(id);
      if (isNew(fixedCatalog.get(id), NEW_DAYS, FIXED_NOW)) this.newFixed++;
      if (isNew(relCatalog.get(id), NEW_DAYS, requestMs)) this.newRel++;
    }
    this.distinct += per.size;
    this.topShare += ids.length ? Math.max(...per.values()) / ids.length : 0;
  }
}
const recall = (r: number) => (r > 0 ? 1 : 0);
const ndcg = (r: number) => (r > 0 ? 1 / Math.log2(r + 1) : 0);
const rr = (r: number) => (r > 0 ? 1 / r : 0);
const mean = (xs: readonly number[], f: (r: number) => number) => xs.reduce((s, r) => s + f(r), 0) / (xs.length || 1);

const tallies = variants.map(() => new Tally());
/** eval.ts's served ranking (model.topK with its moment), to check the unarranged list against. */
const evalServed: number[] = [];
let listsDiffer = 0;
let momentDiffers = 0;
let targetsNewFixed = 0;
let targetsNewRel = 0;
/** The unarranged list of the current target (variant 0 runs first). */
let noneIds: string[] = [];

// ---------------------------------------------------------------- replay (as scripts/eval.ts, memory, nothing left out)

let targets = 0;
let lost = 0;
let events = 0;
const t0 = performance.now();
outer: for (const s of seqs) {
  let state = model.initialState();
  let count = 0;
  let gapSinceKept = 0;
  let pendingNew = false;
  let lastKeptMs = 0;
  const ring: number[] = [];
  for (let i = 0; i < s.items.length; i++) {
    const row = model.rowOf(s.items[i]!);
    gapSinceKept += i === 0 ? 0 : s.gapHours[i]!;
    const at = { newSession: count === 0 || s.newSession[i]! || pendingNew, gapHours: count === 0 ? 0 : gapSinceKept };
    if (s.target[i]) {
      targets++;
      if (row === undefined) {
        lost++;
        for (const t of tallies) t.add(0);
        evalServed.push(0);
      } else {
        const t = s.ms[i]!;
        relativeAt(t);
        if (isNew(fixedCatalog.get(s.items[i]!), NEW_DAYS, FIXED_NOW)) targetsNewFixed++;
        if (isNew(relCatalog.get(s.items[i]!), NEW_DAYS, t)) targetsNewRel++;
        const ref = await model.topK(state, at, K);
        evalServed.push(ref.findIndex((x) => x.row === row) + 1);
        const served = model.moment(t, count === 0 ? undefined : lastKeptMs);
        if (served.newSession !== at.newSession || Math.abs(served.gapHours - at.gapHours) > 1e-6) momentDiffers++;
        for (let v = 0; v < variants.length; v++) {
          const va = variants[v]!;
          const nowMs = va.clock === "fixed" ? FIXED_NOW : t;
          const us = emptyState(model, RING);
          us.vector = state;
          us.eventCount = count;
          us.lastEventMs = nowMs - (t - lastKeptMs);
          us.ring = ring;
          const runsBefore = scoreRuns;
          const rec = await rankFromState(model, us, new Set(), va.rel ? relCtx : fixedCtx, { k: K, ...(va.arrange ? { arrange: va.arrange } : {}) }, nowMs);
          tallies[v]!.runs += scoreRuns - runsBefore;
          const ids = rec.items.map((x) => x.item_id);
          if (v === 0) noneIds = ids;
          rec.items.forEach((x, pos) => {
            if (!x.explore) return;
            const was = noneIds.indexOf(x.item_id);
            tallies[v]!.explored++;
            if (was >= 0) tallies[v]!.exploredInNone++;
            if (was >= 0 && was < pos) tallies[v]!.exploredDemoted++;
          });
          tallies[v]!.add(ids.indexOf(s.items[i]!) + 1);
          tallies[v]!.list(ids, t);
          if (v === 0 && ids.join() !== ref.map((x) => model.idOf(x.row)).join()) listsDiffer++;
        }
      }
      if (targets % 500 === 0) {
        const secs = (performance.now() - t0) / 1000;
        console.log(`${targets} targets, ${events} events, ${secs.toFixed(0)} s; Recall@20 none ${mean(tallies[0]!.ranks, recall).toFixed(4)}, cap 3 ${mean(tallies[2]!.ranks, recall).toFixed(4)}`);
      }
      if (targets >= maxTargets) break outer;
    }
    if (row !== undefined) {
      state = await model.step(state, row, at);
      events++;
      count++;
      gapSinceKept = 0;
      pendingNew = false;
      lastKeptMs = s.ms[i]!;
      const j = ring.indexOf(row);
      if (j >= 0) ring.splice(j, 1);
      ring.unshift(row);
      if (ring.length > RING) ring.length = RING;
    } else if (s.newSession[i]) {
      pendingNew = true;
    }
  }
}
const secs = (performance.now() - t0) / 1000;

// ---------------------------------------------------------------- paired bootstrap against "none"

function mulberry32(a: number) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const B = 1000;
const n = targets;
const base = tallies[0]!.ranks;
const diffs = (f: (r: number) => number) => tallies.map((t) => t.ranks.map((r, i) => f(r) - f(base[i]!)));
const dRecall = diffs(recall);
const dNdcg = diffs(ndcg);
const boot = tallies.map(() => ({ recall: new Float64Array(B), ndcg: new Float64Array(B) }));
const rand = mulberry32(seed);
const idx = new Uint32Array(n);
for (let b = 0; b < B; b++) {
  for (let j = 0; j < n; j++) idx[j] = Math.floor(rand() * n);
  for (let v = 1; v < tallies.length; v++) {
    let sr = 0;
    let sn = 0;
    const dr = dRecall[v]!;
    const dn = dNdcg[v]!;
    for (let j = 0; j < n; j++) {
      sr += dr[idx[j]!]!;
      sn += dn[idx[j]!]!;
    }
    boot[v]!.recall[b] = sr / n;
    boot[v]!.ndcg[b] = sn / n;
  }
}
const ci = (xs: Float64Array) => {
  const s = Float64Array.from(xs).sort();
  return [s[Math.floor(0.025 * (B - 1))]!, s[Math.ceil(0.975 * (B - 1))]!] as const;
};
const sign = (x: number, d = 4) => (x >= 0 ? "+" : "") + x.toFixed(d);
const diffCell = (v: number, d: number[], bs: Float64Array) => {
  if (v === 0) return "-";
  const m = d.reduce((a, b) => a + b, 0) / n;
  const [lo, hi] = ci(bs);
  return `${sign(m)} [${sign(lo)}, ${sign(hi)}]`;
};

// ---------------------------------------------------------------- report

const known = targets - lost;
console.log("");
console.log(`movielens-latest-small time-split (memory, nothing left out): model ${model.version}, ${targets} targets (${lost} on items unknown to the model, counted as misses), ${events} replayed events, ${modelIds.length} items, ${secs.toFixed(0)} s (${(targets / secs).toFixed(1)} targets/s)`);
console.log(`check: unarranged rankFromState list differs from eval.ts's served top-20 for ${listsDiffer} of ${known} targets; the served moment differs from eval.ts's for ${momentDiffers}; eval.ts served Recall@20=${mean(evalServed, recall).toFixed(4)} MRR@20=${mean(evalServed, rr).toFixed(4)} NDCG@20=${mean(evalServed, ndcg).toFixed(4)}`);
console.log(`new arrivals (newWithinDays = newDays = ${NEW_DAYS}): fixed = films of ${maxYear - 2}-${maxYear} (clock ${new Date(FIXED_NOW).toISOString().slice(0, 10)}), ${modelIds.filter((id) => isNew(fixedCatalog.get(id), NEW_DAYS, FIXED_NOW)).length} items, ${((100 * targetsNewFixed) / (known || 1)).toFixed(1)}% of targets; relative = films dated within ${NEW_DAYS} days before the target, ${((100 * targetsNewRel) / (known || 1)).toFixed(1)}% of targets`);
console.log(`bootstrap: ${B} paired resamples of the ${n} targets, seed ${seed}`);
console.log("");
console.log("| arrangement | Recall@20 | NDCG@20 | MRR@20 | ΔRecall@20 vs none [95%] | ΔNDCG@20 vs none [95%] |");
console.log("|---|---|---|---|---|---|");
tallies.forEach((t, v) => {
  console.log(`| ${variants[v]!.name} | ${mean(t.ranks, recall).toFixed(4)} | ${mean(t.ranks, ndcg).toFixed(4)} | ${mean(t.ranks, rr).toFixed(4)} | ${diffCell(v, dRecall[v]!, boot[v]!.recall)} | ${diffCell(v, dNdcg[v]!, boot[v]!.ndcg)} |`);
});
console.log("");
console.log(`| arrangement | distinct genres in top-20 | share of the top genre | coverage (items served / ${modelIds.length}) | new arrivals in top-20, fixed | new arrivals in top-20, relative | score runs per list |`);
console.log("|---|---|---|---|---|---|---|");
tallies.forEach((t, v) => {
  const l = t.lists || 1;
  console.log(`| ${variants[v]!.name} | ${(t.distinct / l).toFixed(2)} | ${(t.topShare / l).toFixed(3)} | ${(t.served.size / modelIds.length).toFixed(3)} (${t.served.size}) | ${(t.newFixed / l).toFixed(2)} | ${(t.newRel / l).toFixed(2)} | ${(t.runs / l).toFixed(2)} |`);
});
console.log("");
tallies.forEach((t, v) => {
  if (!t.explored) return;
  const l = t.lists || 1;
  console.log(`${variants[v]!.name}: ${(t.explored / l).toFixed(2)} exploration picks per list; ${((100 * t.exploredInNone) / t.explored).toFixed(1)}% of them were already in the unarranged top-20, ${((100 * t.exploredDemoted) / t.explored).toFixed(1)}% placed lower than there`);
});
