/**
 * Lua scripts run by many users' calls in one Upstash pipeline (one HTTP request, one
 * subrequest), sent by SHA-1 with EVAL only for the entries a server did not know yet.
 * Each script is atomic for its user; the pipeline is not a transaction across users.
 */
import type { Redis } from "@upstash/redis/cloudflare";

/** A Lua script and its lazily computed SHA-1. */
export class LuaScript {
  private digest?: Promise<string>;
  constructor(readonly text: string) {}

  sha1(): Promise<string> {
    return (this.digest ??= crypto.subtle.digest("SHA-1", new TextEncoder().encode(this.text)).then((b) =>
      [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join(""),
    ));
  }
}

export interface ScriptCall {
  keys: string[];
  args: string[];
}

type Outcome = { result: unknown; error?: string };

/**
 * Run each (script, call) in one pipeline and return the outcomes in order. Entries the server
 * answered NOSCRIPT (it never saw the script: they did not run) are sent again with EVAL in a
 * second pipeline.
 */
async function pipelined(redis: Redis, entries: readonly { script: LuaScript; call: ScriptCall }[]): Promise<Outcome[]> {
  const p = redis.pipeline();
  for (const e of entries) p.evalsha(await e.script.sha1(), e.call.keys, e.call.args);
  const out = (await p.exec({ keepErrors: true })) as Outcome[];
  const missing = out.flatMap((r, i) => (r.error && /NOSCRIPT/i.test(r.error) ? [i] : []));
  if (missing.length) {
    const p2 = redis.pipeline();
    for (const i of missing) p2.eval(entries[i]!.script.text, entries[i]!.call.keys, entries[i]!.call.args);
    const again = (await p2.exec({ keepErrors: true })) as Outcome[];
    missing.forEach((i, j) => (out[i] = again[j]!));
  }
  return out;
}

/** Run `script` once per call in one pipeline; results in order. Any error throws. */
export async function evalAll(redis: Redis, script: LuaScript, calls: readonly ScriptCall[]): Promise<unknown[]> {
  if (!calls.length) return [];
  const out = await pipelined(redis, calls.map((call) => ({ script, call })));
  const failed = out.find((r) => r.error);
  if (failed) throw new Error(failed.error);
  return out.map((r) => r.result);
}

interface Queued {
  script: LuaScript;
  call: ScriptCall;
  outcome?: Outcome & { cause?: unknown };
}

/** Most script calls one shared pipeline carries. */
const MAX_SHARED = 1000;

/**
 * Script calls of concurrent requests in one isolate share pipelines: at most one is in flight
 * per Redis client; calls arriving meanwhile wait for it and then go together in the next one,
 * sent by one of the requests that wait for them (so the request that sends is alive until the
 * answer). A lone request pays no extra latency; a burst pays a few round trips instead of one
 * per request. Per-call errors fail that call only; a failed pipeline fails all its calls.
 */
class SharedPipeline {
  private queue: Queued[] = [];
  private flight: Promise<void> | null = null;
  constructor(private readonly redis: Redis) {}

  async run(script: LuaScript, calls: readonly ScriptCall[]): Promise<unknown[]> {
    const mine: Queued[] = calls.map((call) => ({ script, call }));
    this.queue.push(...mine);
    while (mine.some((q) => !q.outcome)) {
      if (!this.flight) {
        const batch = this.queue.splice(0, MAX_SHARED);
        this.flight = this.send(batch).finally(() => (this.flight = null));
      }
      await this.flight;
    }
    const failed = mine.find((q) => q.outcome!.error);
    if (failed) throw failed.outcome!.cause ?? new Error(failed.outcome!.error);
    return mine.map((q) => q.outcome!.result);
  }

