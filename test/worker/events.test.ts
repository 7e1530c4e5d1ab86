import { describe, expect, it } from "vitest";
import { api, ev, manifest, uid } from "./helpers";

const items = manifest.items.ids;

describe("POST /v1/events", () => {
  it("advances the user's state and answers with the new state version", async () => {
    const u = uid();
    const r = await api("/v1/events", { body: [ev(u, items[0]!), ev(u, items[1]!)] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ accepted: 2, applied: 2, duplicates: 0, users: [{ user_id: u, state_version: 1, event_count: 2 }] });
    const one = await api("/v1/events", { body: ev(u, items[2]!) });
    expect(one.body.users[0]).toMatchObject({ state_version: 2, event_count: 3 });
    const s = await api(`/v1/users/${encodeURIComponent(u)}`);
    expect(s.body).toMatchObject({ event_count: 3, session_count: 1, model_version: manifest.version });
  });

  it("answers recommendations in the same round trip with ?recommend=k, the list a GET gives", async () => {
    const u = uid();
    const seen = [items[10]!, items[20]!, items[30]!];
    const r = await api("/v1/events?recommend=7", { body: seen.map((i) => ev(u, i)) });
    expect(r.status).toBe(200);
    const rec = r.body.recommendations[0];
    expect(rec).toMatchObject({ user_id: u, source: "model", model_version: manifest.version });
    expect(rec.items).toHaveLength(7);
    const again = await api(`/v1/users/${u}/recommendations?k=7`);
    expect(again.body.items.map((i: any) => i.item_id)).toEqual(rec.items.map((i: any) => i.item_id));
  });

  it("counts exactly 100 events when 100 arrive concurrently for one user, folded in fewer writes", async () => {
    const u = uid("concurrent");
    const rs = await Promise.all(
      Array.from({ length: 100 }, (_, i) => api("/v1/events", { body: ev(u, items[i % 50]!, { event_id: `c-${i}` }) })),
    );
    expect(rs.map((r) => (r.status === 200 ? 200 : `${r.status} ${r.body?.error?.message}`))).toEqual(Array(100).fill(200));
    const s = await api(`/v1/users/${u}`);
    expect(s.body.event_count).toBe(100);
    // state_version counts writes; concurrent events are combined into few of them
    expect(s.body.state_version).toBeGreaterThanOrEqual(1);
    expect(s.body.state_version).toBeLessThan(100);
  });

  it("applies an event_id sent three times only once, sequentially or concurrently", async () => {
    const u = uid();
    const e = ev(u, items[3]!, { event_id: "once" });
    const first = await api("/v1/events", { body: e });
    expect(first.body.results[0].status).toBe("applied");
    const again = await Promise.all([api("/v1/events", { body: e }), api("/v1/events", { body: e })]);
    for (const r of again) expect(r.body.results[0]).toMatchObject({ status: "duplicate", state_version: 1 });
    const u2 = uid();
    const e2 = ev(u2, items[3]!, { event_id: "same" });
    await Promise.all([1, 2, 3].map(() => api("/v1/events", { body: e2 })));
    expect((await api(`/v1/users/${u}`)).body.event_count).toBe(1);
    expect((await api(`/v1/users/${u2}`)).body.event_count).toBe(1);
  });

  it("applies a repeated event_id inside one batch once", async () => {
    const u = uid();
    const r = await api("/v1/events", { body: [ev(u, items[1]!, { event_id: "x" }), ev(u, items[2]!, { event_id: "x" })] });
    expect(r.body).toMatchObject({ applied: 1, duplicates: 1 });
    expect((await api(`/v1/users/${u}`)).body.event_count).toBe(1);
  });

  it("starts a new session after the model's idle gap", async () => {
    const u = uid();
    const t0 = Date.now() - 10 * 3600_000;
    const gap = manifest.session.idle_gap_seconds * 1000;
    await api("/v1/events", {
      body: [ev(u, items[1]!, { timestamp: t0 }), ev(u, items[2]!, { timestamp: t0 + 60_000 }), ev(u, items[3]!, { timestamp: t0 + 60_000 + gap + 1 })],
    });
    const s = (await api(`/v1/users/${u}`)).body;
    expect(s).toMatchObject({ event_count: 3, session_count: 2 });
    expect(s.session_started_at).toBe(new Date(t0 + 60_000 + gap + 1).toISOString());
  });

  it("accepts ISO timestamps and unusual but valid ids (unicode, braces, colons, 256 characters)", async () => {
    const ids = [uid("ユーザー/😀"), `{weird}:${uid()}:{id}`, "x".repeat(220) + uid("").slice(0, 36)];
    for (const u of ids) {
      const r = await api("/v1/events", { body: ev(u, items[0]!, { timestamp: new Date().toISOString() }) });
      expect(r.status, u).toBe(200);
      const s = await api(`/v1/users/${encodeURIComponent(u)}`);
      expect(s.body.event_count, u).toBe(1);
    }
  });

  it("handles a batch across several users in one request", async () => {
    const a = uid(), b = uid();
    const r = await api("/v1/events?recommend=3", { body: [ev(a, items[1]!), ev(b, items[2]!), ev(a, items[3]!)] });
    expect(r.body.users).toHaveLength(2);
    expect(r.body.recommendations).toHaveLength(2);
    expect((await api(`/v1/users/${a}`)).body.event_count).toBe(2);
    expect((await api(`/v1/users/${b}`)).body.event_count).toBe(1);
  });
});
