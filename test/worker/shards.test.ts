/**
 * Sharded item tables (src/model/shards.ts, item-shard.ts): the same synthetic model exported whole
 * and in 3 item shards (test/fixtures/shard-model, models/training/build-shard-fixture.sh). The
 * shards run as real Durable Objects reading their files from the local R2; the merged top-k must be
 * the single-isolate top-k, under masks of every kind, for scores and similar items; then the
 * sharded version goes through the registry (upload, staging with golden vectors, activation) and
 * serves the API.
 */
import { env, exports } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import shGolden from "../fixtures/shard-model/sharded/golden.json";
import shManifest from "../fixtures/shard-model/sharded/manifest.json";
import shRank0 from "../fixtures/shard-model/sharded/rank.s0.onnx";
import shRank1 from "../fixtures/shard-model/sharded/rank.s1.onnx";
import shRank2 from "../fixtures/shard-model/sharded/rank.s2.onnx";
import shStep from "../fixtures/shard-model/sharded/step.onnx";
import shWeights from "../fixtures/shard-model/sharded/weights.bin";
import shWeights0 from "../fixtures/shard-model/sharded/weights.s0.bin";
import shWeights1 from "../fixtures/shard-model/sharded/weights.s1.bin";
import shWeights2 from "../fixtures/shard-model/sharded/weights.s2.bin";
import oneManifest from "../fixtures/shard-model/single/manifest.json";
import oneScore from "../fixtures/shard-model/single/score.onnx";
import oneSimilar from "../fixtures/shard-model/single/similar.onnx";
import oneStep from "../fixtures/shard-model/single/step.onnx";
import oneWeights from "../fixtures/shard-model/single/weights.bin";
import seqGolden from "../fixtures/shard-model-seq/sharded/golden.json";
import seqManifest from "../fixtures/shard-model-seq/sharded/manifest.json";
import seqRank0 from "../fixtures/shard-model-seq/sharded/rank.s0.onnx";
import seqRank1 from "../fixtures/shard-model-seq/sharded/rank.s1.onnx";
import seqRank2 from "../fixtures/shard-model-seq/sharded/rank.s2.onnx";
import seqStep from "../fixtures/shard-model-seq/sharded/step.onnx";
import seqWeights from "../fixtures/shard-model-seq/sharded/weights.bin";
import seqWeights0 from "../fixtures/shard-model-seq/sharded/weights.s0.bin";
import seqWeights1 from "../fixtures/shard-model-seq/sharded/weights.s1.bin";
import seqWeights2 from "../fixtures/shard-model-seq/sharded/weights.s2.bin";
import seqOneManifest from "../fixtures/shard-model-seq/single/manifest.json";
import seqOneScore from "../fixtures/shard-model-seq/single/score.onnx";
import seqOneSimilar from "../fixtures/shard-model-seq/single/similar.onnx";
import seqOneStep from "../fixtures/shard-model-seq/single/step.onnx";
import seqOneWeights from "../fixtures/shard-model-seq/single/weights.bin";
import { checkGolden } from "../../src/domain/models";
import { parseManifest } from "../../src/model/manifest";
import { bundledWasm } from "../../src/model/registry";
import { RowMask } from "../../src/model/row-mask";
import { GruModel, type Scored } from "../../src/model/runtime";
import { type ShardNamespace, ShardUnavailableError, durableShards, mergeTops, shardSpecs } from "../../src/model/shards";
import { DIG_SHARDED_FILES, digGolden, digManifest } from "./dig-sharded";
import { KEY, api, ev, manifest as bundledManifest, newItemCosines, uid } from "./helpers";
import { rng } from "../seeded";

const SHARD_FILES: Record<string, ArrayBuffer> = {
  "rank.s0.onnx": shRank0,
  "rank.s1.onnx": shRank1,
  "rank.s2.onnx": shRank2,
  "weights.s0.bin": shWeights0,
  "weights.s1.bin": shWeights1,
  "weights.s2.bin": shWeights2,
};