  private async send(batch: Queued[]): Promise<void> {
    try {
      const out = await pipelined(this.redis, batch);
      batch.forEach((q, i) => (q.outcome = out[i]!));
    } catch (e) {
      for (const q of batch) q.outcome = { result: null, error: (e as Error).message, cause: e };
    }
  }
}

const shared = new WeakMap<Redis, SharedPipeline>();

/** Like `evalAll`, sharing pipelines with concurrent requests of this isolate (see SharedPipeline). */
export function evalShared(redis: Redis, script: LuaScript, calls: readonly ScriptCall[]): Promise<unknown[]> {
  if (!calls.length) return Promise.resolve([]);
  let p = shared.get(redis);
  if (!p) shared.set(redis, (p = new SharedPipeline(redis)));
  return p.run(script, calls);
}

/**
 * State, purchases, the catalog stamp and an owed deletion of one user (the read path's single
 * round trip). KEYS: state, purchased, catalog rev, owed-deletion HASH. ARGV: user id.
 */
export const READ = new LuaScript(`
return {redis.call('GET', KEYS[1]) or '', redis.call('SMEMBERS', KEYS[2]), redis.call('GET', KEYS[3]) or '0', redis.call('HGET', KEYS[4], ARGV[1]) or ''}`);

/**
 * Append + event_id check + purchases, then: done / take the lease (states + pending) / wait.
 * KEYS: 1 pending, 2 fold meta (HASH seq, folded), 3 dedup ZSET, 4 lease, 5 purchased,
 *       6 owed-deletion HASH, 7.. state per version
 * ARGV: 1 now, 2 dedup window ms, 3 lease ms, 4 token, 5 need (0: all pending after this call),
 *       6 max entries to fold, 7 state ttl ms, 8 events n, 9 purchases m, 10 want purchases (1/0),
 *       11 user id, then n x (key, dedup 1/0, body), then m item ids.
 * Returns {seqs, phase, need, purchased, pending, forgotten at ('' when not owed), state per
 * version ('' when none)}.
 */
export const ENTER = new LuaScript(`
local now = tonumber(ARGV[1])
local cutoff = now - tonumber(ARGV[2])
local ttl = ARGV[7]
local n = tonumber(ARGV[8])
local m = tonumber(ARGV[9])
local seqs = {}
local pos = 12
local appended = false
for i = 1, n do
  local key, dd, body = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  pos = pos + 3
  local seen = false
  if dd == '1' then
    local sc = redis.call('ZSCORE', KEYS[3], key)
    seen = sc and tonumber(sc) >= cutoff
  end
  if seen then
    seqs[i] = 0
  else
    local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
    redis.call('RPUSH', KEYS[1], seq .. ' ' .. body)
    if dd == '1' then redis.call('ZADD', KEYS[3], now, key) end
    seqs[i] = seq
    appended = true
  end
end
if appended then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
if m > 0 then
  for i = 0, m - 1 do redis.call('SADD', KEYS[5], ARGV[pos + i]) end
  redis.call('PEXPIRE', KEYS[5], ttl)
end
local last = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local folded = tonumber(redis.call('HGET', KEYS[2], 'folded') or '0')
local need = tonumber(ARGV[5])
if need == 0 then need = last end
local function states(out)
  out[#out + 1] = redis.call('HGET', KEYS[6], ARGV[11]) or ''
  for k = 7, #KEYS do out[#out + 1] = redis.call('GET', KEYS[k]) or '' end
  return out
end
-- done; also when the counter went back (the user was forgotten meanwhile)
if folded >= need or last < need then
  local p = {}
  if ARGV[10] == '1' then p = redis.call('SMEMBERS', KEYS[5]) end
  return states({seqs, 'done', need, p, {}})
end
-- the lease is free, or already ours (a fold we did not get to within our lease): take / renew it
if redis.call('SET', KEYS[4], ARGV[4], 'NX', 'PX', ARGV[3]) or (redis.call('GET', KEYS[4]) == ARGV[4] and redis.call('PEXPIRE', KEYS[4], ARGV[3]) == 1) then
  return states({seqs, 'lease', need, redis.call('SMEMBERS', KEYS[5]), redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)})
end
return {seqs, 'wait', need, {}, {}}`);

/**
 * Commit a fold while the lease is ours: states, exact removal of the folded entries, progress,
 * log rows into the outbox, lease released. All or nothing.
 * KEYS: 1 pending, 2 fold meta, 3 dedup ZSET, 4 lease, 5 outbox ZSET, 6.. state per version
 * ARGV: 1 token, 2 folded count, 3 last folded seq, 4 state ttl ms, 5 now, 6 dedup window ms,
 *       7 versions v, then v state texts ('' unchanged), then log rows.
 * Returns 1, or 0 when the lease is no longer ours (nothing written).
 */
export const COMMIT = new LuaScript(`
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('HSET', KEYS[2], 'folded', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local v = tonumber(ARGV[7])
for i = 1, v do
  if ARGV[7 + i] ~= '' then redis.call('SET', KEYS[5 + i], ARGV[7 + i], 'PX', ARGV[4]) end
end
local now = tonumber(ARGV[5])
for i = 8 + v, #ARGV do redis.call('ZADD', KEYS[5], now, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[6])))
redis.call('DEL', KEYS[4])
return 1`);

/**
 * Store a state only where none is (a state rebuilt from the event log), remembering the replayed
 * event ids as accepted. KEYS: state, dedup ZSET. ARGV: text, ttl ms, now, dedup window ms, ids...
 * Returns 1, or 0 when a state was there (nothing written).
 */
export const PUT_IF_ABSENT = new LuaScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
for i = 5, #ARGV do redis.call('ZADD', KEYS[2], ARGV[3], ARGV[i]) end
if #ARGV > 4 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1`);

/**
 * Forget a user, atomically: every key of theirs, their rows still waiting in the outbox, and a
 * record that their logged events are still to be deleted from D1 (the owed-deletion hash; it
 * stays until the log confirms, so a drain or a rebuild never brings them back).
 * KEYS: 1 outbox ZSET, 2 owed-deletion HASH, 3.. the user's keys (states of every version,
 *       pending, fold, dedup, lease, purchased).
 * ARGV: 1 user id, 2 now ms, 3 the outbox rows' prefix for this user (`{"user_id":<id>,`).
 * Returns {keys deleted, outbox rows removed}. The outbox is read 1,000 rows at a time.
 */
export const FORGET = new LuaScript(`
local deleted = 0
for i = 3, #KEYS do deleted = deleted + redis.call('DEL', KEYS[i]) end
local prefix, plen = ARGV[3], string.len(ARGV[3])
local drop = {}
local n = redis.call('ZCARD', KEYS[1])
for start = 0, n - 1, 1000 do
  for _, row in ipairs(redis.call('ZRANGE', KEYS[1], start, start + 999)) do
    if string.sub(row, 1, plen) == prefix then drop[#drop + 1] = row end
  end
end
for i = 1, #drop, 500 do redis.call('ZREM', KEYS[1], unpack(drop, i, math.min(i + 499, #drop))) end
local prev = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) > prev then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return {deleted, #drop}`);

/** Drop an owed deletion once the log confirmed it, unless a later deletion replaced it. KEYS: owed HASH. ARGV: user, time. */
export const SETTLE_FORGET = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`);
