/**
 * A model too large to bundle is read from R2 (MODEL_BUCKET, under `<MODEL_NAME>/`) at first use;
 * a broken or missing one degrades to popular items with reason model-unavailable.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import manifest from "../../models/ml-small/manifest.json";
import score from "../../models/ml-small/score.onnx";
import similar from "../../models/ml-small/similar.onnx";
import step from "../../models/ml-small/step.onnx";
import weights from "../../models/ml-small/weights.bin";
import { apiWith, captureLogs, ev, expectPopularNow, expectedPopular, uid } from "./helpers";

const bucket = (env as unknown as { MODEL_BUCKET: R2Bucket }).MODEL_BUCKET;

beforeAll(async () => {
  for (const [prefix, w] of [["ml-remote", weights], ["ml-broken", weights.slice(0, 1000)]] as const) {
    await bucket.put(`${prefix}/manifest.json`, JSON.stringify(manifest));
    await bucket.put(`${prefix}/step.onnx`, step);
    await bucket.put(`${prefix}/score.onnx`, score);
    await bucket.put(`${prefix}/weights.bin`, w);
    await bucket.put(`${prefix}/similar.onnx`, similar);
  }
  // An export from before the similar graph existed.
  const legacy = structuredClone(manifest) as { graphs: Record<string, unknown> };
  delete legacy.graphs.similar;
  await bucket.put("ml-legacy/manifest.json", JSON.stringify(legacy));
  await bucket.put("ml-legacy/step.onnx", step);
  await bucket.put("ml-legacy/score.onnx", score);
  await bucket.put("ml-legacy/weights.bin", weights);
});

describe("models from R2", () => {
  it("loads a model that is not bundled from the bucket and serves it", async () => {
    const remote = { MODEL_NAME: "ml-remote" };
    const h = await apiWith(remote, "/health", { key: null });
    expect(h.body.model).toMatchObject({ loaded: true, name: "ml-remote", version: manifest.version });
    expect(h.body.versions.state_format).toBe(2); // src/state/codec.ts: records with the seen filter
    const u = uid();
    const r = await apiWith(remote, "/v1/events?recommend=3", { body: [ev(u, manifest.items.ids[5]!)] });
    expect(r.status).toBe(200);
    expect(r.body.recommendations[0]).toMatchObject({ source: "model", model_version: manifest.version });
  });

  it("degrades to popular items with reason model-unavailable when the files are broken", async () => {
    const broken = { MODEL_NAME: "ml-broken" };
    const logs = captureLogs();
    const h = await apiWith(broken, "/health", { key: null });
    expect(h.status).toBe(503);
    expect(h.body.model.loaded).toBe(false);
    expect(h.body.model.error).toMatch(/weights\.bin has 1000 bytes/);
    const before = await expectedPopular(3);
    const r = await apiWith(broken, `/v1/users/${uid()}/recommendations?k=3`);
    expect(r.body).toMatchObject({ source: "popular", reason: "model-unavailable" });
    await expectPopularNow(r.body.items, 3, before);
    const e = await apiWith(broken, "/v1/events", { body: ev(uid(), manifest.items.ids[0]!) });
    expect(e.status).toBe(503);
    expect(e.body.error.code).toBe("model_unavailable");
    expect(logs.text()).toMatch(/weights\.bin has 1000 bytes, manifest says/);
  });

  it("answers without a model when the bucket has none of that name", async () => {
    const logs = captureLogs();
    const r = await apiWith({ MODEL_NAME: "no-such-model" }, `/v1/users/${uid()}/recommendations`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "popular", reason: "model-unavailable", model_version: null });
    // Only the event log's popularity can serve it (no manifest, so no training counts).
    expect(Array.isArray(r.body.items)).toBe(true);
    expect(logs.text()).toMatch(/model no-such-model: manifest\.json not found in the model bucket/);
  });

  it("still serves a model exported without the similar graph; similar items fall back to popularity", async () => {
    const legacy = { MODEL_NAME: "ml-legacy" };
    const h = await apiWith(legacy, "/health", { key: null });
    expect(h.body.model.loaded).toBe(true);
    const r = await apiWith(legacy, `/v1/items/${manifest.items.ids[3]}/similar?k=4`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: "popular", reason: "no-similar-graph" });
    expect(r.body.items).toHaveLength(4);
  });
});
