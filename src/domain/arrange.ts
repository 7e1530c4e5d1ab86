/**
 * Business arrangement of a ranked list: additive boosts (by catalog attribute, category or
 * recency of arrival), a cap per category (diversity) and an exploration share for new arrivals.
 *
 * Applied inside the one masked ranking, exactly: the model's candidates come best-first, a boost
 * only adds at most `maxBoost` to a score, so once the k-th pick's boosted score is at least the
 * last fetched raw score + maxBoost no unfetched item could enter the list (recommend.ts fetches
 * more until that holds). The same code arranges popular lists and re-ranked shop lists.
 */
import type { CatalogMirror, ItemFacts } from "../catalog/mirror";
import { CATEGORY_SEPARATOR, inCategory } from "../catalog/schemas";

/** One additive boost. Exactly one of attribute / category / newWithinDays is set. */
export interface Boost {
  /** Added to the score (model scores are logits: +1 multiplies an item's odds by e). May be negative. */
  weight: number;
  /** Items whose catalog attribute `name` equals `value` (strings, numbers and booleans compared as given). */
  attribute?: { name: string; value: string | number | boolean };
  /** Items under this category key prefix. */
  category?: string;
  /** Items that entered the catalog within this many days: the full weight at arrival, falling linearly to 0 at `newWithinDays`. */
  newWithinDays?: number;
}

export interface Arrangement {
  boosts: readonly Boost[];
  /** At most this many items of one category (at `categoryLevel`) in a list; items without a category are not capped. */
  maxPerCategory?: number;
  /** How many levels of the category path make "one category" for the cap (default: the item's whole path, its leaf category). */
  categoryLevel?: number;
  /** A share of the list (0..1, rounded, at least one slot when > 0) kept for items that arrived within `newDays` (default 30). */
  explore?: { share: number; newDays: number };
}

/**
 * A request's arrangement on top of a preset's: boosts add up, the request's cap, level and
 * exploration share win.
 */
export function mergeArrangements(request: Arrangement | undefined, preset: Arrangement | undefined): Arrangement | undefined {
  if (!preset) return request;
  if (!request) return preset;
  const out: Arrangement = { boosts: [...preset.boosts, ...request.boosts] };
  const cap = request.maxPerCategory ?? preset.maxPerCategory;
  if (cap !== undefined) out.maxPerCategory = cap;
  const level = request.categoryLevel ?? preset.categoryLevel;
  if (level !== undefined) out.categoryLevel = level;
  const explore = request.explore ?? preset.explore;
  if (explore) out.explore = explore;
  return out;
}

export const NO_ARRANGEMENT: Arrangement = { boosts: [] };
export const DEFAULT_NEW_DAYS = 30;
const DAY_MS = 86_400_000;
/** An arrival date up to this far in the future counts as now (clock skew); later ones have not arrived (replays, backfills). */
const SKEW_MS = 3_600_000;

/** Whether an arrangement changes anything. */
export function isActive(a: Arrangement | undefined): a is Arrangement {
  return !!a && (a.boosts.length > 0 || a.maxPerCategory !== undefined || (a.explore !== undefined && a.explore.share > 0));
}

/** The most any item's score can rise by (the sum of the positive weights). */
export function maxBoost(a: Arrangement): number {
  let m = 0;
  for (const b of a.boosts) if (b.weight > 0) m += b.weight;
  return m;
}

/** What the boosts add to one item's score. */
export function boostOf(a: Arrangement, f: ItemFacts | undefined, nowMs: number): number {
  if (!f || a.boosts.length === 0) return 0;
  let add = 0;
  for (const b of a.boosts) {
    if (b.attribute) {
      if (f.attrs && Object.hasOwn(f.attrs, b.attribute.name) && String(f.attrs[b.attribute.name]) === String(b.attribute.value)) add += b.weight;
    } else if (b.category !== undefined) {
      if (inCategory(f.categoryKey, b.category)) add += b.weight;
    } else if (b.newWithinDays !== undefined && f.createdMs > 0 && f.createdMs <= nowMs + SKEW_MS) {
      const age = Math.max(0, nowMs - f.createdMs) / (b.newWithinDays * DAY_MS);
      if (age < 1) add += b.weight * (1 - age);
    }
  }
  return add;
}

/** The category an item counts against for the cap ("" = none, never capped). */
export function capGroup(f: ItemFacts | undefined, level?: number): string {
  if (!f || !f.categoryKey) return "";
  if (level === undefined) return f.categoryKey;
  return f.categoryKey.split(CATEGORY_SEPARATOR).slice(0, level).join(CATEGORY_SEPARATOR);
}

