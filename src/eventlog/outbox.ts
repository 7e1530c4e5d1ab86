/**
 * The outbox between state commits (Redis) and the event log (D1).
 *
 * A fold commits its events' log rows into the outbox in the same atomic step as the states
 * (src/state/redis-scripts.ts COMMIT), so an event is in the outbox exactly when it is applied.
 * Rows leave the outbox only after D1 confirmed them, and D1 stores each (user_id, event_key)
 * once (INSERT OR IGNORE), so every applied event is logged exactly once whatever fails between:
 * D1 down (rows wait), Redis or the isolate dying after the commit (rows wait), a retry answered
 * `duplicate` (nothing new to log), two drainers at once (both insert, one row).
 *
 * Who drains: the request that committed, after the response (`storeCommitted`, waitUntil), and
 * the cron trigger / POST /v1/admin/eventlog/drain for whatever is left (`drainOutbox`).
 */
import type { Db } from "../catalog/db";
import type { SharedStore } from "../state/shared";
import { settleOwedForgets } from "../domain/forget";
import type { EventOutbox, ForgetLedger } from "../state/store";
import { type LogRow, appendEvents, drainLegacySpill } from "./log";

/** An outbox entry: the row plus `n`, the user's pending sequence number (keeps a user's order). */
export function outboxEntry(row: LogRow, n: number): string {
  return JSON.stringify({ ...row, n });
}

function rowsOf(entries: readonly string[]): LogRow[] {
  const rows = entries.map((s) => JSON.parse(s) as LogRow & { n?: number });
  // Commit order is kept by the outbox up to equal commit times; restore each user's event order.
  rows.sort((a, b) => a.received_at - b.received_at || (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0) || (a.n ?? 0) - (b.n ?? 0));
  return rows.map(({ n: _n, ...r }) => r as LogRow);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface OutboxDeps {
  db: Db;
  outbox: EventOutbox;
}

/**
 * Store rows this request committed into D1 (3 tries, 100 ms then 400 ms apart), then remove
 * them from the outbox. On failure they stay in the outbox for `drainOutbox`. Never throws.
 */
export async function storeCommitted(deps: OutboxDeps, entries: readonly string[]): Promise<"stored" | "left"> {
  if (!entries.length) return "stored";
  const rows = rowsOf(entries);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await appendEvents(deps.db, rows);
      break;
    } catch (e) {
      if (attempt === 2) {
        console.warn(`event log write failed (${(e as Error).message}); ${rows.length} row(s) wait in the outbox for the next drain`);
        return "left";
      }
      await sleep(100 * 4 ** attempt);
    }
  }
  try {
    await deps.outbox.ackOutbox(entries);
  } catch (e) {
    // Stored; the next drain inserts them again (ignored) and removes them.
    console.warn(`event log: outbox cleanup failed (${(e as Error).message})`);
  }
  return "stored";
}

/**
 * Settle owed user deletions (domain/forget.ts), then move every row waiting in the outbox (and in
 * the pre-outbox spill list) into D1, 500 at a time, oldest first, at most `maxRows` per call. Returns how many rows were stored. Throws when D1 or
 * Redis fails; what was not confirmed stays in the outbox.
 */
export async function drainOutbox(deps: OutboxDeps & { shared: SharedStore; outbox: ForgetLedger; timeoutMs?: number }, maxRows = 50_000): Promise<number> {
  // Owed deletions first: a forgotten user's rows are never stored, whatever waits below.
  await settleOwedForgets({ store: deps.outbox, db: deps.db, timeoutMs: deps.timeoutMs ?? 10_000 });
  let done = await drainLegacySpill(deps);
  while (done < maxRows) {
    const entries = await deps.outbox.peekOutbox(500);
    if (!entries.length) break;
    await appendEvents(deps.db, rowsOf(entries));
    await deps.outbox.ackOutbox(entries);
    done += entries.length;
  }
  return done;
}
