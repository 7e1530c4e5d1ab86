/**
 * The catalog API on miniflare's local D1: item CRUD, partial updates, bulk uploads with bad
 * rows, and events on items only the catalog knows.
 */
import { describe, expect, it } from "vitest";
import { api, ev, item, logged, manifest, uid } from "./helpers";

const known = manifest.items.ids;

describe("catalog items", () => {
  it("creates, reads, partially updates, deletes and revives an item", async () => {
    const id = `sku-${uid()}`;
    const put = await api(`/v1/items/${id}`, {
      method: "PUT",
      body: { title: "Trail shoe", category_path: ["Shoes", "Running"], price: 89.9, currency: "EUR", url: "https://shop.example/p/1", attributes: { brand: "Acme" } },
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ id, title: "Trail shoe", category_path: ["Shoes", "Running"], price: 89.9, available: true, in_model: false, attributes: { brand: "Acme" } });
    const patched = await api(`/v1/items/${id}`, { method: "PATCH", body: { available: false, price: 79 } });
    expect(patched.body).toMatchObject({ available: false, price: 79, title: "Trail shoe", url: "https://shop.example/p/1" });
    expect((await api(`/v1/items/${id}`)).body).toMatchObject({ available: false, price: 79 });
    expect((await api(`/v1/items/${id}`, { method: "PATCH", body: { url: null } })).body.url).toBeNull();
    expect((await api(`/v1/items/${id}`, { method: "DELETE" })).body).toEqual({ id, deleted: true });
    expect((await api(`/v1/items/${id}`)).status).toBe(404);
    expect((await api(`/v1/items/${id}`, { method: "DELETE" })).status).toBe(404);
    expect((await api(`/v1/items/${id}`, { method: "PATCH", body: { price: 1 } })).body.error.code).toBe("item_not_found");
    const back = await api(`/v1/items/${id}`, { method: "PUT", body: { title: "Trail shoe v2" } });
    expect(back.body).toMatchObject({ title: "Trail shoe v2", available: true, category_path: [] });
  });

  it("marks items the model knows", async () => {
    const r = await api(`/v1/items/${known[0]}`, { method: "PUT", body: { title: "A film" } });
    expect(r.body.in_model).toBe(true);
  });

  const bad: [string, unknown, string][] = [
    ["a missing title", { price: 3 }, "title"],
    ["a negative price", { title: "x", price: -1 }, "price"],
    ["a lower-case currency", { title: "x", currency: "eur" }, "currency"],
    ["a category level with '>'", { title: "x", category_path: ["a > b"] }, "category_path[0]"],
    ["a URL that is not http(s)", { title: "x", url: "javascript:alert(1)" }, "url"],
    ["an unknown field", { title: "x", colour: "red" }, "body"],
    ["an id that differs from the path", { id: "other", title: "x" }, "id"],
  ];
  for (const [name, body, field] of bad) {
    it(`rejects ${name} with 400 naming the field and stores nothing`, async () => {
      const id = `bad-${uid()}`;
      const r = await api(`/v1/items/${id}`, { method: "PUT", body });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
      expect(r.body.error.field).toBe(field);
      expect((await api(`/v1/items/${id}`)).status).toBe(404);
    });
  }
});

