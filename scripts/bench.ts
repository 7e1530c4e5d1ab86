/**
 * `npm run bench`: drive the local stack over loopback by replaying real sessions from
 * ../shared/data (MovieLens latest-small, the demo model's data), bounded in count and time.
 * Prints p50/p95/p99 latency and throughput for events and recommendations at concurrency 1
 * and 16, and the floors measured in the same run: a bare Redis GET+SET through the same REST
 * bridge, and one bare model step + score with the same runtime (onnxruntime-web wasm).
 *
 * The worker runs as in production: the demo catalog is loaded (so every ranking applies the
 * availability mask), and the rate limiter is on (with a budget the bench cannot exhaust).
 *
 * Options: --requests N (per phase, default 2000)  --seconds S (per phase, default 15)
 */
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileOrtWasm, readModelFolder } from "../src/model/node-files";
import { GruModel } from "../src/model/runtime";
import { freePort } from "../local/redis-server.ts";
import { ROOT, startStack } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const MAX_REQUESTS = arg("requests", 2000);
const MAX_SECONDS = arg("seconds", 15);
const KEY = "bench-key";

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
// The replay: users interleaved, each user's events in order (the bench's own user ids).
const replay: { user: string; item: string }[] = [];
for (let i = 0; replay.length < 200_000; i++) {
  let any = false;
  for (const u of users) {
    const e = byUser.get(u)![i];
    if (e) {
      replay.push({ user: `bench-${process.pid}-ml${u}`, item: e.item });
      any = true;
    }
  }
  if (!any) break;
}

// ---- measurement -------------------------------------------------------------------------------
interface Row {
  name: string;
  concurrency: number;
  n: number;
  errors: number;
  p50: number;
  p95: number;
  p99: number;
  rps: number;
}
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function run(name: string, concurrency: number, op: (i: number) => Promise<boolean>): Promise<Row> {
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const deadline = performance.now() + MAX_SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= MAX_REQUESTS || performance.now() > deadline) return;
        const t = performance.now();
        const ok = await op(i).catch(() => false);
        lat.push(performance.now() - t);
        if (!ok) errors++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { name, concurrency, n: lat.length, errors, p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99), rps: lat.length / secs };
}

const dir = mkdtempSync(join(tmpdir(), "gru-bench-"));
console.log(`replaying ${replay.length} MovieLens events of ${users.length} users (bounded: ${MAX_REQUESTS} requests or ${MAX_SECONDS} s per phase)`);
const stack = await startStack({ port: await freePort(), apiKey: KEY, dataDir: dir, vars: { RATE_LIMIT_SECRET_PER_MINUTE: "10000000" } });
const rows: Row[] = [];
try {
  const h = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
  const loaded = await fetch(`${stack.url}/v1/items/batch`, { method: "POST", headers: h, body: JSON.stringify(demoCatalog()) });
  console.log(`demo catalog: ${JSON.stringify(await loaded.json()).slice(0, 120)}`);
  let cursor = 0;
  const postEvent = async () => {
    const e = replay[cursor++ % replay.length]!;
    const r = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: h, body: JSON.stringify({ user_id: e.user, item_id: e.item, type: "view" }) });
    await r.arrayBuffer();
    return r.status === 200;
  };
  const getRecs = async (i: number) => {
    const e = replay[i % Math.min(cursor, replay.length)]!;
    const r = await fetch(`${stack.url}/v1/users/${encodeURIComponent(e.user)}/recommendations?k=10`, { headers: h });
    const body = (await r.json()) as { source?: string };
    return r.status === 200 && body.source === "model";
  };
  // warm-up: model load, connections
  for (let i = 0; i < 30; i++) await postEvent();

  for (const c of [1, 16]) rows.push(await run("POST /v1/events (1 event)", c, postEvent));
  for (const c of [1, 16]) rows.push(await run("GET recommendations k=10", c, getRecs));

  // floors: bare Redis GET+SET through the same bridge
  const bh = { authorization: `Bearer ${stack.bridgeToken}`, "upstash-encoding": "base64" };
  const value = "x".repeat(860); // about the size of a base64 state record
  const getset = async (i: number) => {
    const k = `bench:floor:${i % 1000}`;
    const a = await fetch(stack.bridge.url, { method: "POST", headers: bh, body: JSON.stringify(["GET", k]) });
    await a.arrayBuffer();
    const b = await fetch(stack.bridge.url, { method: "POST", headers: bh, body: JSON.stringify(["SET", k, value]) });
    await b.arrayBuffer();
    return a.ok && b.ok;
  };
  for (const c of [1, 16]) rows.push(await run("floor: Redis GET+SET via bridge", c, getset));

  // reference: the dev server's own HTTP round trip for a request that does no work (404 route
  // outside /v1: no key check, no rate limit)
  const bare = async () => {
    const r = await fetch(`${stack.url}/no-such-route`, { headers: h });
    await r.arrayBuffer();
    return r.status === 404;
  };
  rows.push(await run("reference: worker HTTP round trip, no work (404)", 1, bare));

  // floor: one bare model step + score with the serving runtime
  const model = await GruModel.load(await compileOrtWasm(), readModelFolder(modelDir));
  let state = model.initialState();
  const stepScore = async (i: number) => {
    state = await model.step(state, model.rowOf(replay[i % replay.length]!.item)!, { newSession: i % 20 === 0, gapHours: 0.01 });
    const top = await model.topK(state, { newSession: false, gapHours: 0.01 }, 10, [1, 2, 3]);
    return top.length === 10;
  };
  for (let i = 0; i < 50; i++) await stepScore(i);
  rows.push(await run("floor: model step + score (k=10)", 1, stepScore));
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}

const f = (x: number) => x.toFixed(2);
console.log(`\n| path | conc. | requests | errors | p50 ms | p95 ms | p99 ms | req/s |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|---:|`);
for (const r of rows) console.log(`| ${r.name} | ${r.concurrency} | ${r.n} | ${r.errors} | ${f(r.p50)} | ${f(r.p95)} | ${f(r.p99)} | ${r.rps.toFixed(0)} |`);
const rec1 = rows.find((r) => r.name.startsWith("GET") && r.concurrency === 1)!;
const redis1 = rows.find((r) => r.name.startsWith("floor: Redis") && r.concurrency === 1)!;
const model1 = rows.find((r) => r.name.startsWith("floor: model"))!;
const floor = redis1.p50 + model1.p50;
const http1 = rows.find((r) => r.name.startsWith("reference"))!;
console.log(`\nrecommendation p50 ${f(rec1.p50)} ms vs floors ${f(redis1.p50)} + ${f(model1.p50)} = ${f(floor)} ms -> ${(rec1.p50 / floor).toFixed(2)}x (aim: <= 2x)`);
console.log(`with the dev server's bare HTTP round trip (${f(http1.p50)} ms) added to the floors: ${(rec1.p50 / (floor + http1.p50)).toFixed(2)}x`);
console.log(`machine: ${(await import("node:os")).cpus().length} cores, node ${process.version}, wrangler dev (workerd) on loopback`);
