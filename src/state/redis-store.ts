/**
 * UserStateStore and EventOutbox on Redis through the Upstash REST protocol (@upstash/redis), the
 * same client in production (Upstash) and locally (our REST bridge in front of redis-server).
 *
 * Keys (the braces group a user's keys):
 *   gru:<model version>:{<user>}:state   base64 state record, sliding TTL (PX, refreshed on write)
 *   gru:{<user>}:pending                 LIST "<seq> <event JSON>" accepted, not yet folded
 *   gru:{<user>}:fold                    HASH seq (last appended), folded (last folded)
 *   gru:{<user>}:dedup                   ZSET event_id -> accepted-at ms, trimmed to the window
 *   gru:{<user>}:lease                   the fold lease (SET NX PX, random token)
 *   gru:{<user>}:purchased               SET of purchased item ids, sliding TTL
 *   gru:outbox:eventlog                  ZSET event-log row JSON -> commit time ms (the outbox)
 *   gru:forget:owed                      HASH user -> time forgotten (ms), until D1 deleted their log
 * The scripts are in redis-scripts.ts. Every call has a timeout (AbortSignal) and no client-side
 * retries: the caller decides.
 */
import { decodeState, encodeState, fromBase64, StateCodecError, toBase64, type UserState } from "./codec";
import { guarded, redisClient } from "./redis-client";
import { COMMIT, ENTER, FORGET, PUT_IF_ABSENT, READ, SETTLE_FORGET, evalAll, evalShared } from "./redis-scripts";
import type { CommitCall, EnterCall, EnterOptions, EnterReply, EventOutbox, ForgetLedger, ModelKey, PendingEvent, RemoveOptions, Removed, Snapshot, StateRead, UserStateStore } from "./store";

export interface RedisStoreOptions {
  url: string;
  token: string;
  /** Version whose state `read` returns (the serving model). */
  modelVersion: string;
  stateSize: number;
  /** Sliding TTL of a state record, pending list and purchases, seconds. */
  ttlSeconds: number;
  /** How long accepted event ids are remembered, seconds. */
  dedupWindowSeconds: number;
  /** Timeout of each call, milliseconds. */
  timeoutMs: number;
}

/** The outbox key (the former event-log spill list is drained beside it, see eventlog/outbox.ts). */
export const OUTBOX_KEY = "gru:outbox:eventlog";
/** Users forgotten whose logged events D1 has not confirmed deleting yet: HASH user -> forgotten at (ms). */
export const OWED_FORGET_KEY = "gru:forget:owed";

/** How every outbox row of a user starts (rows are `outboxEntry` JSON, `user_id` first). */
export function outboxPrefix(userId: string): string {
  return `{"user_id":${JSON.stringify(userId)},`;
}
const CATALOG_REV_KEY = "gru:catalog:rev";

/** Decode a stored record; an unreadable one is reported, not thrown. */
export function decodeRead(raw: string | null, version: string, stateSize: number): StateRead {
  if (raw === null) return { raw, state: null };
  try {
    return { raw, state: decodeState(fromBase64(raw), version, stateSize) };
  } catch (e) {
    if (e instanceof StateCodecError) return { raw, state: null, corrupt: e.message };
    throw e;
  }
}

const str = (x: unknown): string | null => (typeof x === "string" && x !== "" ? x : null);

function parsePending(entry: string): PendingEvent {
  const sp = entry.indexOf(" ");
  return { seq: Number(entry.slice(0, sp)), ...(JSON.parse(entry.slice(sp + 1)) as Omit<PendingEvent, "seq">) };
}

export class RedisStateStore implements UserStateStore, EventOutbox, ForgetLedger {
  readonly modelVersion: string;
  private readonly redis;

  constructor(private readonly o: RedisStoreOptions) {
    this.modelVersion = o.modelVersion;
    this.redis = redisClient(o.url, o.token, o.timeoutMs);
  }

