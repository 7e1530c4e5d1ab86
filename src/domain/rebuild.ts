/**
 * Memory across model changes: rebuild a user's state for a model version from the event log.
 *
 * A state belongs to one model version (its Redis key and record say which). When a user meets a
 * live version where they have no state (after a rollout, or a shadow version that started after
 * their last event), their last N logged events (REBUILD_EVENTS, default 200) are replayed
 * through that version with the same session rule as the write path. Cost: one D1 round trip
 * (two statements in one batch) plus N model steps; bounded by N and by the D1 timeout.
 *
 * The rebuilt state carries the user's counters over: `event_count` is the number of the user's
 * logged events the previous models applied (in_model), corrected for the replayed events whose
 * item this version does (or no longer does) know; `session_count` counts the replayed sessions.
 * Replayed event ids still inside the idempotency window are remembered as applied, so a resent
 * event is not applied twice to the new version.
 */
import type { Db } from "../catalog/db";
import { advanceState, emptyState } from "./advance";
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import type { UserStateStore } from "../state/store";

export interface RebuildDeps {
  db: Db;
  model: GruModel;
  ringCapacity: number;
  /** Replay at most this many of the user's latest events. */
  maxEvents: number;
  /** Remember replayed event ids received within this window (the idempotency window), ms. */
  dedupWindowMs: number;
  /** Timeout of the D1 read, ms. */
  timeoutMs: number;
}

export interface Rebuilt {
  state: UserState;
  /** Event ids to remember as applied (client event ids within the idempotency window). */
  eventIds: string[];
  /** Events replayed through the model. */
  replayed: number;
  /** Wall time of the rebuild (read + replay), ms. */
  ms: number;
  /** Of which the D1 read, ms. */
  readMs: number;
}

interface LogLine {
  event_key: string;
  item_id: string;
  ts: number;
  received_at: number;
  in_model: number;
}

const LAST_SQL = "SELECT event_key, item_id, ts, received_at, in_model FROM events WHERE user_id = ?1 ORDER BY ts DESC, seq DESC LIMIT ?2";
const COUNT_SQL = "SELECT COUNT(*) AS n FROM events WHERE user_id = ?1 AND in_model = 1";

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`event log read timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * Replay events (oldest first) onto `s` exactly as the write path advances a state: the session
 * rule before each step, counts, last event time, the ring of recent distinct rows, the seen filter.
 */
export function replay(model: GruModel, s: UserState, events: readonly { row: number; id: string; timestampMs: number }[], nowMs: number): Promise<UserState> {
  return advanceState(model, s, events.map((e) => ({ row: e.row, id: e.id, ts: e.timestampMs })), nowMs);
}

/**
 * The user's state for `deps.model` rebuilt from their logged events, or null when the log holds
 * no event on an item this version knows (a cold user). `exclude`: event keys not to replay (the
 * events of the request being applied, which the caller applies itself). `forgottenAt`: the user
 * was forgotten then and the log still owes that deletion (the state store says so with the
 * read): nothing received until then is replayed. Throws when D1 fails.
 */
export async function rebuildState(
  deps: RebuildDeps,
  userId: string,
  exclude: ReadonlySet<string> = new Set(),
  nowMs = Date.now(),
  forgottenAt: number | null = null,
): Promise<Rebuilt | null> {
  if (deps.maxEvents <= 0) return null;
  const t0 = Date.now();
  const client = deps.db.$client;
  const [last, count] = await withTimeout(
    client.batch<Record<string, unknown>>([client.prepare(LAST_SQL).bind(userId, deps.maxEvents), client.prepare(COUNT_SQL).bind(userId)]),
    deps.timeoutMs,
  );
  const readMs = Date.now() - t0;
  // A user forgotten while the log still owes the deletion: nothing received until then is theirs.
  const all = ((last?.results ?? []) as unknown as LogLine[]).filter((l) => forgottenAt === null || Number(l.received_at) > forgottenAt);
  const lines = all.filter((l) => !exclude.has(l.event_key)).reverse();
  // Excluded events the log already holds are counted by the caller when it applies them.
  let adjust = -all.filter((l) => exclude.has(l.event_key) && l.in_model).length;
  const model = deps.model;
  const events: { row: number; id: string; timestampMs: number }[] = [];
  const eventIds: string[] = [];
  for (const l of lines) {
    const row = model.rowOf(l.item_id);
    if (row === undefined) {
      if (l.in_model) adjust--; // the earlier model knew it, this one does not
      continue;
    }
    if (!l.in_model) adjust++; // a catalog-only item then, known to this version
    events.push({ row, id: l.item_id, timestampMs: Number(l.ts) });
    if (!l.event_key.startsWith("auto:") && nowMs - Number(l.received_at) < deps.dedupWindowMs) eventIds.push(l.event_key);
  }
  if (!events.length) return null;
  const state = await replay(model, emptyState(model, deps.ringCapacity), events, nowMs);
  const logged = forgottenAt === null ? Number((count?.results?.[0] as { n?: number } | undefined)?.n ?? 0) : all.filter((l) => l.in_model).length;
  // Every replayed event counts; older ones (beyond N) count as the log says they were applied.
  state.eventCount = Math.max(events.length, logged + adjust);
  return { state, eventIds, replayed: events.length, ms: Date.now() - t0, readMs };
}

/**
 * The write path's rebuild: as rebuildState, but a failing event log (D1 down or slow) is an
 * expected degradation, not an error: the user's events are still accepted and their state for
 * this version starts from them (null), with a warning.
 */
export async function rebuildOrFresh(deps: RebuildDeps, userId: string, exclude: ReadonlySet<string>, forgottenAt: number | null = null): Promise<Rebuilt | null> {
  try {
    return await rebuildState(deps, userId, exclude, Date.now(), forgottenAt);
  } catch (e) {
    console.warn(`event log unavailable, the state for ${deps.model.version} starts without the logged history: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Rebuild and store the state of a user who has none for this version (compare-and-set against
 * "absent": a concurrent writer wins and nothing is overwritten). Returns the rebuilt state and
 * whether it was stored.
 */
export async function rebuildAndStore(
  deps: RebuildDeps & { store: UserStateStore },
  userId: string,
  nowMs = Date.now(),
): Promise<{ rebuilt: Rebuilt | null; stored: boolean }> {
  const rebuilt = await rebuildState(deps, userId, new Set(), nowMs);
  if (!rebuilt) return { rebuilt, stored: false };
  const stored = await deps.store.putIfAbsent(userId, rebuilt.state, rebuilt.eventIds, nowMs);
  return { rebuilt, stored };
}

/**
 * The lazy rebuild of the read path: rebuild a user's state, answer from it at once and store it
 * after the response (`background`), compare-and-set against "absent".
 */
export function lazyRebuild(
  deps: (model: GruModel) => RebuildDeps,
  storeFor: (v: { version: string; stateSize: number }) => UserStateStore,
  background: (p: Promise<unknown>) => void,
) {
  return async (userId: string, model: GruModel, forgottenAt: number | null = null): Promise<Rebuilt | null> => {
    const nowMs = Date.now();
    const r = await rebuildState(deps(model), userId, new Set(), nowMs, forgottenAt);
    if (r) background(storeFor({ version: model.version, stateSize: model.stateSize }).putIfAbsent(userId, r.state, r.eventIds, nowMs));
    return r;
  };
}
