/**
 * The event log in D1: every accepted event, appended after the response (waitUntil), stored
 * once per (user_id, event_key). A write that keeps failing is spilled to a Redis list and
 * replayed by the cron trigger (and by the next successful write), so accepted events are not lost
 * when D1 has a bad minute. Reading: paged by `seq` for the NDJSON export.
 */
import { and, asc, eq, gt, gte, lte } from "drizzle-orm";
import { events } from "../../schema/schema";
import type { Db } from "../catalog/db";
import type { SharedStore } from "../state/shared";

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

const CHUNK = 500;
const SPILL = "eventlog";

const APPEND_SQL = `
  INSERT OR IGNORE INTO events (user_id, event_key, item_id, type, ts, received_at, in_model, model_version)
  SELECT json_extract(j.value, '$.user_id'), json_extract(j.value, '$.event_key'), json_extract(j.value, '$.item_id'),
         json_extract(j.value, '$.type'), json_extract(j.value, '$.ts'), json_extract(j.value, '$.received_at'),
         json_extract(j.value, '$.in_model'), json_extract(j.value, '$.model_version')
  FROM json_each(?1) AS j`;

/** Insert rows, ignoring ones already stored (same user_id and event_key). One transaction. */
export async function appendEvents(db: Db, rows: readonly LogRow[]): Promise<void> {
  if (!rows.length) return;
  const stmts: D1PreparedStatement[] = [];
  for (let i = 0; i < rows.length; i += CHUNK) {
    const payload = JSON.stringify(rows.slice(i, i + CHUNK).map((r) => ({ ...r, in_model: r.in_model ? 1 : 0 })));
    stmts.push(db.$client.prepare(APPEND_SQL).bind(payload));
  }
  await db.$client.batch(stmts);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Append with retries (3 tries, 100 ms then 400 ms apart); if D1 still fails, spill the rows to
 * Redis for a later replay. Never throws; returns where the rows went.
 */
export async function logEvents(deps: { db: Db; shared: SharedStore }, rows: readonly LogRow[]): Promise<"stored" | "spilled" | "lost"> {
  let err: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await appendEvents(deps.db, rows);
      return "stored";
    } catch (e) {
      err = e;
      if (attempt < 2) await sleep(100 * 4 ** attempt);
    }
  }
  console.warn(`event log write failed (${(err as Error).message}); spilling ${rows.length} event(s) to Redis`);
  try {
    await deps.shared.pushList(SPILL, rows.map((r) => JSON.stringify(r)));
    return "spilled";
  } catch (e) {
    console.error(`event log: ${rows.length} event(s) could not be stored nor spilled: ${(e as Error).message}`, JSON.stringify(rows));
    return "lost";
  }
}

/** Replay spilled rows into D1 (oldest first, 500 at a time). Returns how many were replayed. */
export async function drainSpill(deps: { db: Db; shared: SharedStore }): Promise<number> {
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

/** Remove every logged event of a user (right to be forgotten). Returns how many. */
export async function deleteUserEvents(db: Db, userId: string): Promise<number> {
  const r = await db.delete(events).where(eq(events.userId, userId));
  return Number((r as unknown as D1Result).meta?.changes ?? 0);
}
