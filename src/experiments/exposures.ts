/**
 * The experiment logs in D1, written after the response (waitUntil): one exposure per list
 * served inside an experiment (rec_id, variant, items in shown order), and the events that carry
 * a rec_id (clicks on recommended items). Three tries, then the rows are reported as lost in the
 * worker's log (they are measurements, not shop data: a lost exposure lowers the counts of both
 * variants alike unless D1 fails for one only, which the sample-ratio check would flag).
 */
import type { Db } from "../catalog/db";

export interface Exposure {
  rec_id: string;
  experiment_id: string;
  variant: string;
  user_id: string;
  placement: string;
  items: string[];
  source: string | null;
  reason: string | null;
  fallback: boolean;
  model_version: string | null;
  latency_ms: number;
  error: string | null;
  forced: boolean;
  ts: number;
}

export interface RecEvent {
  rec_id: string;
  user_id: string;
  event_key: string;
  item_id: string;
  type: string;
  ts: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withRetries(what: string, fn: () => Promise<unknown>): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fn();
      return true;
    } catch (e) {
      if (attempt === 2) {
        console.error(`${what} lost after 3 tries: ${(e as Error).message}`);
        return false;
      }
      await sleep(100 * 4 ** attempt);
    }
  }
  return false;
}

/** Store one exposure (idempotent on rec_id). */
export function logExposure(db: Db, x: Exposure): Promise<boolean> {
  return withRetries(`exposure ${x.rec_id}`, () =>
    db.$client
      .prepare(
        `INSERT OR IGNORE INTO exposures (rec_id, experiment_id, variant, user_id, placement, items, source, reason, fallback, model_version, latency_ms, error, forced, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)`,
      )
      .bind(
        x.rec_id,
        x.experiment_id,
        x.variant,
        x.user_id,
        x.placement,
        JSON.stringify(x.items),
        x.source,
        x.reason,
        x.fallback ? 1 : 0,
        x.model_version,
        x.latency_ms,
        x.error,
        x.forced ? 1 : 0,
        x.ts,
      )
      .run(),
  );
}

/** Store events that named a rec_id (idempotent on user_id and event_key, as the event log). */
export function logRecEvents(db: Db, rows: readonly RecEvent[]): Promise<boolean> {
  if (!rows.length) return Promise.resolve(true);
  return withRetries(`${rows.length} rec event(s)`, () =>
    db.$client
      .prepare(
        `INSERT OR IGNORE INTO rec_events (rec_id, user_id, event_key, item_id, type, ts)
         SELECT json_extract(j.value, '$.rec_id'), json_extract(j.value, '$.user_id'), json_extract(j.value, '$.event_key'),
                json_extract(j.value, '$.item_id'), json_extract(j.value, '$.type'), json_extract(j.value, '$.ts')
         FROM json_each(?1) AS j`,
      )
      .bind(JSON.stringify(rows))
      .run(),
  );
}

/**
 * The rec events of a request: accepted events (not duplicates: those were recorded when first
 * applied) that name a rec_id. `now`: the receipt time, for events without a timestamp.
 */
export function recEventRows(
  results: readonly { index: number; status: string }[],
  events: readonly { event_id?: string; user_id: string; item_id: string; type: string; timestamp?: number; rec_id?: string }[],
  now: number,
): RecEvent[] {
  const out: RecEvent[] = [];
  for (const r of results) {
    const e = events[r.index];
    if (r.status === "duplicate" || !e?.rec_id) continue;
    out.push({ rec_id: e.rec_id, user_id: e.user_id, event_key: e.event_id ?? `auto:${crypto.randomUUID()}`, item_id: e.item_id, type: e.type, ts: e.timestamp ?? now });
  }
  return out;
}
