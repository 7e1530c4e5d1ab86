/**
 * Popular items, overall and per category, from the event log: each event counts its type's
 * weight (purchase 5, add_to_cart 3, anything else 1), halved every `halfLifeDays`, over the last
 * `windowDays`. Computed in D1, cached in Redis as one document, refreshed in the background by
 * the request that finds it older than the refresh interval (one refresher at a time) and by the
 * cron trigger. Lists are longer than any k so that filters still leave enough.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../catalog/db";
import type { CatalogMirror } from "../catalog/mirror";
import { CATEGORY_SEPARATOR } from "../catalog/schemas";
import type { SharedStore } from "../state/shared";

/** Weight of an event type in popularity (types not listed weigh 1). */
export const EVENT_WEIGHTS: Record<string, number> = { purchase: 5, add_to_cart: 3 };

export interface PopularLists {
  /** When computed, ms since the epoch. */
  computed_at: number;
  half_life_days: number;
  window_days: number;
  /** Events counted. */
  events: number;
  /** [item id, score] best first; score = decayed weighted event count. */
  overall: [string, number][];
  /** Category key (every level: "Shoes", "Shoes > Running") -> list as above. */
  by_category: Record<string, [string, number][]>;
}

export interface PopularOptions {
  halfLifeDays: number;
  windowDays: number;
  /** Length of the overall list. Default 500. */
  overallSize?: number;
  /** Length of each category's list. Default 100. */
  categorySize?: number;
}

const DAY = 86_400_000;

/** Compute the lists from the event log (one aggregate query) and the catalog's categories. */
export async function computePopular(db: Db, catalog: CatalogMirror, o: PopularOptions, nowMs = Date.now()): Promise<PopularLists> {
  const w = Object.entries(EVENT_WEIGHTS);
  const weightSql = sql.raw(`CASE type ${w.map(([t, x]) => `WHEN '${t.replace(/'/g, "''")}' THEN ${x}`).join(" ")} ELSE 1 END`);
  const rows = await db.all<{ item_id: string; age: number; w: number; n: number }>(sql`
    SELECT item_id, (${nowMs} - ts) / ${DAY} AS age, SUM(${weightSql}) AS w, COUNT(*) AS n
    FROM events WHERE ts >= ${nowMs - o.windowDays * DAY} AND ts <= ${nowMs}
    GROUP BY item_id, age`);
  const score = new Map<string, number>();
  let events = 0;
  for (const r of rows) {
    score.set(r.item_id, (score.get(r.item_id) ?? 0) + r.w * 0.5 ** (Number(r.age) / o.halfLifeDays));
    events += Number(r.n);
  }
  const ranked = [...score].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([id, s]) => [id, Math.round(s * 1e4) / 1e4] as [string, number]);
  const categorySize = o.categorySize ?? 100;
  // A Map, not an object: category names are the shop's strings ("__proto__", "constructor").
  const by = new Map<string, [string, number][]>();
  for (const entry of ranked) {
    const key = catalog.get(entry[0])?.categoryKey;
    if (!key) continue;
    const levels = key.split(CATEGORY_SEPARATOR);
    for (let i = 1; i <= levels.length; i++) {
      const level = levels.slice(0, i).join(CATEGORY_SEPARATOR);
      let list = by.get(level);
      if (!list) by.set(level, (list = []));
      if (list.length < categorySize) list.push(entry);
    }
  }
  return {
    computed_at: nowMs,
    half_life_days: o.halfLifeDays,
    window_days: o.windowDays,
    events,
    overall: ranked.slice(0, o.overallSize ?? 500),
    // Object.fromEntries defines own properties, so "__proto__" is a key like any other.
    by_category: Object.fromEntries(by),
  };
}

/**
 * The popular list of one category key, or undefined. Only the document's own keys count: a
 * category named like an Object.prototype member ("constructor", "__proto__") is just a name.
 */
export function categoryList(lists: PopularLists, category: string): [string, number][] | undefined {
  const by = lists.by_category;
  if (!by || typeof by !== "object" || !Object.hasOwn(by, category)) return undefined;
  const list = by[category];
  return Array.isArray(list) ? list : undefined;
}

export interface PopularDeps {
  db: Db;
  shared: SharedStore;
  catalog: CatalogMirror;
  options: PopularOptions;
  /** Recompute when the cached lists are older than this, ms. */
  refreshMs: number;
  /** Schedules background work (executionCtx.waitUntil). */
  background: (p: Promise<unknown>) => void;
}

const DOC = "popular";
const LOCAL_TTL_MS = 15_000;
let local: { lists: PopularLists | null; fetchedAt: number } | undefined;

/** Compute, store in Redis and keep in this isolate. */
export async function refreshPopular(deps: Omit<PopularDeps, "background" | "refreshMs">, nowMs = Date.now()): Promise<PopularLists> {
  await deps.catalog.sync(deps.db).catch(() => undefined);
  const lists = await computePopular(deps.db, deps.catalog, deps.options, nowMs);
  await deps.shared.putDoc(DOC, lists, 30 * 24 * 3600);
  local = { lists, fetchedAt: Date.now() };
  return lists;
}

/**
 * The current lists (null when none were ever computed). Never throws: Redis or D1 trouble
 * leaves the last known lists in place. Stale lists trigger one background refresh.
 */
export async function popularLists(deps: PopularDeps, nowMs = Date.now()): Promise<PopularLists | null> {
  if (local && nowMs - local.fetchedAt < LOCAL_TTL_MS) return local.lists;
  let lists = local?.lists ?? null;
  try {
    lists = (await deps.shared.getDoc<PopularLists>(DOC)) ?? lists;
  } catch (e) {
    console.warn(`popularity lists unavailable: ${(e as Error).message}`);
    return lists;
  }
  local = { lists, fetchedAt: nowMs };
  if (!lists || nowMs - lists.computed_at > deps.refreshMs) {
    deps.background(
      (async () => {
        if (!(await deps.shared.tryLock(DOC, 60_000))) return;
        try {
          await refreshPopular(deps);
        } finally {
          await deps.shared.unlock(DOC);
        }
      })().catch((e) => console.warn(`popularity refresh failed: ${(e as Error).message}`)),
    );
  }
  return lists;
}

/** Forget the isolate's copy (tests). */
export function resetPopularCache() {
  local = undefined;
}
