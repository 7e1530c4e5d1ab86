/**
 * The worker served by workerd through miniflare's own HTTP server, without wrangler dev's proxy
 * in front: the bundle wrangler would deploy (`wrangler deploy --dry-run --outdir`), the bindings
 * and module rules of wrangler.toml (wrangler's `unstable_getMiniflareWorkerOptions`), a local D1
 * with the drizzle-kit migrations applied, and the worker's log lines handed to a callback.
 * Used by `npm run bench` and `npm run loadtest`.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { convertV4MiniflareOptions, Log, LogLevel, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { ROOT } from "./stack.ts";

const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");

/** Bundle the worker as `wrangler deploy` would (no upload) into `outdir`; returns the entry file. */
export async function bundleWorker(outdir: string): Promise<string> {
  try {
    await promisify(execFile)(WRANGLER, ["deploy", "--dry-run", "--outdir", outdir], {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`wrangler deploy --dry-run failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
  return join(outdir, "index.js");
}

/**
 * Apply schema/migrations/*.sql (drizzle-kit's statement breakpoints) not applied yet, recording
 * them in `d1_migrations` as wrangler does.
 */
export async function migrate(db: D1Database): Promise<void> {
  await db.prepare("CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TEXT DEFAULT CURRENT_TIMESTAMP NOT NULL)").run();
  const done = new Set((await db.prepare("SELECT name FROM d1_migrations").all<{ name: string }>()).results.map((r) => r.name));
  const dir = join(ROOT, "schema", "migrations");
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".sql")).sort()) {
    if (done.has(f)) continue;
    const stmts = readFileSync(join(dir, f), "utf8").split("--> statement-breakpoint").filter((s) => s.trim());
    await db.batch([...stmts.map((s) => db.prepare(s)), db.prepare("INSERT INTO d1_migrations (name) VALUES (?1)").bind(f)]);
  }
}

export interface MiniflareWorker {
  url: string;
  mf: Miniflare;
  /** The worker's D1 binding, from Node (for fault injection and audits). */
  db: D1Database;
  /** Process id of the workerd serving the worker (for CPU time and memory from /proc). */
  pid: number | null;
  stop(): Promise<void>;
}

/** Children of `ppid` whose command is `name` (from /proc). */
export function childPids(ppid: number, name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppidOf = Number(stat.slice(close + 2).split(" ")[1]);
      if (ppidOf === ppid && comm === name) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** User + system CPU time of a process so far, ms (from /proc/<pid>/stat; 10 ms ticks). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  return (ticks * 1000) / 100; // CLK_TCK is 100 on Linux
}

/** Resident memory of a process, MiB (VmRSS). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Serve the bundled worker on 127.0.0.1:`port` (0: a free one). `vars` override wrangler.toml's;
 * `onLog` gets every line the worker writes (console.log/error), with its level.
 */
export async function startMiniflareWorker(o: {
  script: string;
  port?: number;
  vars?: Record<string, string>;
  onLog?: (level: string, message: string) => void;
  inspectorPort?: number;
  /** Keep D1 (and other local storage) in this folder across instances (default: a temporary one). */
  persistTo?: string;
}): Promise<MiniflareWorker> {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  const before = new Set(childPids(process.pid, "workerd"));
  // The bundle's modules, entry first, typed by wrangler.toml's rules (wrangler's defaults after
  // them), matched against each file's name without the hash prefix the bundler gives it.
  const dir = dirname(o.script);
  const { modulesRules, ...rest } = workerOptions as Record<string, unknown> & { modulesRules?: { type: string; include: string[] }[] };
  const globRe = (g: string) => {
    let re = "";
    for (let k = 0; k < g.length; k++) {
      if (g.startsWith("**/", k)) (re += "(?:.*/)?"), (k += 2);
      else if (g[k] === "*") re += "[^/]*";
      else if (g[k] === "?") re += ".";
      else re += g[k]!.replace(/[.+^${}()|[\]\\/]/, "\\$&");
    }
    return new RegExp(`^${re}$`);
  };
  const rules = (modulesRules ?? []).map((r) => ({ type: r.type, res: r.include.map(globRe) }));
  const typeOf = (f: string) => {
    const name = f.replace(/^[0-9a-f]{40}-/, "");
    return rules.find((r) => r.res.some((re) => re.test(name)))?.type ?? (/\.m?js$/.test(f) ? "ESModule" : null);
  };
  const modules = [
    { type: "ESModule", path: o.script },
    ...readdirSync(dir)
      .filter((f) => join(dir, f) !== o.script && !f.endsWith(".map") && f !== "README.md")
      .map((f) => ({ type: typeOf(f), path: join(dir, f) }))
      .filter((m): m is { type: string; path: string } => m.type !== null),
  ];
  const worker = {
    ...rest,
    name: "gru-edge-recommender",
    rootPath: dir,
    modulesRoot: dir,
    modules,
    bindings: { ...(rest.bindings as Record<string, unknown>), ...o.vars },
    d1Databases: { DB: "local-db" },
  } as Record<string, unknown>;
  for (const k of Object.keys(worker)) {
    const v = worker[k];
    // Empty binding kinds this miniflare may not know: leave them out.
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0 && k !== "bindings") delete worker[k];
    if (Array.isArray(v) && v.length === 0) delete worker[k];
  }
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: o.port ?? 0,
      ...(o.inspectorPort ? { inspectorPort: o.inspectorPort } : {}),
      log: new Log(LogLevel.WARN),
      ...(o.persistTo ? { resourcePersistencePath: o.persistTo } : {}),
      cf: false, // no request to workers.cloudflare.com for a `cf` object (loopback only)
      handleStructuredLogs: ({ level, message }: { level: string; message: string }) => {
        if (o.onLog) o.onLog(level, message);
        else if (level === "error" || level === "warn") process.stderr.write(`${message}\n`);
      },
      workers: [worker],
    } as never),
  );
  const url = String(await mf.ready).replace(/\/$/, "");
  const db = (await mf.getD1Database("DB")) as unknown as D1Database;
  await migrate(db);
  const pids = childPids(process.pid, "workerd").filter((p) => !before.has(p));
  return { url, mf, db, pid: pids[0] ?? null, stop: () => mf.dispose() };
}
