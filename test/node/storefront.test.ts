/**
 * The integration a shop does, end to end on the local stack (wrangler dev with its local D1,
 * redis-server behind our Upstash bridge): load a catalog in bulk, mark stock with the typed
 * client, track a shopper with the browser snippet and a publishable key, and check that
 * recommendations honour availability, purchases and filters; a new shopper gets popular items;
 * the OpenAPI document validates against the OpenAPI 3.1 specification.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileErrors, validate } from "@readme/openapi-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import manifest from "../../models/ml-small/manifest.json";
import { createRecommender } from "../../sdk/gru.js";
import { freePort } from "../../local/redis-server.ts";
import { type Stack, startStack } from "../../local/stack.ts";
import { createClient, signUserToken } from "../../src/client.ts";

const dir = mkdtempSync(join(tmpdir(), "gru-storefront-"));
const SK = "sk_storefront";
const PK = "pk_storefront";
let stack: Stack;
const ids = manifest.items.ids.slice(0, 1500);
const soldOut = new Set(ids.filter((_, i) => i % 5 === 2));
const category = (i: number) => (i % 2 ? "Books" : "Music");
/** The shop's user-token secret; its `$` parts must reach the worker literally (no expansion in the env file). */
const TOKEN_SECRET = "shop-$HOME-${PATH}-secret";

