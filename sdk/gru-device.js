/**
 * gru-device.js — score on the shopper's device: the worker's own model files run in the browser
 * with onnxruntime-web, on WebGPU where the browser has it (and JSPI), else on WASM. The state is
 * read from the API (GET /v1/users/{id}/state) and advanced locally on the events the page tracks;
 * the API stays authoritative (call `sync()` after `gru.flush()` to catch up with it).
 *
 *   import { createRecommender } from "./gru.js";
 *   import { createDeviceScorer } from "./gru-device.js";
 *   const device = await createDeviceScorer({ endpoint, key, userId, ortBase: "/vendor/ort/" });
 *   const gru = createRecommender({ endpoint, key, onTrack: (e) => device.observe(e) });
 *   await device.sync(gru.userId);
 *   const { items } = await device.recommend({ k: 8 });     // same rules as the worker's ranking
 *   device.backend;                                          // "webgpu" or "wasm"
 *
 * Model files are fetched once per version and kept in the browser's Cache Storage ("gru-model").
 * Kept apart from gru.js so the tracking snippet stays small and dependency-free; this module
 * loads onnxruntime-web (from `ortBase`) only when created.
 */

const CACHE = "gru-model";

/** @param {import("./gru-device").DeviceOptions} o */
export async function createDeviceScorer(o) {
  if (!o || !o.endpoint || !o.key) throw new Error("gru-device: endpoint and key are required");
  const base = o.endpoint.replace(/\/+$/, "");
  const doFetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  const auth = { authorization: `Bearer ${o.key}` };
  let userToken = o.userToken ?? null;
  const ortBase = new URL(o.ortBase ?? "/vendor/ort/", globalThis.location?.href ?? base).href;
  const now = o.now ?? (() => Date.now());
  const timings = { load_ms: 0, step_ms: [], rank_ms: [] };
  const t0 = performance.now();

  async function getJson(path) {
    const res = await doFetch(`${base}${path}`, { headers: userToken ? { ...auth, "x-user-token": userToken } : auth });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error(`request failed (${res.status}): ${body?.error?.message ?? res.statusText}`);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  /** A model file, from Cache Storage when this version was fetched before. */
  async function getFile(path) {
    const url = `${base}${path}`;
    const cache = o.cache === false || !globalThis.caches ? null : await globalThis.caches.open(CACHE).catch(() => null);
    let res = cache ? await cache.match(url) : undefined;
    if (!res) {
      res = await doFetch(url, { headers: auth });
      if (!res.ok) throw new Error(`model file ${path}: ${res.status}`);
      if (cache) await cache.put(url, res.clone()).catch(() => undefined);
    }
    return new Uint8Array(await res.arrayBuffer());
  }

  const info = await getJson("/v1/device/model");
  const [manifestBytes, step, score, weights, similar] = await Promise.all(
    [info.files.manifest, info.files.step, info.files.score, info.files.weights, info.files.similar].map((p) => (p ? getFile(p) : null)),
  );
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  const ids = manifest.items.ids;
  const rows = manifest.items.rows;
  const size = manifest.state.size;
  const idleGapMs = manifest.session.idle_gap_seconds * 1000;
  const rowOf = new Map(ids.map((id, i) => [id, i + 1]));

  const want = o.backend ?? "auto";
  let backend = "wasm";
  let fallback = null;
  let ort, sessions;
  if (want !== "wasm") {
    const why = await webgpuMissing();
    if (why && want === "webgpu") throw new Error(`gru-device: WebGPU unavailable: ${why}`);
    if (!why) {
      try {
        ort = await loadOrt("ort.jspi.min.mjs");
        sessions = await createSessions("webgpu");
        backend = "webgpu";
      } catch (e) {
        if (want === "webgpu") throw e;
        fallback = `webgpu failed: ${e.message}`;
      }
    } else fallback = why;
  }
  if (!sessions) {
    ort = await loadOrt("ort.wasm.min.mjs");
    sessions = await createSessions("wasm");
  }
  timings.load_ms = performance.now() - t0;

  async function loadOrt(file) {
    const m = await import(/* @vite-ignore */ ortBase + file);
    m.env.wasm.wasmPaths = ortBase;
    m.env.wasm.numThreads = 1;
    m.env.logLevel = "error";
    return m;
  }

  async function createSessions(ep) {
    const opts = () => ({ executionProviders: [ep], graphOptimizationLevel: "all", logSeverityLevel: 3, externalData: [{ path: manifest.weights.file, data: weights }] });
    const s = {
      step: await ort.InferenceSession.create(step, opts()),
      score: await ort.InferenceSession.create(score, opts()),
      similar: similar ? await ort.InferenceSession.create(similar, opts()) : null,
    };
    return s;
  }

  // onnxruntime sessions are not re-entrant: one run at a time.
  let queue = Promise.resolve();
  const serial = (fn) => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  const T = (type, data, dims) => new ort.Tensor(type, data, dims);
  const moment = (atMs, lastMs) => (lastMs === undefined ? { newSession: true, gapHours: 0 } : { newSession: atMs - lastMs > idleGapMs, gapHours: Math.max(0, atMs - lastMs) / 3_600_000 });

  /** One GRU step (the worker's `step`). */
  function runStep(state, row, at) {
    return serial(async () => {
      const t = performance.now();
      const out = await sessions.step.run({
        state: T("float32", state, [1, size]),
        item: T("int64", BigInt64Array.of(BigInt(row)), [1]),
        new_session: T("float32", Float32Array.of(at.newSession ? 1 : 0), [1]),
        gap: T("float32", Float32Array.of(at.gapHours), [1]),
      });
      const next = new Float32Array(await out.next_state.getData());
      timings.step_ms.push(performance.now() - t);
      return next;
    });
  }

  function clampK(k, mask) {
    let masked = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i] > 0.5) masked++;
    return Math.max(0, Math.min(k, rows - masked));
  }

  async function collect(out) {
    const scores = await out.scores.getData();
    const indices = await out.indices.getData();
    const items = [];
    for (let i = 0; i < scores.length; i++) if (Number.isFinite(scores[i])) items.push({ row: Number(indices[i]), score: scores[i] });
    return items;
  }

  /** Ranking (the worker's `score`): the k best rows, never a masked one. */
  function runScore(state, at, k, mask) {
    mask[0] = 1;
    const kk = clampK(k, mask);
    if (!kk) return Promise.resolve([]);
    return serial(async () => {
      const t = performance.now();
      const out = await sessions.score.run({
        state: T("float32", state, [1, size]),
        new_session: T("float32", Float32Array.of(at.newSession ? 1 : 0), [1]),
        gap: T("float32", Float32Array.of(at.gapHours), [1]),
        mask: T("float32", mask, [1, rows]),
        k: T("int64", BigInt64Array.of(BigInt(kk)), [1]),
      });
      const items = await collect(out);
      timings.rank_ms.push(performance.now() - t);
      return items;
    });
  }

  function runSimilar(row, k, mask) {
    if (!sessions.similar) return Promise.reject(new Error(`model ${manifest.version} has no similar graph`));
    mask[0] = 1;
    mask[row] = 1;
    const kk = clampK(k, mask);
    if (!kk) return Promise.resolve([]);
    return serial(async () => {
      const t = performance.now();
      const out = await sessions.similar.run({ item: T("int64", BigInt64Array.of(BigInt(row)), [1]), mask: T("float32", mask, [1, rows]), k: T("int64", BigInt64Array.of(BigInt(kk)), [1]) });
      const items = await collect(out);
      timings.rank_ms.push(performance.now() - t);
      return items;
    });
  }

  // The shopper's state (a copy of the API's, advanced here).
  let user = null;
  let st = fresh(null, o.ringCapacity ?? 20);
  let pending = Promise.resolve();
  let catalogMask = null;

  function fresh(userId, ringCapacity) {
    return { userId, vector: new Float32Array(size), eventCount: 0, sessionCount: 0, lastEventMs: 0, ring: [], ringCapacity, purchased: new Set(), source: "empty" };
  }

  /**
   * Read the user's state from the API (a user without one starts from zeros). An identified
   * customer's state needs their signed user token (`opts.token`, kept for later syncs); an
   * anonymous visitor's does not.
   */
  async function sync(userId = user, opts = {}) {
    if (opts.token !== undefined) userToken = opts.token;
    else if (userId !== user) userToken = null;
    user = userId;
    await pending;
    try {
      const s = await getJson(`/v1/users/${encodeURIComponent(userId)}/state`);
      if (s.model_version !== manifest.version) throw new Error(`state is for model ${s.model_version}, device has ${manifest.version}`);
      const bytes = Uint8Array.from(atob(s.state), (ch) => ch.charCodeAt(0));
      st = {
        userId,
        vector: new Float32Array(bytes.buffer, 0, s.state_size),
        eventCount: s.event_count,
        sessionCount: s.session_count,
        lastEventMs: s.last_event_ms,
        ring: s.recent.map((id) => rowOf.get(id)).filter((r) => r !== undefined),
        ringCapacity: s.ring_capacity,
        purchased: new Set(s.purchased),
        source: "api",
      };
    } catch (e) {
      if (e.status !== 404) throw e;
      st = fresh(userId, st.ringCapacity);
    }
    return summary();
  }

  function summary() {
    return { user_id: st.userId, event_count: st.eventCount, session_count: st.sessionCount, last_event_ms: st.lastEventMs, recent: st.ring.map((r) => ids[r - 1]), source: st.source };
  }

  /** Advance the local state on an event (gru.js calls this through its `onTrack` option). */
  function observe(e) {
    if (user !== null && e.user_id !== user) return pending;
    pending = pending.then(async () => {
      if (e.type === "purchase") st.purchased.add(e.item_id);
      const row = rowOf.get(e.item_id);
      if (row === undefined) return; // an item only the catalog knows: the worker leaves the state as it is
      const ts = e.timestamp ?? now();
      const at = moment(ts, st.eventCount === 0 ? undefined : st.lastEventMs);
      st.vector = await runStep(st.vector, row, at);
      if (at.newSession) st.sessionCount++;
      st.eventCount++;
      st.lastEventMs = Math.max(st.lastEventMs, ts);
      const seen = st.ring.indexOf(row);
      if (seen >= 0) st.ring.splice(seen, 1);
      st.ring.unshift(row);
      if (st.ring.length > st.ringCapacity) st.ring.length = st.ringCapacity;
      st.source = "device";
    });
    return pending;
  }

  /** The catalog the ranking may use: only listed, available items (as the worker once it has a catalog). */
  function setCatalog(items) {
    const m = new Float32Array(rows).fill(1);
    for (const it of items) {
      const r = rowOf.get(String(it.id));
      if (r !== undefined && it.available !== false) m[r] = 0;
    }
    m[0] = 1;
    catalogMask = m;
  }

  function maskFor(never) {
    const m = catalogMask ? catalogMask.slice() : new Float32Array(rows);
    for (const id of never) {
      const r = rowOf.get(id);
      if (r !== undefined) m[r] = 1;
    }
    return m;
  }

  const named = (items) => items.map((t) => ({ item_id: ids[t.row - 1], score: t.score, source: "device" }));

  /** Recommendations from the local state: purchases never, recent items only with excludeRecent=true (as the API). */
  async function recommend(opts = {}) {
    await pending;
    const k = opts.k ?? 10;
    if (st.eventCount === 0) return { items: [], source: "device", reason: "cold-user", backend, model_version: manifest.version };
    const never = new Set([...st.purchased, ...(opts.exclude ?? [])]);
    if (opts.excludeRecent === true) for (const r of st.ring) never.add(ids[r - 1]);
    const at = moment(opts.at ?? now(), st.lastEventMs);
    const t = performance.now();
    const items = named(await runScore(st.vector, at, k, maskFor(never)));
    return { items, source: "device", backend, model_version: manifest.version, ms: performance.now() - t };
  }

  /** Items similar to `itemId` (cosine of the item embeddings), never the shopper's purchases. */
  async function similarTo(itemId, opts = {}) {
    await pending;
    const row = rowOf.get(String(itemId));
    if (row === undefined) return { items: [], source: "device", reason: "unknown-item", backend, model_version: manifest.version };
    const t = performance.now();
    const items = named(await runSimilar(row, opts.k ?? 10, maskFor(new Set([...st.purchased, ...(opts.exclude ?? [])]))));
    return { items, source: "device", backend, model_version: manifest.version, ms: performance.now() - t };
  }

  /**
   * Replay a golden.json (models/<name>/golden.json) and compare: largest state difference, largest
   * score difference, whether the top-k and similar lists are identical.
   */
  async function checkGolden(g) {
    let s = new Float32Array(size);
    let maxState = 0;
    for (let i = 0; i < g.events.length; i++) {
      s = await runStep(s, rowOf.get(g.events[i].item_id), { newSession: g.new_session[i] > 0.5, gapHours: g.gap_hours[i] });
      for (let j = 0; j < size; j++) maxState = Math.max(maxState, Math.abs(s[j] - g.states[i][j]));
    }
    let maxScore = 0;
    let topkEqual = true;
    for (const c of Object.values(g.topk)) {
      const mask = new Float32Array(rows);
      if (c.exclude_seen) for (const e of g.events) mask[rowOf.get(e.item_id)] = 1;
      const top = await runScore(s, { newSession: c.new_session > 0.5, gapHours: c.gap_hours }, g.k, mask);
      if (top.map((t) => ids[t.row - 1]).join() !== c.item_ids.join()) topkEqual = false;
      top.forEach((t, i) => (maxScore = Math.max(maxScore, Math.abs(t.score - c.scores[i]))));
    }
    let similarEqual = null;
    if (g.similar && sessions.similar) {
      const top = await runSimilar(rowOf.get(g.similar.item_id), g.k, new Float32Array(rows));
      similarEqual = top.map((t) => ids[t.row - 1]).join() === g.similar.item_ids.join();
      top.forEach((t, i) => (maxScore = Math.max(maxScore, Math.abs(t.score - g.similar.scores[i]))));
    }
    return { max_state_diff: maxState, max_score_diff: maxScore, topk_equal: topkEqual, similar_equal: similarEqual, tolerance: g.tolerance };
  }

  return {
    get backend() {
      return backend;
    },
    /** Why WebGPU was not used (null when it was, or when WASM was asked for). */
    fallback,
    version: manifest.version,
    manifest,
    timings,
    sync,
    observe,
    setCatalog,
    recommend,
    similar: similarTo,
    checkGolden,
    get state() {
      return summary();
    },
  };
}

/** Why WebGPU cannot be used here, or null when it can. */
async function webgpuMissing() {
  if (typeof navigator === "undefined" || !navigator.gpu) return "navigator.gpu is missing";
  if (typeof WebAssembly.Suspending !== "function") return "JSPI (WebAssembly.Suspending) is missing";
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? null : "no WebGPU adapter";
  } catch (e) {
    return `requestAdapter failed: ${e.message}`;
  }
}

/** Percentile of a list of numbers (q in [0, 1]); NaN for an empty list. */
export function percentile(xs, q) {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
