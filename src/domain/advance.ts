/**
 * Apply accepted events to users' states: the write path.
 *
 * Per user: read state + which event ids were already applied, advance the GRU over the new
 * events (a new session starts after the model's idle gap), then compare-and-set. A conflict
 * (another request wrote in between) re-reads and re-applies, with jittered backoff, until the
 * CAS budget is spent. Events of different users proceed in parallel.
 */
import { ApiError } from "../errors";
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import type { UserStateStore } from "../state/store";

/** One validated event, with its item already resolved to an embedding row. */
export interface ResolvedEvent {
  index: number;
  eventId?: string;
  userId: string;
  itemId: string;
  row: number;
  type: string;
  timestampMs: number;
}

export interface EventOutcome {
  index: number;
  user_id: string;
  status: "applied" | "duplicate";
  state_version: number;
}

export interface UserOutcome {
  user_id: string;
  state_version: number;
  event_count: number;
  /** The state after the write (for `?recommend=k`). */
  state: UserState;
  /** The user's purchases as stored before this request. */
  purchased: ReadonlySet<string>;
}

export interface AdvanceDeps {
  store: UserStateStore;
  model: GruModel;
  ringCapacity: number;
  casBudgetMs: number;
  retryAfterSeconds: number;
  /**
   * A user with no state for this model but logged events (after a rollout) starts from their
   * state rebuilt from the log (rebuild.ts), leaving out `exclude` (this request's event ids).
   */
  rebuild?: (userId: string, exclude: ReadonlySet<string>) => Promise<{ state: UserState; eventIds: string[] } | null>;
}

/** A fresh user's state. */
export function emptyState(model: GruModel, ringCapacity: number): UserState {
  return {
    seq: 0,
    eventCount: 0,
    sessionCount: 0,
    lastEventMs: 0,
    sessionStartMs: 0,
    updatedAtMs: 0,
    ringCapacity,
    ring: [],
    vector: model.initialState(),
  };
}

async function advanceOne(model: GruModel, s: UserState, events: ResolvedEvent[], nowMs: number): Promise<UserState> {
  let vector = s.vector;
  let { eventCount, sessionCount, lastEventMs, sessionStartMs } = s;
  const ring = [...s.ring];
  for (const e of events) {
    const at = model.moment(e.timestampMs, eventCount === 0 ? undefined : lastEventMs);
    vector = await model.step(vector, e.row, at);
    if (at.newSession) {
      sessionCount++;
      sessionStartMs = e.timestampMs;
    }
    eventCount++;
    lastEventMs = Math.max(lastEventMs, e.timestampMs);
    const seenAt = ring.indexOf(e.row);
    if (seenAt >= 0) ring.splice(seenAt, 1);
    ring.unshift(e.row);
    if (ring.length > s.ringCapacity) ring.length = s.ringCapacity;
  }
  return { ...s, seq: s.seq + 1, vector, eventCount, sessionCount, lastEventMs, sessionStartMs, updatedAtMs: nowMs, ring };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Apply one user's events (in the given order) exactly once each. */
export async function applyUserEvents(
  deps: AdvanceDeps,
  userId: string,
  events: ResolvedEvent[],
  now: () => number = Date.now,
): Promise<{ outcomes: EventOutcome[]; user: UserOutcome }> {
  const started = now();
  const ids = [...new Set(events.map((e) => e.eventId).filter((x): x is string => x !== undefined))];
  for (let attempt = 0; ; attempt++) {
    const snap = await deps.store.read(userId, ids);
    if (snap.corrupt) console.warn(`user state unreadable, starting fresh: ${snap.corrupt}`);
    let rebuilt: { state: UserState; eventIds: string[] } | null = null;
    if (!snap.state && !snap.raw && deps.rebuild) rebuilt = await deps.rebuild(userId, new Set(ids));
    const base = snap.state ?? rebuilt?.state ?? emptyState(deps.model, deps.ringCapacity);
    if (base.ringCapacity !== deps.ringCapacity) {
      base.ringCapacity = deps.ringCapacity;
      base.ring = base.ring.slice(0, deps.ringCapacity);
    }
    // Drop events applied earlier and repeats of one event_id inside this request.
    const taken = new Set(snap.seen);
    const fresh: ResolvedEvent[] = [];
    const dup = new Set<number>();
    for (const e of events) {
      if (e.eventId !== undefined) {
        if (taken.has(e.eventId)) {
          dup.add(e.index);
          continue;
        }
        taken.add(e.eventId);
      }
      fresh.push(e);
    }
    const nowMs = now();
    const next = fresh.length ? await advanceOne(deps.model, base, fresh, nowMs) : base;
    const applied = [...(rebuilt?.eventIds ?? []), ...fresh.flatMap((e) => (e.eventId ? [e.eventId] : []))];
    const ok = fresh.length === 0 ? true : await deps.store.commit(userId, snap.raw, next, applied, nowMs);
    if (ok) {
      return {
        outcomes: events.map((e) => ({ index: e.index, user_id: userId, status: dup.has(e.index) ? "duplicate" : "applied", state_version: next.seq })),
        user: { user_id: userId, state_version: next.seq, event_count: next.eventCount, state: next, purchased: snap.purchased },
      };
    }
    if (now() - started > deps.casBudgetMs) {
      throw new ApiError(503, "contention", `too many concurrent writes for user; retry`, {
        headers: { "Retry-After": String(deps.retryAfterSeconds) },
      });
    }
    await sleep(Math.random() * Math.min(2 ** attempt, 50));
  }
}
