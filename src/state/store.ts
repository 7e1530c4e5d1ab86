/**
 * The user state store: the narrow interface the domain code depends on.
 * One record per (model version, user); event-id de-duplication lives beside it.
 */
import type { UserState } from "./codec";

/** What a read returns: the raw stored text (for compare-and-set) and the decoded state. */
export interface Snapshot {
  /** Exactly what is stored, or null when the user has no state. Pass it back to `commit`. */
  raw: string | null;
  /** The decoded state; null when absent or unreadable (see `corrupt`). */
  state: UserState | null;
  /** Why a stored record could not be decoded (it will be replaced by the next write). */
  corrupt?: string;
  /** The subset of the asked event ids already applied within the idempotency window. */
  seen: Set<string>;
  /** Item ids the user purchased (never recommended again). */
  purchased: Set<string>;
}

export interface UserStateStore {
  /** Model version this store's keys are namespaced by. */
  readonly modelVersion: string;
  /** Read the user's state and which of `eventIds` were already applied. */
  read(userId: string, eventIds?: readonly string[]): Promise<Snapshot>;
  /**
   * Write `next` only if the stored text still equals `expectedRaw` (null: still absent), and
   * remember `eventIds` as applied. Returns false on a conflict (someone wrote in between).
   */
  commit(userId: string, expectedRaw: string | null, next: UserState, eventIds: readonly string[], nowMs: number): Promise<boolean>;
  /** Remember purchases: user id -> purchased item ids (idempotent). */
  addPurchases(purchases: ReadonlyMap<string, readonly string[]>): Promise<void>;
  /** Forget the user (state, de-duplication memory, purchases). Returns whether anything existed. */
  remove(userId: string): Promise<boolean>;
  /** Round-trip latency to the backend, milliseconds. */
  ping(): Promise<number>;
}

/** The backend did not answer in time or failed; nothing can be assumed about it. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}
