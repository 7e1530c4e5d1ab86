/**
 * Accepting events: the write path's orchestration, with per-user write combining.
 *
 *  1. Resolve: every item must be known to the serving model or to the catalog (else 422, nothing
 *     written). Events are grouped per user, in the order given.
 *  2. Enter (one Redis round trip for all users): per user, atomically, events whose event_id was
 *     accepted within the idempotency window are answered `duplicate`, the others are appended to
 *     the user's pending list, purchases are remembered; then either every entry this request
 *     waits for is folded already, or this request takes the user's short lease, or it waits.
 *  3. Fold: a lease holder advances every live model's state over ALL of the user's pending events
 *     (its own and other requests') in one pass, and commits (one round trip for all users): the
 *     states, the exact removal of the folded entries, their log rows into the outbox, atomically
 *     and only while the lease is still its own.
 *  4. Wait: the others ask again with a small growing backoff (one round trip per round for all
 *     waiting users) until their entries are folded, taking the lease themselves when it is free
 *     (a holder that died leaves it to expire after `leaseMs`). No model re-run per conflict.
 * The committed rows go to D1 after the response (eventlog/outbox.ts).
 */
import { ApiError } from "../errors";
import { logRow } from "../eventlog/log";
import { outboxEntry } from "../eventlog/outbox";
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import type { CommitCall, EnterCall, EnterReply, ModelKey, StateRead, UserStateStore } from "../state/store";
import { foldEvents } from "./advance";
import { type RankContext, type Recommendation, rankFromState } from "./recommend";

/** One validated event as the API takes it. */
export interface EventInput {
  event_id?: string;
  user_id: string;
  item_id: string;
  type: string;
  /** When it happened, ms since the epoch (default: now). */
  timestamp?: number;
}

export interface EventOutcome {
  index: number;
  user_id: string;
  /** applied: folded into the state; duplicate: its event_id was accepted before; logged: an item only the catalog knows. */
  status: "applied" | "duplicate" | "logged";
  /** The user's state version once the event was folded (null for logged events). */
  state_version: number | null;
}

export interface UserOutcome {
  user_id: string;
  state_version: number;
  event_count: number;
  /** The serving model's state once this request's events were folded (null: none yet). */
  state: UserState | null;
  /** The user's purchases, this request's included (filled when `wantPurchased`). */
  purchased: ReadonlySet<string>;
}

export interface WriteDeps {
  store: UserStateStore;
  /** Live model versions; the first serves (answers, `in_model` of the log). Every one is advanced. */
  models: readonly GruModel[];
  /**
   * A user with no state for a model version but logged events (after a rollout) is folded from
   * their state rebuilt from the log (domain/rebuild.ts), leaving out `exclude` (the keys being
   * folded). Absent: such a user starts fresh.
   */
  rebuild?: (model: GruModel, userId: string, exclude: ReadonlySet<string>, forgottenAt: number | null) => Promise<{ state: UserState } | null>;
  /** The catalog copy: `ready` syncs it (only called when some item is unknown to the model). */
  catalog: { ready(): Promise<void>; has(itemId: string): boolean };
  /** Items in the recent ring. */
  ringCapacity: number;
  /** Lease time to live, ms: how long a holder that died blocks the user's writes. */
  leaseMs: number;
  /** Longest a request waits for its events to be folded before answering 503 contention, ms. */
  waitMs: number;
  /** Most pending events one fold takes. Default 500. */
  maxFold?: number;
  retryAfterSeconds: number;
  /** Also return each user's purchases (for recommendations after the events). */
  wantPurchased?: boolean;
}

