/**
 * The model registry on real parts (miniflare's R2 and D1, a real Redis): the bundled model is the
 * first version; a corrupt upload is refused while the live version keeps serving; a rollout to a
 * second, different model keeps every returning user's history (state rebuilt from the event log:
 * source "model", event_count carried over), lazily on their first request or event. Memory: the
 * committed diginetica model goes live from the default config and is replaced by another version
 * of its size (the one it replaces is retired when both do not fit); uploads too big are refused
 * before anything is stored, and a failed or abandoned upload leaves no file in R2.
 */
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import goldenDig from "../../models/diginetica/golden.json";
import manifestDig from "../../models/diginetica/manifest.json";
import scoreDig from "../../models/diginetica/score.onnx";
import stepDig from "../../models/diginetica/step.onnx";
import weightsDig from "../../models/diginetica/weights.bin";
import golden100k from "../../models/ml-100k/golden.json";
import manifest100k from "../../models/ml-100k/manifest.json";
import score100k from "../../models/ml-100k/score.onnx";
import step100k from "../../models/ml-100k/step.onnx";
import weights100k from "../../models/ml-100k/weights.bin";
import { database } from "../../src/catalog/db";
import { UPLOAD_TTL_MS, sweepUploads } from "../../src/domain/models";
import { KEY, api, apiWith, ev, item, logged, manifest, uid } from "./helpers";

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

/** Upload files (manifest first, as `npm run model` does) and stage them. */
async function stageFiles(version: string, files: Record<string, ArrayBuffer | Uint8Array | string>) {
  const sums: Record<string, string> = {};
  for (const [name, body] of Object.entries(files)) {
    const r = await put(version, name, body);
    expect(r.status).toBe(200);
    sums[name] = r.body.sha256;
  }
  return api(`/v1/admin/models/${version}`, { body: { files: sums } });
}

/** Upload ml-100k's files as a new version; `weights` replaces its weights (to corrupt them). */
async function upload(version: string, weights: ArrayBuffer | Uint8Array = weights100k) {
  return stageFiles(version, {
    "manifest.json": JSON.stringify({ ...manifest100k, version }),
    "step.onnx": step100k,
    "score.onnx": score100k,
    "weights.bin": weights,
    "golden.json": JSON.stringify(golden100k),
  });
}

/** The committed diginetica model (43k items x 128, int8 table) as version `version`. */
async function uploadDiginetica(version: string) {
  return stageFiles(version, {
    "manifest.json": JSON.stringify({ ...manifestDig, version }),
    "step.onnx": stepDig,
    "score.onnx": scoreDig,
    "weights.bin": weightsDig,
    "golden.json": JSON.stringify(goldenDig),
  });
}

const bucket = (env as unknown as { MODEL_BUCKET: R2Bucket }).MODEL_BUCKET;

