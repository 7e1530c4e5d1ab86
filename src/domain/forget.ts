/**
 * Forgetting a user (DELETE /v1/users/{id}) so that nothing brings them back.
 *
 * 1. Redis, atomically (store.remove): every state (serving, shadow, and every registry version
 *    the request could list), pending events, de-duplication memory, purchases, their rows still
 *    waiting in the outbox; and an owed deletion (user -> time) in the ledger.
 * 2. D1, one transaction (forgetUserLog): logged events received up to that time, exposures, list
 *    events, and a tombstone that keeps late rows of theirs out of the log.
 * 3. The ledger entry is settled once D1 confirmed. With D1 down it stays: the next drain
 *    (cron, POST /v1/admin/eventlog/drain) deletes the log rows and the states of versions no
 *    event advances (retired, staged), and meanwhile rebuilds replay nothing received before the
 *    deletion (rebuild.ts asks the ledger).
 */
import { ne } from "drizzle-orm";
import { models } from "../../schema/schema";
import type { Db } from "../catalog/db";
import { forgetUserLog } from "../eventlog/log";
import type { ForgetLedger, UserStateStore } from "../state/store";

export interface ForgetDeps {
  store: UserStateStore & ForgetLedger;
  db: Db;
  /** Versions known without D1 (the isolate's live set). */
  liveVersions: readonly string[];
  /** Timeout of each D1 call, ms. */
  timeoutMs: number;
}

export interface Forgotten {
  existed: boolean;
  /** Logged events deleted (null while the deletion is owed). */
  eventsDeleted: number | null;
  /** "deleted": everything is gone; "pending": D1 did not answer, the drain finishes the log part. */
  log: "deleted" | "pending";
  /** Rows taken out of the outbox before they reached the log. */
  outboxRows: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/** Registry versions no event advances (staged, retired). Throws when D1 fails. */
async function idleVersions(db: Db, timeoutMs: number): Promise<string[]> {
  const rows = await withTimeout(db.select({ version: models.version }).from(models).where(ne(models.status, "live")), timeoutMs, "model registry read");
  return rows.map((r) => r.version);
}

/**
 * Forget a user. Throws StoreUnavailableError when Redis fails (nothing is promised then; the
 * call is safe to repeat); a failing D1 leaves the log part owed (`log: "pending"`).
 */
export async function forgetUser(deps: ForgetDeps, userId: string, nowMs = Date.now()): Promise<Forgotten> {
  const idle = await idleVersions(deps.db, deps.timeoutMs).catch(() => [] as string[]);
  const removed = await deps.store.remove(userId, { versions: [...deps.liveVersions, ...idle], nowMs });
  try {
    const eventsDeleted = await withTimeout(forgetUserLog(deps.db, userId, removed.forgottenAt), deps.timeoutMs, "event log deletion");
    await deps.store.settleForget(userId, removed.forgottenAt).catch(() => undefined); // the drain settles it otherwise
    return { existed: removed.existed, eventsDeleted, log: "deleted", outboxRows: removed.outboxRows };
  } catch (e) {
    console.warn(`event log unavailable: the log part of forgetting a user is owed to the next drain (${(e as Error).message})`);
    return { existed: removed.existed, eventsDeleted: null, log: "pending", outboxRows: removed.outboxRows };
  }
}

/**
 * Settle owed deletions (at most `max`): states of versions no event advances, the log rows, the
 * tombstone; then the ledger entry. Returns how many were settled. Throws when D1 or Redis fails.
 */
export async function settleOwedForgets(deps: { store: ForgetLedger; db: Db; timeoutMs: number }, max = 500): Promise<number> {
  const owed = await deps.store.owedForgets(max);
  if (!owed.length) return 0;
  const idle = await idleVersions(deps.db, deps.timeoutMs);
  for (const o of owed) {
    await deps.store.dropStates(o.userId, idle);
    await forgetUserLog(deps.db, o.userId, o.forgottenAt);
    await deps.store.settleForget(o.userId, o.forgottenAt);
  }
  return owed.length;
}
