/**
 * The whole local stack: redis-server (data in .data/redis) -> Upstash REST bridge -> wrangler dev.
 * Used by `npm start`, the benchmark and the process-level tests. `stop()` ends all of it.
 */
import { type ChildProcess, spawn } from "node:child_process";
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

/** Start `wrangler dev` on `port` against the given Redis REST endpoint; resolves when it answers. */
export async function startWorker(o: { port: number; apiKey: string; redisUrl: string; redisToken: string; vars?: Record<string, string>; verbose?: boolean }): Promise<Worker> {
  const vars = { SECRET_KEYS: o.apiKey, UPSTASH_REDIS_REST_URL: o.redisUrl, UPSTASH_REDIS_REST_TOKEN: o.redisToken, ...o.vars };
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(o.port), "--show-interactive-dev-session=false", "--log-level", o.verbose ? "info" : "warn"];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child: ChildProcess = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), args, {
    cwd: ROOT,
    stdio: ["ignore", o.verbose ? "inherit" : "pipe", o.verbose ? "inherit" : "pipe"],
    detached: true,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
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
  const apiKey = o.apiKey ?? process.env.SECRET_KEYS ?? "dev-key";
  const port = o.port ?? (Number(process.env.PORT) || 8787);
  const redis = o.redisPort ? null : await startRedis({ dir: o.dataDir ?? join(ROOT, ".data", "redis") });
  const redisPort = o.redisPort ?? redis!.port;
  const bridgeToken = randomBytes(16).toString("hex");
  let bridge: Bridge | undefined;
  try {
    bridge = await startBridge({ redisPort, token: bridgeToken, port: await freePort() });
    const worker = await startWorker({ port, apiKey, redisUrl: bridge.url, redisToken: bridgeToken, vars: o.vars, verbose: o.verbose });
    const b = bridge;
    return {
      url: worker.url,
      apiKey,
      redis,
      redisPort,
      bridge: b,
      bridgeToken,
      worker,
      async stop() {
        await worker.stop();
        await b.close();
        await redis?.stop();
      },
    };
  } catch (e) {
    await bridge?.close();
    await redis?.stop();
    throw e;
  }
}