/** Did the item arrive within `days` of `nowMs`? */
export function isNew(f: ItemFacts | undefined, days: number, nowMs: number): boolean {
  return !!f && f.createdMs > 0 && f.createdMs >= nowMs - days * DAY_MS && f.createdMs <= nowMs + SKEW_MS;
}

/** How many slots of a k-list the exploration share keeps for new arrivals. */
export function exploreSlots(a: Arrangement, k: number): number {
  const s = a.explore?.share ?? 0;
  if (s <= 0 || k <= 0) return 0;
  return Math.min(k, Math.max(1, Math.round(s * k)));
}

/** A candidate with its raw score (model logit, or relative popularity) and where it came from. */
export interface Candidate {
  item_id: string;
  score: number;
  source: "model" | "popular" | "new";
  /** Scored with a warm-start row: a catalog item the model was not trained on (new-items.ts). */
  warm?: true;
}

/** A picked item: its final score (raw + boost) and the boost when there is one. */
export interface Picked extends Candidate {
  boost?: number;
  explore?: true;
}

/**
 * Picks items in order under the cap. `offer` them best-first (by their final score); each
 * returns whether it was taken.
 */
export class Picker {
  readonly items: Picked[] = [];
  private readonly taken = new Set<string>();
  private readonly perGroup = new Map<string, number>();

  constructor(
    readonly k: number,
    private readonly a: Arrangement,
    private readonly catalog: CatalogMirror,
  ) {}

  get full(): boolean {
    return this.items.length >= this.k;
  }

  has(id: string): boolean {
    return this.taken.has(id);
  }

  /** Would the cap let this item in? */
  fits(id: string): boolean {
    if (this.a.maxPerCategory === undefined) return true;
    const g = capGroup(this.catalog.get(id), this.a.categoryLevel);
    return g === "" || (this.perGroup.get(g) ?? 0) < this.a.maxPerCategory;
  }

  /** A copy to try picks on (adopt it with `adopt`). */
  fork(): Picker {
    const p = new Picker(this.k, this.a, this.catalog);
    for (const id of this.taken) p.taken.add(id);
    for (const [g, n] of this.perGroup) p.perGroup.set(g, n);
    p.items.push(...this.items);
    return p;
  }

  adopt(p: Picker): void {
    this.items.splice(0, this.items.length, ...p.items);
    this.taken.clear();
    for (const id of p.taken) this.taken.add(id);
    this.perGroup.clear();
    for (const [g, n] of p.perGroup) this.perGroup.set(g, n);
  }

  /** Count an item already in the list (its place is kept; caps count it). */
  keep(p: Picked): void {
    this.taken.add(p.item_id);
    if (this.a.maxPerCategory !== undefined) {
      const g = capGroup(this.catalog.get(p.item_id), this.a.categoryLevel);
      if (g !== "") this.perGroup.set(g, (this.perGroup.get(g) ?? 0) + 1);
    }
    this.items.push(p);
  }

  offer(p: Picked): boolean {
    if (this.full || this.taken.has(p.item_id) || !this.fits(p.item_id)) return false;
    this.keep(p);
    return true;
  }
}

