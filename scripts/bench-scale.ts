/**
 * `npm run bench:scale`: recommendations and similar items at catalog sizes from a mid-size shop to
 * a million items, through the worker in workerd (the bundle `wrangler deploy` would upload, served
 * by miniflare's own server as `npm run bench` does: local/miniflare.ts; the ItemShard Durable
 * Objects, local R2 and D1, redis-server behind the bridge), not Node alone.
 *
 *   npm run bench:scale -- [--sizes 10000,100000,250000,1000000] [--dim 64] [--kind hrnn|seq] [--requests 300]
 *                          [--cold-users 300] [--out bench-scale.json] [--no-measure] [--profile prefix]
 *
 * Per size: a randomly initialised GRURec (`--kind seq`: a SeqRec with attention over its last 20
 * items; models/training/random_model.py; the values do not change the cost) exported as `export_shards.py --shards auto` chooses: whole when it fits one isolate,
 * else in item shards that each fit one (the worker's copy of the table as int8 rows), uploaded, staged (golden vectors) and activated
 * through the registry API as `npm run model` does (a file over 32 MiB in parts); a catalog of the model's items (20 x 20
 * categories, prices, 2% unavailable; `--no-catalog` leaves it out) uploaded in NDJSON batches of
 * 10,000, so every list applies the availability rule over all rows; 20 users with 10 events each; then --requests
 * sequential GET /recommendations (k=10, one user after another) and as many GET /similar (random
 * seeds), after the worker's catalog copy holds every item and 5 warm-up calls each. A SeqRec also
 * times `--cold-users` more users with 20 events each on distinct random items, asked once each in
 * turn: their ring rows (the 20 items' rows its query attends over) are never in the worker's cache
 * of the last 4,096 rows read, so every request reads them from their shards first (the cold user).
 * Printed per size:
 *   - latency p50 / p99 (client wall clock, loopback) of each;
 *   - CPU per request: workerd's CPU time (all its threads: the worker and every shard, which run in
 *     the same process locally) over the timed requests, divided by their count;
 *   - workerd's resident memory (VmRSS) after the size's requests: the worker isolate and every
 *     shard together (one fresh workerd per size);
 *   - subrequests per request (the worker's own count in Server-Timing: Redis, D1, R2, shard calls);
 *   - memory: workerd reports none, so the registry's estimate for the worker isolate (the model,
 *     its catalog copy of every item and its masks) and for each shard (src/model/memory.ts), and
 *     what scripts/bench-model.ts measures in Node for the worker isolate (`--catalog`: the model
 *     loaded beside a catalog copy of all its items, its row view and seen positions built) and
 *     for shard 0 (`--measure` off: estimates only).
 * Then the plan each size needs, from Cloudflare's documented limits (below).
 * `--profile prefix`: workerd's CPU profile (V8 inspector) of the timed recommendation requests,
 * written to `<prefix>-<items>.cpuprofile` (open it in Chrome DevTools), its 15 costliest functions
 * by self time printed.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { startBridgeProcess } from "../local/bridge-process.ts";
import { bundleWorker, cpuMs, rssMiB, startMiniflareWorker } from "../local/miniflare.ts";
import { startRedis } from "../local/redis-server.ts";
import { ROOT } from "../local/stack.ts";
import { catalogEstimate, memoryEstimate, shardEstimates } from "../src/model/memory.ts";
import { call, upload } from "./model.ts";
import { type CpuProfile, inspectWorker, topSelfTime } from "../local/worker-profile.ts";

const { values: a } = parseArgs({
  options: {
    sizes: { type: "string", default: "10000,100000,250000,1000000" },
    dim: { type: "string", default: "64" },
    kind: { type: "string", default: "hrnn" },
    requests: { type: "string", default: "300" },
    "cold-users": { type: "string", default: "300" },
    measure: { type: "boolean", default: true },
    catalog: { type: "boolean", default: true },
    out: { type: "string" },
    profile: { type: "string" },
  },
  allowNegative: true,
});
const sizes = a.sizes!.split(",").map(Number);
const dim = Number(a.dim);
if (a.kind !== "hrnn" && a.kind !== "seq") throw new Error(`--kind ${a.kind}: hrnn or seq`);
const kind = a.kind;
const requests = Number(a.requests);

/** Cloudflare's documented per-invocation limits (developers.cloudflare.com/workers/platform/limits, 2026). */
const LIMITS = {
  memoryMiB: 128 * 0.953674, // 128 MB per isolate
  subrequests: { free: 50, paid: 1000 },
  cpuMs: { free: 10, paid: 30_000 },
};

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const pct = (xs: number[], p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const py = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** Build (or reuse) the model folder of a size. */
function build(n: number): string {
  const dir = join(tmpdir(), "gru-bench-scale", `${n}x${dim}${kind === "seq" ? "-seq" : ""}`);
  if (existsSync(join(dir, "manifest.json"))) return dir;
  mkdirSync(dir, { recursive: true });
  const flags = ["--shards", "auto", "--fp16", "--int8-table"];
  console.error(`building ${n.toLocaleString("en")} x ${dim} in ${dir} ...`);
  const t = performance.now();
  execFileSync(py, ["-W", "ignore", "models/training/random_model.py", "--items", String(n), "--dim", String(dim), "--kind", kind, "--out", dir, ...flags], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  console.error(`  built in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  return dir;
}


/** Memory measured in Node by bench-model.ts (JSON): the worker isolate with its catalog copy of
 * every item (its peak: the load's, or once the row view and seen positions are built), or one shard. */
function measured(dir: string, shard?: number): { settled: number; peak: number } | null {
  if (!a.measure) return null;
  const args = ["--expose-gc", "--import", "tsx", join(ROOT, "scripts", "bench-model.ts"), dir, "--runs", "20", "--json", ...(shard === undefined ? ["--catalog"] : ["--shard", String(shard)])];
  const out = execFileSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
  const r = JSON.parse(out.trim().split("\n").pop()!);
  return { settled: r.withView ?? r.settled, peak: Math.max(r.peak, r.withView ?? 0) };
}

interface Row {
  items: number;
  shards: number;
  rec: { p50: number; p99: number; cpuMs: number; sub: number; shardCalls: number };
  /** A SeqRec's users whose ring rows are not cached (--cold-users), or null. */
  cold: { p50: number; p99: number; cpuMs: number; sub: number; shardCalls: number } | null;
  sim: { p50: number; p99: number; cpuMs: number; sub: number };
  memory: { workerEstimate: number; workerMeasured: number | null; shardEstimate: number | null; shardMeasured: number | null; workerdRssMiB: number };
  plan: string;
}

const dataDir = mkdtempSync(join(tmpdir(), "gru-bench-scale-data-"));
const redis = await startRedis({ dir: join(dataDir, "redis"), persist: false });
const token = randomBytes(16).toString("hex");
const bridge = await startBridgeProcess({ redisPort: redis.port, token });
const script = await bundleWorker(join(dataDir, "bundle"));
/** A fresh workerd per size (its own D1, R2 and Durable Objects), so its memory is that size's. */
const inspectorPort = 9300 + Math.floor(Math.random() * 500);
const startWorker = (n: number) =>
  startMiniflareWorker({
    script,
    ...(a.profile ? { inspectorPort } : {}),
    persistTo: join(dataDir, `worker-${n}`),
    vars: {
    SECRET_KEYS: "sk",
    UPSTASH_REDIS_REST_URL: bridge.url,
    UPSTASH_REDIS_REST_TOKEN: token,
    RATE_LIMIT_SECRET_PER_MINUTE: "0",
    REQUEST_LOG: "off",
    // Local only: lets the registry take sizes a real isolate could not, so they can be measured.
    MODEL_MEMORY_BUDGET_MB: "1024",
    MAX_MODEL_FILE_BYTES: String(100 * 2 ** 20),
    SHARD_TIMEOUT_MS: "60000",
    },
  });
let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
const stack = { url: "" };
const workerdCpu = () => (worker?.pid ? cpuMs(worker.pid) / 1000 : Number.NaN);
const c = { url: "", key: "sk" };
const auth = { authorization: "Bearer sk" };
const rows: Row[] = [];

/** Time `n` GETs of `path(i)`: wall ms each, Server-Timing subrequests and shard calls, workerd CPU. */
async function timeGets(n: number, path: (i: number) => string, warmUp = path) {
  for (let i = 0; i < 5; i++) await (await fetch(`${stack.url}${warmUp(i)}`, { headers: auth })).arrayBuffer();
  const cpu0 = workerdCpu();
  const ms: number[] = [];
  let sub = 0;
  let shardCalls = 0;
  let notModel = 0;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(`${stack.url}${path(i)}`, { headers: auth });
    const body = (await r.json()) as { source?: string };
    ms.push(performance.now() - t);
    if (r.status !== 200 || body.source !== "model") notModel++;
    const st = r.headers.get("server-timing") ?? "";
    sub += Number(/subreq;desc="(\d+)"/.exec(st)?.[1] ?? 0);
    shardCalls += Number(/shard;dur=[\d.]+;desc="(\d+) calls"/.exec(st)?.[1] ?? 0);
  }
  const cpuMs = ((workerdCpu() - cpu0) * 1000) / n;
  if (notModel) console.error(`  warning: ${notModel} of ${n} answers were not served by the model`);
  return { p50: pct(ms, 50), p99: pct(ms, 99), cpuMs, sub: sub / n, shardCalls: shardCalls / n };
}

try {
  for (const n of sizes) {
    const dir = build(n);
    await worker?.stop();
    worker = await startWorker(n);
    stack.url = c.url = worker.url;
    const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
    const shards = manifest.shards?.length ?? 0;
    console.error(`${n.toLocaleString("en")} items: uploading ${manifest.version} ...`);
    let t = performance.now();
    let last = "";
    await upload(c, dir, (line) => (last = line)).catch((e: Error) => {
      throw new Error(`upload failed after "${last.trim()}": ${e.message} (${(e.cause as Error | undefined)?.message ?? ""})`);
    });
    await call(c, "POST", `/v1/admin/models/${manifest.version}/activate`, { previous: "retire" });
    console.error(`  uploaded, staged and activated in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    const ids: string[] = manifest.items.ids;
    if (a.catalog) {
      t = performance.now();
      for (let b = 0; b < ids.length; b += 10_000) {
        const body = ids
          .slice(b, b + 10_000)
          .map((id, j) => JSON.stringify({ id, title: `Item ${b + j}`, category_path: [`Dept ${(b + j) % 20}`, `Cat ${(b + j) % 400}`], price: 5 + ((b + j) % 95), currency: "EUR", available: (b + j) % 50 !== 7 }))
          .join("\n");
        const r = await fetch(`${stack.url}/v1/items/batch`, { method: "POST", headers: { ...auth, "content-type": "application/x-ndjson" }, body });
        if (!r.ok) throw new Error(`catalog batch: ${r.status} ${await r.text()}`);
      }
      console.error(`  catalog of ${ids.length.toLocaleString("en")} items uploaded in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    }
    const users = Array.from({ length: 20 }, (_, u) => `bench-${n}-u${u}`);
    const evs = users.flatMap((u, k) => Array.from({ length: 10 }, (_, j) => ({ user_id: u, item_id: ids[(k * 7919 + j * 104729) % ids.length], type: "view" })));
    const posted = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(evs) });
    if (!posted.ok) throw new Error(`events: ${posted.status} ${await posted.text()}`);
    if (a.catalog) {
      // The worker's catalog copy (src/catalog/mirror.ts) syncs in the background once a request
      // finds the catalog changed: wait until it holds every item, so the timed requests measure
      // the steady state, not the first sync of a large catalog.
      t = performance.now();
      for (;;) {
        await (await fetch(`${stack.url}/v1/users/${users[0]}/recommendations?k=10`, { headers: auth })).arrayBuffer();
        const h = (await (await fetch(`${stack.url}/health`)).json()) as { catalog?: { items?: number } };
        if ((h.catalog?.items ?? 0) >= ids.length) break;
        if (performance.now() - t > 300_000) throw new Error(`the worker's catalog copy holds ${h.catalog?.items} of ${ids.length} items after 300 s`);
        await new Promise((r) => setTimeout(r, 250));
      }
      console.error(`  the worker's catalog copy synced in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    t = performance.now();
    const profiler = a.profile ? await inspectWorker(inspectorPort) : undefined;
    await profiler?.start();
    const rec = await timeGets(requests, (i) => `/v1/users/${users[i % users.length]}/recommendations?k=10`);
    if (profiler) {
      const profile: CpuProfile = await profiler.stop();
      const file = `${a.profile}-${n}.cpuprofile`;
      writeFileSync(file, JSON.stringify(profile));
      console.error(`  CPU profile of the recommendations: ${file}; most self time:`);
      for (const f of topSelfTime(profile, 15)) console.error(`    ${f.ms.toFixed(0).padStart(6)} ms ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
    }
    const sim = await timeGets(requests, (i) => `/v1/items/${encodeURIComponent(ids[(i * 15485863) % ids.length]!)}/similar?k=10`);
    let cold: Row["cold"] = null;
    const coldUsers = kind === "seq" && shards ? Number(a["cold-users"]) : 0;
    if (coldUsers) {
      // 20 events each on random items (a user's ring holds its last 20): coldUsers x 20 rows in
      // all, well past the worker's 4,096-row cache, so asked in the order they were posted, each
      // user's rows are long gone from it.
      t = performance.now();
      const cu = Array.from({ length: coldUsers }, (_, u) => `bench-${n}-cold${u}`);
      let seed = 12345;
      const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % ids.length);
      for (let b = 0; b < cu.length; b += 25) {
        const evs = cu.slice(b, b + 25).flatMap((u) => Array.from({ length: 20 }, () => ({ user_id: u, item_id: ids[rnd()], type: "view" })));
        const r = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(evs) });
        if (!r.ok) throw new Error(`cold users' events: ${r.status} ${await r.text()}`);
      }
      console.error(`  ${coldUsers} cold users' ${coldUsers * 20} events posted in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      cold = await timeGets(coldUsers, (i) => `/v1/users/${cu[i]}/recommendations?k=10`, (i) => `/v1/users/${users[i % users.length]}/recommendations?k=10`);
    }
    const files: Record<string, { bytes: number }> = {};
    for (const f of readdirSync(dir)) files[f] = { bytes: statSync(join(dir, f)).size };
    const est = memoryEstimate(files, manifest);
    const sEst = shardEstimates(manifest)[0];
    const workerMeasured = measured(dir);
    const shardMeasured = shards ? measured(dir, 0) : null;
    // The whole worker isolate: the model, its files while it loads or its masks once it serves,
    // and the catalog copy of every item (as the registry counts it).
    const workerEstimate = est.runtime + est.resident + Math.max(est.transient, est.masks) + catalogEstimate(n, n);
    const worst = Math.max(workerMeasured?.peak ?? workerEstimate, workerEstimate, sEst ? sEst.runtime + sEst.resident + sEst.transient : 0, shardMeasured?.peak ?? 0);
    const fits = worst / 2 ** 20 <= LIMITS.memoryMiB;
    const free = rec.cpuMs <= LIMITS.cpuMs.free && rec.sub <= LIMITS.subrequests.free;
    const plan = !fits ? "none: an isolate would exceed 128 MB" : free ? "Free (CPU and subrequests within its limits)" : "Paid (CPU over 10 ms or subrequests over 50)";
    const row: Row = {
      items: n,
      shards,
      rec,
      cold,
      sim,
      memory: {
        workerEstimate,
        workerMeasured: workerMeasured?.peak ?? null,
        shardEstimate: sEst ? sEst.runtime + sEst.resident + sEst.transient : null,
        shardMeasured: shardMeasured?.peak ?? null,
        workerdRssMiB: worker.pid ? rssMiB(worker.pid) : Number.NaN,
      },
      plan,
    };
    rows.push(row);
    console.error(
      `  recommendations p50 ${rec.p50.toFixed(1)} ms p99 ${rec.p99.toFixed(1)} ms, CPU ${rec.cpuMs.toFixed(1)} ms, ${rec.sub.toFixed(1)} subrequests; ${cold ? `cold users p50 ${cold.p50.toFixed(1)} p99 ${cold.p99.toFixed(1)} ms, ${cold.shardCalls.toFixed(1)} shard calls; ` : ""}similar p50 ${sim.p50.toFixed(1)} p99 ${sim.p99.toFixed(1)} ms; ${((performance.now() - t) / 1000).toFixed(0)} s`,
    );
  }
} finally {
  await worker?.stop();
  await bridge.close();
  await redis.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

const f1 = (x: number | null) => (x === null ? "-" : x.toFixed(1));
const m1 = (x: number | null) => (x === null ? "-" : mib(x));
console.log(`\nbench:scale, ${kind === "seq" ? "SeqRec (attention over 20 recent items)" : "GRURec"}, dim ${dim}, ${requests} sequential requests each after 5 warm-up, workerd via miniflare (the deploy bundle)\n`);
console.log("| items | shards | rec p50 ms | rec p99 ms | rec CPU ms | rec subrequests (shard calls) | similar p50 ms | similar p99 ms | similar CPU ms | worker isolate MiB est / measured peak | shard MiB est / measured peak | workerd RSS MiB | plan |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.items.toLocaleString("en")} | ${r.shards || "-"} | ${f1(r.rec.p50)} | ${f1(r.rec.p99)} | ${f1(r.rec.cpuMs)} | ${f1(r.rec.sub)} (${f1(r.rec.shardCalls)}) | ${f1(r.sim.p50)} | ${f1(r.sim.p99)} | ${f1(r.sim.cpuMs)} | ${m1(r.memory.workerEstimate)} / ${m1(r.memory.workerMeasured)} | ${m1(r.memory.shardEstimate)} / ${m1(r.memory.shardMeasured)} | ${r.memory.workerdRssMiB.toFixed(0)} | ${r.plan} |`,
  );
}
const base = rows.find((r) => r.items === Math.min(...rows.map((x) => x.items)));
if (base) for (const r of rows) if (r !== base) console.log(`${r.items.toLocaleString("en")} items: recommendation p50 ${(r.rec.p50 / base.rec.p50).toFixed(1)}x the ${base.items.toLocaleString("en")} figure`);
for (const r of rows) {
  if (r.cold) console.log(`${r.items.toLocaleString("en")} items, users whose 20 ring rows are not cached: recommendation p50 ${f1(r.cold.p50)} / p99 ${f1(r.cold.p99)} ms, CPU ${f1(r.cold.cpuMs)} ms, ${f1(r.cold.sub)} subrequests (${f1(r.cold.shardCalls)} shard calls) a request`);
}
if (a.out) writeFileSync(a.out, `${JSON.stringify({ command: `npm run bench:scale -- ${process.argv.slice(2).join(" ")}`.trim(), measured_at: new Date().toISOString(), rows }, null, 1)}\n`);
