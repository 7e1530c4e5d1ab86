import { describe, expect, it } from "vitest";
import { api, ev, expectPopularNow, expectedPopular, manifest, uid } from "./helpers";

const items = manifest.items.ids;

describe("/v1/users/:user_id", () => {
  it("gives a user with no state popular items, never an error", async () => {
    const before = await expectedPopular(5);
    const r = await api(`/v1/users/${uid()}/recommendations?k=5`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "popular", reason: "cold-user", model_version: manifest.version });
    await expectPopularNow(r.body.items, 5, before);
  });

  it("defaults to k=10 and leaves out the recent items only on request", async () => {
    const u = uid();
    await api("/v1/events", { body: [ev(u, items[0]!), ev(u, items[1]!)] });
    const r = await api(`/v1/users/${u}/recommendations`);
    expect(r.body.items).toHaveLength(10);
    const byDefault = await api(`/v1/users/${u}/recommendations?k=100`);
    const withoutRecent = await api(`/v1/users/${u}/recommendations?k=100&exclude_recent=true`);
    expect(withoutRecent.body.items.map((i: any) => i.item_id)).not.toContain(items[0]);
    expect(withoutRecent.body.items.map((i: any) => i.item_id)).not.toContain(items[1]);
    expect(byDefault.body.items.length).toBe(100);
  });

  it("summarises the state without exposing the raw vector", async () => {
    const u = uid();
    await api("/v1/events", { body: ev(u, items[0]!) });
    const r = await api(`/v1/users/${u}`);
    expect(Object.keys(r.body).sort()).toEqual(
      ["event_count", "last_event_at", "model_version", "recent_items", "session_count", "session_started_at", "state_version", "updated_at", "user_id"].sort(),
    );
  });

  it("answers 404 with an error body for a user it has never seen", async () => {
    const r = await api(`/v1/users/${uid()}`);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("user_not_found");
  });

  it("forgets a user: state and de-duplication memory are gone", async () => {
    const u = uid();
    await api("/v1/events", { body: ev(u, items[0]!, { event_id: "e1" }) });
    const d = await api(`/v1/users/${u}`, { method: "DELETE" });
    expect(d.body).toMatchObject({ user_id: u, deleted: true });
    expect((await api(`/v1/users/${u}`)).status).toBe(404);
    expect((await api(`/v1/users/${u}/recommendations`)).body.reason).toBe("cold-user");
    // the same event_id counts again: the dedup keys were removed too
    const again = await api("/v1/events", { body: ev(u, items[0]!, { event_id: "e1" }) });
    expect(again.body.results[0].status).toBe("applied");
    expect((await api(`/v1/users/${u}`, { method: "DELETE" })).body.deleted).toBe(true);
    expect((await api(`/v1/users/${u}`, { method: "DELETE" })).body.deleted).toBe(false);
  });
});

describe("GET /health", () => {
  it("reports the model loaded, Redis reachable and the versions, without a key", async () => {
    const r = await api("/health", { key: null });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: "ok", model: { loaded: true, version: manifest.version }, redis: { reachable: true } });
  });
});
