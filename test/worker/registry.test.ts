/**
 * The model registry on real parts (miniflare's R2 and D1, a real Redis): the bundled model is the
 * first version; a corrupt upload is refused while the live version keeps serving; a rollout to a
 * second, different model keeps every returning user's history (state rebuilt from the event log:
 * source "model", event_count carried over), lazily on their first request or event.
 */
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import golden100k from "../../models/ml-100k/golden.json";
import manifest100k from "../../models/ml-100k/manifest.json";
import score100k from "../../models/ml-100k/score.onnx";
import step100k from "../../models/ml-100k/step.onnx";
import weights100k from "../../models/ml-100k/weights.bin";
import { KEY, api, apiWith, ev, logged, manifest, uid } from "./helpers";

const V2 = manifest100k.version;

async function sha(bytes: ArrayBuffer | Uint8Array | string): Promise<string> {
  const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", b)), (x) => x.toString(16).padStart(2, "0")).join("");
}

async function put(version: string, file: string, body: ArrayBuffer | Uint8Array | string, claimed?: string) {
  const res = await (exports as any).default.fetch(
    new Request(`http://worker.test/v1/admin/models/${version}/files/${file}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${KEY}`, "x-content-sha256": claimed ?? (await sha(body)), "content-type": "application/octet-stream" },
      body,
    }),
  );
  return { status: res.status, body: await res.json() };
}

/** Upload ml-100k's files as a new version; `weights` replaces its weights (to corrupt them). */
async function upload(version: string, weights: ArrayBuffer | Uint8Array = weights100k) {
  const m = JSON.stringify({ ...manifest100k, version });
  const files: Record<string, ArrayBuffer | Uint8Array | string> = {
    "manifest.json": m,
    "step.onnx": step100k,
    "score.onnx": score100k,
    "weights.bin": weights,
    "golden.json": JSON.stringify(golden100k),
  };
  const sums: Record<string, string> = {};
  for (const [name, body] of Object.entries(files)) {
    const r = await put(version, name, body);
    expect(r.status).toBe(200);
    sums[name] = r.body.sha256;
  }
  return api(`/v1/admin/models/${version}`, { body: { files: sums } });
}

/** Items both models know, so a user's history means something to each. */
const shared = manifest.items.ids.filter((id) => new Set(manifest100k.items.ids).has(id)).slice(0, 40);

afterEach(async () => {
  // Leave the bundled model serving for the next test (storage is per test, the isolate is not).
  const list = await api("/v1/admin/models");
  if (list.body.serving !== manifest.version) await api(`/v1/admin/models/${manifest.version}/activate`, { body: {} });
});

