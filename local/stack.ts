/**
 * The whole local stack: redis-server (data in .data/redis) -> Upstash REST bridge -> wrangler dev.
 * Used by `npm start`, the benchmark and the process-level tests. `stop()` ends all of it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeEnvFile } from "./env-file.ts";
import { type Bridge, startBridge } from "./redis-bridge.ts";
import { freePort, type RedisProcess, startRedis } from "./redis-server.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface StackOptions {
  /** Worker port (default: PORT env or 8787). */
  port?: number;
  /** Bearer key for /v1 (default: SECRET_KEYS env or "dev-key"). */
  apiKey?: string;
  /** Redis data folder (default .data/redis). */
  dataDir?: string;
  /** Local D1 (and other wrangler state) folder (default .data/wrangler, or <dataDir>/wrangler). */
  persistTo?: string;
  /** Publishable key(s) (default: PUBLISHABLE_KEYS env or "pk_dev"). */
  publishableKey?: string;
  /** Use an already running redis-server on this port instead of starting one. */
  redisPort?: number;
  /** Extra worker vars (strings). */
  vars?: Record<string, string>;
  /** Pass wrangler's output through. */
  verbose?: boolean;
  /** Aborting it during startup stops whatever was started and rejects with the abort reason. */
  signal?: AbortSignal;
}

export interface Stack {
  url: string;
  apiKey: string;
  publishableKey: string;
  redis: RedisProcess | null;
  redisPort: number;
  bridge: Bridge;
  bridgeToken: string;
  worker: Worker;
  stop(): Promise<void>;
}

export interface Worker {
  url: string;
  /** PID of `wrangler dev` (its process group holds wrangler's node and workerd). */
  pid: number;
  /** Settles when wrangler dev exits, whoever stopped it. */
  exited: Promise<void>;
  stop(): Promise<void>;
}

/** How long `wrangler dev` may take to answer (a loaded 2-core machine needs minutes), ms. */
const START_TIMEOUT_MS = 240_000;

const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
const WRANGLER_ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" };

/**
 * Run a command in its own process group and collect its output; aborting `signal` (or the
 * command failing) ends the whole group, so no workerd it started is left behind.
 */
