/**
 * `npm run loadtest`: mixed traffic against the worker (workerd through miniflare's server, see
 * local/miniflare.ts) while the parts around it fail, then an audit of every event sent.
 *
 * Set-up, loopback only: redis-server (append-only file, fsync on every write, as a hosted Redis
 * keeps acknowledged writes) <- a delaying TCP proxy (local/delay-proxy.ts) <- the Upstash REST
 * bridge (own process) <- the worker, with its local D1.
 *
 * Traffic (real MovieLens sessions, `--clients` concurrent clients): single events and batches
 * spanning several users (each with an event_id, resent with the same ids after a 5xx, 429 or a
 * network error, as a client should), events with `?recommend`, recommendations, similar items.
 *
 * Phases (fractions of `--seconds`): baseline; redis-server killed (SIGKILL) and restarted;
 * recovery; Redis slowed by the proxy (250 ms per reply, then 1500 ms: longer than the worker's
 * Redis timeout, so writes land but their requests time out); D1 failing (the event log and
 * catalog tables renamed away); a healthy soak. Then new traffic stops, unanswered events are
 * resent until accepted, the spill is drained and the log is awaited.
 *
 * It prints, by phase, error and fallback rates, and at the end the audit: events lost or applied
 * twice in the users' states (event_count against the distinct accepted event_ids), and events
 * missing from or duplicated in the event log (GET /v1/events/export, by event_id); all must be 0.
 * Isolate memory (V8 heap of the worker's isolate through workerd's inspector, and workerd's RSS)
 * is sampled every 2 s and must stay flat across the soak: the heap's floor (lowest sample, i.e.
 * after a collection) in the soak's last fifth is at most max(2 MiB, 10%) above its first fifth's. Exit status 1 when an audit fails.
 *
 * Options: --seconds S (default 120: the fault phases take 65% of it, the soak the rest)
 *          --soak (a 10-minute soak after the fault phases)  --soak-seconds S
 *          --clients N (default 8)  --max-requests N (default 200000)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBridgeProcess } from "../local/bridge-process.ts";
import { startDelayProxy } from "../local/delay-proxy.ts";
import { bundleWorker, rssMiB, startMiniflareWorker } from "../local/miniflare.ts";
import { freePort, INSTALL_HINT, ping, redisServerPath } from "../local/redis-server.ts";
import { ROOT } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SECONDS = arg("seconds", 120);
/** The healthy soak at the end: 35% of --seconds, or 10 minutes with --soak. */
const SOAK_SECONDS = process.argv.includes("--soak") ? 600 : arg("soak-seconds", 0.35 * SECONDS);
const CLIENTS = arg("clients", 8);
const MAX_REQUESTS = arg("max-requests", 200_000);
const SETTLE_SECONDS = 90;
const KEY = "loadtest-key";
const auth = { authorization: `Bearer ${KEY}` };
const jsonHeaders = { ...auth, "content-type": "application/json" };
const run = `${Date.now().toString(36)}${randomBytes(2).toString("hex")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- real sessions ------------------------------------------------------------------------------
const manifest = JSON.parse(readFileSync(join(ROOT, "models", "ml-small", "manifest.json"), "utf8"));
const known = new Set<string>(manifest.items.ids);
const byUser = new Map<string, string[]>();
const rows = readFileSync(join(ROOT, "..", "shared", "data", "movielens-latest-small", "ratings.csv"), "utf8").split("\n").slice(1);
const withTs = rows.map((l) => l.split(",")).filter((f) => f[0] && known.has(f[1]!)).sort((a, b) => Number(a[3]) - Number(b[3]));
for (const [u, item] of withTs) byUser.set(u!, [...(byUser.get(u!) ?? []), item!]);
const sessions = [...byUser.entries()].map(([u, items]) => ({ user: `lt-${run}-ml${u}`, items, next: 0 }));
const nextEvent = () => {
  const s = sessions[Math.floor(Math.random() * sessions.length)]!;
  const item = s.items[s.next++ % s.items.length]!;
  return { user: s.user, item };
};
const activeUsers: string[] = [];
const popularItems: string[] = manifest.popular?.ids?.slice(0, 300) ?? manifest.items.ids.slice(0, 300);

// ---- processes ----------------------------------------------------------------------------------

/** redis-server with an append-only file fsynced on every write, so a SIGKILL loses nothing acknowledged. */
async function startRedisProcess(port: number, dir: string): Promise<ChildProcess> {
  const bin = redisServerPath();
  if (!bin) throw new Error(INSTALL_HINT);
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", ""];
  const child = spawn(bin, args, { stdio: "ignore" });
  const deadline = Date.now() + 20_000;
  while (!(await ping(port))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
    await sleep(50);
  }
  return child;
}
const killed = (c: ChildProcess, signal: NodeJS.Signals) =>
  new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once("exit", () => resolve());
    c.kill(signal);
  });

// ---- statistics per phase ---------------------------------------------------------------------
interface PhaseStats {
  name: string;
  requests: number;
  ok: number;
  client4xx: number;
  s429: number;
  s503: number;
  s5xx: number;
  network: number;
  recs: number;
  fallbacks: number;
  reasons: Map<string, number>;
  latency: number[];
  heap: number[];
  rss: number[];
}
const newPhase = (name: string): PhaseStats => ({
  name,
  requests: 0,
  ok: 0,
  client4xx: 0,
  s429: 0,
  s503: 0,
  s5xx: 0,
  network: 0,
  recs: 0,
  fallbacks: 0,
  reasons: new Map(),
  latency: [],
  heap: [],
  rss: [],
});
const phases: PhaseStats[] = [];
let current = newPhase("start-up");
let totalRequests = 0;

/** One request, counted in the current phase. Returns the JSON body on 200, else null (retryable) or "reject". */
async function call(path: string, init: RequestInit = {}): Promise<any | null | "reject"> {
  const ph = current;
  ph.requests++;
  totalRequests++;
  const t = performance.now();
  try {
    const r = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
    const text = await r.text();
    ph.latency.push(performance.now() - t);
    if (r.status === 200) {
      ph.ok++;
      return JSON.parse(text);
    }
    if (r.status === 429) ph.s429++;
    else if (r.status === 503) ph.s503++;
    else if (r.status >= 500) ph.s5xx++;
    else {
      ph.client4xx++;
      if (ph.client4xx <= 3) console.log(`  unexpected ${r.status} on ${init.method ?? "GET"} ${path.slice(0, 80)}: ${text.slice(0, 200)}`);
      return "reject";
    }
    return null;
  } catch {
    ph.latency.push(performance.now() - t);
    ph.network++;
    return null;
  }
}

function countRec(body: { source?: string; reason?: string } | null) {
  if (!body || typeof body !== "object") return;
  current.recs++;
  if (body.source !== "model") {
    current.fallbacks++;
    const why = `${body.source}:${body.reason ?? "-"}`;
    current.reasons.set(why, (current.reasons.get(why) ?? 0) + 1);
  }
}

// ---- events and their fate ----------------------------------------------------------------------
interface SentEvent {
  user: string;
  acknowledged: boolean;
}
const sent = new Map<string, SentEvent>();
interface Pending {
  body: string;
  ids: string[];
  query: string;
  attempts: number;
  due: number;
}
const retries: Pending[] = [];
let rejected = 0;
let seq = 0;

async function sendEvents(p: Pending) {
  const body = await call(`/v1/events${p.query}`, { method: "POST", headers: jsonHeaders, body: p.body });
  if (body === "reject") {
    rejected += p.ids.length;
    return;
  }
  if (body === null) {
    p.attempts++;
    p.due = Date.now() + Math.min(2000, 200 * p.attempts);
    retries.push(p);
    return;
  }
  for (const id of p.ids) sent.get(id)!.acknowledged = true;
  if (Array.isArray(body.recommendations)) for (const r of body.recommendations) countRec(r);
}

function newEvents(): Pending {
  const n = Math.random() < 0.7 ? 1 : 2 + Math.floor(Math.random() * 5);
  const evs = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const e = nextEvent();
    const id = `lt-${run}-${seq++}`;
    sent.set(id, { user: e.user, acknowledged: false });
    if (activeUsers.length < 5000 && !activeUsers.includes(e.user)) activeUsers.push(e.user);
    ids.push(id);
    evs.push({ event_id: id, user_id: e.user, item_id: e.item, type: Math.random() < 0.05 ? "add_to_cart" : "view" });
  }
  const query = n === 1 && Math.random() < 0.2 ? "?recommend=5" : "";
  return { body: JSON.stringify(n === 1 ? evs[0] : evs), ids, query, attempts: 0, due: 0 };
}

let trafficOn = true;
async function client() {
  while (trafficOn && totalRequests < MAX_REQUESTS) {
    const due = retries.findIndex((p) => p.due <= Date.now());
    if (due >= 0) {
      await sendEvents(retries.splice(due, 1)[0]!);
      continue;
    }
    const x = Math.random();
    if (x < 0.5 || activeUsers.length === 0) await sendEvents(newEvents());
    else if (x < 0.85) {
      const u = activeUsers[Math.floor(Math.random() * activeUsers.length)]!;
      const b = await call(`/v1/users/${encodeURIComponent(u)}/recommendations?k=10`, { headers: auth });
      if (b && b !== "reject") countRec(b);
    } else {
      const item = popularItems[Math.floor(Math.random() * popularItems.length)]!;
      const b = await call(`/v1/items/${encodeURIComponent(item)}/similar?k=10`, { headers: auth });
      if (b && b !== "reject") countRec(b);
    }
  }
}

// ---- isolate memory through workerd's inspector -------------------------------------------------
async function heapSampler(inspectorPort: number): Promise<() => Promise<number>> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { id: string; webSocketDebuggerUrl: string }[];
  const t = targets.find((x) => x.id.includes("gru-edge-recommender")) ?? targets[0]!;
  const ws = new WebSocket(t.webSocketDebuggerUrl);
  await new Promise((r, j) => {
    ws.addEventListener("open", r);
    ws.addEventListener("error", j);
  });
  let id = 0;
  const waiting = new Map<number, (v: any) => void>();
  ws.addEventListener("message", (m) => {
    const d = JSON.parse(String(m.data));
    waiting.get(d.id)?.(d);
    waiting.delete(d.id);
  });
  return async () => {
    const i = ++id;
    const d = await Promise.race([new Promise<any>((r) => (waiting.set(i, r), ws.send(JSON.stringify({ id: i, method: "Runtime.getHeapUsage" })))), sleep(5000).then(() => null)]);
    return d?.result ? d.result.usedSize / 2 ** 20 : NaN;
  };
}

// ---- the run ------------------------------------------------------------------------------------
let base = "";
const dir = mkdtempSync(join(tmpdir(), "gru-loadtest-"));
const redisPort = await freePort();
let redis = await startRedisProcess(redisPort, dir);
const proxy = await startDelayProxy({ targetPort: redisPort });
const token = randomBytes(16).toString("hex");
const bridge = await startBridgeProcess({ redisPort: proxy.port, token });
const inspectorPort = await freePort();
const script = await bundleWorker(join(dir, "bundle"));
const worker = await startMiniflareWorker({
  script,
  inspectorPort,
  vars: { SECRET_KEYS: KEY, UPSTASH_REDIS_REST_URL: bridge.url, UPSTASH_REDIS_REST_TOKEN: token, RATE_LIMIT_SECRET_PER_MINUTE: "10000000", REQUEST_LOG: "off" },
  onLog: (level, message) => {
    if (level === "error" && !/unavailable|timed out|failed|spill/i.test(message)) process.stderr.write(`worker: ${message.slice(0, 300)}\n`);
  },
});
base = worker.url;
let failed = false;
try {
  const loaded = await call("/v1/items/batch", { method: "POST", headers: jsonHeaders, body: JSON.stringify(demoCatalog()) });
  if (!loaded || loaded === "reject") throw new Error("the demo catalog could not be loaded");
  const heap = await heapSampler(inspectorPort);
  const sampler = setInterval(() => {
    const ph = current;
    void heap().then((h) => ph.heap.push(h));
    if (worker.pid) ph.rss.push(rssMiB(worker.pid));
  }, 2000);

  const plan: { name: string; frac: number; enter?: () => Promise<void>; leave?: () => Promise<void> }[] = [
    { name: "baseline", frac: 0.13 },
    {
      name: "redis-server killed",
      frac: 0.12,
      enter: () => killed(redis, "SIGKILL"),
      leave: async () => {
        redis = await startRedisProcess(redisPort, dir);
      },
    },
    { name: "recovery", frac: 0.08 },
    { name: "redis slow (+250 ms)", frac: 0.1, enter: async () => void (proxy.delayMs = 250), leave: async () => void (proxy.delayMs = 0) },
    { name: "redis slower than the timeout (+1500 ms)", frac: 0.07, enter: async () => void (proxy.delayMs = 1500), leave: async () => void (proxy.delayMs = 0) },
    {
      name: "D1 failing (log and catalog tables away)",
      frac: 0.15,
      enter: async () => {
        await worker.db.prepare("ALTER TABLE events RENAME TO events_away").run();
        await worker.db.prepare("ALTER TABLE items RENAME TO items_away").run();
      },
      leave: async () => {
        await worker.db.prepare("ALTER TABLE events_away RENAME TO events").run();
        await worker.db.prepare("ALTER TABLE items_away RENAME TO items").run();
      },
    },
    { name: "soak (healthy)", frac: SOAK_SECONDS / SECONDS },
  ];
  // Warm-up (model load, connections): not counted in any phase.
  for (let i = 0; i < 10; i++) await sendEvents(newEvents());
  console.log(`load test ${run}: ${(0.65 * SECONDS + SOAK_SECONDS).toFixed(0)} s of traffic from ${CLIENTS} clients (at most ${MAX_REQUESTS} requests), worker at ${base}, workerd pid ${worker.pid}`);
  current = newPhase(plan[0]!.name);
  const clients = Array.from({ length: CLIENTS }, client);
  for (const step of plan) {
    if (phases.length) current = newPhase(step.name);
    phases.push(current);
    await step.enter?.();
    const t0 = Date.now();
    process.stdout.write(`  ${step.name} ...`);
    await sleep(step.frac * SECONDS * 1000);
    await step.leave?.();
    process.stdout.write(` ${current.requests} requests in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  trafficOn = false;
  await Promise.all(clients);

  // Settle: resend every event not yet accepted, until accepted.
  current = newPhase("settle (resends only)");
  phases.push(current);
  const until = Date.now() + SETTLE_SECONDS * 1000;
  while (retries.length && Date.now() < until) {
    const p = retries.shift()!;
    if (p.due > Date.now()) await sleep(Math.min(200, p.due - Date.now()));
    await sendEvents(p);
  }
  clearInterval(sampler);

  // The log: replay the spill, then wait until the rows of this run stop changing.
  await call("/v1/admin/eventlog/drain", { method: "POST", headers: auth });
  const exportRows = async () => {
    const r = await fetch(`${base}/v1/events/export`, { headers: auth });
    const rowsOut: { user_id: string; event_id?: string }[] = [];
    for (const l of (await r.text()).split("\n")) if (l.includes(`lt-${run}-`)) rowsOut.push(JSON.parse(l));
    return rowsOut;
  };
  let logRows = await exportRows();
  for (let i = 0; i < 30; i++) {
    await sleep(1000);
    await call("/v1/admin/eventlog/drain", { method: "POST", headers: auth });
    const again = await exportRows();
    const stable = again.length === logRows.length;
    logRows = again;
    if (stable && i >= 2) break;
  }

  // ---- report ------------------------------------------------------------------------------------
  const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]! : NaN);
  const rate = (n: number, d: number) => (d ? `${((100 * n) / d).toFixed(1)}%` : "-");
  console.log(`\n| phase | requests | 2xx | 503 | other 5xx | 429 | network | error rate | recs | fallback rate | fallback reasons | p50 ms | p99 ms | heap MiB (min-max) | workerd RSS MiB |`);
  console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|`);
  for (const p of phases) {
    const errors = p.s503 + p.s5xx + p.s429 + p.network + p.client4xx;
    const reasons = [...p.reasons].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
    const h = p.heap.filter(Number.isFinite);
    const heapCol = h.length ? `${Math.min(...h).toFixed(1)}-${Math.max(...h).toFixed(1)}` : "-";
    const rssCol = p.rss.length ? `${Math.min(...p.rss).toFixed(0)}-${Math.max(...p.rss).toFixed(0)}` : "-";
    console.log(
      `| ${p.name} | ${p.requests} | ${p.ok} | ${p.s503} | ${p.s5xx} | ${p.s429} | ${p.network} | ${rate(errors, p.requests)} | ${p.recs} | ${rate(p.fallbacks, p.recs)} | ${reasons || "-"} | ${pct(p.latency, 50).toFixed(1)} | ${pct(p.latency, 99).toFixed(1)} | ${heapCol} | ${rssCol} |`,
    );
  }

  // States: event_count of each user against the distinct accepted event_ids.
  const expected = new Map<string, number>();
  let acknowledged = 0;
  for (const e of sent.values()) {
    if (!e.acknowledged) continue;
    acknowledged++;
    expected.set(e.user, (expected.get(e.user) ?? 0) + 1);
  }
  const unresolved = sent.size - acknowledged - rejected;
  let lostState = 0;
  let doubleState = 0;
  let unreadable = 0;
  const usersList = [...expected.keys()];
  /** A user's event_count (0 when no state is stored), or null when it cannot be read after retries. */
  const eventCount = async (u: string): Promise<number | null> => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const r = await fetch(`${base}/v1/users/${encodeURIComponent(u)}`, { headers: auth }).catch(() => null);
      if (r?.status === 200) return ((await r.json()) as { event_count: number }).event_count;
      if (r?.status === 404) return 0;
      await r?.arrayBuffer();
      await sleep(500);
    }
    return null;
  };
  for (let i = 0; i < usersList.length; i += 4) {
    await Promise.all(
      usersList.slice(i, i + 4).map(async (u) => {
        const got = await eventCount(u);
        const want = expected.get(u)!;
        if (got === null) unreadable++;
        else if (got < want) lostState += want - got;
        else if (got > want) doubleState += got - want;
      }),
    );
  }
  // The log: each accepted event_id exactly once.
  const seen = new Map<string, number>();
  for (const r of logRows) if (r.event_id) seen.set(r.event_id, (seen.get(r.event_id) ?? 0) + 1);
  let lostLog = 0;
  let dupLog = 0;
  let unacknowledgedLogged = 0;
  for (const [id, e] of sent) {
    const n = seen.get(id) ?? 0;
    if (e.acknowledged && n === 0) lostLog++;
    if (!e.acknowledged && n > 0) unacknowledgedLogged++;
    if (n > 1) dupLog += n - 1;
  }

  // Memory across the soak: heap floor in its first and last fifths.
  const soak = phases.find((p) => p.name.startsWith("soak"))!;
  const h = soak.heap.filter(Number.isFinite);
  const fifth = Math.max(1, Math.floor(h.length / 5));
  const first = Math.min(...h.slice(0, fifth));
  const last = Math.min(...h.slice(-fifth));
  const all = phases.flatMap((p) => p.heap).filter(Number.isFinite);
  const growth = last - first;
  const judged = h.length >= 20; // 40 s of samples at least
  const flat = !judged || growth <= Math.max(2, 0.1 * first);

  console.log(`\nAudit of ${sent.size} events sent to ${expected.size} users: ${acknowledged} accepted, ${rejected} rejected (4xx), ${unresolved} never answered 200`);
  console.log(`  states:    lost ${lostState}, applied twice ${doubleState}${unreadable ? ` (${unreadable} users unreadable)` : ""}`);
  console.log(`  event log: lost ${lostLog}, duplicated ${dupLog} (${logRows.length} rows for this run; ${unacknowledgedLogged} logged events were never acknowledged)`);
  console.log(
    `  isolate heap (V8, used): soak ${h.length} samples, floor ${first.toFixed(1)} MiB in its first fifth -> ${last.toFixed(1)} MiB in its last (${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MiB); ` +
      `whole run ${Math.min(...all).toFixed(1)}-${Math.max(...all).toFixed(1)} MiB: ${!judged ? "not judged (soak too short)" : flat ? "flat" : "GROWING"}`,
  );
  failed = lostState + doubleState + lostLog + dupLog + unresolved + unreadable > 0 || !flat;
  console.log(
    `LOADTEST lost_state=${lostState} double_state=${doubleState} unreadable_users=${unreadable} lost_log=${lostLog} dup_log=${dupLog} unresolved=${unresolved} heap_growth_mib=${growth.toFixed(1)} memory=${!judged ? "unjudged" : flat ? "flat" : "growing"} result=${failed ? "FAIL" : "PASS"}`,
  );
} finally {
  trafficOn = false;
  await worker.stop();
  await bridge.close();
  await proxy.close();
  await killed(redis, "SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
