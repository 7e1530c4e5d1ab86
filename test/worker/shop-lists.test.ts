/**
 * What shops do with lists beyond recommendations: re-ranking their own lists for a shopper
 * (POST /v1/users/{id}/rank), boosts, a cap per category and an exploration share for new
 * arrivals, per request and as an experiment variant's preset. Real workerd, Redis and D1; the
 * catalog holds every model item (three categories, brands, every seventh sold out), most of them
 * arrived 90 days ago, six of them (three the model knows, three only the catalog knows) today.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { api, ev, manifest, newItemCosines, uid } from "./helpers";

const ids = manifest.items.ids;
const CATS = ["Drama", "Comedy", "Action"];
const cat = (i: number) => CATS[i % 3]!;
const brand = (i: number) => (i % 5 === 0 ? "Acme" : "Other");
const soldOut = (i: number) => i % 7 === 3;
const catalogOnly = ["arrival-a", "arrival-b", "arrival-c"];
const DAY = 86_400_000;
const newModelItems = [ids[200]!, ids[400]!, ids[600]!];

beforeAll(async () => {
  // Everything arrived 90 days ago (the shop sends arrival dates) except the catalog-only items and three model items (arriving now).
  const arrived = new Date(Date.now() - 90 * DAY).toISOString();
  const rows = ids.map((id, i) => ({
    id,
    title: `Film ${id}`,
    category_path: ["Films", cat(i)],
    price: (i % 50) + 1,
    currency: "EUR",
    available: !soldOut(i),
    attributes: { brand: brand(i) },
    ...(newModelItems.includes(id) ? {} : { created_at: arrived }),
  }));
  rows.push(...catalogOnly.map((id) => ({ id, title: `New ${id}`, category_path: ["Films", "Drama"], price: 5, currency: "EUR", available: true, attributes: { brand: "Acme" } })));
  expect((await api("/v1/items/batch", { body: rows })).body).toMatchObject({ stored: ids.length + 3, rejected: 0 });
  expect((await api(`/v1/items/${ids[1]}`)).body.created_at).toBe(arrived);
  // A full replace without a date keeps the arrival date; a patch can set it.
  await api(`/v1/items/${ids[2]}`, { method: "PUT", body: { title: "Film again", category_path: ["Films", cat(2)], price: 3, available: true, attributes: { brand: brand(2) } } });
  expect((await api(`/v1/items/${ids[2]}`)).body.created_at).toBe(arrived);
});

const index = new Map(ids.map((id, i) => [id, i]));
const catOf = (id: string) => (index.has(id) ? cat(index.get(id)!) : "Drama");
const brandOf = (id: string) => (index.has(id) ? brand(index.get(id)!) : "Acme");
const itemIds = (r: { body: { items: { item_id: string }[] } }) => r.body.items.map((i) => i.item_id);

async function userWithHistory(n = 8) {
  const u = uid();
  const r = await api("/v1/events", { body: ids.slice(30, 30 + n).map((id, j) => ev(u, id, { event_id: `h${j}` })) });
  expect(r.status).toBe(200);
  return u;
}

describe("re-ranking a shop's list", () => {
  it("returns the given items in the model's order with its scores, the rules applied, a new arrival scored by its warm row", async () => {
    const u = await userWithHistory();
    const top = (await api(`/v1/users/${u}/recommendations?k=100`)).body.items as { item_id: string; score: number }[];
    const picked = top.filter((_, j) => j % 4 === 1).slice(0, 20);
    const shuffled = [...picked].reverse();
    const sold = ids.find((_, i) => soldOut(i) && !picked.some((p) => p.item_id === ids[i]))!;
    const bought = picked[5]!.item_id;
    await api("/v1/events", { body: ev(u, bought, { type: "purchase", event_id: "buy" }) });
    const body = { item_ids: [...shuffled.map((p) => p.item_id), sold, "arrival-b", "no-such-item", shuffled[0]!.item_id] };
    const r = await api(`/v1/users/${u}/rank`, { body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ user_id: u, source: "model", experiment: null });
    const expected = picked.map((p) => p.item_id).filter((id) => id !== bought);
    const trained = r.body.items.filter((i: any) => !i.warm);
    // The model's order: the same as in the user's full recommendations (after the purchase the state moved: compare the order of these items only).
    const after = (await api(`/v1/users/${u}/recommendations?k=100`)).body.items.map((i: any) => i.item_id) as string[];
    const inAfter = expected.filter((id) => after.includes(id));
    expect(trained.map((i: any) => i.item_id).filter((id: string) => after.includes(id))).toEqual([...inAfter].sort((a, b) => after.indexOf(a) - after.indexOf(b)));
    expect(trained.map((i: any) => i.item_id).sort()).toEqual([...expected].sort());
    for (let j = 1; j < r.body.items.length; j++) expect(r.body.items[j - 1].score).toBeGreaterThanOrEqual(r.body.items[j].score);
    expect(r.body.items.every((i: any) => i.source === "model")).toBe(true);
    expect(r.body.items.filter((i: any) => i.warm).map((i: any) => i.item_id)).toEqual(["arrival-b"]);
    expect(r.body.excluded).toEqual([sold, bought, "no-such-item"].sort((a, b) => body.item_ids.indexOf(a) - body.item_ids.indexOf(b)));
    expect(r.body.items).toHaveLength(expected.length + 1);
  });

  it("gives a new shopper the list in popularity order, with the reason", async () => {
    const u = uid();
    const popular = itemIds(await api(`/v1/users/${u}/recommendations?k=30`));
    const given = [...popular].reverse();
    const r = await api(`/v1/users/${u}/rank`, { body: { item_ids: given } });
    expect(r.body).toMatchObject({ source: "popular", reason: "cold-user", excluded: [] });
    expect(itemIds(r)).toEqual(popular);
  });

  it("applies filters from the body and refuses bad requests with clear errors", async () => {
    const u = await userWithHistory();
    const given = ids.slice(100, 160);
    const r = await api(`/v1/users/${u}/rank`, { body: { item_ids: given, category: "Films > Comedy", exclude: [ids[101]] } });
    expect(r.status).toBe(200);
    for (const i of r.body.items) expect(catOf(i.item_id)).toBe("Comedy");
    expect(r.body.excluded).toContain(ids[101]);
    expect(r.body.items.length + r.body.excluded.length).toBe(60);
    const tooMany = await api(`/v1/users/${u}/rank`, { body: { item_ids: ids.slice(0, 501) } });
    expect(tooMany.status).toBe(413);
    expect(tooMany.body.error.code).toBe("batch_too_large");
    for (const bad of [{}, { item_ids: [] }, { item_ids: ["a"], boosts: [{ brand: "x" }] }, { item_ids: ["a"], min_price: 5, max_price: 1 }, { item_ids: ["a"], explore: 2 }]) {
      const x = await api(`/v1/users/${u}/rank`, { body: bad });
      expect(x.status, JSON.stringify(bad)).toBe(400);
      expect(x.body.error.code).toBeTypeOf("string");
    }
  });
});

describe("boosts, the cap per category and the exploration share", () => {
  it("boosts exactly: the boosted list is the top of the whole ranking re-scored, even past the first fetch", async () => {
    const u = await userWithHistory();
    const full = (await api(`/v1/users/${u}/recommendations?k=100`)).body.items as { item_id: string; score: number }[];
    // A boost nearly as large as the gap between the 10th and the 100th score: large enough to lift
    // items from deep in the ranking, small enough that nothing past the 100th can reach the top 10.
    const w = Math.round(0.95 * (full[9]!.score - full[99]!.score) * 1e3) / 1e3;
    const r = await api(`/v1/users/${u}/recommendations?k=10&boost=${encodeURIComponent(`brand:Acme^${w}`)}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const reference = full
      .map((i) => ({ id: i.item_id, s: i.score + (brandOf(i.item_id) === "Acme" ? w : 0) }))
      .sort((a, b) => b.s - a.s)
      .slice(0, 10);
    // The reference is exact only if nothing outside the top 100 could reach it.
    expect(reference.at(-1)!.s).toBeGreaterThanOrEqual(full.at(-1)!.score + w);
    expect(itemIds(r)).toEqual(reference.map((x) => x.id));
    for (const i of r.body.items) if (brandOf(i.item_id) === "Acme") expect(i.boost).toBeCloseTo(w, 6);
    // A boosted item came from beyond the first 30 candidates (the first fetch for k=10 with boosts:
    // max(3k, k + 20), src/domain/arrange.ts): the over-fetch had to grow.
    const rawRank = (id: string) => full.findIndex((x) => x.item_id === id);
    expect(Math.max(...itemIds(r).map(rawRank))).toBeGreaterThan(29);
  });

  it("caps items per category and still fills the list from the next best", async () => {
    const u = await userWithHistory();
    const r = await api(`/v1/users/${u}/recommendations?k=10&max_per_category=4&category_level=2`);
    expect(r.body.items).toHaveLength(10);
    const counts = new Map<string, number>();
    for (const id of itemIds(r)) counts.set(catOf(id), (counts.get(catOf(id)) ?? 0) + 1);
    for (const n of counts.values()) expect(n).toBeLessThanOrEqual(4);
    const full = itemIds(await api(`/v1/users/${u}/recommendations?k=100`));
    const greedy: string[] = [];
    const seen = new Map<string, number>();
    for (const id of full) {
      if ((seen.get(catOf(id)) ?? 0) >= 4) continue;
      seen.set(catOf(id), (seen.get(catOf(id)) ?? 0) + 1);
      greedy.push(id);
      if (greedy.length === 10) break;
    }
    expect(itemIds(r)).toEqual(greedy);
  });

  it("keeps the exploration share for new arrivals, ranked by the model (warm rows for the catalog-only ones)", async () => {
    const u = await userWithHistory();
    const r = await api(`/v1/users/${u}/recommendations?k=10&explore=0.3&new_days=7`);
    expect(r.status).toBe(200);
    const explored = r.body.items.filter((i: any) => i.explore);
    expect(explored).toHaveLength(3);
    expect(r.body.items.map((i: any, j: number) => (i.explore ? j : -1)).filter((j: number) => j >= 0)).toEqual([2, 5, 7]);
    const more = await api(`/v1/users/${u}/recommendations?k=10&explore=0.6&new_days=7`);
    const six = more.body.items.filter((i: any) => i.explore);
    expect(six.map((i: any) => i.item_id).sort()).toEqual([...newModelItems, ...catalogOnly].sort());
    for (let j = 1; j < six.length; j++) expect(six[j - 1].score).toBeGreaterThanOrEqual(six[j].score);
    expect(explored.map((i: any) => i.item_id)).toEqual(six.slice(0, 3).map((i: any) => i.item_id));
    expect(six.filter((i: any) => i.warm).map((i: any) => i.item_id).sort()).toEqual([...catalogOnly].sort());
    // new arrivals that earn their place keep it, unflagged: only the missing share is explored
    const boosted = await api(`/v1/users/${u}/recommendations?k=10&explore=0.3&new_days=7&boost=${encodeURIComponent("new:7^20")}`);
    expect(itemIds(boosted).slice(0, 6).sort()).toEqual([...newModelItems, ...catalogOnly].sort());
    expect(boosted.body.items.some((i: any) => i.explore)).toBe(false);
    // a cold shopper gets them too, newest first, among popular items
    const cold = await api(`/v1/users/${uid()}/recommendations?k=10&explore=0.2&new_days=7`);
    expect(cold.body.items.filter((i: any) => i.explore && i.source === "new")).toHaveLength(2);
  });

  it("boosts a cold shopper's popular list and caps similar items", async () => {
    const cold = await api(`/v1/users/${uid()}/recommendations?k=10&boost=${encodeURIComponent("brand:Acme^5")}`);
    expect(cold.body.source).toBe("popular");
    expect(itemIds(cold).every((id) => brandOf(id) === "Acme")).toBe(true);
    const sim = await api(`/v1/items/${ids[30]}/similar?k=12&max_per_category=2&category_level=2`);
    expect(sim.body.source).toBe("model");
    const counts = new Map<string, number>();
    for (const id of itemIds(sim)) counts.set(catOf(id), (counts.get(catOf(id)) ?? 0) + 1);
    expect([...counts.values()].every((n) => n <= 2)).toBe(true);
    expect(sim.body.items.length).toBe(6);
    expect((await api(`/v1/users/x/recommendations?boost=${encodeURIComponent("brand")}`)).status).toBe(400);
  });

  it("serves a rank experiment: the shop's own order against the model with a preset cap and boost", async () => {
    const where = `rank-${crypto.randomUUID().slice(0, 8)}`;
    const exp = {
      id: where,
      name: "personalised search",
      placement: where,
      variants: [
        { key: "shop", strategy: { type: "given_order" } },
        { key: "model", strategy: { type: "model", rules: { max_per_category: 2, category_level: 2, boosts: [{ attribute: "brand", value: "Acme", weight: 0.5 }] } } },
      ],
    };
    expect((await api("/v1/admin/experiments", { body: exp })).status).toBe(201);
    expect((await api(`/v1/admin/experiments/${where}/start`, { method: "POST" })).status).toBe(200);
    const u = await userWithHistory();
    const given = ids.slice(300, 330);
    const shop = await api(`/v1/users/${u}/rank?placement=${where}&variant=shop`, { body: { item_ids: given } });
    expect(shop.body).toMatchObject({ experiment: where, variant: "shop", source: "popular", reason: "strategy" });
    expect(itemIds(shop)).toEqual(given.filter((id) => !soldOut(index.get(id)!)));
    const model = await api(`/v1/users/${u}/rank?placement=${where}&variant=model`, { body: { item_ids: given } });
    expect(model.body).toMatchObject({ experiment: where, variant: "model", source: "model" });
    // Capped at two per category first; over-cap items follow, none dropped.
    const firstSix = itemIds(model).slice(0, 6);
    for (const c of CATS) expect(firstSix.filter((id) => catOf(id) === c)).toHaveLength(2);
    expect(itemIds(model).sort()).toEqual(itemIds(shop).sort());
    expect(model.body.items.some((i: any) => i.boost === 0.5)).toBe(true);
  });
});

describe("per-placement presets", () => {
  it("applies a placement's preset to every list served there, under a variant's rules, until it is removed", async () => {
    const where = `pp-${crypto.randomUUID().slice(0, 8)}`;
    const put = await api(`/v1/admin/placements/${where}`, { method: "PUT", body: { max_per_category: 2, category_level: 2, boosts: [{ attribute: "brand", value: "Acme", weight: 0.25 }] } });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body).toMatchObject({ placement: where, rules: { max_per_category: 2 } });
    expect((await api(`/v1/admin/placements/${where}`)).body.rules.boosts).toHaveLength(1);
    expect((await api("/v1/admin/placements")).body.placements.map((p: any) => p.placement)).toContain(where);
    const u = await userWithHistory();
    const capped = await api(`/v1/users/${u}/recommendations?k=6&placement=${where}`);
    const counts = new Map<string, number>();
    for (const id of itemIds(capped)) counts.set(catOf(id), (counts.get(catOf(id)) ?? 0) + 1);
    expect([...counts.values()]).toEqual([2, 2, 2]);
    expect(capped.body.items.filter((i: any) => brandOf(i.item_id) === "Acme").every((i: any) => i.boost === 0.25)).toBe(true);
    // the request's own cap wins; its boosts add to the preset's
    const own = await api(`/v1/users/${u}/recommendations?k=6&placement=${where}&max_per_category=6&boost=${encodeURIComponent("brand:Acme^0.5")}`);
    expect(own.body.items.filter((i: any) => brandOf(i.item_id) === "Acme").every((i: any) => i.boost === 0.75)).toBe(true);
    // re-ranking on the placement gets it too
    const ranked = await api(`/v1/users/${u}/rank?placement=${where}`, { body: { item_ids: ids.slice(300, 320) } });
    const firstSix = itemIds(ranked).slice(0, 6);
    for (const c of CATS) expect(firstSix.filter((id) => catOf(id) === c)).toHaveLength(2);
    expect((await api(`/v1/admin/placements/${where}`, { method: "DELETE" })).body).toEqual({ placement: where, deleted: true });
    expect((await api(`/v1/admin/placements/${where}`)).status).toBe(404);
    const plain = await api(`/v1/users/${u}/recommendations?k=6&placement=${where}`);
    expect(plain.body.items.some((i: any) => i.boost)).toBe(false);
    expect((await api(`/v1/admin/placements/${where}`, { method: "PUT", body: { max_per_category: 0 } })).status).toBe(400);
    expect((await api(`/v1/admin/placements/${where}`, { method: "PUT", body: { bogus: 1 } })).status).toBe(400);
  });
});

describe("new arrivals before a retrain", () => {
  it("ranks, recommends and finds as similar a new arrival at once from its category's items, walking up the category path", async () => {
    const tiny = [ids[700]!, ids[701]!, ids[702]!];
    for (const id of tiny) expect((await api(`/v1/items/${id}`, { method: "PATCH", body: { category_path: ["Films", "Tiny"] } })).status).toBe(200);
    expect((await api("/v1/items/batch", { body: [{ id: "arrival-d", title: "Short", category_path: ["Films", "Tiny", "Shorts"], price: 3, currency: "EUR", available: true }] })).status).toBe(200);
    try {
      const u = await userWithHistory();
      const r = await api(`/v1/users/${u}/rank`, { body: { item_ids: [...tiny, "arrival-d"] } });
      const score = new Map(r.body.items.map((i: any) => [i.item_id, i.score]));
      const mean = tiny.reduce((s, id) => s + (score.get(id) as number), 0) / 3;
      expect(r.body.items.find((i: any) => i.item_id === "arrival-d")).toMatchObject({ source: "model", warm: true });
      expect(score.get("arrival-d")).toBeCloseTo(mean, 4);
      const recs = await api(`/v1/users/${u}/recommendations?k=4&category=${encodeURIComponent("Films > Tiny")}`);
      expect(recs.body.source).toBe("model");
      expect(itemIds(recs).sort()).toEqual([...tiny, "arrival-d"].sort());
      expect(recs.body.items.every((i: any) => i.source === "model")).toBe(true);
      expect(recs.body.items.map((i: any) => i.item_id)).toEqual(r.body.items.map((i: any) => i.item_id));
      // Similar items: the new item takes the mean direction of its category's items, w = Σ ê_i / |Σ ê_i|,
      // so cos(w, e_j) = Σ_i cos(i, j) / sqrt(Σ_i Σ_l cos(i, l)); the pairwise cosines come from the API itself.
      const tinyQ = `category=${encodeURIComponent("Films > Tiny")}`;
      const { expected, inSeedList } = await newItemCosines(tiny, tinyQ, "arrival-d");
      const ofNew = await api(`/v1/items/arrival-d/similar?k=3&${tinyQ}`);
      expect(ofNew.body).toMatchObject({ source: "model" });
      expect(itemIds(ofNew).sort()).toEqual([...tiny].sort());
      for (const it of ofNew.body.items) expect(it.score).toBeCloseTo(expected(it.item_id), 4);
      expect((await api("/v1/items/arrival-d/similar?k=10")).body.items.filter((i: any) => i.source === "model")).toHaveLength(10);
      // ... and it is found as a similar item of a trained one, scored as the seed's mean cosine with the other items of its category
      const seedList = await api(`/v1/items/${tiny[0]}/similar?k=3&${tinyQ}`);
      const found = seedList.body.items.find((i: any) => i.item_id === "arrival-d");
      expect(found).toMatchObject({ source: "model", warm: true });
      expect(found.score).toBeCloseTo(inSeedList(tiny[0]!), 4);
    } finally {
      for (const id of tiny) await api(`/v1/items/${id}`, { method: "PATCH", body: { category_path: ["Films", catOf(id)] } });
      await api("/v1/items/arrival-d", { method: "DELETE" });
    }
  });
});
