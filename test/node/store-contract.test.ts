/**
 * Contract of UserStateStore, run against the real backend: RedisStateStore -> our Upstash REST
 * bridge -> redis-server. Any other implementation must pass the same suite.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { UserState } from "../../src/state/codec";
import { RedisStateStore } from "../../src/state/redis-store";
import { StoreUnavailableError } from "../../src/state/store";

const base = { url: inject("bridgeUrl"), token: inject("bridgeToken"), modelVersion: "contract-v1", stateSize: 8, ttlSeconds: 3600, dedupWindowSeconds: 60, timeoutMs: 2000 };
const store = new RedisStateStore(base);

function state(seq: number, eventCount = seq): UserState {
  return { seq, eventCount, sessionCount: 1, lastEventMs: 1e12, sessionStartMs: 1e12, updatedAtMs: 1e12, ringCapacity: 4, ring: [1, 2], vector: new Float32Array(8).fill(seq / 10) };
}

async function raw(cmd: (string | number)[]) {
  const r = await fetch(base.url, { method: "POST", headers: { authorization: `Bearer ${base.token}` }, body: JSON.stringify(cmd) });
  return ((await r.json()) as any).result;
}

let n = 0;
const user = () => `contract-user-${process.pid}-${n++}`;

describe("UserStateStore contract (Redis through the Upstash REST bridge)", () => {
  it("reads nothing for a new user", async () => {
    const s = await store.read(user(), ["a"]);
    expect(s).toEqual({ raw: null, state: null, seen: new Set(), purchased: new Set() });
  });

  it("commits against an absent record, then reads back the same state", async () => {
    const u = user();
    expect(await store.commit(u, null, state(1), ["e1"], Date.now())).toBe(true);
    const s = await store.read(u, ["e1", "e2"]);
    expect(s.state).toEqual(state(1));
    expect(s.seen).toEqual(new Set(["e1"]));
  });

  it("refuses a write whose expected record is stale (no lost update)", async () => {
    const u = user();
    await store.commit(u, null, state(1), [], Date.now());
    const a = await store.read(u);
    const b = await store.read(u);
    expect(await store.commit(u, a.raw, state(2), ["x"], Date.now())).toBe(true);
    expect(await store.commit(u, b.raw, state(2, 99), ["y"], Date.now())).toBe(false);
    const after = await store.read(u, ["x", "y"]);
    expect(after.state!.eventCount).toBe(2);
    expect(after.seen).toEqual(new Set(["x"]));
    expect(await store.commit(u, null, state(5), [], Date.now())).toBe(false);
  });

  it("sets a sliding TTL on the state and the dedup window on event ids", async () => {
    const u = user();
    await store.commit(u, null, state(1), ["e"], Date.now());
    const ttl = Number(await raw(["PTTL", store.stateKey(u)]));
    expect(ttl).toBeGreaterThan(3590_000);
    expect(ttl).toBeLessThanOrEqual(3600_000);
    const dttl = Number(await raw(["PTTL", store.dedupKey(u)]));
    expect(dttl).toBeGreaterThan(55_000);
    expect(dttl).toBeLessThanOrEqual(60_000);
  });

  it("forgets event ids older than the window", async () => {
    const u = user();
    const old = Date.now() - 120_000;
    await store.commit(u, null, state(1), ["old"], old);
    const s = await store.read(u, ["old"]);
    expect(s.seen.size).toBe(0);
  });

  it("reports an unreadable record as corrupt instead of throwing", async () => {
    const u = user();
    await raw(["SET", store.stateKey(u), "bm90IGEgcmVjb3Jk"]);
    const s = await store.read(u);
    expect(s.state).toBeNull();
    expect(s.raw).toBe("bm90IGEgcmVjb3Jk");
    expect(s.corrupt).toMatch(/too short|magic/);
  });

  it("keeps model versions apart", async () => {
    const u = user();
    await store.commit(u, null, state(1), [], Date.now());
    const other = new RedisStateStore({ ...base, modelVersion: "contract-v2" });
    expect((await other.read(u)).raw).toBeNull();
  });

  it("removes state, dedup memory and purchases, and says whether anything existed", async () => {
    const u = user();
    await store.commit(u, null, state(1), ["e"], Date.now());
    await store.addPurchases(new Map([[u, ["sku-1"]]]));
    expect(await store.remove(u)).toBe(true);
    expect(await store.read(u, ["e"])).toEqual({ raw: null, state: null, seen: new Set(), purchased: new Set() });
    expect(await store.remove(u)).toBe(false);
  });

  it("remembers purchases for every model version, idempotently, with the state's sliding TTL", async () => {
    const u = user();
    const v = user();
    await store.addPurchases(new Map([[u, ["a", "b"]], [v, ["c"]]]));
    await store.addPurchases(new Map([[u, ["b", "d"]]]));
    expect((await store.read(u)).purchased).toEqual(new Set(["a", "b", "d"]));
    expect((await store.read(v)).purchased).toEqual(new Set(["c"]));
    const other = new RedisStateStore({ ...base, modelVersion: "contract-v2" });
    expect((await other.read(u)).purchased).toEqual(new Set(["a", "b", "d"]));
    const ttl = Number(await raw(["TTL", store.purchasedKey(u)]));
    expect(ttl).toBeGreaterThan(3500);
    expect(ttl).toBeLessThanOrEqual(3600);
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
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it("fails fast with StoreUnavailableError when nothing listens", async () => {
    const s = new RedisStateStore({ ...base, url: "http://127.0.0.1:9" });
    await expect(s.commit("u", null, state(1), [], Date.now())).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it("fails with StoreUnavailableError on a wrong token", async () => {
    const s = new RedisStateStore({ ...base, token: "wrong" });
    await expect(s.read("u")).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