// Uploads, model loads and log round trips: generous under a loaded machine.
describe("model registry", { timeout: 240_000 }, () => {
  it("lists the bundled demo model as the first version, live and serving", async () => {
    const r = await api("/v1/admin/models");
    expect(r.status).toBe(200);
    expect(r.body.serving).toBe(manifest.version);
    expect(r.body.versions[0]).toMatchObject({ version: manifest.version, status: "live", serving: true, source: "bundled" });
    expect(r.body.versions[0].files["weights.bin"].sha256).toBe(manifest.weights.sha256);
    expect(r.body.versions[0].manifest_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("refuses a corrupt upload and keeps serving the live version", async () => {
    const u = uid();
    await api("/v1/events", { body: [ev(u, shared[0]!), ev(u, shared[1]!)] });

    // A file whose bytes do not hash to what the uploader says is not stored at all.
    const wrong = await put("bad-1", "weights.bin", weights100k, "0".repeat(64));
    expect(wrong.status).toBe(422);
    expect(wrong.body.error.code).toBe("checksum_mismatch");

    // Weights damaged before upload (hashed as sent): the manifest's checksum refuses them.
    const damaged = new Uint8Array(weights100k.slice(0));
    damaged[100] = damaged[100]! ^ 0xff;
    const r = await upload("bad-2", damaged);
    expect(r.status).toBe(422);
    expect(r.body.error).toMatchObject({ code: "model_rejected", field: "files.weights.bin" });
    expect(r.body.error.message).toMatch(/manifest says/);
    // The rejected version is not registered, cannot be activated, and its files are gone.
    const list = await api("/v1/admin/models");
    expect(list.body.versions.map((v: any) => v.version)).not.toContain("bad-2");
    expect((await api("/v1/admin/models/bad-2/activate", { body: {} })).status).toBe(404);
    expect((await api("/v1/admin/models/bad-2/files/weights.bin")).status).toBe(404);

    // Serving went on with the live version.
    const rec = await api(`/v1/users/${u}/recommendations?k=5`);
    expect(rec.body).toMatchObject({ source: "model", model_version: manifest.version });
    expect((await api("/health", { key: null })).body.model.version).toBe(manifest.version);
  });

  it("refuses a version whose golden vectors do not reproduce", async () => {
    const g = structuredClone(golden100k) as { states: number[][] };
    g.states[0]![0]! += 0.01;
    const m = JSON.stringify({ ...manifest100k, version: "bad-golden" });
    const sums: Record<string, string> = {};
    for (const [name, body] of Object.entries({ "manifest.json": m, "step.onnx": step100k, "score.onnx": score100k, "weights.bin": weights100k, "golden.json": JSON.stringify(g) })) {
      sums[name] = (await put("bad-golden", name, body as ArrayBuffer)).body.sha256;
    }
    const r = await api("/v1/admin/models/bad-golden", { body: { files: sums } });
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/golden vectors do not reproduce/);
  });

  it("rolls out a second model: returning users keep their history (rebuilt from the log), never cold", async () => {
    const staged = await upload(V2);
    expect(staged.status).toBe(201);
    expect(staged.body).toMatchObject({ version: V2, status: "staged", serving: false, source: "r2" });

    // Two shoppers with history under the bundled model.
    const reader = uid("reader");
    const writer = uid("writer");
    for (const u of [reader, writer]) {
      const r = await api("/v1/events", { body: shared.slice(0, 12).map((id, n) => ev(u, id, { event_id: `${u}-${n}`, timestamp: Date.now() - (12 - n) * 60_000 })) });
      expect(r.body.users[0].event_count).toBe(12);
      expect(await logged(u, 12)).toHaveLength(12);
    }

    const act = await api(`/v1/admin/models/${V2}/activate`, { body: {} });
    expect(act.status).toBe(200);
    expect(act.body).toMatchObject({ serving: V2, live: [V2, manifest.version] });
    expect(act.body.version).toMatchObject({ status: "live", serving: true });

    // First request after the switch: the state is rebuilt from the log, served by the new model.
    const rec = await api(`/v1/users/${reader}/recommendations?k=5&exclude_recent=true`);
    expect(rec.body).toMatchObject({ source: "model", model_version: V2 });
    expect(rec.body.reason).toBeUndefined();
    expect(rec.headers.get("server-timing")).toMatch(/rebuild;dur=\d+;desc="12 events replayed/);
    // Its recent items are the history's (left out of the list when asked, as before the switch).
    const shown = rec.body.items.map((i: any) => i.item_id);
    for (const id of shared.slice(0, 12)) expect(shown).not.toContain(id);
    // The rebuilt state is stored (after the response) with the counters carried over.
    let summary: any;
    for (let i = 0; i < 100 && (summary?.status ?? 404) === 404; i++) {
      summary = await api(`/v1/users/${reader}`);
      if (summary.status === 404) await new Promise((r) => setTimeout(r, 50));
    }
    expect(summary.body).toMatchObject({ model_version: V2, event_count: 12 });

    // First event after the switch: the state is rebuilt first, then advanced (12 + 1).
    const more = await api("/v1/events", { body: ev(writer, shared[20]!, { event_id: `${writer}-new` }) });
    expect(more.body).toMatchObject({ model_version: V2, applied: 1 });
    expect(more.body.users[0].event_count).toBe(13);
    // An event applied before the switch, resent: remembered as applied, not applied again.
    const resent = await api("/v1/events", { body: ev(writer, shared[11]!, { event_id: `${writer}-11` }) });
    expect(resent.body.results[0].status).toBe("duplicate");
    expect((await api(`/v1/users/${writer}`)).body.event_count).toBe(13);

    // A user nobody has seen is still a cold user.
    expect((await api(`/v1/users/${uid()}/recommendations?k=3`)).body.reason).toBe("cold-user");

    // Retiring the new version hands serving back to the previous live version, which every
    // event advanced meanwhile as a shadow (13 events, the one sent after the switch included).
    const ret = await api(`/v1/admin/models/${V2}/retire`, { method: "POST" });
    expect(ret.body).toMatchObject({ serving: manifest.version, live: [manifest.version] });
    expect((await api(`/v1/users/${writer}`)).body).toMatchObject({ model_version: manifest.version, event_count: 13 });
    expect((await api(`/v1/users/${reader}/recommendations?k=5`)).body).toMatchObject({ source: "model", model_version: manifest.version });
    // The last live version cannot be retired.
    const last = await api(`/v1/admin/models/${manifest.version}/retire`, { method: "POST" });
    expect(last.status).toBe(409);
    expect(last.body.error.code).toBe("last_live_version");
  });

  it("refuses to go over the memory budget of live versions", async () => {
    expect((await upload("budget-test")).status).toBe(201);
    const r = await apiWith({ MODEL_MEMORY_BUDGET_MB: "5" }, "/v1/admin/models/budget-test/activate", { body: {} });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("over_memory_budget");
    expect((await api("/v1/admin/models")).body.serving).toBe(manifest.version);
  });
});