/** One synthetic model exported whole and in 3 item shards (models/training/build-shard-fixture.sh). */
interface Fixture {
  kind: string;
  /** The sharded export's step-graph inputs. */
  stepInputs: string[];
  sharded: { manifest: any; step: ArrayBuffer; weights: ArrayBuffer; golden: unknown; files: Record<string, ArrayBuffer> };
  single: { manifest: any; step: ArrayBuffer; score: ArrayBuffer; similar: ArrayBuffer; weights: ArrayBuffer };
}

const FIXTURES: Fixture[] = [
  {
    kind: "GRURec",
    stepInputs: ["state", "item_vector", "new_session", "gap"],
    sharded: { manifest: shManifest, step: shStep, weights: shWeights, golden: shGolden, files: SHARD_FILES },
    single: { manifest: oneManifest, step: oneStep, score: oneScore, similar: oneSimilar, weights: oneWeights },
  },
  {
    kind: "SeqRec (attention over the rows of its last 8 items, normalised scores)",
    stepInputs: ["state", "item", "item_vector", "recent_vectors", "new_session", "gap"],
    sharded: {
      manifest: seqManifest,
      step: seqStep,
      weights: seqWeights,
      golden: seqGolden,
      files: {
        "rank.s0.onnx": seqRank0,
        "rank.s1.onnx": seqRank1,
        "rank.s2.onnx": seqRank2,
        "weights.s0.bin": seqWeights0,
        "weights.s1.bin": seqWeights1,
        "weights.s2.bin": seqWeights2,
      },
    },
    single: { manifest: seqOneManifest, step: seqOneStep, score: seqOneScore, similar: seqOneSimilar, weights: seqOneWeights },
  },
];

const bucket = (env as unknown as { MODEL_BUCKET: R2Bucket }).MODEL_BUCKET;
const shardNs = (env as unknown as { ITEM_SHARDS: ShardNamespace }).ITEM_SHARDS;

/** Same rows in the same order, scores equal to float precision; rows may trade places only where
 * their scores are within `ties` (scores: 0, the same floats; cosines: float rounding). */
function expectSameTop(got: Scored[], want: Scored[], ties = 0) {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(Math.abs(got[i]!.score - want[i]!.score)).toBeLessThan(1e-5);
    if (got[i]!.row !== want[i]!.row) expect(Math.abs(got[i]!.score - want[i]!.score)).toBeLessThanOrEqual(ties);
  }
  // the last place may hold either of two rows whose scores are within `ties`
  const rows = (ts: Scored[]) => new Set(ts.filter((t) => t.score > want[want.length - 1]!.score + ties).map((t) => t.row));
  expect(rows(got)).toEqual(rows(want));
}

/** The fixture's model whole, and in shards served by Durable Objects reading their files from R2. */
async function loadPair(fx: Fixture): Promise<{ single: GruModel; sharded: GruModel }> {
  const prefix = `test-shards/${fx.sharded.manifest.version}`;
  for (const [name, body] of Object.entries(fx.sharded.files)) await bucket.put(`${prefix}/${name}`, body);
  const single = await GruModel.load(bundledWasm(), fx.single);
  const m = parseManifest(fx.sharded.manifest);
  const { manifest, step, weights } = fx.sharded;
  const sharded = await GruModel.load(bundledWasm(), { manifest, step, weights }, durableShards(shardNs, shardSpecs(m, prefix)));
  return { single, sharded };
}

/** The GRURec fixture, whole (the registry tests compare with it). */
let single: GruModel;

beforeAll(async () => {
  ({ single } = await loadPair(FIXTURES[0]!));
});