describe("bulk catalog upload", () => {
  it("stores the good rows of a JSON array and reports each bad row by index", async () => {
    const p = uid("b");
    const rows = [item(`${p}-1`), { id: `${p}-2`, price: 5 }, item(`${p}-3`, { price: "cheap" }), item(`${p}-4`), { title: "no id" }];
    const r = await api("/v1/items/batch", { body: rows });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ received: 5, stored: 2, rejected: 3 });
    expect(r.body.errors.map((e: any) => [e.index, e.field])).toEqual([
      [1, "items[1].title"],
      [2, "items[2].price"],
      [4, "items[4].id"],
    ]);
    expect((await api(`/v1/items/${p}-1`)).status).toBe(200);
    expect((await api(`/v1/items/${p}-4`)).status).toBe(200);
    expect((await api(`/v1/items/${p}-2`)).status).toBe(404);
  });

  it("reads NDJSON, reporting a line that is not JSON", async () => {
    const p = uid("n");
    const raw = [JSON.stringify(item(`${p}-1`)), "{not json", JSON.stringify(item(`${p}-2`)), ""].join("\n");
    const r = await api("/v1/items/batch", { raw, headers: { "content-type": "application/x-ndjson" } });
    expect(r.body).toMatchObject({ received: 3, stored: 2, rejected: 1 });
    expect(r.body.errors[0]).toMatchObject({ index: 1, code: "malformed_json" });
  });

  it("loads 10,000 items in one request, and refuses 10,001", async () => {
    const p = uid("big");
    const rows = Array.from({ length: 10_000 }, (_, i) => item(`${p}-${i}`, { price: i }));
    const r = await api("/v1/items/batch", { body: rows });
    expect(r.body).toMatchObject({ received: 10_000, stored: 10_000, rejected: 0, not_in_model: 10_000 });
    expect((await api(`/v1/items/${p}-9999`)).body.price).toBe(9999);
    const over = await api("/v1/items/batch", { body: [...rows, item(`${p}-x`)] });
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe("batch_too_large");
  });

  it("applies partial updates in bulk and reports ids that are not in the catalog", async () => {
    const p = uid("pp");
    await api("/v1/items/batch", { body: [item(`${p}-1`), item(`${p}-2`)] });
    const r = await api("/v1/items/batch?partial=true", { body: [{ id: `${p}-1`, available: false }, { id: `${p}-nope`, price: 3 }, { id: `${p}-2`, price: 1.5 }] });
    expect(r.body).toMatchObject({ stored: 2, rejected: 1 });
    expect(r.body.errors[0]).toMatchObject({ index: 1, code: "item_not_found" });
    expect((await api(`/v1/items/${p}-1`)).body).toMatchObject({ available: false, price: 10 });
    expect((await api(`/v1/items/${p}-2`)).body).toMatchObject({ available: true, price: 1.5 });
  });

  it("lets the last row of a repeated id win", async () => {
    const id = `dup-${uid()}`;
    const r = await api("/v1/items/batch", { body: [item(id, { price: 1 }), item(id, { price: 2 })] });
    expect(r.body.stored).toBe(1);
    expect((await api(`/v1/items/${id}`)).body.price).toBe(2);
  });

  it("rejects a body that is not an array, and an empty one", async () => {
    expect((await api("/v1/items/batch", { body: { id: "x" } })).body.error.code).toBe("invalid_request");
    expect((await api("/v1/items/batch", { body: [] })).body.error.code).toBe("empty_batch");
    expect((await api("/v1/items/batch", { raw: "[1,", headers: { "content-type": "application/json" } })).body.error.code).toBe("malformed_json");
  });
});

describe("events on items only the catalog knows", () => {
  it("accepts and logs them, leaves the GRU state as it is, and rejects ids nobody knows", async () => {
    const newItem = `new-${uid()}`;
    await api(`/v1/items/${newItem}`, { method: "PUT", body: { title: "New arrival" } });
    const u = uid();
    const first = await api("/v1/events", { body: ev(u, known[0]!, { event_id: "k1" }) });
    const before = (await api(`/v1/users/${u}`)).body;
    const r = await api("/v1/events", { body: [ev(u, newItem, { event_id: "c1" }), ev(u, newItem, { event_id: "c2", type: "purchase" })] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ accepted: 2, applied: 0, logged_only: 2 });
    expect(r.body.results.map((x: any) => x.status)).toEqual(["logged", "logged"]);
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
    expect(first.body.applied).toBe(1);
    const rows = await logged(u, 3);
    expect(rows.map((x) => [x.item_id, x.in_model])).toEqual([
      [known[0], true],
      [newItem, false],
      [newItem, false],
    ]);
    const nobody = await api("/v1/events", { body: [ev(u, known[1]!), ev(u, `ghost-${uid()}`)] });
    expect(nobody.status).toBe(422);
    expect(nobody.body.error.field).toBe("events[1].item_id");
  });
});
