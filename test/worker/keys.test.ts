/**
 * Publishable keys (browser: events, recommendations, similar items) versus secret keys, the CORS
 * allowlist, and per-key rate limits answering 429 with Retry-After.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PK, api, apiWith, captureLogs, ev, manifest, uid } from "./helpers";

const ids = manifest.items.ids;

describe("key scopes", () => {
  it("lets a publishable key track events and read recommendations and similar items", async () => {
    const u = uid();
    expect((await api("/v1/events", { key: PK, body: ev(u, ids[0]!) })).status).toBe(200);
    expect((await api(`/v1/users/${u}/recommendations?k=3`, { key: PK })).status).toBe(200);
    expect((await api(`/v1/items/${ids[0]}/similar?k=3`, { key: PK })).status).toBe(200);
  });

  const forbidden: [string, string, unknown?][] = [
    ["PUT", `/v1/items/x-${Date.now()}`, { title: "nope" }],
    ["POST", "/v1/items/batch", [{ id: "a", title: "b" }]],
    ["PATCH", `/v1/items/${ids[0]}`, { available: false }],
    ["DELETE", `/v1/items/${ids[0]}`],
    ["GET", `/v1/items/${ids[0]}`],
    ["GET", "/v1/events/export"],
    ["DELETE", "/v1/users/someone"],
    ["POST", "/v1/admin/popular/refresh"],
  ];
  for (const [method, path, body] of forbidden) {
    it(`refuses ${method} ${path.replace(/x-\d+/, "x")} to a publishable key with 403 and changes nothing`, async () => {
      const r = await api(path, { method, key: PK, body });
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe("insufficient_scope");
    });
  }

  it("answers GET /v1/users/someone from a publishable key without a signed user token with 401", async () => {
    const r = await api("/v1/users/someone", { key: PK });
    expect([r.status, r.body.error.code]).toEqual([401, "user_token_required"]);
  });

  it("left the catalog untouched after the refused writes", async () => {
    expect((await api(`/v1/items/${ids[0]}`)).status).toBe(404);
    expect((await api(`/v1/items/a`)).status).toBe(404);
  });

  it("tells an unknown key from a missing one, both 401", async () => {
    expect((await api("/v1/events", { key: "pk_wrong", body: ev(uid(), ids[0]!) })).body.error.code).toBe("unauthorized");
    expect((await api("/v1/events", { key: null, body: ev(uid(), ids[0]!) })).status).toBe(401);
  });
});

describe("CORS", () => {
  it("answers a preflight from an allowed origin without a key", async () => {
    const r = await api("/v1/events", {
      method: "OPTIONS",
      key: null,
      headers: { origin: "https://shop.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(r.status).toBe(204);
    expect(r.headers.get("access-control-allow-origin")).toBe("https://shop.example");
    expect(r.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
  });

  it("does not allow an origin that is not on the list", async () => {
    const r = await api("/v1/events", { method: "OPTIONS", key: null, headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
    expect(r.headers.get("access-control-allow-origin")).toBeNull();
    const get = await api(`/v1/users/${uid()}/recommendations`, { key: PK, headers: { origin: "https://shop.example" } });
    expect(get.headers.get("access-control-allow-origin")).toBe("https://shop.example");
  });
});

describe("rate limits", () => {
  it("answers 429 with Retry-After once a secret key spends its budget, other keys unaffected", async () => {
    const key = `sk_${uid()}`;
    const other = `sk_${uid()}`;
    const env = { SECRET_KEYS: `${key},${other}`, RATE_LIMIT_SECRET_PER_MINUTE: "3" };
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await apiWith(env, `/v1/users/${uid()}/recommendations?k=1`, { key }));
    expect(statuses.map((r) => r.status)).toEqual([200, 200, 200, 429]);
    const last = statuses[3]!;
    expect(last.body.error.code).toBe("rate_limited");
    expect(Number(last.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(statuses[0]!.headers.get("x-ratelimit-limit")).toBe("3");
    expect((await apiWith(env, `/v1/users/${uid()}/recommendations?k=1`, { key: other })).status).toBe(200);
  });

  it("limits a publishable key per client IP", async () => {
    const pk = `pk_${uid()}`;
    const env = { PUBLISHABLE_KEYS: pk, RATE_LIMIT_PUBLISHABLE_PER_MINUTE: "2" };
    const call = (ip: string) => apiWith(env, `/v1/users/${uid()}/recommendations?k=1`, { key: pk, headers: { "cf-connecting-ip": ip } });
    expect([(await call("10.0.0.1")).status, (await call("10.0.0.1")).status, (await call("10.0.0.1")).status]).toEqual([200, 200, 429]);
    expect((await call("10.0.0.2")).status).toBe(200);
  });

  it("lets requests through when the limiter's Redis is down", async () => {
    const key = `sk_${uid()}`;
    const logs = captureLogs();
    const r = await apiWith({ SECRET_KEYS: key, RATE_LIMIT_SECRET_PER_MINUTE: "1", UPSTASH_REDIS_REST_URL: (env as any).DEAD_REDIS_URL, REDIS_TIMEOUT_MS: "200" }, `/v1/users/${uid()}/recommendations?k=1`, { key });
    expect(r.status).toBe(200);
    expect(r.body.reason).toBe("state-unavailable");
    expect(logs.text()).toMatch(/rate limiter unavailable, request allowed/);
  });
});