beforeAll(async () => {
  stack = await startStack({ port: await freePort(), apiKey: SK, publishableKey: PK, dataDir: dir, vars: { CORS_ORIGINS: "https://shop.example", USER_TOKEN_SECRETS: TOKEN_SECRET } });
});
afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("a shop integrates the recommender", () => {
  it("loads its catalog in bulk (NDJSON) and marks stock with the typed client", async () => {
    const ndjson = ids
      .map((id, i) => JSON.stringify({ id, title: `Product ${id}`, category_path: ["Shop", category(i)], price: 5 + (i % 40), currency: "EUR", available: true }))
      .join("\n");
    const r = await fetch(`${stack.url}/v1/items/batch`, { method: "POST", headers: { authorization: `Bearer ${SK}`, "content-type": "application/x-ndjson" }, body: ndjson });
    expect(await r.json()).toMatchObject({ received: ids.length, stored: ids.length, rejected: 0 });
    const client = createClient(stack.url, { key: SK });
    const updates = await fetch(`${stack.url}/v1/items/batch?partial=true`, {
      method: "POST",
      headers: { authorization: `Bearer ${SK}`, "content-type": "application/json" },
      body: JSON.stringify([...soldOut].map((id) => ({ id, available: false }))),
    });
    expect(((await updates.json()) as { stored: number }).stored).toBe(soldOut.size);
    const one = await client.v1.items[":item_id"].$patch({ param: { item_id: ids[0]! }, json: { price: 12.5 } });
    expect(one.status).toBe(200);
    if (one.status === 200) {
      const item = await one.json();
      expect(item.price).toBe(12.5);
      expect(item.in_model).toBe(true);
    }
  });

  it("refuses catalog writes and exports to the publishable key", async () => {
    const browser = createClient(stack.url, { key: PK });
    const r = await browser.v1.items[":item_id"].$put({ param: { item_id: "x" }, json: { title: "hijack" } });
    expect(r.status).toBe(403);
    const e = await fetch(`${stack.url}/v1/events/export`, { headers: { authorization: `Bearer ${PK}` } });
    expect(e.status).toBe(403);
  });

  it("tracks a shopper from the storefront snippet and honours availability, purchases and filters", async () => {
    const errors: Error[] = [];
    const gru = createRecommender({ endpoint: stack.url, key: PK, storage: null, flushIntervalMs: 50, onError: (e) => errors.push(e) });
    const history = ids.filter((id) => !soldOut.has(id)).slice(20, 28);
    for (const id of history) gru.track("view", id);
    gru.track("purchase", history[7]!);
    const recs = await gru.recommend({ k: 50, excludeRecent: false });
    expect(errors).toEqual([]);
    expect(recs.source).toBe("model");
    expect(recs.items).toHaveLength(50);
    const got = recs.items.map((i) => i.item_id);
    expect(got).not.toContain(history[7]);
    for (const id of got) {
      expect(soldOut.has(id), id).toBe(false);
      expect(ids).toContain(id);
    }
    const books = await gru.recommend({ k: 10, category: "Shop > Books", maxPrice: 20, include: "metadata" });
    expect(books.items).toHaveLength(10);
    for (const i of books.items) {
      expect(i.item!.category_path).toEqual(["Shop", "Books"]);
      expect(i.item!.price!).toBeLessThanOrEqual(20);
    }
    const similar = await gru.similar(history[0]!, { k: 5 });
    expect(similar.items).toHaveLength(5);
    // the shop's own list re-ranked for this shopper, capped per category, an over-cap item after the others
    const search = ids.filter((id) => !soldOut.has(id)).slice(60, 72);
    const ranked = await gru.rank([...search, history[7]!], { maxPerCategory: 3, categoryLevel: 2, boost: [{ attribute: "brand", value: "none", weight: 1 }] });
    expect(ranked.source).toBe("model");
    expect(ranked.excluded).toEqual([history[7]]);
    expect(ranked.items.map((i) => i.item_id).sort()).toEqual([...search].sort());
    // the typed client reads the same shopper's recommendations with the secret key
    const client = createClient(stack.url, { key: SK });
    const res = await client.v1.users[":user_id"].recommendations.$get({ param: { user_id: gru.userId }, query: { k: "5" } });
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    const body = await res.json();
    expect(body.items.map((i) => i.item_id)).not.toContain(history[7]);
  });

  it("lets a signed-in customer's browser read their own state with the token the shop's server signed, and nobody else's", async () => {
    const customer = `customer-${process.pid}`;
    const errors: Error[] = [];
    const token = await signUserToken(TOKEN_SECRET, customer, 300); // on the shop's server, after its login
    const gru = createRecommender({ endpoint: stack.url, key: PK, storage: null, flushIntervalMs: 50, onError: (e) => errors.push(e) });
    gru.identify(customer, { token });
    const bought = ids.filter((id) => !soldOut.has(id))[40]!;
    gru.track("purchase", bought);
    await gru.flush();
    expect(errors).toEqual([]);
    const own = await fetch(`${stack.url}/v1/users/${customer}/state`, { headers: { authorization: `Bearer ${PK}`, "x-user-token": token } });
    expect(own.status).toBe(200);
    expect(((await own.json()) as { purchased: string[] }).purchased).toEqual([bought]);
    // An attacker with the page's publishable key and the customer's id, or their own token, reads nothing.
    const attacker = await signUserToken(TOKEN_SECRET, "customer-attacker", 300);
    for (const headers of [{} as Record<string, string>, { "x-user-token": attacker }, { "x-user-token": await signUserToken("guessed", customer, 300) }]) {
      const r = await fetch(`${stack.url}/v1/users/${customer}/state`, { headers: { authorization: `Bearer ${PK}`, ...headers } });
      expect([401, 403]).toContain(r.status);
      expect(await r.text()).not.toContain(bought);
    }
    // The typed client carries the token too.
    const browser = createClient(stack.url, { key: PK, userToken: token });
    const summary = await browser.v1.users[":user_id"].$get({ param: { user_id: customer } });
    expect(summary.status).toBe(200);
  });

  it("gives a new shopper popular items", async () => {
    const gru = createRecommender({ endpoint: stack.url, key: PK, storage: null });
    const r = await gru.recommend({ k: 5 });
    expect(r).toMatchObject({ source: "popular", reason: "cold-user" });
    expect(r.items).toHaveLength(5);
    for (const i of r.items) expect(soldOut.has(i.item_id)).toBe(false);
  });

  it("exports the event log with `npm run export-events` in the format the training code reads", async () => {
    const out = join(dir, "events.ndjson");
    let lines: any[] = [];
    for (let i = 0; i < 40 && lines.length < 10; i++) {
      await promisify(execFile)(join(process.cwd(), "node_modules", ".bin", "tsx"), ["scripts/export-events.ts", "--url", stack.url, "--key", SK, "--out", out]);
      lines = readFileSync(out, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
      if (lines.length < 10) await new Promise((r) => setTimeout(r, 250));
    }
    expect(lines.length).toBeGreaterThanOrEqual(10); // the shopper's 8 views and 1 purchase, the customer's purchase
    for (const l of lines) {
      expect(typeof l.user_id).toBe("string");
      expect(typeof l.item_id).toBe("string");
      expect(Number.isInteger(l.timestamp)).toBe(true);
    }
    const purchases = lines.filter((l) => l.type === "purchase");
    expect(purchases).toHaveLength(2);
    expect(purchases.filter((l) => l.user_id === `customer-${process.pid}`)).toHaveLength(1);
  });

  it("publishes an OpenAPI 3.1 document that validates, and a docs page", async () => {
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as any;
    expect(doc.openapi).toBe("3.1.0");
    const result = await validate(structuredClone(doc));
    if (!result.valid) throw new Error(compileErrors(result));
    for (const p of ["/v1/events", "/v1/events/export", "/v1/users/{user_id}/recommendations", "/v1/items/{item_id}", "/v1/items/batch", "/v1/items/{item_id}/similar"]) {
      expect(doc.paths[p], p).toBeDefined();
    }
    const docs = await fetch(`${stack.url}/docs`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain("/openapi.json");
  });
});
