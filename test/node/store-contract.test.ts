/**
 * Contract of UserStateStore and EventOutbox, run against the real backend: RedisStateStore -> our
 * Upstash REST bridge -> redis-server. Any other implementation must pass the same suite.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { UserState } from "../../src/state/codec";
import { RedisStateStore } from "../../src/state/redis-store";
import { emptySeen } from "../../src/state/seen";
import { type CommitCall, type EnterCall, type EnterOptions, type EnterReply, type ModelKey, StoreUnavailableError } from "../../src/state/store";

const base = { url: inject("bridgeUrl"), token: inject("bridgeToken"), modelVersion: "contract-v1", stateSize: 8, ttlSeconds: 3600, dedupWindowSeconds: 60, timeoutMs: 2000 };
const store = new RedisStateStore(base);

function state(seq: number, eventCount = seq): UserState {
  return { seq, eventCount, sessionCount: 1, lastEventMs: 1e12, sessionStartMs: 1e12, updatedAtMs: 1e12, ringCapacity: 4, ring: [1, 2], vector: new Float32Array(8).fill(seq / 10), seen: emptySeen() };
}

async function raw(cmd: (string | number)[]) {
  const r = await fetch(base.url, { method: "POST", headers: { authorization: `Bearer ${base.token}` }, body: JSON.stringify(cmd) });
  return ((await r.json()) as any).result;
}

let n = 0;
const user = () => `contract-user-${process.pid}-${n++}`;
const V1: ModelKey = { version: "contract-v1", stateSize: 8 };
const V2: ModelKey = { version: "contract-v2", stateSize: 8 };
const opts = (o: Partial<EnterOptions> = {}): EnterOptions => ({ leaseMs: 2000, maxFold: 1000, nowMs: Date.now(), ...o });

function call(userId: string, keys: (string | [string, boolean])[], o: Partial<EnterCall> = {}): EnterCall {
  const now = Date.now();
  return {
    userId,
    events: keys.map((k) => {
      const [key, dedup] = typeof k === "string" ? [k, true] : k;
      return { event: { key, itemId: `item-${key}`, type: "view", ts: now, receivedAt: now }, dedup };
    }),
    purchases: [],
    need: 0,
    token: "t1",
    wantPurchased: false,
    ...o,
  };
}

function commitOf(userId: string, r: EnterReply, states: (UserState | null)[], o: Partial<CommitCall> = {}): CommitCall {
  return {
    userId,
    token: "t1",
    count: r.pending.length,
    lastSeq: r.pending.at(-1)?.seq ?? 0,
    states,
    logRows: r.pending.map((p) => JSON.stringify({ user_id: userId, event_key: p.key })),
    nowMs: Date.now(),
    ...o,
  };
}

describe("UserStateStore contract (Redis through the Upstash REST bridge)", () => {
  it("reads nothing for a new user, and the catalog stamp in the same round trip", async () => {
    const s = await store.read(user());
    expect(s).toMatchObject({ raw: null, state: null, purchased: new Set() });
    expect(s.catalogRev).toBe(Number((await raw(["GET", "gru:catalog:rev"])) ?? 0));
  });

  it("appends events, hands the first caller the lease with every pending event, and commits the fold", async () => {
    const u = user();
    const [r] = await store.enter([V1], [call(u, ["e1", "e2"], { purchases: ["sku-9"] })], opts());
    expect(r).toMatchObject({ seqs: [1, 2], phase: "lease", need: 2, purchased: new Set(["sku-9"]), states: [{ raw: null, state: null }] });
    expect(r!.pending.map((p) => [p.seq, p.key, p.itemId])).toEqual([[1, "e1", "item-e1"], [2, "e2", "item-e2"]]);
    expect(await store.commit([V1], [commitOf(u, r!, [state(1, 2)])])).toEqual([true]);
    const s = await store.read(u);
    expect(s.state).toEqual(state(1, 2));
    expect(s.purchased).toEqual(new Set(["sku-9"]));
    expect(Number(await raw(["LLEN", store.pendingKey(u)]))).toBe(0);
    expect(await raw(["EXISTS", store.leaseKey(u)])).toBe(0);
    const [again] = await store.enter([V1], [call(u, [])], opts());
    expect(again).toMatchObject({ phase: "done", need: 2 });
    expect(again!.states[0]!.state).toEqual(state(1, 2));
  });

  it("answers an event_id accepted before as a duplicate (0), pending or folded, also inside one call", async () => {
    const u = user();
    const [a] = await store.enter([V1], [call(u, ["x", "x", ["auto:1", false]])], opts());
    expect(a!.seqs).toEqual([1, 0, 2]);
    const [b] = await store.enter([V1], [call(u, ["x", "y"], { token: "t2" })], opts());
    expect(b).toMatchObject({ seqs: [0, 3], phase: "wait", need: 3 }); // x is pending, t1 holds the lease
    await store.commit([V1], [commitOf(u, a!, [state(1)])]);
    const [c] = await store.enter([V1], [call(u, ["x", "y"], { token: "t3" })], opts());
    expect(c).toMatchObject({ seqs: [0, 0], phase: "lease" }); // y is still pending
    expect(c!.pending.map((p) => p.key)).toEqual(["y"]);
  });

  it("forgets event ids older than the window", async () => {
    const u = user();
    await store.enter([V1], [call(u, ["old"])], opts({ nowMs: Date.now() - 120_000 }));
    const [r] = await store.enter([V1], [call(u, ["old"], { token: "t2" })], opts());
    expect(r!.seqs).toEqual([2]);
  });

  it("refuses a commit whose lease expired or was taken over, and removes exactly the folded entries", async () => {
    const u = user();
    const [a] = await store.enter([V1], [call(u, ["a"])], opts({ leaseMs: 100 }));
    await new Promise((r) => setTimeout(r, 150));
    const [b] = await store.enter([V1], [call(u, ["b"], { token: "t2" })], opts());
    expect(b).toMatchObject({ phase: "lease" });
    expect(await store.commit([V1], [commitOf(u, a!, [state(1, 99)])])).toEqual([false]);
    await store.enter([V1], [call(u, ["c"], { token: "t3" })], opts()); // arrives during t2's fold
    expect(await store.commit([V1], [commitOf(u, b!, [state(1, 2)], { token: "t2" })])).toEqual([true]);
    expect((await store.read(u)).state!.eventCount).toBe(2);
    const [c] = await store.enter([V1], [call(u, [], { token: "t3" })], opts());
    expect(c).toMatchObject({ phase: "lease", need: 3 });
    expect(c!.pending.map((p) => p.key)).toEqual(["c"]);
  });

  it("puts the folded events' log rows into the outbox with the commit; rows leave only when acknowledged", async () => {
    const u = user();
    const [r] = await store.enter([V1], [call(u, ["o1", "o2"])], opts());
    const c = commitOf(u, r!, [state(1)]);
    await store.commit([V1], [c]);
    const waiting = await store.peekOutbox(100_000);
    for (const row of c.logRows) expect(waiting).toContain(row);
    await store.ackOutbox(c.logRows);
    const after = await store.peekOutbox(100_000);
    for (const row of c.logRows) expect(after).not.toContain(row);
    await store.ackOutbox(c.logRows); // idempotent
  });

  it("keeps several model versions' states, writing only the changed ones", async () => {
    const u = user();
    const [r] = await store.enter([V1, V2], [call(u, ["m"])], opts());
    expect(r!.states).toHaveLength(2);
    await store.commit([V1, V2], [commitOf(u, r!, [state(1), null])]);
    expect((await store.read(u)).state).toEqual(state(1));
    const other = new RedisStateStore({ ...base, modelVersion: "contract-v2" });
    expect((await other.read(u)).raw).toBeNull();
    const [d] = await store.enter([V1, V2], [call(u, [])], opts());
    expect(d!.states.map((s) => s.state?.seq ?? null)).toEqual([1, null]);
  });

  it("handles many users in one round trip", async () => {
    const us = Array.from({ length: 200 }, user);
    const replies = await store.enter([V1], us.map((u) => call(u, ["one"])), opts());
    expect(replies.map((r) => r.phase)).toEqual(Array(200).fill("lease"));
    expect(await store.commit([V1], us.map((u, i) => commitOf(u, replies[i]!, [state(1)])))).toEqual(Array(200).fill(true));
  });

  it("sets a sliding TTL on the state and the pending list, and the dedup window on event ids", async () => {
    const u = user();
    const [r] = await store.enter([V1], [call(u, ["e"], { purchases: ["p"] })], opts());
    expect(Number(await raw(["PTTL", store.pendingKey(u)]))).toBeGreaterThan(3590_000);
    await store.commit([V1], [commitOf(u, r!, [state(1)])]);
    const ttl = Number(await raw(["PTTL", store.stateKey(u)]));
    expect(ttl).toBeGreaterThan(3590_000);
    expect(ttl).toBeLessThanOrEqual(3600_000);
    const dttl = Number(await raw(["PTTL", store.dedupKey(u)]));
    expect(dttl).toBeGreaterThan(55_000);
    expect(dttl).toBeLessThanOrEqual(60_000);
    const pttl = Number(await raw(["TTL", store.purchasedKey(u)]));
    expect(pttl).toBeGreaterThan(3500);
    expect(pttl).toBeLessThanOrEqual(3600);
  });

  it("reports an unreadable record as corrupt instead of throwing", async () => {
    const u = user();
    await raw(["SET", store.stateKey(u), "bm90IGEgcmVjb3Jk"]);
    const s = await store.read(u);
    expect(s.state).toBeNull();
    expect(s.raw).toBe("bm90IGEgcmVjb3Jk");
    expect(s.corrupt).toMatch(/too short|magic/);
  });

  it("removes state, pending events, dedup memory and purchases, and says whether anything existed", async () => {
    const u = user();
    const [r] = await store.enter([V1], [call(u, ["e"], { purchases: ["sku-1"] })], opts());
    await store.commit([V1], [commitOf(u, r!, [state(1)])]);
    await store.enter([V1], [call(u, ["f"], { token: "t2" })], opts());
    expect((await store.remove(u, { versions: [], nowMs: Date.now() })).existed).toBe(true);
    expect(await store.read(u)).toMatchObject({ raw: null, state: null, purchased: new Set() });
    const [again] = await store.enter([V1], [call(u, ["e"], { token: "t3" })], opts());
    expect(again).toMatchObject({ seqs: [1], phase: "lease" });
    expect(again!.pending.map((p) => p.key)).toEqual(["e"]);
    await store.remove(u, { versions: [], nowMs: Date.now() });
    expect((await store.remove(u, { versions: [], nowMs: Date.now() })).existed).toBe(false);
  });

  it("removes the user's states of every version named and their rows waiting in the outbox, and no one else's", async () => {
    const [u, other] = [user(), user()];
    const [r] = await store.enter([V1, V2], [call(u, ["e1", "e2"])], opts());
    const row = (id: string, key: string) => JSON.stringify({ user_id: id, event_key: key, item_id: "i", type: "view", ts: 1, received_at: 1, in_model: true, model_version: "v", n: 1 });
    await store.commit([V1, V2], [{ ...commitOf(u, r!, [state(1), state(2)]), logRows: [row(u, "e1"), row(u, "e2")] }]);
    const before = await store.peekOutbox(100_000);
    expect(before).toEqual(expect.arrayContaining([row(u, "e1"), row(u, "e2")]));
    const other1 = row(other, "x1");
    await raw(["ZADD", "gru:outbox:eventlog", "1", other1]);
    const t = Date.now();
    const removed = await store.remove(u, { versions: ["contract-v2"], nowMs: t });
    expect(removed).toEqual({ existed: true, outboxRows: 2, forgottenAt: t });
    expect(await store.peekOutbox(100_000)).not.toEqual(expect.arrayContaining([row(u, "e1")]));
    expect(await store.peekOutbox(100_000)).toEqual(expect.arrayContaining([other1]));
    expect(await raw(["EXISTS", store.stateKey(u, "contract-v1"), store.stateKey(u, "contract-v2")])).toBe(0);
    // The ledger owes the log's part until it is settled, and a later deletion replaces it.
    expect(await store.forgottenAt(u)).toBe(t);
    expect(await store.owedForgets(100_000)).toEqual(expect.arrayContaining([{ userId: u, forgottenAt: t }]));
    await store.settleForget(u, t - 1);
    expect(await store.forgottenAt(u)).toBe(t);
    await store.settleForget(u, t);
    expect(await store.forgottenAt(u)).toBeNull();
    await raw(["ZREM", "gru:outbox:eventlog", other1]);
  });

  it("remembers purchases for every model version, idempotently", async () => {
    const u = user();
    await store.enter([V1], [call(u, [], { purchases: ["a", "b"] }), call(user(), [], { purchases: ["c"] })], opts());
    await store.enter([V1], [call(u, [], { purchases: ["b", "d"] })], opts());
    expect((await store.read(u)).purchased).toEqual(new Set(["a", "b", "d"]));
    const other = new RedisStateStore({ ...base, modelVersion: "contract-v2" });
    expect((await other.read(u)).purchased).toEqual(new Set(["a", "b", "d"]));
  });

  it("measures a ping", async () => {
    expect(await store.ping()).toBeGreaterThanOrEqual(0);
  });
});

describe("UserStateStore failure modes", () => {
  let hang: Server;
  let hangUrl = "";
  beforeAll(async () => {
    hang = createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => hang.listen(0, "127.0.0.1", () => r()));
    hangUrl = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    hang.closeAllConnections();
    hang.close();
  });

  it("times out a call that gets no answer, after the configured limit", async () => {
    const s = new RedisStateStore({ ...base, url: hangUrl, timeoutMs: 200 });
    const t = Date.now();
    await expect(s.read("u")).rejects.toThrow(/timed out after 200 ms/);
    await expect(s.enter([V1], [call("u", ["e"])], opts())).rejects.toThrow(/timed out after 200 ms/);
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it("fails fast with StoreUnavailableError when nothing listens", async () => {
    const s = new RedisStateStore({ ...base, url: "http://127.0.0.1:9" });
    await expect(s.commit([V1], [{ userId: "u", token: "t", count: 0, lastSeq: 0, states: [state(1)], logRows: [], nowMs: Date.now() }])).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it("fails with StoreUnavailableError on a wrong token", async () => {
    const s = new RedisStateStore({ ...base, token: "wrong" });
    await expect(s.read("u")).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
