/**
 * Per-user write combining on the real parts (workerd, redis-server through the REST bridge):
 * concurrent events for one user are all applied once without contention errors, a writer that
 * died holding the lease blocks nobody beyond the lease's time to live, and a batch across many
 * users stays within the free plan's subrequest count.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RedisStateStore } from "../../src/state/redis-store";
import { api, apiWith, ev, logged, manifest, uid } from "./helpers";

const items = manifest.items.ids;
const E = env as unknown as Record<string, string>;
const faultUrl = E.FAULT_REDIS_URL!;
const control = async (path: string, body: unknown) => (await fetch(`${faultUrl}${path}`, { method: "POST", body: JSON.stringify(body) })).json() as Promise<any>;

describe("write combining", () => {
  it("applies 100 concurrent events for one user exactly once each, none refused, and logs each once", async () => {
    const u = uid("burst");
    await api("/v1/events", { body: ev(uid("warm-up"), items[0]!) }); // the model is loaded, as in a warm isolate
    const t0 = Date.now();
    const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => api("/v1/events", { body: ev(u, items[i % 50]!, { event_id: `b-${i}` }) })));
    const ms = Date.now() - t0;
    console.log(`100 concurrent events for one user: all answered in ${ms} ms`);
    expect(rs.map((r) => (r.status === 200 ? 200 : `${r.status} ${r.body?.error?.message}`))).toEqual(Array(100).fill(200));
    expect(rs.map((r) => r.body.results[0].status)).toEqual(Array(100).fill("applied"));
    const s = (await api(`/v1/users/${u}`)).body;
    expect(s.event_count).toBe(100);
    // Each answer saw its own event in the state it reports.
    for (const r of rs) expect(r.body.users[0].state_version).toBeLessThanOrEqual(s.state_version);
    const rows = await logged(u, 100);
    expect(rows).toHaveLength(100);
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(100);
  });

  it("applies each event_id once when many requests resend the same events concurrently", async () => {
    const u = uid("dups");
    const ids = ["d1", "d2", "d3", "d4", "d5"];
    const batches = Array.from({ length: 30 }, (_, i) => ids.map((_, j) => ids[(i + j) % ids.length]!));
    const rs = await Promise.all(batches.map((b) => api("/v1/events", { body: b.map((id) => ev(u, items[Number(id.slice(1))]!, { event_id: id })) })));
    expect(rs.map((r) => r.status)).toEqual(Array(30).fill(200));
    const applied = rs.flatMap((r, i) => r.body.results.filter((x: any) => x.status === "applied").map((x: any) => batches[i]![x.index]));
    expect(applied.sort()).toEqual(ids);
    expect(rs.reduce((n, r) => n + r.body.duplicates, 0)).toBe(30 * 5 - 5);
    expect((await api(`/v1/users/${u}`)).body.event_count).toBe(5);
    expect((await logged(u, 5)).map((r) => r.event_id).sort()).toEqual(ids);
  });

  it("folds past a writer that died holding the lease once the lease expires, its events included", async () => {
    const u = uid("dead-holder");
    const store = new RedisStateStore({
      url: E.UPSTASH_REDIS_REST_URL!,
      token: E.UPSTASH_REDIS_REST_TOKEN!,
      modelVersion: manifest.version,
      stateSize: manifest.state.size,
      ttlSeconds: 3600,
      dedupWindowSeconds: 3600,
      timeoutMs: 2000,
    });
    const now = Date.now();
    const leaseMs = 1500;
    // A request appends its event, takes the lease, and dies before folding.
    const [dead] = await store.enter(
      [{ version: manifest.version, stateSize: manifest.state.size }],
      [{ userId: u, events: [{ event: { key: "dead-1", itemId: items[1]!, type: "view", ts: now, receivedAt: now }, dedup: true }], purchases: [], need: 0, token: "dead", wantPurchased: false }],
      { leaseMs, maxFold: 1000, nowMs: now },
    );
    expect(dead!.phase).toBe("lease");
    const t = Date.now();
    const r = await api("/v1/events", { body: ev(u, items[2]!, { event_id: "after" }) });
    const waited = Date.now() - t;
    expect(r.status).toBe(200);
    expect(r.body.results[0].status).toBe("applied");
    expect(waited).toBeGreaterThanOrEqual(leaseMs - (t - now) - 100); // it did wait for the lease...
    expect(waited).toBeLessThan(leaseMs + 5000); // ...and no longer than its time to live (plus test load)
    expect(r.body.users[0]).toMatchObject({ event_count: 2, state_version: 1 });
    expect((await logged(u, 2)).map((x) => x.event_id)).toEqual(["dead-1", "after"]);
  });

  it("makes at most 50 Redis calls for 500 events of 500 different users", async () => {
    const tag = `fan-${crypto.randomUUID()}`;
    await control("/__count", { match: tag });
    const r = await apiWith({ UPSTASH_REDIS_REST_URL: faultUrl }, "/v1/events", {
      body: Array.from({ length: 500 }, (_, i) => ev(`${tag}-${i}`, items[i % 200]!, { event_id: `f-${i}` })),
    });
    expect(r.status, JSON.stringify(r.body.error)).toBe(200);
    expect(r.body.applied).toBe(500);
    await logged(`${tag}-499`, 1); // the log write after the response is done
    const { count } = await control("/__count", {});
    console.log(`500 events for 500 users: ${count} Redis calls (Upstash subrequests), the log write after the response included`);
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThanOrEqual(50);
  });
});

describe("write combining on a slow fold", () => {
  it("commits what it folded before its leases run out, and folds the rest in the next round", async () => {
    const tag = `slow-${crypto.randomUUID()}`;
    // A lease of 100 ms: folding 300 users takes longer than half of it, even on an idle machine.
    const r = await apiWith({ FOLD_LEASE_MS: "100" }, "/v1/events", {
      body: Array.from({ length: 300 }, (_, i) => ev(`${tag}-${i % 150}`, items[i % 100]!, { event_id: `s-${i}` })),
    });
    expect(r.status, JSON.stringify(r.body.error)).toBe(200);
    expect(r.body.applied).toBe(300);
    expect(r.body.users.map((u: any) => u.event_count)).toEqual(Array(150).fill(2));
    expect((await api(`/v1/users/${tag}-149`)).body.event_count).toBe(2);
  });
});
