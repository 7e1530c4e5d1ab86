/**
 * UserStateStore on Redis through the Upstash REST protocol (@upstash/redis), the same client in
 * production (Upstash) and locally (our REST bridge in front of redis-server).
 *
 * Keys (the braces keep a user's keys in one cluster slot):
 *   gru:<model version>:{<user id>}:state   base64 state record, sliding TTL (PX, refreshed on write)
 *   gru:<model version>:{<user id>}:dedup   ZSET event_id -> applied-at ms, trimmed to the window
 *   gru:{<user id>}:purchased               SET of purchased item ids (model independent), sliding TTL
 * Writes are compare-and-set in one Lua script (sent by SHA, EVAL only on a server's first use),
 * so concurrent writers never lose an update.
 * Every call has a timeout (AbortSignal) and no client-side retries: the caller decides.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { decodeState, encodeState, fromBase64, StateCodecError, toBase64, type UserState } from "./codec";
import { guarded, redisClient } from "./redis-client";
import type { Snapshot, UserStateStore } from "./store";

const READ_LUA = `
local st = redis.call('GET', KEYS[1]) or ''
local out = {st, redis.call('SMEMBERS', KEYS[3])}
local cutoff = tonumber(ARGV[1])
for i = 2, #ARGV do
  local sc = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if sc and tonumber(sc) >= cutoff then out[i + 1] = 1 else out[i + 1] = 0 end
end
return out`;

const COMMIT_LUA = `
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if #ARGV > 5 then
  local now = tonumber(ARGV[4])
  for i = 6, #ARGV do redis.call('ZADD', KEYS[2], now, ARGV[i]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[5])))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1`;

export interface RedisStoreOptions {
  url: string;
  token: string;
  modelVersion: string;
  stateSize: number;
  /** Sliding TTL of a state record, seconds. */
  ttlSeconds: number;
  /** How long applied event ids are remembered, seconds. */
  dedupWindowSeconds: number;
  /** Timeout of each call, milliseconds. */
  timeoutMs: number;
}

interface Client {
  redis: Redis;
  /** EVALSHA with a fallback to EVAL when the server does not have the script yet. */
  read: ReturnType<Redis["createScript"]>;
  commit: ReturnType<Redis["createScript"]>;
}

const scripts = new WeakMap<Redis, Client>();

function client(url: string, token: string, timeoutMs: number): Client {
  const redis = redisClient(url, token, timeoutMs);
  let c = scripts.get(redis);
  if (!c) scripts.set(redis, (c = { redis, read: redis.createScript(READ_LUA), commit: redis.createScript(COMMIT_LUA) }));
  return c;
}

export class RedisStateStore implements UserStateStore {
  readonly modelVersion: string;
  private readonly c: Client;

  constructor(private readonly o: RedisStoreOptions) {
    this.modelVersion = o.modelVersion;
    this.c = client(o.url, o.token, o.timeoutMs);
  }

  /** Key of the user's state record. */
  stateKey(userId: string) {
    return `gru:${this.o.modelVersion}:{${userId}}:state`;
  }

  /** Key of the user's applied-event-id set. */
  dedupKey(userId: string) {
    return `gru:${this.o.modelVersion}:{${userId}}:dedup`;
  }

  /** Key of the user's purchased-item set (shared by all model versions). */
  purchasedKey(userId: string) {
    return `gru:{${userId}}:purchased`;
  }

  private call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return guarded(what, this.o.timeoutMs, fn);
  }

  async read(userId: string, eventIds: readonly string[] = []): Promise<Snapshot> {
    const cutoff = Date.now() - this.o.dedupWindowSeconds * 1000;
    const out = await this.call("read", () =>
      this.c.read.exec([this.stateKey(userId), this.dedupKey(userId), this.purchasedKey(userId)], [String(cutoff), ...eventIds]),
    ) as unknown[];
    const raw = typeof out[0] === "string" && out[0] !== "" ? out[0] : null;
    const purchased = new Set(Array.isArray(out[1]) ? (out[1] as string[]) : []);
    const seen = new Set<string>();
    eventIds.forEach((id, i) => {
      if (Number(out[i + 2]) === 1) seen.add(id);
    });
    if (raw === null) return { raw, state: null, seen, purchased };
    try {
      return { raw, state: decodeState(fromBase64(raw), this.o.modelVersion, this.o.stateSize), seen, purchased };
    } catch (e) {
      if (e instanceof StateCodecError) return { raw, state: null, corrupt: e.message, seen, purchased };
      throw e;
    }
  }

  async commit(userId: string, expectedRaw: string | null, next: UserState, eventIds: readonly string[], nowMs: number): Promise<boolean> {
    const text = toBase64(encodeState(next, this.o.modelVersion));
    const r = await this.call("commit", () =>
      this.c.commit.exec([this.stateKey(userId), this.dedupKey(userId)], [
        expectedRaw ?? "",
        text,
        String(this.o.ttlSeconds * 1000),
        String(Math.floor(nowMs)),
        String(this.o.dedupWindowSeconds * 1000),
        ...eventIds,
      ]),
    );
    return Number(r) === 1;
  }

  async addPurchases(purchases: ReadonlyMap<string, readonly string[]>): Promise<void> {
    if (!purchases.size) return;
    const p = this.c.redis.pipeline();
    for (const [userId, itemIds] of purchases) {
      if (!itemIds.length) continue;
      const key = this.purchasedKey(userId);
      p.sadd(key, itemIds[0]!, ...itemIds.slice(1));
      p.expire(key, this.o.ttlSeconds);
    }
    await this.call("purchases", () => p.exec());
  }

  async remove(userId: string): Promise<boolean> {
    const n = await this.call("delete", () => this.c.redis.del(this.stateKey(userId), this.dedupKey(userId), this.purchasedKey(userId)));
    return Number(n) > 0;
  }

  async ping(): Promise<number> {
    const t = Date.now();
    await this.call("ping", () => this.c.redis.ping());
    return Date.now() - t;
  }
}
