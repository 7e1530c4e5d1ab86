/**
 * Signed user tokens: with the publishable key (which any page hands out) nobody reads or writes an
 * identified customer's data without a token the shop's server signed for that customer; anonymous
 * visitor ids made by the snippet need none. Forged, tampered, expired and other-user tokens fail.
 */
import { describe, expect, it } from "vitest";
import { signUserToken, verifyUserToken } from "../../src/lib/user-token";
import { PK, api, apiWith, ev, manifest, uid } from "./helpers";

const SECRET = "ut-test-secret";
const items = manifest.items.ids;
const anon = () => `anon-${crypto.randomUUID()}`;
const withToken = (token: string) => ({ key: PK, headers: { "x-user-token": token } });

/** A customer with a stored state and a purchase (written with the secret key, as a shop's server would). */
async function customer(): Promise<string> {
  const u = uid("customer");
  const r = await api("/v1/events", { body: [ev(u, items[0]!), ev(u, items[1]!, { type: "purchase" })] });
  expect(r.status).toBe(200);
  return u;
}

describe("signed user tokens", () => {
  it("refuses a customer's state, purchases and summary to the publishable key alone", async () => {
    const u = await customer();
    for (const path of [`/v1/users/${u}/state`, `/v1/users/${u}`]) {
      const r = await api(path, { key: PK });
      expect(r.status, path).toBe(401);
      expect(r.body.error.code).toBe("user_token_required");
      // the purchased item's id as a value anywhere in the answer (the bare id, e.g. "318", can
      // occur inside the random user id the refusal names)
      expect(JSON.stringify(r.body)).not.toContain(JSON.stringify(items[1]));
    }
    // The same answer for a customer that does not exist: a refusal tells nothing.
    expect((await api(`/v1/users/${uid("customer")}/state`, { key: PK })).body.error.code).toBe("user_token_required");
  });

  it("shows a customer's state and summary with a token signed for them", async () => {
    const u = await customer();
    const token = await signUserToken(SECRET, u, 60);
    const s = await api(`/v1/users/${u}/state`, withToken(token));
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ user_id: u, purchased: [items[1]] });
    expect((await api(`/v1/users/${u}`, withToken(token))).body).toMatchObject({ user_id: u, event_count: 2 });
    // A token signed with an older secret still in USER_TOKEN_SECRETS verifies (rotation).
    expect((await api(`/v1/users/${u}/state`, withToken(await signUserToken("ut-rotated-out", u, 60)))).status).toBe(200);
  });

  it("refuses forged, tampered, expired, malformed and other-user tokens", async () => {
    const u = await customer();
    const other = await signUserToken(SECRET, uid("customer"), 60);
    const good = await signUserToken(SECRET, u, 60);
    const [, payload, sig] = good.split(".");
    const tampered = `ut1.${btoa(JSON.stringify({ user_id: u, exp: 4102444800 })).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")}.${sig}`;
    const cases: [string, string, number, string][] = [
      ["forged (another secret)", await signUserToken("not-the-secret", u, 60), 401, "invalid_user_token"],
      ["tampered payload (later exp)", tampered, 401, "invalid_user_token"],
      ["expired", await signUserToken(SECRET, u, 60, Date.now() - 120_000), 401, "user_token_expired"],
      ["malformed", "ut1.abc", 401, "invalid_user_token"],
      ["signature of another token", `ut1.${payload}.${other.split(".")[2]}`, 401, "invalid_user_token"],
      ["another user's valid token", other, 403, "user_token_mismatch"],
    ];
    for (const [what, token, status, code] of cases) {
      const r = await api(`/v1/users/${u}/state`, withToken(token));
      expect([r.status, r.body.error?.code], what).toEqual([status, code]);
    }
  });

  it("lets an anonymous visitor id of the snippet's shape through without a token, and no look-alike", async () => {
    const a = anon();
    expect((await api("/v1/events", { key: PK, body: ev(a, items[2]!) })).status).toBe(200);
    const s = await api(`/v1/users/${a}/state`, { key: PK });
    expect(s.status).toBe(200);
    expect(s.body.recent).toEqual([items[2]]);
    for (const lookAlike of ["anon-customer-1001", `anon-${crypto.randomUUID().toUpperCase()}`, `${a}-x`, `anon-${"0".repeat(8)}-0000-1000-8000-${"0".repeat(12)}`]) {
      expect((await api(`/v1/users/${encodeURIComponent(lookAlike)}/state`, { key: PK })).status, lookAlike).toBe(401);
    }
  });

  it("answers 403 when no secret is configured, whatever the token", async () => {
    const u = await customer();
    const r = await apiWith({ USER_TOKEN_SECRETS: "" }, `/v1/users/${u}/state`, withToken(await signUserToken(SECRET, u, 60)));
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe("user_token_required");
  });

  it("asks for a token on recommendations and similar items for a customer when REQUIRE_USER_TOKEN names them", async () => {
    const u = await customer();
    const on = { REQUIRE_USER_TOKEN: "recommendations" };
    expect((await api(`/v1/users/${u}/recommendations?k=3`, { key: PK })).status).toBe(200); // off by default
    const refused = await apiWith(on, `/v1/users/${u}/recommendations?k=3`, { key: PK });
    expect([refused.status, refused.body.error.code]).toEqual([401, "user_token_required"]);
    const similar = await apiWith(on, `/v1/items/${items[0]}/similar?k=3&user_id=${u}`, { key: PK });
    expect(similar.status).toBe(401);
    expect((await apiWith(on, `/v1/items/${items[0]}/similar?k=3`, { key: PK })).status).toBe(200); // not personalised: no user
    const token = await signUserToken(SECRET, u, 60);
    const ok = await apiWith(on, `/v1/users/${u}/recommendations?k=3`, withToken(token));
    expect(ok.status).toBe(200);
    expect(ok.body.source).toBe("model");
    expect((await apiWith(on, `/v1/users/${anon()}/recommendations?k=3`, { key: PK })).status).toBe(200);
    expect((await apiWith(on, `/v1/users/${u}/recommendations?k=3`)).status).toBe(200); // secret key
  });

  it("asks for a token on a customer's events when REQUIRE_USER_TOKEN names them, and changes nothing without one", async () => {
    const u = uid("customer");
    const on = { REQUIRE_USER_TOKEN: "events" };
    const refused = await apiWith(on, "/v1/events", { key: PK, body: [ev(u, items[3]!, { type: "purchase" })] });
    expect([refused.status, refused.body.error.code]).toEqual([401, "user_token_required"]);
    expect((await api(`/v1/users/${u}`)).status).toBe(404);
    const token = await signUserToken(SECRET, u, 60);
    const mixed = await apiWith(on, "/v1/events", { ...withToken(token), body: [ev(u, items[3]!), ev(uid("customer"), items[4]!)] });
    expect([mixed.status, mixed.body.error.code]).toEqual([403, "user_token_mismatch"]);
    expect((await api(`/v1/users/${u}`)).status).toBe(404);
    const ok = await apiWith(on, "/v1/events", { ...withToken(token), body: [ev(u, items[3]!), ev(anon(), items[4]!)] });
    expect(ok.status).toBe(200);
    expect(ok.body.applied).toBe(2);
  });

  it("limits publishable-key events per user id, whatever the client address", async () => {
    const [u, v] = [anon(), anon()];
    const limited = { RATE_LIMIT_USER_PER_MINUTE: "2" };
    for (const ip of ["10.0.0.1", "10.0.0.2"]) {
      expect((await apiWith(limited, "/v1/events", { key: PK, body: ev(u, items[5]!), headers: { "cf-connecting-ip": ip } })).status).toBe(200);
    }
    const third = await apiWith(limited, "/v1/events", { key: PK, body: ev(u, items[5]!), headers: { "cf-connecting-ip": "10.0.0.3" } });
    expect([third.status, third.body.error.code]).toEqual([429, "rate_limited"]);
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await apiWith(limited, "/v1/events", { key: PK, body: ev(v, items[5]!) })).status).toBe(200);
    expect((await apiWith(limited, "/v1/events", { body: ev(u, items[5]!) })).status).toBe(200); // secret key: per key only
  });

  it("caps the users of one publishable-key events request", async () => {
    const body = Array.from({ length: 6 }, () => ev(anon(), items[6]!));
    const r = await api("/v1/events", { key: PK, body });
    expect([r.status, r.body.error.code]).toEqual([400, "too_many_users"]);
    expect((await api("/v1/events", { body })).status).toBe(200); // a shop's server may batch many users
  });

  it("refuses a 60,000-element batch on its length, before any element is validated", async () => {
    const bad = JSON.stringify(Array.from({ length: 60_000 }, () => ({ item_id: 1 }))); // 780 KB: under the body limit
    const r = await api("/v1/events", { raw: bad });
    expect([r.status, r.body.error.code]).toEqual([413, "batch_too_large"]);
    expect(r.body.error.message).toMatch(/at most 500 events, got 60000/);
  });
});

describe("user token format", () => {
  it("round-trips, and verifies only with a secret of the list", async () => {
    const t = await signUserToken("s1", "customer-7", 60, 1_000_000);
    expect(t).toMatch(/^ut1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(await verifyUserToken(["s0", "s1"], t, 1_000_000)).toEqual({ ok: true, userId: "customer-7", exp: 1060 });
    expect(await verifyUserToken(["s0"], t, 1_000_000)).toEqual({ ok: false, reason: "bad_signature" });
    expect(await verifyUserToken(["s1"], t, 1_060_000)).toEqual({ ok: false, reason: "expired" });
    expect(await verifyUserToken(["s1"], `${t}x`.repeat(100), 1_000_000)).toEqual({ ok: false, reason: "malformed" });
  });
});
