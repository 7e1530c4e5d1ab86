/**
 * The whole local stack: redis-server (data in .data/redis) -> Upstash REST bridge -> wrangler dev.
 * Used by `npm start`, the benchmark and the process-level tests. `stop()` ends all of it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
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
  stop(): Promise<void>;
}

const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
const WRANGLER_ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" };

/** Apply the D1 migrations (schema/migrations) to the local database under `persistTo`. */
export async function applyMigrations(persistTo: string): Promise<void> {
  try {
    await promisify(execFile)(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], { cwd: ROOT, env: WRANGLER_ENV });
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`wrangler d1 migrations apply failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
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
}): Promise<Worker> {
  const vars = {
    SECRET_KEYS: o.apiKey,
    PUBLISHABLE_KEYS: o.publishableKey ?? "",
    UPSTASH_REDIS_REST_URL: o.redisUrl,
    UPSTASH_REDIS_REST_TOKEN: o.redisToken,
    ...o.vars,
  };
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(o.port), "--persist-to", o.persistTo, "--show-interactive-dev-session=false", "--log-level", o.verbose ? "info" : "warn"];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child: ChildProcess = spawn(WRANGLER, args, {
    cwd: ROOT,
    stdio: ["ignore", o.verbose ? "inherit" : "pipe", o.verbose ? "inherit" : "pipe"],
    detached: true,
    env: WRANGLER_ENV,
  });
  let log = "";
  child.stdout?.on("data", (d) => (log = (log + d).slice(-20_000)));
  child.stderr?.on("data", (d) => (log = (log + d).slice(-20_000)));
  const url = `http://127.0.0.1:${o.port}`;
  const stop = () =>
    new Promise<void>((res) => {
      if (child.exitCode !== null || child.signalCode !== null) return res();
      child.once("exit", () => res());
      try {
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        child.kill("SIGTERM");
      }
      setTimeout(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {}
      }, 5000).unref();
    });
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${log}`);
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(20_000) });
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 503) break;
    } catch {}
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not answer on ${url} within 90 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, stop };
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const apiKey = o.apiKey ?? process.env.SECRET_KEYS ?? "sk_dev";
  const publishableKey = o.publishableKey ?? process.env.PUBLISHABLE_KEYS ?? "pk_dev";
  const persistTo = o.persistTo ?? (o.dataDir ? join(o.dataDir, "wrangler") : join(ROOT, ".data", "wrangler"));
  const port = o.port ?? (Number(process.env.PORT) || 8787);
  const redis = o.redisPort ? null : await startRedis({ dir: o.dataDir ?? join(ROOT, ".data", "redis") });
  const redisPort = o.redisPort ?? redis!.port;
  const bridgeToken = randomBytes(16).toString("hex");
  let bridge: Bridge | undefined;
  try {
    bridge = await startBridge({ redisPort, token: bridgeToken, port: await freePort() });
    await applyMigrations(persistTo);
    const worker = await startWorker({ port, apiKey, publishableKey, redisUrl: bridge.url, redisToken: bridgeToken, persistTo, vars: o.vars, verbose: o.verbose });
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
