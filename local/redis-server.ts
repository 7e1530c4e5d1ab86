/**
 * Start and stop a real redis-server on loopback for the local stack, tests and benchmarks.
 * Data lives in a project-local folder (append-only file), so it survives restarts.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer, Socket } from "node:net";

export interface RedisProcess {
  port: number;
  /** PID of the redis-server process. */
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function redisServerPath(): string | null {
  const r = spawnSync("sh", ["-c", "command -v redis-server || ls /usr/bin/redis-server /usr/sbin/redis-server 2>/dev/null | head -1"], { encoding: "utf8" });
  const p = r.stdout.trim().split("\n")[0];
  return p ? p : null;
}

export const INSTALL_HINT = "redis-server is not installed. On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y redis-server (macOS: brew install redis)";

/** Whether a redis-server answers PING on 127.0.0.1:`port` (500 ms timeout). */
export function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once("error", () => done(false));
    s.connect(port, "127.0.0.1", () => s.write("PING\r\n"));
    s.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

/** Start redis-server on `port` (default: a free one) keeping its data in `dir`. */
export async function startRedis(opts: { dir: string; port?: number; persist?: boolean }): Promise<RedisProcess> {
  const bin = redisServerPath();
  if (!bin) throw new Error(INSTALL_HINT);
  mkdirSync(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const persist = opts.persist ?? true;
  const args = [
    "--port", String(port), "--bind", "127.0.0.1", "--dir", opts.dir, "--daemonize", "no",
    "--save", "", "--appendonly", persist ? "yes" : "no", "--appendfsync", "everysec",
    "--protected-mode", "yes", "--loglevel", "warning", "--logfile", "",
  ];
  const child: ChildProcess = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d) => (stderr += d));
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not start on port ${port}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: child.pid!,
    dir: opts.dir,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM"); // clean shutdown: the append-only file is flushed
        setTimeout(() => child.kill("SIGKILL"), 5000).unref();
      }),
  };
}