export interface WriteResult {
  /** One per input event, in input order. */
  outcomes: EventOutcome[];
  /** Users with at least one event on a model item, in order of first appearance. */
  users: UserOutcome[];
  /** Per input event: its key in the log (the event_id, or the generated `auto:` key). */
  keys: string[];
  /** Outbox entries this request committed (its own and other requests' events): store them in D1 after the response. */
  committed: string[];
  /** Redis round trips made (enter and commit calls). */
  roundTrips: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a committed fold tells requests of the same isolate waiting for that user. */
interface LocalFold {
  /** Seq of the last entry folded. */
  lastSeq: number;
  states: (UserState | null)[];
  purchased: Set<string>;
}

/**
 * Folds this isolate is running now, per user (the user id is namespaced by the store). A request
 * of the same isolate that has to wait for that user waits for the fold itself instead of asking
 * Redis again and again, and is done without another round trip when the fold covered its events.
 * Resolves to null when the fold was not committed.
 */
const localFolds = new Map<string, Promise<LocalFold | null>>();

interface UserWork {
  userId: string;
  indexes: number[];
  call: EnterCall;
  seqs?: number[];
  need: number;
  final?: { states: (UserState | null)[]; purchased: Set<string> };
}

/** The states a fold starts from: a version where the user has no record starts from the log. */
async function withRebuilt(deps: WriteDeps, userId: string, r: EnterReply): Promise<StateRead[]> {
  if (!deps.rebuild) return r.states;
  const exclude = new Set(r.pending.map((e) => e.key));
  return Promise.all(
    r.states.map(async (s, i) => {
      if (s.raw !== null) return s;
      const rebuilt = await deps.rebuild!(deps.models[i]!, userId, exclude, r.forgottenAt).catch((e: Error) => {
        console.warn(`state rebuild from the event log failed, folding from a fresh state: ${e.message}`);
        return null;
      });
      return rebuilt ? { raw: null, state: rebuilt.state } : s;
    }),
  );
}

interface Leased {
  w: UserWork;
  reply: EnterReply;
}

interface Fold {
  w: UserWork;
  after: (UserState | null)[];
  purchased: Set<string>;
  logRows: string[];
  lastSeq: number;
  commit: CommitCall;
}

/**
 * Fold the pending events of every user whose lease this request holds, and commit them in one
 * round trip. When folding takes long (many users, a loaded machine) it stops once half of the
 * lease time (counted from `leasedAt`) has passed and commits what it folded, while the leases are
 * surely still ours; the users it did not get to are left `unfolded` (their leases are ours: the
 * next `enter` renews them). Other requests of this isolate waiting for these users wait for this.
 */
async function foldAndCommit(deps: WriteDeps, versions: readonly ModelKey[], token: string, leased: readonly Leased[], leasedAt: number) {
  const serving = deps.models[0]!;
  const finish = new Map<string, (f: LocalFold | null) => void>();
  for (const { w } of leased) localFolds.set(w.userId, new Promise((r) => finish.set(w.userId, r)));
  const results: (Fold & { committed: boolean })[] = [];
  const unfolded: UserWork[] = [];
  try {
    const folds: Fold[] = [];
    for (const { w, reply: r } of leased) {
      if (folds.length && Date.now() - leasedAt > deps.leaseMs / 2) {
        unfolded.push(w);
        continue;
      }
      const at = Date.now();
      const fold = await foldEvents(deps.models, await withRebuilt(deps, w.userId, r), r.pending, deps.ringCapacity, at);
      const logRows = r.pending.map((e) => outboxEntry(logRow(w.userId, e, serving.rowOf(e.itemId) !== undefined, serving.version), e.seq));
      const lastSeq = r.pending.length ? r.pending[r.pending.length - 1]!.seq : 0;
      folds.push({ w, after: fold.after, purchased: r.purchased, logRows, lastSeq, commit: { userId: w.userId, token, count: r.pending.length, lastSeq, states: fold.changed, logRows, nowMs: at } });
    }
    const ok = await deps.store.commit(versions, folds.map((f) => f.commit));
    folds.forEach((f, i) => results.push({ ...f, committed: ok[i]! }));
    return { results, unfolded };
  } finally {
    for (const { w } of leased) localFolds.delete(w.userId);
    for (const f of results) if (f.committed) finish.get(f.w.userId)!({ lastSeq: f.lastSeq, states: f.after, purchased: f.purchased });
    for (const resolve of finish.values()) resolve(null); // no-op for those resolved above
  }
}

/**
 * Accept a batch of validated events (see the module comment). `batch`: the body was an array
 * (errors then name `events[i]`). Throws ApiError 422 (unknown item) and 503 (contention).
 */
export async function acceptEvents(deps: WriteDeps, list: readonly EventInput[], o: { batch: boolean; nowMs?: number }): Promise<WriteResult> {
  const nowMs = o.nowMs ?? Date.now();
  const serving = deps.models[0]!;
  if (list.some((e) => serving.rowOf(e.item_id) === undefined)) await deps.catalog.ready();
  const unknown: { index: number; item_id: string }[] = [];
  list.forEach((e, index) => {
    if (deps.models.every((m) => m.rowOf(e.item_id) === undefined) && !deps.catalog.has(e.item_id)) unknown.push({ index, item_id: e.item_id });
  });
  if (unknown.length) {
    throw new ApiError(422, "unknown_item", `${unknown.length} event(s) name an item neither the model nor the catalog knows; nothing was applied`, {
      field: o.batch ? `events[${unknown[0]!.index}].item_id` : "item_id",
      details: unknown,
    });
  }

  const token = crypto.randomUUID();
  const work = new Map<string, UserWork>();
  list.forEach((e, index) => {
    let w = work.get(e.user_id);
    if (!w) {
      w = { userId: e.user_id, indexes: [], need: 0, call: { userId: e.user_id, events: [], purchases: [], need: 0, token, wantPurchased: !!deps.wantPurchased } };
      work.set(e.user_id, w);
    }
    w.indexes.push(index);
    w.call.events.push({
      event: { key: e.event_id ?? `auto:${crypto.randomUUID()}`, itemId: e.item_id, type: e.type, ts: e.timestamp ?? nowMs, receivedAt: nowMs },
      dedup: e.event_id !== undefined,
    });
    if (e.type === "purchase") (w.call.purchases as string[]).push(e.item_id);
  });

  const versions = deps.models.map((m) => ({ version: m.version, stateSize: m.stateSize }));
  const committed: string[] = [];
  const started = Date.now();
  let calls = [...work.values()].map((w) => w.call);
  let roundTrips = 0;
  let delay = 2;
  for (;;) {
    const leasedAt = Date.now();
    const replies = await deps.store.enter(versions, calls, { leaseMs: deps.leaseMs, maxFold: deps.maxFold ?? 500, nowMs: leasedAt });
    roundTrips++;
    const waiting: EnterCall[] = [];
    const leased: Leased[] = [];
    calls.forEach((call, i) => {
      const r = replies[i]!;
      const w = work.get(call.userId)!;
      if (call.events.length) w.seqs = r.seqs;
      w.need = r.need;
      if (r.phase === "done") w.final = { states: r.states.map((s) => s.state), purchased: r.purchased };
      else if (r.phase === "wait") waiting.push(w.call);
      else leased.push({ w, reply: r });
    });
    if (leased.length) {
      const folded = await foldAndCommit(deps, versions, token, leased, leasedAt);
      for (const f of folded.results) {
        if (f.committed) committed.push(...f.logRows);
        if (f.committed && f.lastSeq >= f.w.need) f.w.final = { states: f.after, purchased: f.purchased };
        else waiting.push(f.w.call); // the lease expired meanwhile, or more than one fold's worth was pending
      }
      waiting.push(...folded.unfolded.map((w) => w.call));
      roundTrips++;
    }
    if (!waiting.length) break;
    if (Date.now() - started > deps.waitMs) {
      throw new ApiError(503, "contention", `events accepted but not yet applied for ${waiting.length} user(s) within ${deps.waitMs} ms; resend them (same event_id) to be answered once they are`, {
        headers: { "Retry-After": String(deps.retryAfterSeconds) },
      });
    }
    // Wait: for a fold of this isolate when there is one (often it covers our events: no round
    // trip), else a small growing backoff.
    const local = waiting.map((c) => localFolds.get(c.userId));
    if (local.every((p) => p !== undefined)) {
      const folded = await Promise.all(local);
      waiting.forEach((c, i) => {
        const f = folded[i];
        const w = work.get(c.userId)!;
        if (f && f.lastSeq >= w.need) w.final = { states: f.states, purchased: f.purchased };
      });
    } else {
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(delay * 1.6, 50);
    }
    // Next round: nothing more to append, only progress to check (or the lease to take).
    calls = waiting.filter((c) => !work.get(c.userId)!.final).map((c) => ({ ...c, events: [], purchases: [], need: work.get(c.userId)!.need }));
    if (!calls.length) break;
  }

  const outcomes: EventOutcome[] = new Array(list.length);
  const users: UserOutcome[] = [];
  for (const w of work.values()) {
    const state = w.final!.states[0] ?? null;
    let modelEvents = 0;
    w.indexes.forEach((index, j) => {
      const inModel = serving.rowOf(list[index]!.item_id) !== undefined;
      if (inModel) modelEvents++;
      outcomes[index] = {
        index,
        user_id: w.userId,
        status: w.seqs![j] === 0 ? "duplicate" : inModel ? "applied" : "logged",
        state_version: inModel ? (state?.seq ?? 0) : null,
      };
    });
    if (modelEvents) users.push({ user_id: w.userId, state_version: state?.seq ?? 0, event_count: state?.eventCount ?? 0, state, purchased: w.final!.purchased });
  }
  const keys = new Array<string>(list.length);
  for (const w of work.values()) w.indexes.forEach((index, j) => (keys[index] = w.call.events[j]!.event.key));
  return { outcomes, users, keys, committed, roundTrips };
}

/** Recommendations from the states just written (`?recommend=k`), one per user that has a state. */
export async function recommendAfter(
  model: GruModel,
  users: readonly UserOutcome[],
  ctx: RankContext,
  k: number,
  nowMs: number = Date.now(),
): Promise<(Recommendation & { user_id: string })[]> {
  const out: (Recommendation & { user_id: string })[] = [];
  for (const u of users) if (u.state) out.push({ user_id: u.user_id, ...(await rankFromState(model, u.state, u.purchased, ctx, { k }, nowMs)) });
  return out;
}