/** The keys stored in R2 for a version. */
async function stored(version: string): Promise<string[]> {
  return (await bucket.list({ prefix: `models/${version}/` })).objects.map((o) => o.key);
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

  it("puts the committed diginetica model live from the default config, and replaces it by a version of its size when both do not fit", async () => {
    const a = await uploadDiginetica("dig-a");
    expect(a.status).toBe(201);
    // Beside the bundled model it fits: loaded and its golden vectors replayed while staging.
    expect(a.body).toMatchObject({ version: "dig-a", status: "staged", loaded: true });
    const actA = await api("/v1/admin/models/dig-a/activate", { body: {} });
    expect(actA.status).toBe(200);
    expect(actA.body).toMatchObject({ serving: "dig-a", retired: [] });
    expect(actA.body.live[0]).toBe("dig-a");
    const u = uid("shopper");
    const seen = manifestDig.items.ids.slice(0, 6);
    await api("/v1/events", { body: seen.map((id, n) => ev(u, id, { event_id: `${u}-${n}`, timestamp: Date.now() - (6 - n) * 60_000 })) });
    expect(await logged(u, 6)).toHaveLength(6);
    const rec = await api(`/v1/users/${u}/recommendations?k=5`);
    expect(rec.body).toMatchObject({ source: "model", model_version: "dig-a" });

    // A second version of the same size does not fit beside the first: its graphs wait for the activation.
    const b = await uploadDiginetica("dig-b");
    expect(b.status).toBe(201);
    expect(b.body).toMatchObject({ version: "dig-b", status: "staged", loaded: false });
    // Insisting on keeping dig-a as a shadow is refused, and says how to go on; nothing changes.
    const keep = await api("/v1/admin/models/dig-b/activate", { body: { previous: "shadow" } });
    expect(keep.status).toBe(409);
    expect(keep.body.error.code).toBe("over_memory_budget");
    expect(keep.body.error.message).toMatch(/"previous":"retire"/);
    expect((await api("/v1/admin/models")).body).toMatchObject({ serving: "dig-a", live: actA.body.live });
    // By default the activation retires dig-a (no room for both) and serves dig-b.
    const actB = await api("/v1/admin/models/dig-b/activate", { body: {} });
    expect(actB.status).toBe(200);
    expect(actB.body).toMatchObject({ serving: "dig-b", retired: ["dig-a"] });
    expect(actB.body.live).toEqual(["dig-b", ...actA.body.live.slice(1)]);
    expect(actB.body.version).toMatchObject({ status: "live", serving: true });
    const list = await api("/v1/admin/models");
    expect(list.body.versions.find((v: any) => v.version === "dig-a")).toMatchObject({ status: "retired" });
    expect(list.body.memory.live_mb).toBeLessThanOrEqual(list.body.memory.budget_mb);
    // The shopper's history carries over to the new version (rebuilt from the log).
    expect((await api(`/v1/users/${u}/recommendations?k=5`)).body).toMatchObject({ source: "model", model_version: "dig-b" });

    // Rolling back is the same swap the other way.
    const back = await api("/v1/admin/models/dig-a/activate", { body: {} });
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ serving: "dig-a", retired: ["dig-b"] });
    expect(back.body.live).toEqual(actA.body.live);
  });

  it("refuses an upload whose manifest declares weights too big to send or to serve, before anything is stored", async () => {
    const declare = (version: string, bytes: number) => JSON.stringify({ ...manifest100k, version, weights: { ...manifest100k.weights, bytes } });
    const tooLong = await put("huge-1", "manifest.json", declare("huge-1", 70_000_000));
    expect(tooLong.status).toBe(413);
    expect(tooLong.body.error).toMatchObject({ code: "file_too_large", field: "files.manifest.json" });
    expect(tooLong.body.error.message).toMatch(/MAX_MODEL_FILE_BYTES/);
    const tooBig = await put("huge-2", "manifest.json", declare("huge-2", 60_000_000));
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe("model_too_large");
    expect(tooBig.body.error.message).toMatch(/MODEL_MEMORY_BUDGET_MB/);
    expect(await stored("huge-1")).toEqual([]);
    expect(await stored("huge-2")).toEqual([]);
    // A manifest sent after other files: its refusal removes them too.
    expect((await put("huge-3", "step.onnx", step100k)).status).toBe(200);
    const late = await put("huge-3", "manifest.json", declare("huge-3", 60_000_000));
    expect(late.status).toBe(413);
    expect(late.body.error.message).toMatch(/its 1 stored file was removed/);
    expect(await stored("huge-3")).toEqual([]);
  });

  it("refuses a file whose size or checksum is wrong, and removes every file the upload had stored", async () => {
    expect((await put("short-1", "manifest.json", JSON.stringify({ ...manifest100k, version: "short-1" }))).status).toBe(200);
    expect((await put("short-1", "step.onnx", step100k)).status).toBe(200);
    const cut = await put("short-1", "weights.bin", new Uint8Array(weights100k).slice(0, 1000));
    expect(cut.status).toBe(422);
    expect(cut.body.error.code).toBe("size_mismatch");
    expect(cut.body.error.message).toMatch(/its 2 stored files were removed/);
    expect(await stored("short-1")).toEqual([]);

    expect((await put("sum-1", "manifest.json", JSON.stringify({ ...manifest100k, version: "sum-1" }))).status).toBe(200);
    const wrong = await put("sum-1", "score.onnx", score100k, "0".repeat(64));
    expect(wrong.status).toBe(422);
    expect(wrong.body.error.code).toBe("checksum_mismatch");
    expect(await stored("sum-1")).toEqual([]);
  });

  it("discards an unfinished upload on request, and sweeps uploads left unfinished for a day", async () => {
    expect((await put("left-1", "manifest.json", JSON.stringify({ ...manifest100k, version: "left-1" }))).status).toBe(200);
    expect((await put("left-1", "step.onnx", step100k)).status).toBe(200);
    const d = await api("/v1/admin/models/left-1", { method: "DELETE" });
    expect(d.status).toBe(200);
    expect(d.body).toEqual({ version: "left-1", removed: 2 });
    expect(await stored("left-1")).toEqual([]);
    // A registered version is immutable.
    const reg = await api(`/v1/admin/models/${manifest.version}`, { method: "DELETE" });
    expect(reg.status).toBe(409);
    expect(reg.body.error.code).toBe("version_exists");

    expect((await put("left-2", "manifest.json", JSON.stringify({ ...manifest100k, version: "left-2" }))).status).toBe(200);
    expect((await upload("kept-1")).status).toBe(201);
    const deps = { db: database(env.DB), bucket };
    expect(await sweepUploads(deps)).toEqual([]); // nothing is a day old yet
    expect(await sweepUploads(deps, UPLOAD_TTL_MS, Date.now() + UPLOAD_TTL_MS + 60_000)).toEqual(["left-2"]);
    expect(await stored("left-2")).toEqual([]);
    expect((await stored("kept-1")).length).toBe(5);
  });

  // Last in this file: the catalog it loads would restrict what the tests before it serve.
  it("counts the catalog copy every isolate keeps: a version that fits beside an empty catalog is refused beside 30,000 more items", async () => {
    expect((await upload("cat-budget")).status).toBe(201);
    const need = async (budget: string) => {
      const r = await apiWith({ MODEL_MEMORY_BUDGET_MB: budget }, "/v1/admin/models/cat-budget/activate", { body: {} });
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe("over_memory_budget");
      const m = /would need about ([\d.]+) MiB per isolate \(onnxruntime [\d.]+, the catalog copy ([\d.]+),/.exec(r.body.error.message);
      expect(m, r.body.error.message).not.toBeNull();
      return { total: Number(m![1]), catalog: Number(m![2]) };
    };
    const before = await need("5");
    const p = uid("cat");
    for (let b = 0; b < 3; b++) {
      const r = await api("/v1/items/batch", { body: Array.from({ length: 10_000 }, (_, i) => item(`${p}-${b}-${i}`)) });
      expect(r.body.stored).toBe(10_000);
    }
    const after = await need("5");
    // 30,000 items the version does not know (its 1,682 ids are counted with it): their fact
    // columns (22 bytes an item, in arrays grown by doubling) and their ids' keys (44 bytes an id).
    expect(after.catalog - before.catalog).toBeGreaterThan(1.8);
    expect(after.total - before.total).toBeCloseTo(after.catalog - before.catalog, 0);
    // A budget the version fitted under before the items came is now refused.
    const budget = Math.ceil(before.total + 0.05);
    expect(budget).toBeLessThan(after.total);
    expect((await need(String(budget))).total).toBe(after.total);
    expect((await api("/v1/admin/models")).body.serving).toBe(manifest.version);
  });
});
