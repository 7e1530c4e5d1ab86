/**
 * SharedStore on Redis (Upstash REST). Keys:
 *   gru:catalog:rev       highest published catalog revision (raised atomically, never lowered)
 *   gru:doc:<name>        cached JSON documents (popularity lists)
 *   gru:lock:<name>       short job locks (SET NX PX)
 *   gru:list:<name>       durable lists (event-log spill)
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { guarded, redisClient } from "./redis-client";
import type { SharedStore } from "./shared";

const RAISE_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if n > cur then redis.call('SET', KEYS[1], ARGV[1]) return n end
return cur`;

const raiseScripts = new WeakMap<Redis, ReturnType<Redis["createScript"]>>();

export class RedisSharedStore implements SharedStore {
  private readonly redis: Redis;
  private readonly raise: ReturnType<Redis["createScript"]>;

  constructor(private readonly o: { url: string; token: string; timeoutMs: number }) {
    this.redis = redisClient(o.url, o.token, o.timeoutMs);
    let raise = raiseScripts.get(this.redis);
    if (!raise) raiseScripts.set(this.redis, (raise = this.redis.createScript(RAISE_LUA)));
    this.raise = raise;
  }

  private call<T>(what: string, fn: () => Promise<T>) {
    return guarded(what, this.o.timeoutMs, fn);
  }

  async catalogRev() {
    return Number((await this.call("catalog rev", () => this.redis.get<string>("gru:catalog:rev"))) ?? 0);
  }

  async raiseCatalogRev(rev: number) {
    await this.call("catalog rev", () => this.raise.exec(["gru:catalog:rev"], [String(rev)]));
  }

  async getDoc<T>(name: string): Promise<T | null> {
    const s = await this.call(`get ${name}`, () => this.redis.get<string>(`gru:doc:${name}`));
    return s ? (JSON.parse(s) as T) : null;
  }

  async putDoc(name: string, value: unknown, ttlSeconds: number) {
    await this.call(`put ${name}`, () => this.redis.set(`gru:doc:${name}`, JSON.stringify(value), { ex: ttlSeconds }));
  }

  async tryLock(name: string, ttlMs: number) {
    return (await this.call(`lock ${name}`, () => this.redis.set(`gru:lock:${name}`, "1", { nx: true, px: ttlMs }))) !== null;
  }

  async unlock(name: string) {
    await this.call(`unlock ${name}`, () => this.redis.del(`gru:lock:${name}`));
  }

  async pushList(name: string, rows: readonly string[]) {
    if (rows.length) await this.call(`push ${name}`, () => this.redis.rpush(`gru:list:${name}`, ...rows));
  }

  async peekList(name: string, n: number) {
    return (await this.call(`read ${name}`, () => this.redis.lrange<string>(`gru:list:${name}`, 0, n - 1))) ?? [];
  }

  async dropList(name: string, n: number) {
    await this.call(`trim ${name}`, () => this.redis.ltrim(`gru:list:${name}`, n, -1));
  }
}
