/**
 * Bad input of any kind gets a 4xx with {"error":{"code","message"}} and changes nothing.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { api, ev, manifest, uid } from "./helpers";

const items = manifest.items.ids;
const u = uid("victim");
let before: any;

beforeAll(async () => {
  await api("/v1/events", { body: [ev(u, items[0]!, { event_id: "seed" })] });
  before = (await api(`/v1/users/${u}`)).body;
});

const cases: [string, Parameters<typeof api>[1] & { path?: string }, number, string, string?][] = [
  ["malformed JSON", { raw: '{"user_id": "' }, 400, "malformed_json"],
  ["a JSON value that is not an event", { body: 42 }, 400, "invalid_request"],
  ["user_id of the wrong type", { body: { user_id: 7, item_id: items[1], type: "view" } }, 400, "invalid_request", "user_id"],
  ["a missing item_id", { body: { user_id: u, type: "view" } }, 400, "invalid_request", "item_id"],
  ["an unknown field", { body: { ...ev(u, items[1]!), color: "red" } }, 400, "invalid_request"],
  ["an event type with spaces", { body: ev(u, items[1]!, { type: "look at" }) }, 400, "invalid_request", "type"],
  ["a timestamp far in the future", { body: ev(u, items[1]!, { timestamp: Date.now() + 7 * 86400_000 }) }, 400, "invalid_request", "timestamp"],
  ["a timestamp that is not a date", { body: ev(u, items[1]!, { timestamp: "yesterday" }) }, 400, "invalid_request", "timestamp"],
  ["an item the model does not know", { body: ev(u, "no-such-item") }, 422, "unknown_item", "item_id"],
  ["a batch with one unknown item among good ones", { body: [ev(u, items[1]!), ev(u, "nope"), ev(u, items[2]!)] }, 422, "unknown_item", "events[1].item_id"],
  ["a batch with one bad event among good ones", { body: [ev(u, items[1]!), { user_id: u }] }, 400, "invalid_request", "events[1].item_id"],
  ["an empty batch", { body: [] }, 400, "empty_batch"],
  ["a batch of 501 events", { body: Array.from({ length: 501 }, () => ev(u, items[1]!)) }, 413, "batch_too_large"],
  ["a body over the size limit", { raw: JSON.stringify([ev(u, items[1]!, { event_id: "x".repeat(200) })]).padEnd(1024 * 1024 + 10, " ") }, 413, "body_too_large"],
  ["a user id of 257 characters", { body: ev("u".repeat(257), items[1]!) }, 400, "invalid_request", "user_id"],
  ["a user id with a control character", { body: ev(`${u}\u0000`, items[1]!) }, 400, "invalid_request", "user_id"],
  ["a user id with a newline", { body: ev(`${u}\n`, items[1]!) }, 400, "invalid_request", "user_id"],
  ["an empty item id", { body: ev(u, "") }, 400, "invalid_request", "item_id"],
  ["a user id padded with spaces", { body: ev(` ${u}`, items[1]!) }, 400, "invalid_request", "user_id"],
  ["an event_id with a lone surrogate", { body: ev(u, items[1]!, { event_id: "a\ud800b" }) }, 400, "invalid_request", "event_id"],
  ["no API key", { body: ev(u, items[1]!), key: null }, 401, "unauthorized"],
  ["a wrong API key", { body: ev(u, items[1]!), key: "nope" }, 401, "unauthorized"],
  ["a form-encoded body", { raw: "user_id=x", headers: { "content-type": "application/x-www-form-urlencoded" }, body: undefined }, 415, "unsupported_media_type"],
  ["recommend=0", { body: ev(u, items[1]!), path: "/v1/events?recommend=0" }, 400, "invalid_request", "query.recommend"],
];

describe("bad input on POST /v1/events", () => {
  for (const [name, call, status, code, field] of cases) {
    it(`rejects ${name} with ${status} ${code} and leaves the state unchanged`, async () => {
      const r = await api(call.path ?? "/v1/events", { method: "POST", ...call });
      expect(r.status).toBe(status);
      expect(r.body.error.code).toBe(code);
      expect(typeof r.body.error.message).toBe("string");
      if (field) expect(r.body.error.field).toBe(field);
      expect((await api(`/v1/users/${u}`)).body).toEqual(before);
    });
  }

  it("reports every unknown item of a batch by index", async () => {
    const r = await api("/v1/events", { body: [ev(u, "a-1"), ev(u, items[1]!), ev(u, "a-2")] });
    expect(r.body.error.details.map((d: any) => [d.index, d.item_id])).toEqual([[0, "a-1"], [2, "a-2"]]);
  });
});

describe("bad input on the user endpoints", () => {
  const cases2: [string, string, number, string][] = [
    ["k=0", `/v1/users/${u}/recommendations?k=0`, 400, "invalid_request"],
    ["k above the maximum", `/v1/users/${u}/recommendations?k=101`, 400, "invalid_request"],
    ["k that is not a number", `/v1/users/${u}/recommendations?k=ten`, 400, "invalid_request"],
    ["an unknown query parameter", `/v1/users/${u}/recommendations?kk=3`, 400, "invalid_request"],
    ["a user id over 256 characters", `/v1/users/${"u".repeat(300)}/recommendations`, 400, "invalid_request"],
    ["a user id with a control character", `/v1/users/a%01b`, 400, "invalid_request"],
    ["an unknown route", `/v1/nothing`, 404, "not_found"],
  ];
  for (const [name, path, status, code] of cases2) {
    it(`rejects ${name} with ${status} ${code}`, async () => {
      const r = await api(path);
      expect(r.status).toBe(status);
      expect(r.body.error.code).toBe(code);
    });
  }

  it("does not delete without a valid key", async () => {
    const r = await api(`/v1/users/${u}`, { method: "DELETE", key: "wrong" });
    expect(r.status).toBe(401);
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
  });

  it("accepts the second of two rotated keys", async () => {
    expect((await api(`/v1/users/${u}`, { key: "second-key" })).status).toBe(200);
  });
});

describe("regressions found by fuzzing", () => {
  // Category names that are also members of Object.prototype used to reach a plain-object lookup.
  const PROTO_NAMES = ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "__defineGetter__", "propertyIsEnumerable"];
  const seedItem = items[3]!;

  beforeAll(async () => {
    // Catalog items filed under those names, with traffic, so that the popularity lists have them.
    const rows = [
      { id: seedItem, title: "seed", category_path: ["Films"] },
      ...PROTO_NAMES.map((name, i) => ({ id: items[10 + i]!, title: `in ${name}`, category_path: [name] })),
    ];
    expect((await api("/v1/items/batch", { body: rows })).body.stored).toBe(rows.length);
    const buyer = uid("proto");
    expect((await api("/v1/events", { body: PROTO_NAMES.map((_, i) => ev(buyer, items[10 + i]!)) })).status).toBe(200);
    expect((await api("/v1/admin/popular/refresh", { method: "POST" })).status).toBe(200);
  });

  for (const name of PROTO_NAMES) {
    it(`filters recommendations and similar items by a category named ${name} like any other name`, async () => {
      const mine = items[10 + PROTO_NAMES.indexOf(name)]!;
      const q = `k=5&category=${encodeURIComponent(name)}`;
      const recs = await api(`/v1/users/${uid("cold")}/recommendations?${q}`);
      expect(recs.status).toBe(200);
      expect(recs.body.items.map((i: any) => i.item_id)).toEqual([mine]);
      const similar = await api(`/v1/items/${seedItem}/similar?${q}`);
      expect(similar.status).toBe(200);
      expect(similar.body.items.map((i: any) => i.item_id)).toEqual([mine]);
      const nested = await api(`/v1/users/${uid("cold")}/recommendations?k=5&category=${encodeURIComponent(`${name} > ${name}`)}`);
      expect(nested.status).toBe(200);
      expect(nested.body.items).toEqual([]);
    });
  }

  it("answers an empty list for a category named like an Object.prototype member that no item is under", async () => {
    for (const name of ["toLocaleString", "__lookupGetter__", "__defineSetter__"]) {
      for (const path of [`/v1/users/${uid("cold")}/recommendations`, `/v1/items/${seedItem}/similar`]) {
        const r = await api(`${path}?k=5&category=${name}`);
        expect([name, r.status, r.body.items]).toEqual([name, 200, []]);
      }
    }
  });

  it("refuses an attribute named __proto__ instead of storing the item without it", async () => {
    const id = `sku-${uid()}`;
    const r = await api(`/v1/items/${id}`, { method: "PUT", raw: '{"title":"x","attributes":{"__proto__":{"polluted":true},"color":"red"}}' });
    expect([r.status, r.body.error.code, r.body.error.field]).toEqual([400, "invalid_request", "attributes.__proto__"]);
    expect((await api(`/v1/items/${id}`)).status).toBe(404);
    const ok = await api(`/v1/items/${id}`, { method: "PUT", raw: '{"title":"x","attributes":{"constructor":1,"toString":"a"}}' });
    expect(ok.body.attributes).toEqual({ constructor: 1, toString: "a" });
    for (const how of ["PATCH", "PUT"]) {
      const r2 = await api(`/v1/items/${id}`, { method: how, raw: '{"title":"y","attributes":{"__proto__":{"a":1}}}' });
      expect([how, r2.status, r2.body.error.field]).toEqual([how, 400, "attributes.__proto__"]);
    }
    const batch = await api("/v1/items/batch", { raw: `[{"id":"${id}","title":"z","attributes":{"__proto__":1}}]` });
    expect(batch.body).toMatchObject({ stored: 0, rejected: 1, errors: [{ index: 0, field: "items[0].attributes.__proto__" }] });
    expect((await api(`/v1/items/${id}`)).body).toMatchObject({ title: "x", attributes: { constructor: 1, toString: "a" } });
    // The API document still describes attributes as an object.
    const doc = (await api("/openapi.json", { key: null })).body;
    expect(doc.components.schemas.ItemInput.properties.attributes).toMatchObject({ type: "object" });
  });

  it("answers a batch of 60,000 events with 413 batch_too_large before validating any of them", async () => {
    const raw = `[${Array.from({ length: 60_000 }, () => "{}").join(",")}]`;
    expect(raw.length).toBeLessThan(1024 * 1024);
    const r = await api("/v1/events", { raw });
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe("batch_too_large");
    expect(r.body.error.field).toBe("events");
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
  });

  it("answers a full batch of 500 invalid events with one 400 listing the first 20 problems", async () => {
    const raw = `[${Array.from({ length: 500 }, () => "{}").join(",")}]`;
    const r = await api("/v1/events", { raw });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(r.body.error.field).toBe("events[0].user_id");
    expect(r.body.error.details).toHaveLength(20);
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
  });

  // Methods workerd does not parse (`FOO`, `get` on the wire) never reach the worker: the runtime
  // answers them 501 itself, and its Request refuses to build them.
  it("answers 405 with Allow for a method a path does not take, 404 for a path that does not exist", async () => {
    for (const [method, path, allow] of [
      ["PUT", "/v1/events", "POST"],
      ["PROPFIND", `/v1/users/${u}`, "DELETE, GET, HEAD"],
      ["POST", "/v1/items/sku-1", "DELETE, GET, HEAD, PATCH, PUT"],
      ["POST", "/health", "GET, HEAD"],
    ] as const) {
      const r = await api(path, { method, ...(method === "PUT" || method === "POST" ? { body: {} } : {}) });
      expect([method, r.status, r.body.error.code]).toEqual([method, 405, "method_not_allowed"]);
      expect(r.headers.get("allow")).toBe(allow);
    }
    const missing = await api("/v1/nothing/here", { method: "PROPFIND" });
    expect([missing.status, missing.body.error.code]).toEqual([404, "not_found"]);
    expect((await api(`/v1/users/${u}`)).body).toEqual(before);
  });

  it("answers 414 in the error shape for a URL longer than the worker reads", async () => {
    const r = await api(`/v1/users/${u}/recommendations?exclude=${"x".repeat(40_000)}`);
    expect([r.status, r.body.error.code]).toEqual([414, "uri_too_long"]);
    // The longest valid URL (100 excluded ids of 256 characters) is still read.
    const exclude = Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(256, "x")).join(",");
    expect((await api(`/v1/users/${u}/recommendations?exclude=${exclude}`)).status).toBe(200);
  });
});