function runGroup(cmd: string, args: string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const child = spawn(cmd, args, { cwd: ROOT, env: WRANGLER_ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d) => (out = (out + d).slice(-20_000)));
    child.stderr!.on("data", (d) => (out = (out + d).slice(-20_000)));
    const onAbort = () => killGroup(child, "SIGTERM");
    signal?.addEventListener("abort", onAbort, { once: true });
    child.once("error", reject);
    child.once("exit", (code, sig) => {
      signal?.removeEventListener("abort", onAbort);
      killGroup(child, "SIGKILL"); // anything the command left in its group
      if (signal?.aborted) reject(signal.reason);
      else if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${code ?? sig}):\n${out}`));
    });
  });
}

/** Signal a detached child's whole process group (the child itself if the group is gone). */
function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {}
  }
}

/**
 * A detached shell that outlives this process: once `owner` (this process) is gone without having
 * cancelled it (SIGKILL, a crash), it stops the given process groups and processes itself:
 * SIGTERM, then SIGKILL after 5 s. Returns a function that cancels it (call before a normal stop).
 */
export function watchdog(o: { owner?: number; groups: number[]; pids: number[] }): () => void {
  const owner = o.owner ?? process.pid;
  const targets = [...o.groups.map((g) => `-${g}`), ...o.pids.map(String)].join(" ");
  const script = `while kill -0 ${owner} 2>/dev/null; do sleep 1; done; kill -TERM ${targets} 2>/dev/null; sleep 5; kill -KILL ${targets} 2>/dev/null; exit 0`;
  const child = spawn("sh", ["-c", script], { detached: true, stdio: "ignore" });
  child.unref();
  return () => {
    try {
      child.kill("SIGKILL");
    } catch {}
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function answers(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(port, "127.0.0.1");
    const done = (v: boolean) => {
      s.destroy();
      res(v);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/** Apply the D1 migrations (schema/migrations) to the local database under `persistTo`. */
export async function applyMigrations(persistTo: string, signal?: AbortSignal): Promise<void> {
  await runGroup(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], signal);
}

/** Start `wrangler dev` on `port` against the given Redis REST endpoint; resolves when it answers. */
export async function startWorker(o: {
  port: number;
  apiKey: string;
  publishableKey?: string;
  redisUrl: string;
  redisToken: string;
  persistTo: string;
  vars?: Record<string, string>;
  verbose?: boolean;
  signal?: AbortSignal;
}): Promise<Worker> {
  const vars = {
    SECRET_KEYS: o.apiKey,
    PUBLISHABLE_KEYS: o.publishableKey ?? "",
    UPSTASH_REDIS_REST_URL: o.redisUrl,
    UPSTASH_REDIS_REST_TOKEN: o.redisToken,
    ...o.vars,
  };
  if (await answers(o.port)) throw new Error(`port ${o.port} is already in use (another npm start?): choose another with PORT`);
  // Keys and tokens go in a 0600 file, never on the command line (`ps` shows arguments to everyone).
  const envFile = writeEnvFile(vars);
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(o.port), "--persist-to", o.persistTo, "--show-interactive-dev-session=false", "--log-level", o.verbose ? "info" : "warn"];
  args.push("--env-file", envFile.path);
  let child: ChildProcess;
  try {
    child = spawn(WRANGLER, args, {
      cwd: ROOT,
      stdio: ["ignore", o.verbose ? "inherit" : "pipe", o.verbose ? "inherit" : "pipe"],
      detached: true,
      env: WRANGLER_ENV,
    });
  } catch (e) {
    envFile.remove();
    throw e;
  }
  const exited = new Promise<void>((res) => child.once("exit", () => res())).finally(() => envFile.remove());
  let log = "";
  child.stdout?.on("data", (d) => (log = (log + d).slice(-20_000)));
  child.stderr?.on("data", (d) => (log = (log + d).slice(-20_000)));
  const url = `http://127.0.0.1:${o.port}`;
  // wrangler, its node child and workerd share the group: all of it goes, then SIGKILL whatever
  // of the group is left (workerd outliving wrangler), at once if wrangler exited.
  const stop = () =>
    new Promise<void>((res) => {
      const gone = () => {
        killGroup(child, "SIGKILL");
        res();
      };
      if (child.exitCode !== null || child.signalCode !== null) return gone();
      child.once("exit", gone);
      killGroup(child, "SIGTERM");
      setTimeout(() => killGroup(child, "SIGKILL"), 5000).unref();
    });
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (o.signal?.aborted) {
      await stop();
      throw o.signal.reason;
    }
    if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${log}`);
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(20_000) });
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 503) break;
    } catch {}
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not answer on ${url} within ${START_TIMEOUT_MS / 1000} s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, pid: child.pid!, exited, stop };
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const apiKey = o.apiKey ?? process.env.SECRET_KEYS ?? "sk_dev";
  const publishableKey = o.publishableKey ?? process.env.PUBLISHABLE_KEYS ?? "pk_dev";
  const persistTo = o.persistTo ?? (o.dataDir ? join(o.dataDir, "wrangler") : join(ROOT, ".data", "wrangler"));
  const port = o.port ?? (Number(process.env.PORT) || 8787);
  o.signal?.throwIfAborted();
  const redis = o.redisPort ? null : await startRedis({ dir: o.dataDir ?? join(ROOT, ".data", "redis") });
  const redisPort = o.redisPort ?? redis!.port;
  const bridgeToken = randomBytes(16).toString("hex");
  let bridge: Bridge | undefined;
  try {
    bridge = await startBridge({ redisPort, token: bridgeToken, port: await freePort() });
    await applyMigrations(persistTo, o.signal);
    const worker = await startWorker({ port, apiKey, publishableKey, redisUrl: bridge.url, redisToken: bridgeToken, persistTo, vars: o.vars, verbose: o.verbose, signal: o.signal });
    const b = bridge;
    const stack: Stack = {
      url: worker.url,
      apiKey,
      publishableKey,
      redis,
      redisPort,
      bridge: b,
      bridgeToken,
      worker,
      async stop() {
        await worker.stop();
        await b.close();
        // The Redis now in `stack.redis` (a caller may have restarted it), not the first one.
        await stack.redis?.stop();
      },
    };
    return stack;
  } catch (e) {
    await bridge?.close();
    await redis?.stop();
    throw e;
  }
}
