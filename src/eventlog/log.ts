/**
 * The event log in D1: every event folded into a state (or logged only), stored once per
 * (user_id, event_key). Rows reach it through the Redis outbox (eventlog/outbox.ts), written
 * atomically with the state commit. `logRow` is the one place an event becomes a row.
 * Reading: paged by `seq` for the NDJSON export.
 */
import { and, asc, eq, gt, gte, lte } from "drizzle-orm";
import { events } from "../../schema/schema";
import type { Db } from "../catalog/db";
import type { SharedStore } from "../state/shared";
import type { PendingEvent } from "../state/store";

/** One row of the log, as written. */
export interface LogRow {
  user_id: string;
  event_key: string;
  item_id: string;
  type: string;
  ts: number;
  received_at: number;
  in_model: boolean;
  model_version: string | null;
}

/**
 * The log row of a folded event. `inModel`: whether the serving model knew the item (false:
 * logged only); `modelVersion`: the serving model's version.
 */
export function logRow(userId: string, e: PendingEvent, inModel: boolean, modelVersion: string | null): LogRow {
  return {
    user_id: userId,
    event_key: e.key,
    item_id: e.itemId,
    type: e.type,
    ts: e.ts,
    received_at: e.receivedAt,
    in_model: inModel,
    model_version: modelVersion,
  };
}

const CHUNK = 500;
const SPILL = "eventlog";

const APPEND_SQL = `
  INSERT OR IGNORE INTO events (user_id, event_key, item_id, type, ts, received_at, in_model, model_version)
  SELECT json_extract(j.value, '$.user_id'), json_extract(j.value, '$.event_key'), json_extract(j.value, '$.item_id'),
         json_extract(j.value, '$.type'), json_extract(j.value, '$.ts'), json_extract(j.value, '$.received_at'),
         json_extract(j.value, '$.in_model'), json_extract(j.value, '$.model_version')
  FROM json_each(?1) AS j
  WHERE NOT EXISTS (SELECT 1 FROM forgotten_users f
                    WHERE f.user_id = json_extract(j.value, '$.user_id') AND f.forgotten_at >= json_extract(j.value, '$.received_at'))`;

/**
 * Insert rows, ignoring ones already stored (same user_id and event_key) and rows of a forgotten
 * user received before they were forgotten. One transaction.
 */
export async function appendEvents(db: Db, rows: readonly LogRow[]): Promise<void> {
  if (!rows.length) return;
  const stmts: D1PreparedStatement[] = [];
  for (let i = 0; i < rows.length; i += CHUNK) {
    const payload = JSON.stringify(rows.slice(i, i + CHUNK).map((r) => ({ ...r, in_model: r.in_model ? 1 : 0 })));
    stmts.push(db.$client.prepare(APPEND_SQL).bind(payload));
  }
  await db.$client.batch(stmts);
}

/**
 * Replay rows spilled to the Redis list `gru:list:eventlog` by versions before the outbox (oldest
 * first, 500 at a time). Returns how many were replayed.
 */
export async function drainLegacySpill(deps: { db: Db; shared: SharedStore }): Promise<number> {
  let done = 0;
  for (;;) {
    const batch = await deps.shared.peekList(SPILL, CHUNK);
    if (!batch.length) return done;
    await appendEvents(deps.db, batch.map((s) => JSON.parse(s) as LogRow));
    await deps.shared.dropList(SPILL, batch.length);
    done += batch.length;
  }
}

/** A page of the log in `seq` order, after `afterSeq`, with `ts` in [since, until]. */
export async function readEvents(db: Db, o: { afterSeq: number; since?: number; until?: number; userId?: string; limit: number }) {
  const where = [gt(events.seq, o.afterSeq)];
  if (o.since !== undefined) where.push(gte(events.ts, o.since));
  if (o.until !== undefined) where.push(lte(events.ts, o.until));
  if (o.userId !== undefined) where.push(eq(events.userId, o.userId));
  return db.select().from(events).where(and(...where)).orderBy(asc(events.seq)).limit(o.limit);
}

/** Forgotten users are remembered this long (a late drain carries rows for seconds, not days), ms. */
export const FORGOTTEN_RETENTION_MS = 30 * 86_400_000;

/**
 * Forget a user in D1 (right to be forgotten), in one transaction: their logged events received
 * up to `forgottenAt`, their experiment exposures and list events, and a tombstone that keeps any
 * late row of theirs out (`appendEvents`). Returns how many logged events were deleted.
 */
export async function forgetUserLog(db: Db, userId: string, forgottenAt: number): Promise<number> {
  const c = db.$client;
  const [deleted] = await c.batch([
    c.prepare("DELETE FROM events WHERE user_id = ?1 AND received_at <= ?2").bind(userId, forgottenAt),
    c.prepare("DELETE FROM exposures WHERE user_id = ?1").bind(userId),
    c.prepare("DELETE FROM rec_events WHERE user_id = ?1").bind(userId),
    c
      .prepare("INSERT INTO forgotten_users (user_id, forgotten_at) VALUES (?1, ?2) ON CONFLICT (user_id) DO UPDATE SET forgotten_at = max(forgotten_at, excluded.forgotten_at)")
      .bind(userId, forgottenAt),
    c.prepare("DELETE FROM forgotten_users WHERE forgotten_at < ?1").bind(forgottenAt - FORGOTTEN_RETENTION_MS),
  ]);
  return Number(deleted?.meta?.changes ?? 0);
}
