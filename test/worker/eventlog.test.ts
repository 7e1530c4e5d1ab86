/**
 * The event log in D1: every accepted event once (resends included), exported as NDJSON in the
 * training format; a D1 outage spills the rows to Redis and a replay stores them, none lost.
 */
/// <reference types="@cloudflare/vitest-plugin/types" />
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../src/index";
import { describe, expect, it } from "vitest";
import { api, apiText, captureLogs, ev, logged, manifest, uid } from "./helpers";

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
    expect(d.body.events_deleted).toBe(2);
    expect(await logged(u, 0, 0)).toEqual([]);
  });

  it("spills events to Redis while D1 refuses writes, and replays them into the log", async () => {
    const u = uid();
    const logs = captureLogs();
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    let accepted;
    try {
      accepted = await api("/v1/events", { body: [ev(u, ids[5]!, { event_id: "s1" }), ev(u, ids[6]!, { event_id: "s2" })] });
      expect(accepted.status).toBe(200); // the shopper's request does not wait for the log
      await new Promise((r) => setTimeout(r, 1500)); // three tries fail, then the spill
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(await logged(u, 0, 0)).toEqual([]);
    expect(logs.text()).toMatch(/event log write failed .*; spilling 2 event\(s\) to Redis/);
    const drained = await api("/v1/admin/eventlog/drain", { method: "POST" });
    expect(drained.body.replayed).toBeGreaterThanOrEqual(2);
    expect((await logged(u, 2)).map((r) => r.event_id)).toEqual(["s1", "s2"]);
  });

  it("the cron trigger replays spilled rows and recomputes the popularity lists", async () => {
    const u = uid();
    const logs = captureLogs();
    await DB.exec("ALTER TABLE events RENAME TO events_away");
    try {
      expect((await api("/v1/events", { body: [ev(u, ids[7]!, { event_id: "c1", type: "purchase" })] })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      await DB.exec("ALTER TABLE events_away RENAME TO events");
    }
    expect(logs.text()).toMatch(/spilling 1 event\(s\) to Redis/);
    const before = Date.now();
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: before, cron: "*/5 * * * *" }), env as never, ctx);
    await waitOnExecutionContext(ctx);
    expect((await logged(u, 1)).map((r) => r.event_id)).toEqual(["c1"]);
    const lists = await api("/v1/admin/popular?top=500");
    expect(Date.parse(lists.body.computed_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(lists.body.overall.map((x: [string, number]) => x[0])).toContain(ids[7]);
  });
});
