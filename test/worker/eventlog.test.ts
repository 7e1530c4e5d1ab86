/**
 * The event log in D1: every applied event exactly once (resends included), exported as NDJSON in
 * the training format. Rows reach D1 through the Redis outbox written with the state commit: a D1
 * outage leaves them there until a drain, and Redis failing between the commit and the answer
 * leaves them there too; a retry answered `duplicate` never logs twice.
 * (All drains run in this file: D1 is per test file, Redis is shared, and a drain takes every
 * waiting row.)
 */
/// <reference types="@cloudflare/vitest-plugin/types" />
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../src/index";
import { describe, expect, it } from "vitest";
import { api, apiText, apiWith, captureLogs, ev, logged, manifest, uid } from "./helpers";

const ids = manifest.items.ids;
const DB = (env as unknown as { DB: D1Database }).DB;

describe("event log", () => {
  it("stores each accepted event once and exports it in the training format", async () => {
    const u = uid();
    const t0 = Date.UTC(2026, 10, 1);
    const batch = [ev(u, ids[0]!, { event_id: "a", timestamp: t0 }), ev(u, ids[1]!, { event_id: "b", timestamp: t0 + 1000 }), ev(u, ids[2]!, { timestamp: t0 + 2000 })];
    await api("/v1/events", { body: batch });
    await api("/v1/events", { body: batch.slice(0, 2) }); // a resend: duplicates
    const rows = await logged(u, 3);
    await new Promise((r) => setTimeout(r, 300));
    const again = await logged(u, 3);
    expect(again).toHaveLength(3);
    expect(rows.map((r) => [r.item_id, r.timestamp, r.event_id ?? null, r.type])).toEqual([
      [ids[0], t0, "a", "view"],
      [ids[1], t0 + 1000, "b", "view"],
      [ids[2], t0 + 2000, null, "view"],
    ]);
    for (const r of rows) expect(r).toMatchObject({ user_id: u, in_model: true });
    const since = await apiText(`/v1/events/export?user_id=${u}&since=${t0 + 500}&until=${new Date(t0 + 1500).toISOString()}`);
    expect(since.headers.get("content-type")).toMatch(/application\/x-ndjson/);
    expect(since.text.trim().split("\n").map((l) => JSON.parse(l).item_id)).toEqual([ids[1]]);
    const resume = await apiText(`/v1/events/export?user_id=${u}&after_seq=${rows[1].seq}`);
    expect(resume.text.trim().split("\n")).toHaveLength(1);
  });

  it("forgets a user's logged events with the user", async () => {
    const u = uid();
    await api("/v1/events", { body: [ev(u, ids[3]!), ev(u, ids[4]!)] });
    await logged(u, 2);
    const d = await api(`/v1/users/${u}`, { method: "DELETE" });
    expect(d.status).toBe(200);
    expect(d.body).toMatchObject({ events_deleted: 2, log: "deleted" });
    expect(await logged(u, 0, 0)).toEqual([]);
  });

  it("forgets a user with D1 down: the log part waits for the drain, and neither a rebuild nor a drain brings anything back", async () => {
    const u = uid("forget-d1-down");
    const logs = captureLogs();
    await api("/v1/events", { body: [ev(u, ids[10]!, { event_id: "f1" }), ev(u, ids[11]!, { event_id: "f2", type: "purchase" })] });
    await logged(u, 2);
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    let d;
    try {
      // One more event, which cannot reach the log: it waits in the outbox.
      expect((await api("/v1/events", { body: [ev(u, ids[12]!, { event_id: "f3" })] })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
      d = await api(`/v1/users/${u}`, { method: "DELETE" });
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(d.status).toBe(202);
    expect(d.body).toMatchObject({ user_id: u, deleted: true, events_deleted: null, log: "pending" });
    expect(logs.text()).toMatch(/owed to the next drain/);
    // D1 is back and still holds f1, f2: a rebuild (the user has no state any more) must not replay them.
    const recs = await api(`/v1/users/${u}/recommendations?k=5`);
    expect(recs.body).toMatchObject({ source: "popular", reason: "cold-user" });
    expect((await api(`/v1/users/${u}`)).status).toBe(404);
    // The drain deletes the logged events and never stores f3, which waited in the outbox.
    await api("/v1/admin/eventlog/drain", { method: "POST" });
    await new Promise((r) => setTimeout(r, 300));
    expect(await logged(u, 0, 0)).toEqual([]);
    expect((await DB.prepare("SELECT count(*) AS n FROM events WHERE user_id = ?").bind(u).first<{ n: number }>())!.n).toBe(0);
    expect((await api(`/v1/users/${u}/recommendations?k=5`)).body.reason).toBe("cold-user");
    // A row of theirs that reaches the log late (a request's own store after the response) is refused.
    const late = { user_id: u, event_key: "f4", item_id: ids[13]!, type: "view", ts: Date.now() - 60_000, received_at: Date.now() - 60_000, in_model: true, model_version: manifest.version, n: 9 };
    const redis = env as unknown as { UPSTASH_REDIS_REST_URL: string; UPSTASH_REDIS_REST_TOKEN: string };
    await fetch(redis.UPSTASH_REDIS_REST_URL, {
      method: "POST",
      headers: { authorization: `Bearer ${redis.UPSTASH_REDIS_REST_TOKEN}` },
      body: JSON.stringify(["ZADD", "gru:outbox:eventlog", String(Date.now()), JSON.stringify(late)]),
    });
    await api("/v1/admin/eventlog/drain", { method: "POST" });
    expect(await logged(u, 0, 0)).toEqual([]);
    // The same id coming back later is a new user, logged as usual.
    await api("/v1/events", { body: [ev(u, ids[14]!, { event_id: "f1" })] });
    expect((await logged(u, 1)).map((r) => r.event_id)).toEqual(["f1"]);
  });

  it("keeps events in the outbox while D1 refuses writes, and a drain stores them into the log", async () => {
    const u = uid();
    const logs = captureLogs();
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    let accepted;
    try {
      accepted = await api("/v1/events", { body: [ev(u, ids[5]!, { event_id: "s1" }), ev(u, ids[6]!, { event_id: "s2" })] });
      expect(accepted.status).toBe(200); // the shopper's request does not wait for the log
      await new Promise((r) => setTimeout(r, 1500)); // three tries fail, the rows stay in the outbox
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(await logged(u, 0, 0)).toEqual([]);
    expect(logs.text()).toMatch(/event log write failed .*; 2 row\(s\) wait in the outbox/);
    const drained = await api("/v1/admin/eventlog/drain", { method: "POST" });
    expect(drained.body.replayed).toBeGreaterThanOrEqual(2);
    expect((await logged(u, 2)).map((r) => r.event_id)).toEqual(["s1", "s2"]);
  });

  it("the cron trigger drains the outbox and recomputes the popularity lists", async () => {
    const u = uid();
    const logs = captureLogs();
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    try {
      expect((await api("/v1/events", { body: [ev(u, ids[7]!, { event_id: "c1", type: "purchase" })] })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(logs.text()).toMatch(/1 row\(s\) wait in the outbox/);
    const before = Date.now();
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: before, cron: "*/5 * * * *" }), env as never, ctx);
    await waitOnExecutionContext(ctx);
    expect((await logged(u, 1)).map((r) => r.event_id)).toEqual(["c1"]);
    const lists = await api("/v1/admin/popular?top=500");
    expect(Date.parse(lists.body.computed_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(lists.body.overall.map((x: [string, number]) => x[0])).toContain(ids[7]);
  });

  it("logs every applied event exactly once when D1 fails during a concurrent load with resends", async () => {
    const u = uid("d1-outage");
    const logs = captureLogs();
    const sends = Array.from({ length: 40 }, (_, i) => ev(u, ids[i % 30]!, { event_id: `o-${i % 25}` })); // 15 resends
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    let rs;
    try {
      rs = await Promise.all(sends.map((e) => api("/v1/events", { body: e })));
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(rs.map((r) => r.status)).toEqual(Array(40).fill(200));
    expect(rs.filter((r) => r.body.results[0].status === "applied")).toHaveLength(25);
    // More traffic after D1 is back, and a drain: every applied event once.
    await api("/v1/events", { body: sends.slice(0, 5) });
    await api("/v1/admin/eventlog/drain", { method: "POST" });
    const rows = await logged(u, 25);
    await new Promise((r) => setTimeout(r, 300));
    expect((await logged(u, 25)).map((r) => r.event_id).sort()).toEqual(rows.map((r) => r.event_id).sort());
    expect(rows.map((r) => r.event_id).sort()).toEqual(Array.from({ length: 25 }, (_, i) => `o-${i}`).sort());
    expect((await api(`/v1/users/${u}`)).body.event_count).toBe(25);
    expect(logs.text()).toMatch(/row\(s\) wait in the outbox/);
  });

  for (const [what, nth] of [
    ["after the commit (the state and the outbox were written, the answer was lost)", 2],
    ["after the append (the events were pending, the writer died holding the lease)", 1],
  ] as const) {
    it(`logs an event exactly once when Redis fails ${what} and the retry is answered duplicate`, async () => {
      const u = uid("redis-fault");
      captureLogs();
      const faultUrl = (env as unknown as Record<string, string>).FAULT_REDIS_URL!;
      await fetch(`${faultUrl}/__fault`, { method: "POST", body: JSON.stringify({ match: u, nth }) });
      const batch = [ev(u, ids[8]!, { event_id: "r1" }), ev(u, ids[9]!, { event_id: "r2" })];
      const failed = await apiWith({ UPSTASH_REDIS_REST_URL: faultUrl }, "/v1/events", { body: batch });
      expect(failed.status).toBe(503);
      const retry = await api("/v1/events", { body: batch });
      expect(retry.status).toBe(200);
      expect(retry.body.results.map((r: any) => r.status)).toEqual(["duplicate", "duplicate"]);
      expect(retry.body.users[0]).toMatchObject({ event_count: 2 });
      await api("/v1/admin/eventlog/drain", { method: "POST" });
      const rows = await logged(u, 2);
      await new Promise((r) => setTimeout(r, 300));
      expect((await logged(u, 2)).map((r) => r.event_id)).toEqual(["r1", "r2"]);
      expect(rows).toHaveLength(2);
    });
  }
});
