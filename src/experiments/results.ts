/**
 * An experiment's results from the logs in D1: exposures (per user and variant), clicks that
 * name a shown list (rec_events), and add-to-carts and purchases of a shown item within the
 * attribution window after it was shown (the event log, revenue at the catalog price), then the
 * analysis (analysis.ts). Attribution rules (attribute()):
 *   - a click counts when it names the rec_id of a list shown to the same user that holds the
 *     item, at most the window after the list (and at most CLOCK_SKEW_MS before it: client
 *     clocks); each (list, item) counts once;
 *   - an add-to-cart or purchase counts when the same user was shown the item in the experiment
 *     at most the window before it (no rec_id needed: purchases are often tracked server-side);
 *     each logged event counts once however many lists showed the item.
 * QA overrides (forced) are left out; users seen in more than one variant are left out and
 * counted.
 */
import type { Db } from "../catalog/db";
import { type Analysis, type UserOutcome, analyze } from "./analysis";
import type { Experiment } from "./types";

/** How far a click's (client) time may precede the list it names, ms. */
export const CLOCK_SKEW_MS = 5 * 60_000;

export interface ShownList {
  recId: string;
  ts: number;
  items: readonly string[];
}

export interface Conversion {
  itemId: string;
  type: string;
  ts: number;
  price: number | null;
}

export interface Click {
  recId: string;
  itemId: string;
  ts: number;
}

/** Attribute one user's clicks and conversions to the lists they were shown. */
export function attribute(
  lists: readonly ShownList[],
  clicks: readonly Click[],
  conversions: readonly Conversion[],
  windowMs: number,
): { clicks: number; addToCarts: number; purchases: number; revenue: number } {
  const byRec = new Map(lists.map((l) => [l.recId, l]));
  const clicked = new Set<string>();
  for (const c of clicks) {
    const l = byRec.get(c.recId);
    if (!l || !l.items.includes(c.itemId)) continue;
    if (c.ts < l.ts - CLOCK_SKEW_MS || c.ts > l.ts + windowMs) continue;
    clicked.add(`${c.recId}\u0000${c.itemId}`);
  }
  let addToCarts = 0;
  let purchases = 0;
  let revenue = 0;
  for (const e of conversions) {
    const shown = lists.some((l) => l.ts <= e.ts && e.ts <= l.ts + windowMs && l.items.includes(e.itemId));
    if (!shown) continue;
    if (e.type === "add_to_cart") addToCarts++;
    else if (e.type === "purchase") {
      purchases++;
      revenue += e.price ?? 0;
    }
  }
  return { clicks: clicked.size, addToCarts, purchases, revenue };
}

export interface ResultsOptions {
  control?: string;
  alpha?: number;
  sequentialTau?: number;
  /** Days before the start whose events are the CUPED covariate (undefined: no CUPED). */
  cupedPreDays?: number;
  now?: number;
}

export interface Results extends Analysis {
  experiment: string;
  status: string;
  started_at: string | null;
  stopped_at: string | null;
  attribution_window_hours: number;
  excluded: { forced_requests: number; users_in_several_variants: number };
  cuped_pre_period_days: number | null;
}

type Row = Record<string, unknown>;

const all = async (db: Db, sql: string, ...params: unknown[]): Promise<Row[]> => (await db.$client.prepare(sql).bind(...params).all<Row>()).results;

