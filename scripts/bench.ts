/**
 * `npm run bench`: the worker's speed over loopback, replaying real sessions from ../shared/data
 * (MovieLens latest-small, the demo model's data), every phase bounded in count and time.
 *
 * 1. The worker in workerd through miniflare's own server (local/miniflare.ts; no wrangler dev
 *    proxy), driven by autocannon at concurrency 1, 16 and 64: POST /v1/events (one event) and
 *    GET recommendations (k=10). Per phase: client p50/p90/p99 and throughput; the worker's own
 *    time from its log lines (total, redis, model, db: the Server-Timing figures); subrequests per
 *    request (Upstash calls before the response, and every subrequest of the invocation including
 *    waitUntil work); CPU time per request of each process from /proc/<pid>/stat (workerd, the REST
 *    bridge, redis-server, this process) over the phase. workerd cannot report CPU per request to
 *    the worker, so this is the process's CPU divided by the requests it served; it includes
 *    workerd's HTTP server and the local D1, so it bounds the worker's own CPU from above (the
 *    404 row is the floor of that overhead).
 * 2. The floors, in the same run: one Redis GET round trip through the same bridge, and the
 *    model's score (and step + score) with the same runtime (onnxruntime-web wasm) in Node.
 * 3. The first request of a fresh isolate (a new workerd): a recommendation for a user with a
 *    state, which loads the model; three fresh starts.
 * 4. With --wrangler: the same worker behind `wrangler dev` (its proxy in front), c=1 and 16, the
 *    worker's own time from the Server-Timing header.
 *
 * The worker runs as in production: the demo catalog is loaded (every ranking applies the
 * availability mask) and the rate limiter is on (with a budget the bench cannot exhaust).
 *
 * Options: --requests N (per phase, default 3000)  --seconds S (per phase, default 10)  --wrangler
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { startBridgeProcess } from "../local/bridge-process.ts";
import { bundleWorker, childPids, cpuMs, type MiniflareWorker, startMiniflareWorker } from "../local/miniflare.ts";
import { freePort, startRedis } from "../local/redis-server.ts";
import { ROOT, startStack } from "../local/stack.ts";
import { loadModelFolder } from "../src/model/node-files";
import { demoCatalog } from "./demo-catalog.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const MAX_REQUESTS = arg("requests", 3000);
const MAX_SECONDS = arg("seconds", 10);
const WITH_WRANGLER = process.argv.includes("--wrangler");
const KEY = "bench-key";
const auth = { authorization: `Bearer ${KEY}` };
const jsonHeaders = { ...auth, "content-type": "application/json" };

// ---- real sessions: MovieLens ratings in time order per user, items known to the model -------
const dataPath = join(ROOT, "..", "shared", "data", "movielens-latest-small", "ratings.csv");
const modelDir = join(ROOT, "models", "ml-small");
const manifest = JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8"));
const known = new Set<string>(manifest.items.ids);
const byUser = new Map<string, { item: string; ts: number }[]>();
for (const line of readFileSync(dataPath, "utf8").split("\n").slice(1)) {
  const [u, item, , ts] = line.split(",");
  if (!u || !item || !known.has(item)) continue;
  const list = byUser.get(u) ?? [];
  list.push({ item, ts: Number(ts) * 1000 });
  byUser.set(u, list);
}
const users = [...byUser.keys()];
for (const u of users) byUser.get(u)!.sort((a, b) => a.ts - b.ts);
const run = `${process.pid}-${Date.now().toString(36)}`;
// The replay: users interleaved, each user's events in order (the bench's own user ids).
const replay: { user: string; item: string }[] = [];
for (let i = 0; replay.length < 200_000; i++) {
  let any = false;
  for (const u of users) {
    const e = byUser.get(u)![i];
    if (e) {
      replay.push({ user: `bench-${run}-ml${u}`, item: e.item });
      any = true;
    }
  }
  if (!any) break;
}
let cursor = 0;
const eventBody = () => {
  const i = cursor++;
  const e = replay[i % replay.length]!;
  return JSON.stringify({ event_id: `b${run}-${i}`, user_id: e.user, item_id: e.item, type: "view" });
};
/** A user who has had events (their state exists), in rotation. */
let recCursor = 0;
const seededUser = () => replay[recCursor++ % Math.max(1, Math.min(cursor, replay.length))]!.user;

