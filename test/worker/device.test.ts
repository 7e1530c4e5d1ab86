/**
 * What on-device scoring and the demo pages read from the worker: the live model's files
 * (publishable key, versioned and immutable), a user's state (the vector the worker stepped,
 * recent items, purchases), the pages' config, and the console's coverage view (secret key).
 */
import { describe, expect, it } from "vitest";
import golden from "../../models/ml-small/golden.json";
import { PK, api, manifest, uid } from "./helpers";
import { env, exports } from "cloudflare:workers";

const raw = async (path: string, key = PK) => {
  const res = await (exports as any).default.fetch(new Request(`http://worker.test${path}`, { headers: { authorization: `Bearer ${key}` } }));
  return { status: res.status, headers: res.headers, bytes: new Uint8Array(await res.arrayBuffer()) };
};
const hex = async (b: Uint8Array) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", b)), (x) => x.toString(16).padStart(2, "0")).join("");

describe("the live model's files for the browser", () => {
  it("lists the live version's files and serves each byte for byte, cacheable forever, to a publishable key", async () => {
    const r = await api("/v1/device/model", { key: PK });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ name: "ml-small", version: manifest.version });
    expect(Object.keys(r.body.files).sort()).toEqual(["manifest", "score", "similar", "step", "weights"]);
    const w = await raw(r.body.files.weights);
    expect(w.status).toBe(200);
    expect(w.headers.get("cache-control")).toContain("immutable");
    expect(await hex(w.bytes)).toBe(manifest.weights.sha256);
    const m = await raw(r.body.files.manifest);
    expect(JSON.parse(new TextDecoder().decode(m.bytes))).toEqual(manifest);
    for (const g of ["step", "score", "similar"]) expect((await raw(r.body.files[g])).bytes.byteLength).toBeGreaterThan(1000);
  });

  it("answers 404 for another version or a file the manifest does not name", async () => {
    expect((await api("/v1/device/model/ml-small-old/weights.bin", { key: PK })).status).toBe(404);
    const r = await api(`/v1/device/model/${manifest.version}/secrets.txt`, { key: PK });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("not_found");
  });
});

describe("GET /v1/users/{user_id}/state", () => {
  it("returns the state the worker stepped (equal to the golden vectors), recent items and purchases", async () => {
    // An anonymous visitor id (the snippet's own) needs no signed user token.
    const u = `anon-${crypto.randomUUID()}`;
    // The golden sequence shifted to now (gaps kept, so the session rule gives the same flags).
    const shift = Date.now() - 3_600_000 - golden.events.at(-1)!.timestamp;
    const events = golden.events.map((e, i) => ({ event_id: `g${i}`, user_id: u, item_id: e.item_id, type: i === 2 ? "purchase" : "view", timestamp: e.timestamp + shift }));
    expect((await api("/v1/events", { key: PK, body: events })).status).toBe(200);
    const r = await api(`/v1/users/${u}/state`, { key: PK });
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-store");
    const bytes = Uint8Array.from(atob(r.body.state), (c) => c.charCodeAt(0));
    const v = new Float32Array(bytes.buffer);
    expect(v.length).toBe(manifest.state.size);
    const want = golden.states.at(-1)!;
    expect(Math.max(...Array.from(v, (x, i) => Math.abs(x - want[i]!)))).toBeLessThan(golden.tolerance);
    expect(r.body).toMatchObject({
      user_id: u,
      model_version: manifest.version,
      state_size: manifest.state.size,
      event_count: events.length,
      session_count: golden.new_session.filter((x) => x > 0.5).length,
      last_event_ms: events.at(-1)!.timestamp,
      purchased: [events[2]!.item_id],
    });
    expect(r.body.recent[0]).toBe(events.at(-1)!.item_id);
    expect(r.body.recent).toHaveLength(new Set(events.map((e) => e.item_id)).size);
  });

  it("answers 404 user_not_found for a user without state", async () => {
    const r = await api(`/v1/users/anon-${crypto.randomUUID()}/state`, { key: PK });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("user_not_found");
  });
});

describe("the pages' config and the console's coverage", () => {
  it("gives the pages the first publishable key and never a secret key", async () => {
    const r = await api("/config.json", { key: null });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ publishable_key: env.PUBLISHABLE_KEYS.split(",")[0], model: "ml-small", demo_login: false });
    expect(JSON.stringify(r.body)).not.toContain(env.SECRET_KEYS.split(",")[0]);
  });

  it("reports catalog coverage by the model to a secret key only", async () => {
    expect((await api("/v1/console/coverage", { key: PK })).status).toBe(403);
    const r = await api("/v1/console/coverage");
    expect(r.status).toBe(200);
    expect(r.body.model_items).toBe(manifest.items.rows - 1);
    expect(r.body.in_model).toBeLessThanOrEqual(r.body.catalog_items);
    expect(r.body.model_items_not_in_catalog + r.body.in_model).toBe(r.body.model_items);
  });
});
