/**
 * Business rules on recommendations and similar items, against a catalog of every item the model
 * knows (three categories, prices 1..50, every seventh item sold out) plus items only the catalog
 * knows: availability, purchases, category and price filters, exclude lists, metadata, k kept
 * whenever candidates exist, cold start from the event log's popularity, and the fallbacks.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { api, apiWith, captureLogs, ev, logged, manifest, uid } from "./helpers";

const ids = manifest.items.ids;
const CATS = ["Drama", "Comedy", "Action"];
const cat = (i: number) => CATS[i % 3]!;
const price = (i: number) => (i % 50) + 1;
const soldOut = (i: number) => i % 7 === 3;
const extras = ["new-a", "new-b", "new-c"];

beforeAll(async () => {
  const rows = ids.map((id, i) => ({ id, title: `Film ${id}`, category_path: ["Films", cat(i)], price: price(i), currency: "EUR", available: !soldOut(i) }));
  rows.push(...extras.map((id) => ({ id, title: `New ${id}`, category_path: ["Films", "Drama"], price: 5, currency: "EUR", available: true })));
  const r = await api("/v1/items/batch", { body: rows });
  expect(r.body).toMatchObject({ stored: ids.length + 3, rejected: 0, not_in_model: 3 });
});

const facts = (id: string) => {
  const i = ids.indexOf(id);
  return i < 0 ? { cat: "Drama", price: 5, soldOut: false } : { cat: cat(i), price: price(i), soldOut: soldOut(i) };
};

async function userWithHistory(n = 6) {
  const u = uid();
  await api("/v1/events", { body: ids.slice(10, 10 + n).map((id, j) => ev(u, id, { event_id: `h${j}` })) });
  return u;
}

describe("recommendation rules", () => {
  it("never shows an unavailable item, and drops one as soon as it sells out", async () => {
    const u = await userWithHistory();
    const r = await api(`/v1/users/${u}/recommendations?k=100`);
    expect(r.body.source).toBe("model");
    expect(r.body.items).toHaveLength(100);
    for (const i of r.body.items) expect(facts(i.item_id).soldOut, i.item_id).toBe(false);
    const top = r.body.items[0].item_id;
    await api(`/v1/items/${top}`, { method: "PATCH", body: { available: false } });
    const after = await api(`/v1/users/${u}/recommendations?k=100`);
    expect(after.body.items.map((i: any) => i.item_id)).not.toContain(top);
    expect(after.body.items).toHaveLength(100);
    await api(`/v1/items/${top}`, { method: "PATCH", body: { available: true } });
    expect((await api(`/v1/users/${u}/recommendations?k=100`)).body.items.map((i: any) => i.item_id)).toContain(top);
  });

  it("never recommends an item the user purchased, in any path", async () => {
    const u = await userWithHistory();
    const top = (await api(`/v1/users/${u}/recommendations?k=5`)).body.items[0].item_id;
    const r = await api("/v1/events?recommend=50", { body: ev(u, top, { type: "purchase", event_id: "buy" }) });
    expect(r.body.recommendations[0].items.map((i: any) => i.item_id)).not.toContain(top);
    for (const q of ["k=100", "k=100&exclude_recent=false"]) {
      expect((await api(`/v1/users/${u}/recommendations?${q}`)).body.items.map((i: any) => i.item_id)).not.toContain(top);
    }
    // similar items for this user, and the popular fallback when Redis has the state but the model path is bypassed
    const sim = await api(`/v1/items/${ids[10]}/similar?k=100&user_id=${u}`);
    expect(sim.body.items.map((i: any) => i.item_id)).not.toContain(top);
    // a user who bought the most popular item does not get it as a cold-start recommendation either
    const cold = uid();
    const pop = (await api(`/v1/users/${cold}/recommendations?k=1`)).body.items[0].item_id;
    await api("/v1/events", { body: ev(cold, extras[0]!, { type: "purchase" }) }); // catalog-only: no state
    await api("/v1/events", { body: ev(cold, pop, { type: "purchase" }) });
    const again = await api(`/v1/users/${cold}/recommendations?k=20&exclude_recent=false`);
    expect(again.body.items.map((i: any) => i.item_id)).not.toContain(pop);
    expect(again.body.items.map((i: any) => i.item_id)).not.toContain(extras[0]);
  });

  it("filters by category and price range, and still returns k items", async () => {
    const u = await userWithHistory();
    const r = await api(`/v1/users/${u}/recommendations?k=40&category=${encodeURIComponent("Films > Comedy")}&min_price=10&max_price=20`);
    expect(r.body.items).toHaveLength(40);
    for (const i of r.body.items) {
      const f = facts(i.item_id);
      expect(f.cat).toBe("Comedy");
      expect(f.price).toBeGreaterThanOrEqual(10);
      expect(f.price).toBeLessThanOrEqual(20);
      expect(f.soldOut).toBe(false);
    }
    expect(r.body.source).toBe("model");
    const top = (await api(`/v1/users/${u}/recommendations?k=40&category=Films`)).body.items;
    expect(top).toHaveLength(40);
  });

  it("returns every candidate and no more when fewer than k are left", async () => {
    const u = await userWithHistory();
    // Drama items priced exactly 1: indices i with i % 3 == 0 and i % 50 == 0, minus sold-out ones
    const expected = ids.filter((_, i) => cat(i) === "Drama" && price(i) === 1 && !soldOut(i));
    const r = await api(`/v1/users/${u}/recommendations?k=100&category=Films>Drama&min_price=1&max_price=1&exclude_recent=false`);
    expect(r.body.items.map((i: any) => i.item_id).sort()).toEqual([...expected].sort());
  });

  it("leaves out every item the user had in earlier sessions with exclude_seen=true, beyond the recent ring", async () => {
    const u = uid();
    const day = 86_400_000;
    const t0 = Date.now() - 3 * day;
    const first = ids.slice(10, 16);
    await api("/v1/events", { body: first.map((id, j) => ev(u, id, { event_id: `s1-${j}`, timestamp: t0 + j * 60_000 })) });
    const liked = (await api(`/v1/users/${u}/recommendations?k=40&exclude_recent=true`)).body.items.map((i: any) => i.item_id).filter((id: string) => !facts(id).soldOut);
    const second = liked.slice(0, 30);
    await api("/v1/events", { body: second.map((id: string, j: number) => ev(u, id, { event_id: `s2-${j}`, timestamp: t0 + day + j * 60_000 })) });
    const had = new Set([...first, ...second]);
    const outOfRing = [...first, ...second.slice(0, second.length - 20)];
    // the ring (exclude_recent) forgets the earlier items: it would show them again (re-ranking the
    // available ones leaves none out; whether the model ranks them high is the model's business) ...
    const available = outOfRing.filter((id) => !facts(id).soldOut);
    expect(available.length).toBeGreaterThan(5);
    const ranked = async (o: object) => (await api(`/v1/users/${u}/rank`, { body: { item_ids: available, ...o } })).body;
    expect((await ranked({ exclude_recent: true })).excluded).toEqual([]);
    expect((await ranked({ exclude_seen: true })).excluded).toEqual(available);
    // ... the seen filter of the state remembers both sessions
    const r = await api(`/v1/users/${u}/recommendations?k=100&exclude_seen=true`);
    expect(r.body.source).toBe("model");
    expect(r.body.items).toHaveLength(100);
    expect(r.body.items.filter((i: any) => had.has(i.item_id)).map((i: any) => i.item_id)).toEqual([]);
    expect((await api(`/v1/users/${u}/recommendations?k=100&exclude_seen=maybe`)).status).toBe(400);
  });

  it("honours an explicit exclude list and adds catalog fields on request", async () => {
    const u = await userWithHistory();
    const first = (await api(`/v1/users/${u}/recommendations?k=3`)).body.items.map((i: any) => i.item_id);
    const r = await api(`/v1/users/${u}/recommendations?k=3&exclude=${first.join(",")}&include=metadata`);
    expect(r.body.items).toHaveLength(3);
    for (const i of r.body.items) {
      expect(first).not.toContain(i.item_id);
      expect(i.item).toMatchObject({ title: `Film ${i.item_id}`, currency: "EUR", available: true });
    }
  });

  it("still answers, flagged, when the catalog database cannot give the metadata", async () => {
    const u = await userWithHistory();
    const logs = captureLogs();
    const DB = (env as unknown as { DB: D1Database }).DB;
    await DB.exec("ALTER TABLE items RENAME TO items_away");
    let r;
    try {
      r = await api(`/v1/users/${u}/recommendations?k=5&include=metadata`);
    } finally {
      await DB.exec("ALTER TABLE items_away RENAME TO items");
    }
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "model", metadata_unavailable: true });
    expect(logs.text()).toMatch(/metadata unavailable/);
    expect(r.body.items).toHaveLength(5);
    for (const i of r.body.items) expect(facts(i.item_id).soldOut).toBe(false);
  });

  it("rejects contradictory or oversized filters with 400", async () => {
    const u = uid();
    for (const q of ["min_price=5&max_price=1", "min_price=-1", "category=%20>%20", `exclude=${Array.from({ length: 101 }, (_, i) => i).join(",")}`, "include=everything"]) {
      const r = await api(`/v1/users/${u}/recommendations?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
    }
  });
});

describe("cold start and fallbacks", () => {
  it("gives new users the event log's most popular items, overall and per category", async () => {
    // Traffic on three Action films and one catalog-only Drama item, then a refresh.
    const action = ids.filter((_, i) => cat(i) === "Action" && !soldOut(i)).slice(200, 203);
    const events = [];
    for (let n = 0; n < 30; n++) {
      const u = `crowd-${n}-${uid()}`;
      events.push(ev(u, action[0]!, { type: "purchase" }), ev(u, action[1]!), ev(u, extras[1]!, { type: "add_to_cart" }));
      if (n < 20) events.push(ev(u, action[2]!));
    }
    await api("/v1/events", { body: events });
    await logged(events[events.length - 1]!.user_id, 3);
    const refreshed = await api("/v1/admin/popular/refresh", { method: "POST" });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.overall.slice(0, 3).map((x: any) => x[0])).toEqual([action[0], extras[1], action[1]]);
    const fresh = await api(`/v1/users/${uid()}/recommendations?k=4`);
    expect(fresh.body).toMatchObject({ source: "popular", reason: "cold-user" });
    expect(fresh.body.items.map((i: any) => i.item_id)).toEqual([action[0], extras[1], action[1], action[2]]);
    const drama = await api(`/v1/users/${uid()}/recommendations?k=3&category=Films>Drama`);
    expect(drama.body.items[0].item_id).toBe(extras[1]);
    expect(drama.body.items).toHaveLength(3);
    for (const i of drama.body.items) expect(facts(i.item_id).cat).toBe("Drama");
  });

  it("serves popular, available items with the reason when Redis is down", async () => {
    const logs = captureLogs();
    const r = await apiWith({ UPSTASH_REDIS_REST_URL: (env as any).DEAD_REDIS_URL, REDIS_TIMEOUT_MS: "300" }, `/v1/users/${uid()}/recommendations?k=30`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "popular", reason: "state-unavailable" });
    expect(logs.text()).toMatch(/redis read (failed|timed out)/);
    expect(r.body.items).toHaveLength(30);
    for (const i of r.body.items) expect(facts(i.item_id).soldOut).toBe(false);
  });
});

describe("similar items", () => {
  it("ranks by the model's item embeddings under the same rules", async () => {
    const seed = ids[0]!;
    const r = await api(`/v1/items/${seed}/similar?k=20`);
    expect(r.body).toMatchObject({ item_id: seed, source: "model" });
    expect(r.body.items).toHaveLength(20);
    const got = r.body.items.map((i: any) => i.item_id);
    expect(got).not.toContain(seed);
    for (const id of got) expect(facts(id).soldOut).toBe(false);
    const scores = r.body.items.map((i: any) => i.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
    const comedy = await api(`/v1/items/${seed}/similar?k=10&category=Films>Comedy&max_price=25&include=metadata`);
    expect(comedy.body.items).toHaveLength(10);
    for (const i of comedy.body.items) {
      expect(facts(i.item_id).cat).toBe("Comedy");
      expect(i.item.price).toBeLessThanOrEqual(25);
    }
  });

  it("answers the model's items for an item only the catalog knows (by its category's direction, under the rules), 404 for an unknown one", async () => {
    const r = await api(`/v1/items/${extras[2]}/similar?k=5&category=${encodeURIComponent("Films > Drama")}`);
    expect(r.body.source).toBe("model");
    expect(r.body.reason).toBeUndefined();
    expect(r.body.items).toHaveLength(5);
    for (const i of r.body.items) {
      expect(facts(i.item_id).cat).toBe("Drama");
      expect(facts(i.item_id).soldOut).toBe(false);
    }
    expect(r.body.items.map((i: any) => i.item_id)).not.toContain(extras[2]);
    const none = await api(`/v1/items/ghost-${uid()}/similar`);
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe("item_not_found");
  });
});
