/**
 * Shared (cross-isolate) facts that are not per user: the catalog revision stamp, the cached
 * popularity lists, short locks for background jobs, and the spill list of event-log rows that
 * could not be written to D1. Narrow on purpose; Redis implements it (redis-shared.ts).
 */
export interface SharedStore {
  /** Highest catalog revision any writer has published (0 when none). */
  catalogRev(): Promise<number>;
  /** Publish a catalog revision (kept only if higher than the stored one). */
  raiseCatalogRev(rev: number): Promise<void>;
  /** A cached JSON document, or null. */
  getDoc<T>(name: string): Promise<T | null>;
  putDoc(name: string, value: unknown, ttlSeconds: number): Promise<void>;
  /** Take a lock for `ttlMs`; false when someone holds it. */
  tryLock(name: string, ttlMs: number): Promise<boolean>;
  unlock(name: string): Promise<void>;
  /** Append rows to a durable list (event-log spill). */
  pushList(name: string, rows: readonly string[]): Promise<void>;
  /** The first `n` rows of a list, without removing them. */
  peekList(name: string, n: number): Promise<string[]>;
  /** Remove the first `n` rows of a list. */
  dropList(name: string, n: number): Promise<void>;
}
