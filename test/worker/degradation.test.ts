/**
 * Redis down: recommendations fall back to popular items with a reason, writes answer 503 with
 * Retry-After, and nothing is half-written.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, apiWith, captureLogs, ev, manifest, uid } from "./helpers";

const items = manifest.items.ids;
const down = { UPSTASH_REDIS_REST_URL: (env as any).DEAD_REDIS_URL as string, REDIS_TIMEOUT_MS: "300" };

describe("when Redis is unreachable", () => {
  it("recommendations fall back to popular items with reason state-unavailable", async () => {
    const logs = captureLogs();
    const r = await apiWith(down, `/v1/users/${uid()}/recommendations?k=4`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "popular", reason: "state-unavailable", model_version: manifest.version });
    expect(r.body.items).toHaveLength(4);
    expect(logs.text()).toMatch(/redis read (failed|timed out)/);
  });

  it("events answer 503 with Retry-After and nothing is written", async () => {
    const u = uid();
    await api("/v1/events", { body: ev(u, items[0]!, { event_id: "a" }) });
    const before = (await api(`/v1/users/${u}`)).body;
    const r = await apiWith(down, "/v1/events", { body: [ev(u, items[1]!, { event_id: "b" }), ev(uid(), items[2]!)] });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe("state_unavailable");
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
    // the client resends when Redis is back: applied exactly once
    const again = await api("/v1/events", { body: ev(u, items[1]!, { event_id: "b" }) });
    expect(again.body.results[0].status).toBe("applied");
    expect((await api(`/v1/users/${u}`)).body.event_count).toBe(2);
  });

  it("the user summary and deletion answer 503, health says degraded", async () => {
    const u = uid();
    expect((await apiWith(down, `/v1/users/${u}`)).status).toBe(503);
    expect((await apiWith(down, `/v1/users/${u}`, { method: "DELETE" })).status).toBe(503);
    const h = await apiWith(down, "/health", { key: null });
    expect(h.status).toBe(503);
    expect(h.body).toMatchObject({ status: "degraded", model: { loaded: true }, redis: { reachable: false } });
  });
});
