/**
 * The fold: advance users' GRU states over their pending events, for every live model version.
 *
 * One pass per model over all pending events of a user (a new session starts after the model's
 * idle gap); events on items a model does not know leave that model's state as it is. Pure
 * computation: reading pending events and committing the result is src/domain/events.ts.
 */
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import { copySeen, emptySeen, seenAdd } from "../state/seen";
import type { PendingEvent, StateRead } from "../state/store";

/** What the fold needs of a model (GruModel implements it). */
export type FoldModel = Pick<GruModel, "version" | "stateSize" | "rowOf" | "moment" | "step" | "initialState">;

/** A fresh user's state. */
export function emptyState(model: Pick<GruModel, "initialState">, ringCapacity: number): UserState {
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
    seen: emptySeen(),
  };
}

/** One event as the fold applies it: the model's row of the item, the item id, when (ms). */
export interface Step {
  row: number;
  id: string;
  ts: number;
}

/** Advance one state over steps in order; seq +1. */
export async function advanceState(model: FoldModel, s: UserState, steps: readonly Step[], nowMs: number): Promise<UserState> {
  let vector = s.vector;
  let { eventCount, sessionCount, lastEventMs, sessionStartMs } = s;
  const ring = [...s.ring];
  const seen = copySeen(s.seen);
  for (const e of steps) {
    const at = model.moment(e.ts, eventCount === 0 ? undefined : lastEventMs);
    vector = await model.step(vector, e.row, at);
    if (at.newSession) {
      sessionCount++;
      sessionStartMs = e.ts;
    }
    eventCount++;
    lastEventMs = Math.max(lastEventMs, e.ts);
    const seenAt = ring.indexOf(e.row);
    if (seenAt >= 0) ring.splice(seenAt, 1);
    ring.unshift(e.row);
    if (ring.length > s.ringCapacity) ring.length = s.ringCapacity;
    seenAdd(seen, e.id);
  }
  return { ...s, seq: s.seq + 1, vector, eventCount, sessionCount, lastEventMs, sessionStartMs, updatedAtMs: nowMs, ring, seen };
}

export interface FoldResult {
  /** Per model: the state to write, or null when none of the events concerned it. */
  changed: (UserState | null)[];
  /** Per model: the state after the fold (null: the user still has none). */
  after: (UserState | null)[];
}

/**
 * Fold `events` (in order) into each model's current state. `current[i]` belongs to `models[i]`;
 * an unreadable record starts fresh (the write replaces it).
 */
export async function foldEvents(
  models: readonly FoldModel[],
  current: readonly StateRead[],
  events: readonly PendingEvent[],
  ringCapacity: number,
  nowMs: number,
): Promise<FoldResult> {
  const changed: (UserState | null)[] = [];
  const after: (UserState | null)[] = [];
  for (let i = 0; i < models.length; i++) {
    const model = models[i]!;
    const read = current[i];
    const steps = events.flatMap((e) => {
      const row = model.rowOf(e.itemId);
      return row === undefined ? [] : [{ row, id: e.itemId, ts: e.ts }];
    });
    if (!steps.length) {
      changed.push(null);
      after.push(read?.state ?? null);
      continue;
    }
    if (read?.corrupt) console.warn(`user state unreadable, starting fresh: ${read.corrupt}`);
    const base = read?.state ? { ...read.state } : emptyState(model, ringCapacity);
    if (base.ringCapacity !== ringCapacity) {
      base.ringCapacity = ringCapacity;
      base.ring = base.ring.slice(0, ringCapacity);
    }
    const next = await advanceState(model, base, steps, nowMs);
    changed.push(next);
    after.push(next);
  }
  return { changed, after };
}