/** Compute the results of `exp` from D1. */
export async function experimentResults(db: Db, exp: Experiment, o: ResultsOptions = {}): Promise<Results> {
  const id = exp.id;
  const W = exp.attributionWindowMs;
  const [reqRows, latRows, listRows, clickRows, forcedRows] = await Promise.all([
    all(
      db,
      `SELECT user_id, variant, count(*) AS requests, sum(error IS NULL) AS exposures, sum(fallback) AS fallbacks,
              sum(error IS NOT NULL) AS errors, sum(latency_ms) AS latency
       FROM exposures WHERE experiment_id = ?1 AND forced = 0 GROUP BY user_id, variant`,
      id,
    ),
    all(db, "SELECT variant, latency_ms FROM exposures WHERE experiment_id = ?1 AND forced = 0", id),
    all(db, "SELECT rec_id, user_id, ts, items FROM exposures WHERE experiment_id = ?1 AND forced = 0 AND error IS NULL ORDER BY ts", id),
    all(
      db,
      `SELECT r.rec_id, r.user_id, r.item_id, r.ts FROM rec_events r JOIN exposures x ON x.rec_id = r.rec_id
       WHERE x.experiment_id = ?1 AND x.forced = 0 AND r.type = 'click' AND r.user_id = x.user_id`,
      id,
    ),
    all(db, "SELECT count(*) AS n FROM exposures WHERE experiment_id = ?1 AND forced = 1", id),
  ]);
  const first = listRows.length ? Number(listRows[0]!.ts) : 0;
  const last = listRows.length ? Number(listRows[listRows.length - 1]!.ts) : 0;
  const convRows = listRows.length
    ? await all(
        db,
        `SELECT e.user_id, e.item_id, e.type, e.ts, i.price FROM events e LEFT JOIN items i ON i.id = e.item_id
         WHERE e.type IN ('add_to_cart', 'purchase') AND e.ts >= ?2 AND e.ts <= ?3
           AND e.user_id IN (SELECT DISTINCT user_id FROM exposures WHERE experiment_id = ?1 AND forced = 0)`,
        id,
        first,
        last + W,
      )
    : [];
  const start = exp.startedAt ?? first;
  const preRows =
    o.cupedPreDays !== undefined
      ? await all(
          db,
          `SELECT e.user_id, sum(e.type = 'add_to_cart') AS atc, sum(e.type = 'purchase') AS purchases,
                  sum(CASE WHEN e.type = 'purchase' THEN coalesce(i.price, 0) ELSE 0 END) AS revenue
           FROM events e LEFT JOIN items i ON i.id = e.item_id
           WHERE e.type IN ('add_to_cart', 'purchase') AND e.ts >= ?2 AND e.ts < ?3
             AND e.user_id IN (SELECT DISTINCT user_id FROM exposures WHERE experiment_id = ?1 AND forced = 0)
           GROUP BY e.user_id`,
          id,
          start - o.cupedPreDays * 86_400_000,
          start,
        )
      : [];

  const group = <T>(rows: Row[], f: (r: Row) => T) => {
    const m = new Map<string, T[]>();
    for (const r of rows) {
      const k = String(r.user_id);
      const l = m.get(k);
      if (l) l.push(f(r));
      else m.set(k, [f(r)]);
    }
    return m;
  };
  const lists = group(listRows, (r) => ({ recId: String(r.rec_id), ts: Number(r.ts), items: JSON.parse(String(r.items)) as string[] }));
  const clicks = group(clickRows, (r) => ({ recId: String(r.rec_id), itemId: String(r.item_id), ts: Number(r.ts) }));
  const convs = group(convRows, (r) => ({ itemId: String(r.item_id), type: String(r.type), ts: Number(r.ts), price: r.price === null ? null : Number(r.price) }));
  const pre = new Map(preRows.map((r) => [String(r.user_id), { addToCarts: Number(r.atc), purchases: Number(r.purchases), revenue: Number(r.revenue) }]));

  const variantsOf = new Map<string, number>();
  for (const r of reqRows) variantsOf.set(String(r.user_id), (variantsOf.get(String(r.user_id)) ?? 0) + 1);
  const outcomes: UserOutcome[] = [];
  for (const r of reqRows) {
    const user = String(r.user_id);
    if (variantsOf.get(user)! > 1) continue;
    const a = attribute(lists.get(user) ?? [], clicks.get(user) ?? [], convs.get(user) ?? [], W);
    outcomes.push({
      user,
      variant: String(r.variant),
      requests: Number(r.requests),
      exposures: Number(r.exposures),
      fallbacks: Number(r.fallbacks),
      errors: Number(r.errors),
      latencyMs: Number(r.latency),
      ...a,
      pre: o.cupedPreDays !== undefined ? pre.get(user) ?? { addToCarts: 0, purchases: 0, revenue: 0 } : undefined,
    });
  }
  const latencies: Record<string, number[]> = {};
  for (const r of latRows) (latencies[String(r.variant)] ??= []).push(Number(r.latency_ms));

  const analysis = analyze(outcomes, {
    variants: exp.variants,
    control: o.control,
    alpha: o.alpha,
    sequentialTau: o.sequentialTau,
    cuped: o.cupedPreDays !== undefined,
    latencies,
  });
  return {
    experiment: id,
    status: exp.status,
    started_at: exp.startedAt === null ? null : new Date(exp.startedAt).toISOString(),
    stopped_at: exp.stoppedAt === null ? null : new Date(exp.stoppedAt).toISOString(),
    attribution_window_hours: W / 3_600_000,
    excluded: { forced_requests: Number(forcedRows[0]?.n ?? 0), users_in_several_variants: [...variantsOf.values()].filter((n) => n > 1).length },
    cuped_pre_period_days: o.cupedPreDays ?? null,
    ...analysis,
  };
}
