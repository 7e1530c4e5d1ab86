/**
 * The user state store: the narrow interfaces the domain code depends on.
 *
 * Reads: one record per (model version, user) plus the user's purchases (and the catalog stamp),
 * in one round trip.
 * Writes are combined per user (see src/domain/events.ts): each request appends its accepted
 * events to the user's pending list (`enter`, with the event_id check in the same atomic step) and
 * whoever holds the user's short lease folds every pending event into the state(s) and `commit`s:
 * state, removal of exactly the folded entries, and their event-log rows into the outbox, all in
 * one atomic step. The outbox is drained into D1 (src/eventlog/outbox.ts).
 */
import type { UserState } from "./codec";

/** A decoded (or undecodable) stored state record. */
export interface StateRead {
  /** Exactly what is stored, or null when the user has no state for this version. */
  raw: string | null;
  /** The decoded state; null when absent or unreadable (see `corrupt`). */
  state: UserState | null;
  /** Why a stored record could not be decoded (it will be replaced by the next write). */
  corrupt?: string;
}

/** What a read returns. */
export interface Snapshot extends StateRead {
  /** Item ids the user purchased (never recommended again). */
  purchased: Set<string>;
  /** The shared catalog revision stamp read in the same round trip (0 when none). */
  catalogRev: number;
  /** When the user was forgotten while the event log still owes that deletion (ForgetLedger), else null. */
  forgottenAt: number | null;
}

/** A model version whose per-user state the write path maintains. */
export interface ModelKey {
  version: string;
  /** Floats in the state vector (manifest `state.size`). */
  stateSize: number;
}

/**
 * An accepted event as it waits in the user's pending list and as the fold sees it. Model
 * independent: the fold resolves `itemId` per model version. Add optional fields here (and to
 * `logRow`) to carry more into the log.
 */
export interface PendingEvent {
  /** Per-user sequence number, assigned atomically when the event was appended. */
  seq: number;
  /** The client's event_id, or a generated `auto:` key (so the log stays idempotent). */
  key: string;
  itemId: string;
  type: string;
  /** When it happened, ms since the epoch. */
  ts: number;
  /** When it was accepted, ms since the epoch. */
  receivedAt: number;
}

/** One user's part of an `enter` call. */
export interface EnterCall {
  userId: string;
  /** Events to append in order (none: only check progress or take the lease). */
  events: { event: Omit<PendingEvent, "seq">; dedup: boolean }[];
  /** Item ids to add to the user's purchases. */
  purchases: readonly string[];
  /** Wait until pending entries up to this seq are folded; 0: everything pending after this call. */
  need: number;
  /** Lease token of this request. */
  token: string;
  /** Return the user's purchases also when the phase is "done". */
  wantPurchased: boolean;
}

export interface EnterReply {
  /** Per appended event: its pending seq, or 0 when its event_id was already accepted. */
  seqs: number[];
  /**
   * done: every entry up to `need` is folded (states are current);
   * lease: this request holds the user's lease and must fold `pending` and commit;
   * wait: someone else holds the lease; ask again later with the same `need`.
   */
  phase: "done" | "lease" | "wait";
  need: number;
  /** done and lease: one per asked model version, in order. */
  states: StateRead[];
  /** lease, or done when asked. */
  purchased: Set<string>;
  /** done and lease: when the user was forgotten while the log still owes that deletion, else null. */
  forgottenAt: number | null;
  /** lease: the oldest pending entries (at most `maxFold`), in order. */
  pending: PendingEvent[];
}

/** One user's fold result. */
export interface CommitCall {
  userId: string;
  token: string;
  /** How many pending entries were folded (from the head of the list). */
  count: number;
  /** Seq of the last folded entry. */
  lastSeq: number;
  /** The new state per model version (same order as the versions), null when unchanged. */
  states: (UserState | null)[];
  /** Event-log rows of the folded entries, JSON, for the outbox. */
  logRows: string[];
  nowMs: number;
}

export interface EnterOptions {
  /** Lease time to live, ms. */
  leaseMs: number;
  /** Most pending entries handed to one fold. */
  maxFold: number;
  nowMs: number;
}

export interface UserStateStore {
  /** Model version whose state `read` returns. */
  readonly modelVersion: string;
  /** Read the user's state, purchases and the catalog stamp (one round trip). */
  read(userId: string): Promise<Snapshot>;
  /**
   * For each call (one user each), atomically: skip events whose event_id was accepted within the
   * idempotency window, append the others to the pending list, add purchases, then report whether
   * the wanted entries are folded, or take the lease (returning states and pending), or say wait.
   * All calls go in one round trip.
   */
  enter(versions: readonly ModelKey[], calls: readonly EnterCall[], o: EnterOptions): Promise<EnterReply[]>;
  /**
   * For each call, atomically and only while the call's token still holds the lease: write the
   * states, remove exactly the folded entries, record progress, add the log rows to the outbox,
   * release the lease. Returns per call whether it was committed. One round trip.
   */
  commit(versions: readonly ModelKey[], calls: readonly CommitCall[]): Promise<boolean[]>;
  /**
   * Store a state for this store's model version only where the user has none (a state rebuilt
   * from the event log), remembering `eventIds` as accepted. False when one was there.
   */
  putIfAbsent(userId: string, state: UserState, eventIds: readonly string[], nowMs: number): Promise<boolean>;
  /**
   * Forget the user, atomically: states of this store's version and of `versions`, pending
   * events, de-duplication memory, purchases, their rows waiting in the outbox; and record that
   * their logged events are owed a deletion (`ForgetLedger`) until the log confirms it.
   */
  remove(userId: string, o: RemoveOptions): Promise<Removed>;
  /** Round-trip latency to the backend, milliseconds. */
  ping(): Promise<number>;
}

export interface RemoveOptions {
  /** Every model version that may hold a state of the user (the registry's, retired ones too). */
  versions: readonly string[];
  nowMs: number;
}

export interface Removed {
  /** Whether any key of the user existed. */
  existed: boolean;
  /** Rows of the user taken out of the outbox (never to be logged). */
  outboxRows: number;
  /** The time of the deletion (ms): logged events received up to then are deleted. */
  forgottenAt: number;
}

/**
 * Deletions the event log still owes: a user forgotten while D1 was down (or before it
 * confirmed). Drains settle them; rebuilds replay nothing received before `forgottenAt`.
 */
export interface ForgetLedger {
  /** Up to `n` owed deletions. */
  owedForgets(n: number): Promise<{ userId: string; forgottenAt: number }[]>;
  /** The log confirmed this deletion (kept when a later deletion of the user replaced it). */
  settleForget(userId: string, forgottenAt: number): Promise<void>;
  /** When the user was forgotten, while the log still owes the deletion; else null. */
  forgottenAt(userId: string): Promise<number | null>;
  /** Delete the user's states of these model versions (versions no event advances any more). */
  dropStates(userId: string, versions: readonly string[]): Promise<void>;
}

/**
 * Event-log rows committed with the states, waiting to be stored in D1. Rows are removed only
 * after D1 confirmed them; reading and removing are idempotent, so several drainers may overlap.
 */
export interface EventOutbox {
  /** The oldest `n` rows (commit order), without removing them. */
  peekOutbox(n: number): Promise<string[]>;
  /** Remove these exact rows (once they are in D1). */
  ackOutbox(rows: readonly string[]): Promise<void>;
  /** Rows waiting. */
  outboxSize(): Promise<number>;
}

/** The backend did not answer in time or failed; nothing can be assumed about it. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}
