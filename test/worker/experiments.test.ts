/**
 * Experiments on the real worker (workerd, real Redis, local D1): the admin API, assignment as
 * GrowthBook computes it, QA overrides, tags on every list, exposures and attribution windows
 * read back through the results endpoint.
 */
import { describe, expect, it } from "vitest";
import { assign } from "../../src/experiments/assign";
import { KEY, PK, api, logged, manifest, uid } from "./helpers";

const placement = () => `p-${crypto.randomUUID().slice(0, 8)}`;

function experiment(id: string, where: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    name: `test ${id}`,
    placement: where,
    variants: [
      { key: "control", weight: 1, strategy: { type: "popular" } },
      { key: "model", weight: 1, strategy: { type: "model" } },
    ],
    ...extra,
  };
}

async function running(body: Record<string, unknown>) {
  const c = await api("/v1/admin/experiments", { body });
  expect(c.status, JSON.stringify(c.body)).toBe(201);
  const s = await api(`/v1/admin/experiments/${body.id}/start`, { method: "POST" });
  expect(s.status).toBe(200);
  expect(s.body.status).toBe("running");
  return s.body;
}

/** Poll the results until `done` holds (exposures and the log are written after the response). */
async function resultsWhen(id: string, done: (r: any) => boolean, query = "", timeoutMs = 15_000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(`/v1/admin/experiments/${id}/results${query}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    if (done(r.body) || Date.now() > until) return r.body;
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe("experiments admin API", () => {
  it("creates a draft, starts it, refuses a second running experiment on the same placement, stops it", async () => {
    const where = placement();
    const id = `adm-${crypto.randomUUID().slice(0, 8)}`;
    const c = await api("/v1/admin/experiments", { body: experiment(id, where, { attribution_window_hours: 2 }) });
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ id, status: "draft", salt: id, attribution_window_hours: 2, started_at: null });
    expect((await api("/v1/admin/experiments", { body: experiment(id, where) })).status).toBe(409);
    expect((await api(`/v1/admin/experiments/${id}`, { method: "PATCH", body: { name: "renamed" } })).body.name).toBe("renamed");
    expect((await api(`/v1/admin/experiments/${id}/start`, { method: "POST" })).body.status).toBe("running");
    const other = `adm2-${crypto.randomUUID().slice(0, 8)}`;
    await api("/v1/admin/experiments", { body: experiment(other, where) });
    const busy = await api(`/v1/admin/experiments/${other}/start`, { method: "POST" });
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe("placement_busy");
    const changed = await api(`/v1/admin/experiments/${id}`, { method: "PATCH", body: { name: "again" } });
    expect(changed.status).toBe(409);
    const listed = await api(`/v1/admin/experiments?status=running&placement=${where}`);
    expect(listed.body.experiments.map((e: any) => e.id)).toEqual([id]);
    const stopped = await api(`/v1/admin/experiments/${id}/stop`, { method: "POST" });
    expect(stopped.body.status).toBe("stopped");
    expect(stopped.body.stopped_at).not.toBeNull();
    expect((await api(`/v1/admin/experiments/${other}/start`, { method: "POST" })).body.status).toBe("running");
    await api(`/v1/admin/experiments/${other}/stop`, { method: "POST" });
    expect((await api(`/v1/admin/experiments/${other}`, { method: "DELETE" })).status).toBe(200);
    expect((await api(`/v1/admin/experiments/${other}`)).status).toBe(404);
  });

  it("rejects bad definitions with a clear 4xx and stores nothing", async () => {
    const where = placement();
    const bad = [
      { ...experiment("Bad Id", where) },
      { ...experiment("one-variant", where), variants: [{ key: "a", strategy: { type: "popular" } }] },
      { ...experiment("dup-keys", where), variants: [{ key: "a", strategy: { type: "popular" } }, { key: "a", strategy: { type: "popular" } }] },
      { ...experiment("bad-strategy", where), variants: [{ key: "a", strategy: { type: "magic" } }, { key: "b", strategy: { type: "popular" } }] },
      { ...experiment("neg-weight", where), variants: [{ key: "a", weight: -1, strategy: { type: "popular" } }, { key: "b", strategy: { type: "popular" } }] },
    ];
    for (const b of bad) {
      const r = await api("/v1/admin/experiments", { body: b });
      expect(r.status, JSON.stringify(b)).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
    }
    const unknownModel = await api("/v1/admin/experiments", {
      body: { ...experiment("no-such-model", where), variants: [{ key: "a", strategy: { type: "popular" } }, { key: "b", strategy: { type: "model", model_version: "v-nowhere" } }] },
    });
    expect(unknownModel.status).toBe(422);
    expect(unknownModel.body.error.code).toBe("unknown_model_version");
    expect((await api(`/v1/admin/experiments?placement=${where}`)).body.experiments).toEqual([]);
    expect((await api("/v1/admin/experiments", { body: experiment("pk-denied", where), key: PK })).status).toBe(403);
  });
});

describe("assignment and tags", () => {
  it("assigns users as GrowthBook does (same split as an independent FNV-1a implementation), the same on every request", async () => {
    const where = placement();
    const id = `sticky-${crypto.randomUUID().slice(0, 8)}`;
    await running({
      ...experiment(id, where),
      salt: "sticky-salt",
      variants: [
        { key: "a", weight: 2, strategy: { type: "popular" } },
        { key: "b", weight: 3, strategy: { type: "popular" } },
        { key: "c", weight: 5, strategy: { type: "model" } },
      ],
    });
    // Computed once with a Python implementation of GrowthBook's hash v2
    // (fnv1a32(str(fnv1a32("sticky-salt" + user))) % 10000 / 10000 into [0,.2) [.2,.5) [.5,1))
    // for shopper-0 .. shopper-11.
    const python = [2, 2, 2, 2, 0, 0, 2, 2, 1, 0, 1, 1];
    const keys = ["a", "b", "c"];
    for (let i = 0; i < python.length; i++) {
      const user = `shopper-${i}`;
      const first = await api(`/v1/users/${user}/recommendations?k=3&placement=${where}`);
      const again = await api(`/v1/users/${user}/recommendations?k=3&placement=${where}`, { key: PK });
      expect(first.body.experiment).toBe(id);
      expect(first.body.variant).toBe(keys[python[i]!]);
      expect(again.body.variant).toBe(first.body.variant);
      expect(first.body.rec_id).not.toBe(again.body.rec_id);
      expect(assign({ id, salt: "sticky-salt", variants: keys.map((k, j) => ({ key: k, weight: [2, 3, 5][j]! })) }, user)?.variant).toBe(first.body.variant);
    }
    await api(`/v1/admin/experiments/${id}/stop`, { method: "POST" });
  });

  it("tags every list; a popular variant says so; lists outside experiments get a rec_id and no experiment", async () => {
    const where = placement();
    const id = `tags-${crypto.randomUUID().slice(0, 8)}`;
    await running(experiment(id, where));
    const u = uid();
    const forced = await api(`/v1/users/${u}/recommendations?k=5&placement=${where}&variant=control`);
    expect(forced.body).toMatchObject({ experiment: id, variant: "control", source: "popular", reason: "strategy" });
    expect(forced.body.items).toHaveLength(5);
    const sim = await api(`/v1/items/${manifest.popular.ids[0]}/similar?k=4&user_id=${u}&placement=${where}&variant=model`);
    expect(sim.body).toMatchObject({ experiment: id, variant: "model", source: "model" });
    const none = await api(`/v1/users/${u}/recommendations?k=2&placement=${placement()}`);
    expect(none.body.experiment).toBeNull();
    expect(none.body.variant).toBeNull();
    expect(none.body.rec_id).toMatch(/^[0-9a-f-]{36}$/);
    const anonymous = await api(`/v1/items/${manifest.popular.ids[0]}/similar?k=2&placement=${where}`);
    expect(anonymous.body.experiment).toBeNull();
    // QA overrides: secret key only, a known variant only, never counted.
    expect((await api(`/v1/users/${u}/recommendations?placement=${where}&variant=control`, { key: PK })).status).toBe(403);
    const unknown = await api(`/v1/users/${u}/recommendations?placement=${where}&variant=nope`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe("unknown_variant");
    const r = await resultsWhen(id, (x) => x.excluded.forced_requests >= 2);
    expect(r.excluded.forced_requests).toBe(2);
    expect(r.variants.reduce((a: number, v: any) => a + v.users, 0)).toBe(0);
    await api(`/v1/admin/experiments/${id}/stop`, { method: "POST" });
  });
});

describe("exposures and attribution", () => {
  it("counts a click naming the list, and an add-to-cart and purchase of a shown item only within the window after it", async () => {
    const where = placement();
    const id = `attr-${crypto.randomUUID().slice(0, 8)}`;
    await running({ ...experiment(id, where), attribution_window_hours: 1 });
    const [a, b, c] = manifest.popular.ids.slice(0, 3) as [string, string, string];
    for (const [itemId, price] of [[a, 10], [b, 20], [c, 5]] as const) {
      const put = await api(`/v1/items/${itemId}`, { method: "PUT", body: { title: `Item ${itemId}`, price, currency: "EUR" } });
      expect(put.status).toBe(200);
    }
    const user = uid("attr");
    const list = await api(`/v1/users/${user}/recommendations?k=3&placement=${where}&exclude=`);
    expect(list.status).toBe(200);
    const recId: string = list.body.rec_id;
    const shown: string[] = list.body.items.map((i: any) => i.item_id);
    expect(shown.sort()).toEqual([a, b, c].sort());
    await resultsWhen(id, (r) => r.variants.some((v: any) => v.exposures === 1));
    const price: Record<string, number> = { [a]: 10, [b]: 20, [c]: 5 };
    const [x0, x1, x2] = list.body.items.map((i: any) => i.item_id) as [string, string, string];
    const now = Date.now();
    const events = [
      { event_id: "k1", user_id: user, item_id: x0, type: "click", rec_id: recId },
      { event_id: "k2", user_id: user, item_id: x0, type: "click", rec_id: recId }, // same list and item: once
      { event_id: "k3", user_id: user, item_id: x1, type: "click", rec_id: "not-a-list" }, // no such list
      { event_id: "k4", user_id: user, item_id: x1, type: "add_to_cart", timestamp: now + 30 * 60_000 },
      { event_id: "k5", user_id: user, item_id: x1, type: "purchase", timestamp: now + 40 * 60_000 },
      { event_id: "k6", user_id: user, item_id: x2, type: "purchase", timestamp: now + 2 * 3600_000 }, // after the window
      { event_id: "k7", user_id: user, item_id: x0, type: "purchase", timestamp: now - 10 * 60_000 }, // before the list
    ];
    const sent = await api("/v1/events", { body: events });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await logged(user, events.length);
    const r = await resultsWhen(id, (x) => x.variants.some((v: any) => v.clicks >= 1 && v.purchases >= 1));
    const v = r.variants.find((x: any) => x.key === list.body.variant);
    expect(v).toMatchObject({ users: 1, exposures: 1, clicks: 1, add_to_carts: 1, purchases: 1, revenue: price[x1], ctr: 1, conversion: 1, add_to_cart_rate: 1, revenue_per_user: price[x1] });
    const other = r.variants.find((x: any) => x.key !== list.body.variant);
    expect(other).toMatchObject({ users: 0, exposures: 0 });
    expect(r.srm.observed[list.body.variant]).toBe(1);
    await api(`/v1/admin/experiments/${id}/stop`, { method: "POST" });
  });
});