// ---- statistics --------------------------------------------------------------------------------
const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");

interface LogLine {
  route?: string;
  path?: string;
  status: number;
  total_ms: number;
  redis_ms: number;
  model_ms: number;
  db_ms: number;
  redis_calls: number;
  subrequests: number;
}

/** Worker log lines, collected per phase. */
let phaseLines: LogLine[] = [];
const onLog = (_level: string, message: string) => {
  if (!message.startsWith("{")) {
    if (/error|fail/i.test(message)) process.stderr.write(`worker: ${message.slice(0, 300)}\n`);
    return;
  }
  try {
    const l = JSON.parse(message);
    if (l.msg === "request") phaseLines.push(l);
  } catch {}
};

const REC_ROUTE = "/v1/users/:user_id/recommendations";

interface Procs {
  workerd: number | null;
  bridge: number;
  redis: number | null;
}

interface Row {
  name: string;
  c: number;
  n: number;
  bad: number;
  p50: number;
  p90: number;
  p99: number;
  rps: number;
  worker: { total: number; totalP50: number; totalP90: number; redis: number; model: number; db: number; redisCalls: number; sub: number; subMax: number; lines: number };
  cpu: { workerd: number; bridge: number; redis: number; bench: number };
}

/** One autocannon phase against `url`: bounded by MAX_REQUESTS and MAX_SECONDS. */
async function phase(
  name: string,
  url: string,
  c: number,
  procs: Procs,
  request: { method: "GET" | "POST"; path: () => string; body?: () => string; route: (l: LogLine) => boolean },
  ok: (status: number) => boolean = (s) => s === 200,
): Promise<Row> {
  await new Promise((r) => setTimeout(r, 300)); // the previous phase's deferred log lines
  phaseLines = [];
  const lat: number[] = [];
  let bad = 0;
  const cpu0 = { w: procs.workerd ? cpuMs(procs.workerd) : NaN, b: cpuMs(procs.bridge), r: procs.redis ? cpuMs(procs.redis) : NaN, s: process.cpuUsage() };
  const t0 = performance.now();
  const inst = autocannon({
    url,
    connections: c,
    amount: MAX_REQUESTS,
    timeout: 30,
    requests: [
      {
        method: request.method,
        headers: request.body ? jsonHeaders : auth,
        setupRequest: (req: Record<string, unknown>) => ({ ...req, path: request.path(), ...(request.body ? { body: request.body() } : {}) }),
      },
    ],
  });
  inst.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    lat.push(ms);
    if (!ok(status)) bad++;
  });
  const stop = setTimeout(() => inst.stop(), MAX_SECONDS * 1000);
  const res = await inst;
  clearTimeout(stop);
  const secs = (performance.now() - t0) / 1000;
  const s = process.cpuUsage(cpu0.s);
  const n = lat.length;
  const per = (d: number) => d / Math.max(1, n);
  const cpu = {
    workerd: procs.workerd ? per(cpuMs(procs.workerd) - cpu0.w) : NaN,
    bridge: per(cpuMs(procs.bridge) - cpu0.b),
    redis: procs.redis ? per(cpuMs(procs.redis) - cpu0.r) : NaN,
    bench: per((s.user + s.system) / 1000),
  };
  await new Promise((r) => setTimeout(r, 300));
  const lines = phaseLines.filter(request.route);
  bad += res.errors + res.timeouts;
  return {
    name,
    c,
    n,
    bad,
    p50: pct(lat, 50),
    p90: pct(lat, 90),
    p99: pct(lat, 99),
    rps: n / secs,
    worker: {
      total: mean(lines.map((l) => l.total_ms)),
      totalP50: pct(lines.map((l) => l.total_ms), 50),
      totalP90: pct(lines.map((l) => l.total_ms), 90),
      redis: mean(lines.map((l) => l.redis_ms)),
      model: mean(lines.map((l) => l.model_ms)),
      db: mean(lines.map((l) => l.db_ms)),
      redisCalls: mean(lines.map((l) => l.redis_calls)),
      sub: mean(lines.map((l) => l.subrequests)),
      subMax: Math.max(0, ...lines.map((l) => l.subrequests)),
      lines: lines.length,
    },
    cpu,
  };
}