  /** Key of the user's state record for a model version (default: the serving one). */
  stateKey(userId: string, version = this.o.modelVersion) {
    return `gru:${version}:{${userId}}:state`;
  }

  /** Key of the user's accepted-event-id set (shared by all model versions). */
  dedupKey(userId: string) {
    return `gru:{${userId}}:dedup`;
  }

  /** Key of the user's purchased-item set (shared by all model versions). */
  purchasedKey(userId: string) {
    return `gru:{${userId}}:purchased`;
  }

  pendingKey(userId: string) {
    return `gru:{${userId}}:pending`;
  }

  foldKey(userId: string) {
    return `gru:{${userId}}:fold`;
  }

  leaseKey(userId: string) {
    return `gru:{${userId}}:lease`;
  }

  private call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return guarded(what, this.o.timeoutMs, fn);
  }

  async read(userId: string): Promise<Snapshot> {
    const [out] = await this.call("read", () =>
      evalAll(this.redis, READ, [{ keys: [this.stateKey(userId), this.purchasedKey(userId), CATALOG_REV_KEY, OWED_FORGET_KEY], args: [userId] }]),
    );
    const [raw, purchased, rev, owed] = out as [unknown, unknown, unknown, unknown];
    return {
      ...decodeRead(str(raw), this.o.modelVersion, this.o.stateSize),
      purchased: new Set(Array.isArray(purchased) ? (purchased as string[]) : []),
      catalogRev: Number(rev) || 0,
      forgottenAt: str(owed) === null ? null : Number(owed),
    };
  }

  private userKeys(userId: string, extra: readonly string[], versions: readonly ModelKey[]) {
    return [this.pendingKey(userId), this.foldKey(userId), this.dedupKey(userId), this.leaseKey(userId), ...extra, ...versions.map((v) => this.stateKey(userId, v.version))];
  }

  async enter(versions: readonly ModelKey[], calls: readonly EnterCall[], o: EnterOptions): Promise<EnterReply[]> {
    const ttlMs = String(this.o.ttlSeconds * 1000);
    const out = await this.call("enter", () =>
      evalShared(
        this.redis,
        ENTER,
        calls.map((c) => ({
          keys: this.userKeys(c.userId, [this.purchasedKey(c.userId), OWED_FORGET_KEY], versions),
          args: [
            String(Math.floor(o.nowMs)),
            String(this.o.dedupWindowSeconds * 1000),
            String(o.leaseMs),
            c.token,
            String(c.need),
            String(o.maxFold),
            ttlMs,
            String(c.events.length),
            String(c.purchases.length),
            c.wantPurchased ? "1" : "0",
            c.userId,
            ...c.events.flatMap((e) => [e.event.key, e.dedup ? "1" : "0", JSON.stringify(e.event)]),
            ...c.purchases,
          ],
        })),
      ),
    );
    return out.map((r) => {
      const [seqs, phase, need, purchased, pending, owed, ...states] = r as [unknown[], string, unknown, string[], string[], unknown, ...unknown[]];
      return {
        seqs: seqs.map(Number),
        phase: phase as EnterReply["phase"],
        need: Number(need),
        purchased: new Set(purchased),
        pending: pending.map(parsePending),
        forgottenAt: str(owed) === null ? null : Number(owed),
        states: phase === "wait" ? [] : versions.map((v, i) => decodeRead(str(states[i]), v.version, v.stateSize)),
      };
    });
  }

  async commit(versions: readonly ModelKey[], calls: readonly CommitCall[]): Promise<boolean[]> {
    const out = await this.call("commit", () =>
      evalShared(
        this.redis,
        COMMIT,
        calls.map((c) => ({
          keys: this.userKeys(c.userId, [OUTBOX_KEY], versions),
          args: [
            c.token,
            String(c.count),
            String(c.lastSeq),
            String(this.o.ttlSeconds * 1000),
            String(Math.floor(c.nowMs)),
            String(this.o.dedupWindowSeconds * 1000),
            String(versions.length),
            ...versions.map((v, i) => {
              const s = c.states[i];
              return s ? toBase64(encodeState(s, v.version)) : "";
            }),
            ...c.logRows,
          ],
        })),
      ),
    );
    return out.map((r) => Number(r) === 1);
  }

  async putIfAbsent(userId: string, state: UserState, eventIds: readonly string[], nowMs: number): Promise<boolean> {
    const text = toBase64(encodeState(state, this.o.modelVersion));
    const [r] = await this.call("put", () =>
      evalAll(this.redis, PUT_IF_ABSENT, [
        {
          keys: [this.stateKey(userId), this.dedupKey(userId)],
          args: [text, String(this.o.ttlSeconds * 1000), String(Math.floor(nowMs)), String(this.o.dedupWindowSeconds * 1000), ...eventIds],
        },
      ]),
    );
    return Number(r) === 1;
  }

  async remove(userId: string, o: RemoveOptions): Promise<Removed> {
    const versions = [...new Set([this.o.modelVersion, ...o.versions])];
    const keys = [
      ...versions.map((v) => this.stateKey(userId, v)),
      this.dedupKey(userId),
      this.purchasedKey(userId),
      this.pendingKey(userId),
      this.foldKey(userId),
      this.leaseKey(userId),
      `gru:${this.o.modelVersion}:{${userId}}:dedup`, // where event ids were remembered before write combining
    ];
    const [r] = await this.call("delete", () =>
      evalAll(this.redis, FORGET, [{ keys: [OUTBOX_KEY, OWED_FORGET_KEY, ...keys], args: [userId, String(Math.floor(o.nowMs)), outboxPrefix(userId)] }]),
    );
    const [deleted, rows] = r as [number, number];
    return { existed: Number(deleted) > 0, outboxRows: Number(rows), forgottenAt: Math.floor(o.nowMs) };
  }

  async dropStates(userId: string, versions: readonly string[]): Promise<void> {
    if (versions.length) await this.call("delete", () => this.redis.del(...versions.map((v) => this.stateKey(userId, v))));
  }

  async owedForgets(n: number): Promise<{ userId: string; forgottenAt: number }[]> {
    const out: { userId: string; forgottenAt: number }[] = [];
    let cursor = "0";
    do {
      const [next, flat] = (await this.call("owed deletions", () => this.redis.hscan(OWED_FORGET_KEY, cursor, { count: 200 }))) as [string | number, unknown[]];
      for (let i = 0; i + 1 < flat.length; i += 2) out.push({ userId: String(flat[i]), forgottenAt: Number(flat[i + 1]) });
      cursor = String(next);
    } while (cursor !== "0" && out.length < n);
    return out.slice(0, n);
  }

  async settleForget(userId: string, forgottenAt: number): Promise<void> {
    await this.call("owed deletion", () => evalAll(this.redis, SETTLE_FORGET, [{ keys: [OWED_FORGET_KEY], args: [userId, String(forgottenAt)] }]));
  }

  async forgottenAt(userId: string): Promise<number | null> {
    const v = await this.call("owed deletion", () => this.redis.hget(OWED_FORGET_KEY, userId));
    return v === null || v === undefined ? null : Number(v);
  }

  async ping(): Promise<number> {
    const t = Date.now();
    await this.call("ping", () => this.redis.ping());
    return Date.now() - t;
  }

  async peekOutbox(n: number): Promise<string[]> {
    return ((await this.call("outbox read", () => this.redis.zrange(OUTBOX_KEY, 0, n - 1))) as string[]) ?? [];
  }

  async ackOutbox(rows: readonly string[]): Promise<void> {
    if (rows.length) await this.call("outbox ack", () => this.redis.zrem(OUTBOX_KEY, ...rows));
  }

  async outboxSize(): Promise<number> {
    return Number(await this.call("outbox size", () => this.redis.zcard(OUTBOX_KEY)));
  }
}