/** Boost a best-first candidate list and sort it by final score (stable: ties keep their order). */
export function boosted(cands: readonly Candidate[], a: Arrangement, catalog: CatalogMirror, nowMs: number): Picked[] {
  const out = cands.map((c, i) => {
    const b = boostOf(a, catalog.get(c.item_id), nowMs);
    const p: Picked & { i: number } = { ...c, i, score: round(c.score + b) };
    if (b !== 0) p.boost = round(b);
    return p;
  });
  out.sort((x, y) => y.score - x.score || x.i - y.i);
  return out.map(({ i: _i, ...p }) => p);
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * Make sure a list holds at least `n` new arrivals: the main list (best first, capped) keeps the
 * new arrivals it earned where they are; the missing ones, the best of `fresh` (new arrivals not
 * in it, best first) that fit the cap, replace its lowest items that are not new, and are placed
 * at evenly spaced slots (flagged `explore`). Returns the list (at most k).
 */
export function withExploration(main: readonly Picked[], k: number, n: number, fresh: Iterable<Picked>, isNewItem: (id: string) => boolean, a: Arrangement, catalog: CatalogMirror): Picked[] {
  const top = main.slice(0, k);
  const need = Math.max(0, n - top.filter((p) => isNewItem(p.item_id)).length);
  if (!need) return top;
  // Room: free slots first, then the lowest items that are not new.
  const dropCount = Math.max(0, need - (k - top.length));
  const dropped: number[] = [];
  for (let i = top.length - 1; i >= 0 && dropped.length < dropCount; i--) if (!isNewItem(top[i]!.item_id)) dropped.push(i);
  const kept = top.filter((_, i) => !dropped.includes(i));
  const picker = new Picker(k, a, catalog);
  for (const p of kept) picker.keep(p);
  const picks: Picked[] = [];
  for (const c of fresh) {
    if (picks.length >= need) break;
    if (picker.has(c.item_id) || !picker.fits(c.item_id)) continue;
    picker.keep(c);
    picks.push(c);
  }
  // Fewer new arrivals than slots: the dropped items the picks do not need come back, best first
  // (`dropped` holds indices from the bottom up).
  const usedDrops = Math.max(0, picks.length - (k - top.length));
  const restore = new Set(dropped.slice(usedDrops));
  const base = top.filter((_, i) => !dropped.includes(i) || restore.has(i));
  return interleave(base, picks, k);
}

/**
 * Place the exploration picks into the main list: slot i of n goes at position
 * floor((i + 1) * k / (n + 1)), the main items keep their order around them.
 */
export function interleave(main: readonly Picked[], explore: readonly Picked[], k: number): Picked[] {
  const n = explore.length;
  if (n === 0) return main.slice(0, k);
  if (n >= k) return explore.slice(0, k).map((p) => ({ ...p, explore: true as const }));
  const total = Math.min(k, main.length + n);
  const at = new Set<number>();
  for (let i = 0; i < n; i++) at.add(Math.min(total - 1, Math.floor(((i + 1) * total) / (n + 1))));
  const out: Picked[] = [];
  let m = 0;
  let e = 0;
  for (let pos = 0; pos < total; pos++) {
    if ((at.has(pos) && e < n) || m >= main.length) out.push({ ...explore[e++]!, explore: true });
    else out.push(main[m++]!);
  }
  return out;
}

/** How many candidates to fetch first for `need` more picks. */
function firstWant(need: number, free: number, a: Arrangement): number {
  return Math.min(free, a.boosts.length || a.maxPerCategory !== undefined ? Math.max(need * 3, need + 20) : need);
}

/**
 * One round of pickBest: pick from the `want` best candidates `got`; true (and the picks adopted)
 * when no candidate beyond them could change the list.
 */
function tryPick(got: readonly Candidate[], want: number, free: number, picker: Picker, a: Arrangement, catalog: CatalogMirror, nowMs: number, extra: readonly Candidate[] = []): boolean {
  const trial = picker.fork();
  const pool = extra.length ? [...got, ...extra].sort((x, y) => y.score - x.score) : got;
  for (const c of boosted(pool, a, catalog, nowMs)) {
    if (trial.full) break;
    trial.offer(c);
  }
  const exhausted = want >= free || got.length < want;
  // Rounded as the picks' scores are (boosted), so that an unboosted pick never looks below its own raw score.
  const floor = got.length ? round(got[got.length - 1]!.score + maxBoost(a)) : -Infinity;
  const last = trial.items[trial.items.length - 1];
  if (!exhausted && !(trial.full && last !== undefined && last.score >= floor)) return false;
  picker.adopt(trial);
  return true;
}

/**
 * Fill `picker` from a best-first source under the arrangement, exactly: `fetch(want)` returns
 * the `want` best candidates by raw score (fewer when there are no more). Fetches more (x4) until
 * the last pick's boosted score is at least the last fetched raw score + maxBoost, or the source
 * is exhausted (`free`: how many it can give at most). `extra`: candidates scored apart (new
 * items' warm rows), all of them known, merged into every round.
 */
export async function pickBest(
  fetch: (want: number) => Promise<Candidate[]>,
  free: number,
  picker: Picker,
  a: Arrangement,
  catalog: CatalogMirror,
  nowMs: number,
  extra: readonly Candidate[] = [],
): Promise<void> {
  const need = picker.k - picker.items.length;
  if (need <= 0) return;
  if (free <= 0) {
    tryPick([], 0, 0, picker, a, catalog, nowMs, extra);
    return;
  }
  for (let want = firstWant(need, free, a); ; want = Math.min(free, want * 4)) {
    if (tryPick(await fetch(want), want, free, picker, a, catalog, nowMs, extra)) return;
  }
}

/** pickBest for a synchronous source (popular lists). */
export function pickBestSync(fetch: (want: number) => Candidate[], free: number, picker: Picker, a: Arrangement, catalog: CatalogMirror, nowMs: number): void {
  const need = picker.k - picker.items.length;
  if (need <= 0 || free <= 0) return;
  for (let want = firstWant(need, free, a); ; want = Math.min(free, want * 4)) {
    if (tryPick(fetch(want), want, free, picker, a, catalog, nowMs)) return;
  }
}