/** Sequential timed calls (floors): p50 of `n` runs. */
async function timeIt(n: number, fn: (i: number) => Promise<unknown>): Promise<{ p50: number; p90: number }> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    xs.push(performance.now() - t);
  }
  return { p50: pct(xs, 50), p90: pct(xs, 90) };
}

const dir = mkdtempSync(join(tmpdir(), "gru-bench-"));
const rows: Row[] = [];
const floors: Record<string, { p50: number; p90: number }> = {};
const firsts: { client: number; total: number; model: number }[] = [];
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(
  `load average before: ${load()}; replaying ${replay.length} MovieLens events of ${users.length} users (bounded: ${MAX_REQUESTS} requests or ${MAX_SECONDS} s per phase); ` +
    `${cpus().length} cores, node ${process.version}`,
);
const redis = await startRedis({ dir: join(dir, "redis"), persist: false });
const token = randomBytes(16).toString("hex");
const bridge = await startBridgeProcess({ redisPort: redis.port, token });
const redisPid = childPids(process.pid, "redis-server")[0] ?? null;
const script = await bundleWorker(join(dir, "bundle"));
const vars = {
  SECRET_KEYS: KEY,
  UPSTASH_REDIS_REST_URL: bridge.url,
  UPSTASH_REDIS_REST_TOKEN: token,
  RATE_LIMIT_SECRET_PER_MINUTE: "10000000",
  REQUEST_LOG: "on",
};
const persistTo = join(dir, "worker");
let worker: MiniflareWorker | undefined;
try {
  worker = await startMiniflareWorker({ script, vars, onLog, persistTo });
  const url = worker.url;
  const procs: Procs = { workerd: worker.pid, bridge: bridge.pid, redis: redisPid };
  const loaded = await fetch(`${url}/v1/items/batch`, { method: "POST", headers: jsonHeaders, body: JSON.stringify(demoCatalog()) });
  console.log(`miniflare server at ${url} (workerd pid ${worker.pid}); demo catalog: ${JSON.stringify(await loaded.json()).slice(0, 100)}`);
  // Warm-up: model load, connections, scripts cached on the server.
  for (let i = 0; i < 50; i++) await (await fetch(`${url}/v1/events`, { method: "POST", headers: jsonHeaders, body: eventBody() })).arrayBuffer();
  for (let i = 0; i < 50; i++) await (await fetch(`${url}/v1/users/${encodeURIComponent(seededUser())}/recommendations?k=10`, { headers: auth })).arrayBuffer();

  for (const c of [1, 16, 64]) rows.push(await phase("POST /v1/events (1 event)", url, c, procs, { method: "POST", path: () => "/v1/events", body: eventBody, route: (l) => l.path === "/v1/events" }));
  for (const c of [1, 16, 64]) {
    rows.push(await phase("GET recommendations k=10", url, c, procs, { method: "GET", path: () => `/v1/users/${encodeURIComponent(seededUser())}/recommendations?k=10`, route: (l) => l.route === REC_ROUTE }));
  }
  rows.push(await phase("reference: 404, no work", url, 1, procs, { method: "GET", path: () => "/no-such-route", route: (l) => l.path === "/no-such-route" }, (s) => s === 404));
  rows.push(await phase("reference: 404, no work", url, 16, procs, { method: "GET", path: () => "/no-such-route", route: (l) => l.path === "/no-such-route" }, (s) => s === 404));

  // Floors: one Redis round trip through the same bridge, the model in Node with the same runtime.
  const bh = { authorization: `Bearer ${token}`, "upstash-encoding": "base64" };
  await fetch(bridge.url, { method: "POST", headers: bh, body: JSON.stringify(["SET", "bench:floor", "x".repeat(860)]) });
  const get = () => fetch(bridge.url, { method: "POST", headers: bh, body: JSON.stringify(["GET", "bench:floor"]) }).then((r) => r.arrayBuffer());
  await timeIt(200, get);
  floors.redis = await timeIt(2000, get);
  const model = await loadModelFolder(modelDir);
  let state = model.initialState();
  const at = { newSession: false, gapHours: 0.01 };
  const score = () => model.topK(state, at, 10, [1, 2, 3]);
  const stepScore = async (i: number) => {
    state = await model.step(state, model.rowOf(replay[i % replay.length]!.item)!, { newSession: i % 20 === 0, gapHours: 0.01 });
    return score();
  };
  await timeIt(100, stepScore);
  floors.score = await timeIt(2000, score);
  floors.stepScore = await timeIt(2000, stepScore);
  await worker.stop();
  worker = undefined;

  // The first request of a fresh isolate (a new workerd; states, catalog and D1 kept).
  for (let k = 0; k < 3; k++) {
    phaseLines = [];
    const fresh = await startMiniflareWorker({ script, vars, onLog, persistTo });
    try {
      const t = performance.now();
      const r = await fetch(`${fresh.url}/v1/users/${encodeURIComponent(replay[k]!.user)}/recommendations?k=10`, { headers: auth });
      const body = (await r.json()) as { source?: string; reason?: string };
      const client = performance.now() - t;
      await new Promise((res) => setTimeout(res, 300));
      const line = phaseLines[0];
      if (r.status !== 200 || body.source !== "model") console.log(`first request of a fresh isolate: status ${r.status}, source ${body.source}, reason ${body.reason}`);
      firsts.push({ client, total: line?.total_ms ?? NaN, model: line?.model_ms ?? NaN });
    } finally {
      await fresh.stop();
    }
  }

  if (WITH_WRANGLER) {
    const stack = await startStack({ port: await freePort(), apiKey: KEY, dataDir: join(dir, "wrangler"), vars: { RATE_LIMIT_SECRET_PER_MINUTE: "10000000", REQUEST_LOG: "off" } });
    try {
      await fetch(`${stack.url}/v1/items/batch`, { method: "POST", headers: jsonHeaders, body: JSON.stringify(demoCatalog()) });
      for (let i = 0; i < 50; i++) await (await fetch(`${stack.url}/v1/events`, { method: "POST", headers: jsonHeaders, body: eventBody() })).arrayBuffer();
      // No workerd pid here (wrangler's); worker time from Server-Timing instead of log lines.
      for (const c of [1, 16]) rows.push(await serverTimingPhase("wrangler dev: GET recommendations k=10", stack.url, c));
    } finally {
      await stack.stop();
    }
  }
} finally {
  await worker?.stop();
  await bridge.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

/** A phase against wrangler dev, reading the worker's own time from Server-Timing. */
async function serverTimingPhase(name: string, url: string, c: number): Promise<Row> {
  const lat: number[] = [];
  const totals: number[] = [];
  let bad = 0;
  let next = 0;
  const deadline = performance.now() + MAX_SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next++ < MAX_REQUESTS && performance.now() < deadline) {
        const t = performance.now();
        const r = await fetch(`${url}/v1/users/${encodeURIComponent(seededUser())}/recommendations?k=10`, { headers: auth });
        await r.arrayBuffer();
        lat.push(performance.now() - t);
        if (r.status !== 200) bad++;
        const m = /total;dur=([\d.]+)/.exec(r.headers.get("server-timing") ?? "");
        if (m) totals.push(Number(m[1]));
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const nan = NaN;
  return {
    name,
    c,
    n: lat.length,
    bad,
    p50: pct(lat, 50),
    p90: pct(lat, 90),
    p99: pct(lat, 99),
    rps: lat.length / secs,
    worker: { total: mean(totals), totalP50: pct(totals, 50), totalP90: pct(totals, 90), redis: nan, model: nan, db: nan, redisCalls: nan, sub: nan, subMax: nan, lines: totals.length },
    cpu: { workerd: nan, bridge: nan, redis: nan, bench: nan },
  };
}

console.log(`\nClient side (autocannon over loopback; latency in ms):\n`);
console.log(`| path | conc. | requests | non-2xx/errors | p50 | p90 | p99 | req/s |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|---:|`);
for (const r of rows) console.log(`| ${r.name} | ${r.c} | ${r.n} | ${r.bad} | ${f2(r.p50)} | ${f2(r.p90)} | ${f2(r.p99)} | ${r.rps.toFixed(0)} |`);

console.log(`\nThe worker's own time (its log lines = Server-Timing; means in ms, workerd's clock ticks in whole ms) and subrequests per request:\n`);
console.log(`| path | conc. | total mean | total p50 | total p90 | redis | model | db | Upstash calls | subrequests (max) |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
for (const r of rows) {
  const w = r.worker;
  console.log(`| ${r.name} | ${r.c} | ${f2(w.total)} | ${f1(w.totalP50)} | ${f1(w.totalP90)} | ${f2(w.redis)} | ${f2(w.model)} | ${f2(w.db)} | ${f2(w.redisCalls)} | ${f2(w.sub)} (${w.subMax}) |`);
}

console.log(`\nCPU time per request, ms (process CPU from /proc/<pid>/stat over the phase / requests served):\n`);
console.log(`| path | conc. | workerd | REST bridge | redis-server | load generator |`);
console.log(`|---|---:|---:|---:|---:|---:|`);
for (const r of rows.filter((x) => Number.isFinite(x.cpu.workerd))) {
  console.log(`| ${r.name} | ${r.c} | ${f2(r.cpu.workerd)} | ${f2(r.cpu.bridge)} | ${f2(r.cpu.redis)} | ${f2(r.cpu.bench)} |`);
}

const fr = (k: string) => floors[k] ?? { p50: NaN, p90: NaN };
console.log(`\nFloors (p50 / p90 ms): Redis GET round trip via the bridge ${f2(fr("redis").p50)} / ${f2(fr("redis").p90)}; model score k=10 ${f2(fr("score").p50)} / ${f2(fr("score").p90)}; model step + score ${f2(fr("stepScore").p50)} / ${f2(fr("stepScore").p90)}`);
const rec = (c: number) => rows.find((r) => r.name.startsWith("GET recommendations") && r.c === c);
const ev = (c: number) => rows.find((r) => r.name.startsWith("POST /v1/events") && r.c === c);
const recFloor = fr("redis").p50 + fr("score").p50;
const evFloor = 2 * fr("redis").p50 + fr("stepScore").p50 - fr("score").p50;
const r1 = rec(1);
const e1 = ev(1);
if (r1) {
  console.log(
    `recommendation c=1: in-worker p50 ${f1(r1.worker.totalP50)} ms (mean ${f2(r1.worker.total)}), client p50 ${f2(r1.p50)} ms; floor (1 Redis round trip + 1 score) ${f2(recFloor)} ms -> ` +
      `${(r1.worker.total / recFloor).toFixed(2)}x by the in-worker mean, ${(r1.p50 / recFloor).toFixed(2)}x by the client p50 (aim: <= 1.5x)`,
  );
}
if (e1) {
  console.log(
    `event c=1: in-worker mean ${f2(e1.worker.total)} ms, client p50 ${f2(e1.p50)} ms; floor (2 Redis round trips + 1 step) ${f2(evFloor)} ms -> ${(e1.worker.total / evFloor).toFixed(2)}x by the in-worker mean`,
  );
}
const best = [16, 64].map(rec).filter((r): r is Row => !!r).sort((a, b) => b.rps - a.rps)[0];
if (best) console.log(`recommendations/s: ${best.rps.toFixed(0)} at c=${best.c} with p90 ${f2(best.p90)} ms (aim: >= 1000/s with p90 < 7 ms on 2 cores)`);
if (firsts.length) {
  console.log(
    `first request of a fresh isolate (model load), ${firsts.length} fresh workerd starts: client ${firsts.map((x) => f1(x.client)).join(", ")} ms; ` +
      `in-worker total ${firsts.map((x) => f1(x.total)).join(", ")} ms, of which model ${firsts.map((x) => f1(x.model)).join(", ")} ms (aim: <= 300 ms)`,
  );
}
console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), node ${process.version}, load average after: ${load()}; workerd via miniflare's server on loopback`);