describe.each(FIXTURES)("a $kind in item shards (Durable Objects)", { timeout: 180_000 }, (fx) => {
  let single: GruModel;
  let sharded: GruModel;
  const shManifest = fx.sharded.manifest;

  beforeAll(async () => {
    ({ single, sharded } = await loadPair(fx));
  });

  it("keeps no item table in the worker: the step graph takes the item rows it reads from their shards", () => {
    const m = parseManifest(shManifest);
    const d = m.graphs.step.outputs[1]!.shape[1] as number;
    expect(m.graphs.step.inputs.map((t) => t.name)).toEqual(fx.stepInputs);
    expect(m.graphs.step.outputs.map((t) => t.name)).toEqual(["next_state", "query"]);
    // weights.bin holds the recurrent weights alone: less than the float16 table it no longer has
    expect(m.weights.bytes).toBeLessThan((m.items.rows * d * 2) / 2);
    for (const s of m.shards!) expect(s.table).toEqual({ offset: expect.any(Number), dtype: "float16", bias: expect.any(Number), norm: expect.any(Number) });
    const bare = { ...shManifest, shards: shManifest.shards.map((s: object, i: number) => (i === 1 ? { ...s, table: undefined } : s)) };
    expect(() => parseManifest(bare)).toThrow(/shards\.1\.table/);
    // a shard has one rank graph, or (older exports) a score and a similar graph: not both, not neither
    const shard1 = (s: object) => ({ ...shManifest, shards: shManifest.shards.map((x: object, i: number) => (i === 1 ? s : x)) });
    const one = shManifest.shards[1]!;
    expect(() => parseManifest(shard1({ ...one, score: { file: "score.s1.onnx" }, similar: { file: "similar.s1.onnx" } }))).toThrow(/shards\.1: a shard has either/);
    expect(() => parseManifest(shard1({ ...one, rank: undefined }))).toThrow(/shards\.1: a shard has either/);
    expect(() => parseManifest(shard1({ ...one, rank: undefined, score: { file: "score.s1.onnx" }, similar: { file: "similar.s1.onnx" } }))).not.toThrow();
    if (fx.stepInputs.includes("recent_vectors")) {
      // the ring of rows it takes is the one its state records
      const layout = m.state.layout.map((l) => (l.name === "recent_items" ? { ...l, name: "ring" } : l));
      expect(() => parseManifest({ ...shManifest, state: { ...m.state, layout } })).toThrow(/recent_vectors: 8 rows, and the state's recent_items ring holds none/);
    }
  });

  it("replays its export's golden vectors (states and top-k lists) through the shards", async () => {
    expect(await checkGolden(sharded, fx.sharded.golden)).toBeNull();
  });

  it("steps a user's state exactly as the single-isolate model", async () => {
    const r = rng(1);
    let a = single.initialState();
    let b = sharded.initialState();
    for (let i = 0; i < 30; i++) {
      const row = 1 + Math.floor(r() * (single.rows - 1));
      const at = { newSession: i % 7 === 0, gapHours: i % 7 === 0 ? 30 : 0.02 };
      a = await single.step(a, row, at);
      b = await sharded.step(b, row, at);
    }
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it("returns the single-isolate top-k under every kind of mask, whatever k", async () => {
    const r = rng(2);
    const N = single.rows;
    const [, lo1, lo2] = sharded.manifest.shards!.map((s) => s.rows[0]);
    let compared = 0;
    for (let trial = 0; trial < 24; trial++) {
      let state = single.initialState();
      for (let i = 0; i < 1 + (trial % 9); i++) state = await single.step(state, 1 + Math.floor(r() * (N - 1)), { newSession: i === 0, gapHours: 0 });
      const kind = trial % 4;
      const mask = new Float32Array(N);
      if (kind === 1) for (let j = 1; j < N; j++) mask[j] = r() < 0.3 ? 1 : 0; // purchases, availability
      if (kind === 2) for (let j = 1; j < N; j++) mask[j] = r() < 0.97 ? 1 : 0; // a narrow category
      if (kind === 3) for (let j = lo1!; j < lo2!; j++) mask[j] = 1; // a whole shard left out
      for (const k of [1, 10, 50, 400]) {
        const at = { newSession: trial % 2 === 0, gapHours: trial % 2 === 0 ? 48 : 0.1 };
        const want = await single.topKMasked(state, at, k, RowMask.fromFloats(mask));
        const got = await sharded.topKMasked(state, at, k, RowMask.fromFloats(mask));
        expectSameTop(got, want);
        for (const t of got) expect(mask[t.row]).toBe(0);
        compared++;
      }
    }
    expect(compared).toBe(96);
  });

  it("returns the single-isolate similar items to float rounding, the seed and masked rows never among them", async () => {
    const r = rng(3);
    const N = single.rows;
    for (let trial = 0; trial < 16; trial++) {
      const seed = 1 + Math.floor(r() * (N - 1));
      const mask = new Float32Array(N);
      if (trial % 2) for (let j = 1; j < N; j++) mask[j] = r() < 0.5 ? 1 : 0;
      for (const k of [5, 60]) {
        const want = await single.similar(seed, k, RowMask.fromFloats(mask));
        const got = await sharded.similar(seed, k, RowMask.fromFloats(mask));
        // the shards divide q . e by the row norms where the single graph divides the rows first
        expectSameTop(got, want, 1e-6);
        expect(got.some((t) => t.row === seed)).toBe(false);
      }
    }
    const rows = [3, 500, 1500];
    const [a, b] = [await single.similarityRows(rows), await sharded.similarityRows(rows)];
    for (let i = 0; i < rows.length; i++) for (let j = 1; j < N; j++) expect(Math.abs(a[i]![j]! - b[i]![j]!)).toBeLessThan(1e-5);
  });

  it("serves its shards by the int8 scan: from their weights files alone, no graph read, the same top-k", async () => {
    const weightsOnly = async (prefix: string) => {
      for (const [name, body] of Object.entries(fx.sharded.files)) if (!name.startsWith("rank.")) await bucket.put(`${prefix}/${name}`, body);
      return shardSpecs(parseManifest(shManifest), prefix);
    };
    const specs = await weightsOnly(`test-shards/${shManifest.version}-weights-only`);
    const scanned = await GruModel.load(bundledWasm(), { manifest: shManifest, step: fx.sharded.step, weights: fx.sharded.weights }, durableShards(shardNs, specs));
    const r = rng(4);
    let state = single.initialState();
    for (let i = 0; i < 5; i++) state = await single.step(state, 1 + Math.floor(r() * (single.rows - 1)), { newSession: i === 0, gapHours: 0 });
    const at = { newSession: false, gapHours: 0.1 };
    expectSameTop(await scanned.topK(state, at, 50), await single.topK(state, at, 50));
    // without the bias and norm offsets a shard needs its rank graph (onnxruntime), which is not there
    const bare = (await weightsOnly(`test-shards/${shManifest.version}-weights-only-bare`)).map((s) => ({ ...s, table: { offset: s.table!.offset, dtype: s.table!.dtype } }));
    const graphless = await GruModel.load(bundledWasm(), { manifest: shManifest, step: fx.sharded.step, weights: fx.sharded.weights }, durableShards(shardNs, bare, 5000));
    await expect(graphless.topK(state, at, 5)).rejects.toBeInstanceOf(ShardUnavailableError);
  });

  it("ranks by score plus the worker's added values (the item-transition term) inside its Durable Objects, masked rows never", async () => {
    const b = durableShards(shardNs, shardSpecs(parseManifest(shManifest), `test-shards/${shManifest.version}`));
    const n = b.specs[0]!.rows[1] - b.specs[0]!.rows[0];
    const r = rng(11);
    const q = Float32Array.from({ length: b.specs[0]!.dim }, () => r() - 0.5);
    const free = new Uint8Array((n + 7) >> 3);
    free[0] = 1; // the padding row, as the worker masks it
    const plain = await b.score(0, q, free, n - 1); // the whole shard, best first
    const scoreOf = new Map(Array.from(plain.rows, (row, j) => [row, plain.scores[j]!] as const));
    // rows from the bottom of the list lifted by more than the spread of scores, one of them masked
    const spread = plain.scores[0]! - plain.scores[n - 2]!;
    const lifted = [plain.rows[n - 2]!, plain.rows[n - 3]!, plain.rows[n >> 1]!, plain.rows[5]!];
    const boost = { rows: Int32Array.from(lifted), values: Float32Array.of(2 * spread, 3 * spread, 0.5 * spread, 1e-3) };
    const mask = new Uint8Array(free);
    mask[lifted[1]! >> 3]! |= 1 << (lifted[1]! & 7);
    const got = await b.score(0, q, mask, 10, boost);
    const total = (row: number) => {
      const j = lifted.indexOf(row);
      return j >= 0 ? Math.fround(scoreOf.get(row)! + boost.values[j]!) : scoreOf.get(row)!;
    };
    const want = Array.from(plain.rows)
      .filter((row) => row !== lifted[1])
      .sort((x, y) => total(y) - total(x) || x - y)
      .slice(0, 10);
    expect(Array.from(got.rows)).toEqual(want);
    expect(Array.from(got.scores)).toEqual(want.map(total));
    expect(got.rows[0]).toBe(lifted[0]);
  });

  it("reports a shard that cannot load its files as unavailable, not as an error", async () => {
    const m = parseManifest(shManifest);
    const broken = durableShards(shardNs, shardSpecs(m, "test-shards/missing-version"), 5000);
    const model = await GruModel.load(bundledWasm(), { manifest: shManifest, step: fx.sharded.step, weights: fx.sharded.weights }, broken);
    await expect(model.topK(model.initialState(), { newSession: true, gapHours: 0 }, 5)).rejects.toBeInstanceOf(ShardUnavailableError);
  });
});

describe("merging the shards' top-k lists", () => {
  it("merges ties by row and drops excluded (-inf) entries", () => {
    const top = mergeTops(
      [
        { lo: 0, top: { rows: Int32Array.of(4, 2), scores: Float32Array.of(0.5, 0.5) } },
        { lo: 10, top: { rows: Int32Array.of(0, 1), scores: Float32Array.of(0.9, -Infinity) } },
      ],
      3,
    );
    expect(top).toEqual([
      { row: 10, score: Float32Array.of(0.9)[0] },
      { row: 2, score: 0.5 },
      { row: 4, score: 0.5 },
    ]);
  });
});

describe("a sharded version through the registry", { timeout: 240_000 }, () => {
  afterEach(async () => {
    const list = await api("/v1/admin/models");
    if (list.body.serving !== bundledManifest.version) await api(`/v1/admin/models/${bundledManifest.version}/activate`, { body: {} });
  });

  async function put(version: string, file: string, body: ArrayBuffer | string) {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : new Uint8Array(body);
    const sum = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (x) => x.toString(16).padStart(2, "0")).join("");
    const res = await (exports as any).default.fetch(
      new Request(`http://worker.test/v1/admin/models/${version}/files/${file}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${KEY}`, "x-content-sha256": sum, "content-type": "application/octet-stream" },
        body: bytes,
      }),
    );
    expect(res.status).toBe(200);
    return sum;
  }

  async function uploadAndStage(version: string, files: Record<string, ArrayBuffer | string>) {
    const sums: Record<string, string> = {};
    for (const [name, body] of Object.entries(files)) sums[name] = await put(version, name, body);
    const staged = await api(`/v1/admin/models/${version}`, { body: { files: sums } });
    expect(staged.status, JSON.stringify(staged.body)).toBe(201);
    return staged.body;
  }

  it("is uploaded, staged with its golden vectors, activated, and serves lists and similar items from its shards", async () => {
    const version = shManifest.version;
    await uploadAndStage(version, {
      "manifest.json": JSON.stringify(shManifest),
      "step.onnx": shStep,
      "weights.bin": shWeights,
      "golden.json": JSON.stringify(shGolden),
      ...SHARD_FILES,
    });
    const act = await api(`/v1/admin/models/${version}/activate`, { body: { previous: "retire" } });
    expect(act.status, JSON.stringify(act.body)).toBe(200);

    const user = uid("sharded");
    const ids = shManifest.items.ids;
    const seen = [ids[5]!, ids[40]!, ids[700]!, ids[1200]!];
    const posted = await api("/v1/events", { body: seen.map((id, i) => ev(user, id, { type: i === 3 ? "purchase" : "view" })) });
    expect(posted.status, JSON.stringify(posted.body)).toBeLessThan(300);
    const rec = await api(`/v1/users/${user}/recommendations?k=10`);
    expect(rec.status).toBe(200);
    expect(rec.body.source).toBe("model");
    expect(rec.body.model_version).toBe(version);
    expect(rec.body.items).toHaveLength(10);
    expect(rec.body.items.map((i: { item_id: string }) => i.item_id)).not.toContain(ids[1200]);

    const sim = await api(`/v1/items/${encodeURIComponent(ids[40]!)}/similar?k=8`);
    expect(sim.status).toBe(200);
    expect(sim.body.source).toBe("model");
    const want = await single.similar(single.rowOf(ids[40]!)!, 8);
    expect(sim.body.items.map((i: { item_id: string }) => i.item_id)).toEqual(want.map((t) => single.idOf(t.row)));

    // A new arrival (not in the model) takes the direction of its category's items, w = Σ ê_i / |Σ ê_i|,
    // from the shards' normalised rows: cos(w, e_j) = Σ_i cos(i, j) / sqrt(Σ_i Σ_l cos(i, l)), the
    // pairwise cosines from the API itself; and it is found as a similar item of a trained one.
    const tiny = [ids[100]!, ids[900]!, ids[1800]!];
    const item = (id: string, path: string[]) => ({ id, title: id, category_path: path, price: 5, currency: "EUR", available: true });
    const put = await api("/v1/items/batch", { body: [...tiny.map((id) => item(id, ["Films", "Tiny"])), item("arrival-s", ["Films", "Tiny", "Shorts"])] });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    // the catalog copy is the isolate's: leave it empty for the next test
    onTestFinished(async () => {
      for (const id of [...tiny, "arrival-s"]) await api(`/v1/items/${id}`, { method: "DELETE" });
    });
    const q = `category=${encodeURIComponent("Films > Tiny")}`;
    const { expected, inSeedList } = await newItemCosines(tiny, q, "arrival-s");
    const ofNew = await api(`/v1/items/arrival-s/similar?k=3&${q}`);
    expect(ofNew.body).toMatchObject({ source: "model" });
    expect(ofNew.body.items.map((i: { item_id: string }) => i.item_id).sort()).toEqual([...tiny].sort());
    // (the API's scores carry 5 decimals, so the sums here are good to about 1e-4)
    for (const it of ofNew.body.items) expect(it.score).toBeCloseTo(expected(it.item_id), 3);
    // ... ranked for a shopper as the mean score of its category's rows (its warm row's score)
    const ranked = await api(`/v1/users/${user}/rank`, { body: { item_ids: [...tiny, "arrival-s"] } });
    const score = new Map<string, number>(ranked.body.items.map((i: { item_id: string; score: number }) => [i.item_id, i.score]));
    expect(ranked.body.items.find((i: { item_id: string }) => i.item_id === "arrival-s")).toMatchObject({ source: "model", warm: true });
    expect(score.get("arrival-s")).toBeCloseTo(tiny.reduce((t, id) => t + score.get(id)!, 0) / 3, 4);
    const seedList = await api(`/v1/items/${tiny[0]}/similar?k=3&${q}`);
    const found = seedList.body.items.find((i: { item_id: string }) => i.item_id === "arrival-s");
    expect(found).toMatchObject({ source: "model", warm: true });
    expect(found.score).toBeCloseTo(inSeedList(tiny[0]!), 3);
  });

  it("makes diginetica (43k items x 128) live from the default config with its similar graph, in 3 shards", async () => {
    const version = digManifest.version;
    await uploadAndStage(version, DIG_SHARDED_FILES);
    const act = await api(`/v1/admin/models/${version}/activate`, { body: {} });
    expect(act.status, JSON.stringify(act.body)).toBe(200);
    const seed = digGolden.similar.item_id;
    const sim = await api(`/v1/items/${encodeURIComponent(seed)}/similar?k=10`);
    expect(sim.status).toBe(200);
    expect(sim.body.source).toBe("model");
    expect(sim.body.model_version).toBe(version);
    // PyTorch's similar items of the golden seed (export_shards.py), through the shards.
    expect(sim.body.items.map((i: { item_id: string }) => i.item_id)).toEqual(digGolden.similar.item_ids);
  });
});
