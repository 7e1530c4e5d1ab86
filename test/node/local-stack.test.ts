/**
 * `npm start` as a user and a process manager run it, with real processes: the configuration in
 * the environment reaches the worker (CORS allowlist, keys, limits), /docs renders in headless
 * Chromium with every non-loopback request blocked, and SIGTERM to npm (or SIGINT to the node
 * process in the middle of starting up) leaves no redis-server, wrangler or workerd behind and
 * nothing answering on their ports; the watchdog for a start process killed outright (SIGKILL) does
 * its job. Also: on a Node older than 22.18 the entry says what to install.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../local/redis-server.ts";
import { ROOT, watchdog } from "../../local/stack.ts";

const dirs: string[] = [];
const started: ChildProcess[] = [];
/** Every process the stacks under test ran, for the clean-up after a failed test. */
const seen = new Set<number>();

afterAll(() => {
  // Only if a test failed half-way: end what is still running of ours, then the folders.
  for (const child of started) for (const pid of descendants(child.pid!)) seen.add(pid);
  for (const pid of [...seen, ...started.map((c) => c.pid!)]) if (alive(pid)) kill(pid, "SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function kill(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {}
}

/** Whether `pid` is a live process (not gone, not a zombie). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Every live descendant of `root` with its command line, from /proc. */
function descendants(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      parentOf.set(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const [child, parent] of parentOf) if (parent === pid) (out.push(child), walk(child));
  };
  walk(root);
  const live = out.filter(alive);
  for (const pid of live) seen.add(pid);
  return live;
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
};

function answers(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(port, "127.0.0.1");
    const done = (v: boolean) => (s.destroy(), res(v));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(2000, () => done(false));
  });
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Start `cmd args` in the repo with `env` added, collecting its output. */
function launch(cmd: string, args: string[], env: Record<string, string>) {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  const run = { child, out: "" };
  child.stdout!.on("data", (d) => (run.out += d));
  child.stderr!.on("data", (d) => (run.out += d));
  return run;
}

const OLD_NODE = "/usr/bin/node";
const oldNodeVersion = existsSync(OLD_NODE) ? spawnSync(OLD_NODE, ["--version"], { encoding: "utf8" }).stdout.trim() : "";
const isOld = (v: string) => {
  const [a = 0, b = 0] = v.replace(/^v/, "").split(".").map(Number);
  return a < 22 || (a === 22 && b < 18);
};

describe("npm start on a Node older than 22.18", () => {
  it.skipIf(!oldNodeVersion || !isOld(oldNodeVersion))(`prints one line saying what to install and exits 1 (${OLD_NODE} ${oldNodeVersion})`, () => {
    const r = spawnSync(OLD_NODE, ["scripts/start.mjs"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`needs Node.js 22.18 or newer (this is ${oldNodeVersion})`);
    expect(lines[0]).toContain(".nvmrc");
    expect(r.stderr).not.toContain("ERR_UNKNOWN_FILE_EXTENSION");
  });
});

describe("npm start with configuration in the environment", () => {
  const ORIGIN = "https://shop.test";
  const env = {
    CORS_ORIGINS: ORIGIN,
    SECRET_KEYS: "sk_env_1,sk_env_2",
    PUBLISHABLE_KEYS: "pk_env",
    MAX_K: "7",
    RATE_LIMIT_PUBLISHABLE_PER_MINUTE: "1000",
  };
  let npm: ReturnType<typeof launch>;
  let port = 0;
  let redisPort = 0;
  let bridgePort = 0;
  let pids: number[] = [];

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "gru-start-"));
    dirs.push(dir);
    port = await freePort();
    npm = launch("npm", ["start", "--silent"], { ...env, PORT: String(port), GRU_DATA_DIR: dir });
    await until("npm start to be ready", () => npm.out.includes("Ctrl-C stops everything") || npm.child.exitCode !== null, 280_000).catch((e) => {
      throw new Error(`${e.message}\n${npm.out}`);
    });
    expect(npm.child.exitCode, npm.out).toBe(null);
    const m = /redis-server on 127\.0\.0\.1:(\d+), bridge http:\/\/127\.0\.0\.1:(\d+)/.exec(npm.out);
    expect(m, npm.out).not.toBe(null);
    redisPort = Number(m![1]);
    bridgePort = Number(m![2]);
    pids = descendants(npm.child.pid!);
  }, 300_000);

  const url = (path: string) => `http://127.0.0.1:${port}${path}`;
  const get = (path: string, key: string) => fetch(url(path), { headers: { authorization: `Bearer ${key}` } });

  it("runs redis-server, wrangler and workerd under the npm process", () => {
    const commands = pids.map(cmdline);
    expect(commands.some((c) => c.includes("redis-server"))).toBe(true);
    expect(commands.some((c) => /wrangler.* dev /.test(c))).toBe(true);
    expect(commands.some((c) => c.includes("workerd"))).toBe(true);
  });

  it("passes CORS_ORIGINS: a preflight from the configured origin is allowed, from another origin refused", async () => {
    const preflight = (origin: string) =>
      fetch(url("/v1/events"), { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });
    const ok = await preflight(ORIGIN);
    expect(ok.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    const other = await preflight("https://elsewhere.test");
    expect(other.headers.get("access-control-allow-origin")).toBe(null);
  });

  it("passes SECRET_KEYS and PUBLISHABLE_KEYS: the configured keys work, the default dev keys do not", async () => {
    expect((await get("/v1/users/alice/recommendations?k=3", "pk_env")).status).toBe(200);
    expect((await get("/v1/users/alice/recommendations?k=3", "pk_dev")).status).toBe(401);
    expect((await get("/v1/items/1", "sk_env_2")).status).toBe(200); // the demo catalog was loaded with sk_env_1
    expect((await get("/v1/items/1", "sk_dev")).status).toBe(401);
  });

  it("passes the documented vars (MAX_K=7: k=7 is served, k=8 is a 400)", async () => {
    expect((await get("/v1/users/alice/recommendations?k=7", "pk_env")).status).toBe(200);
    const r = await get("/v1/users/alice/recommendations?k=8", "pk_env");
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error.code).toBeTypeOf("string");
  });

  it("renders /docs in headless Chromium with every non-loopback request blocked", async () => {
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    try {
      const page = await browser.newPage();
      const blocked: string[] = [];
      await page.route("**/*", (route) => {
        const host = new URL(route.request().url()).hostname;
        if (host === "127.0.0.1" || host === "localhost") return route.continue();
        blocked.push(route.request().url());
        return route.abort();
      });
      await page.goto(url("/docs"), { timeout: 120_000 });
      await page.locator(".opblock").first().waitFor({ timeout: 120_000 });
      const paths = await page.locator(".opblock .opblock-summary-path").allTextContents();
      expect(paths.map((p) => p.replace(/\u200b/g, ""))).toEqual(expect.arrayContaining(["/v1/events", "/v1/users/{user_id}/recommendations", "/v1/items/{item_id}"]));
      expect(await page.locator(".opblock").count()).toBeGreaterThanOrEqual(10);
      expect(blocked).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 300_000);

  it("SIGTERM to the npm process stops redis-server, the bridge, wrangler and workerd", async () => {
    const stack = pids.filter((p) => /redis-server|wrangler|workerd/.test(cmdline(p)));
    expect(stack.length).toBeGreaterThanOrEqual(3);
    expect(stack.every(alive)).toBe(true);
    npm.child.kill("SIGTERM");
    await until("every process of the stack to exit", () => !pids.some(alive), 30_000).catch((e) => {
      throw new Error(`${e.message}: ${pids.filter(alive).map((p) => `${p} ${cmdline(p)}`).join("; ")}\n${npm.out}`);
    });
    for (const p of [port, redisPort, bridgePort]) expect(await answers(p), `port ${p}`).toBe(false);
  });
});

describe("npm start interrupted while starting", () => {
  it("SIGINT to the node process before the stack is up stops whatever had started", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gru-start-"));
    dirs.push(dir);
    const port = await freePort();
    const run = launch(process.execPath, ["scripts/start.mjs"], { PORT: String(port), GRU_DATA_DIR: dir });
    let ran: number[] = [];
    // Interrupt as soon as wrangler (migrations or dev) runs, long before the worker answers.
    await until(
      "wrangler to start",
      () => {
        ran = descendants(run.child.pid!);
        return ran.some((p) => cmdline(p).includes("wrangler"));
      },
      120_000,
    );
    expect(run.out).not.toContain("Ctrl-C stops everything");
    const redis = ran.filter((p) => cmdline(p).includes("redis-server"));
    expect(redis).toHaveLength(1);
    ran = [...new Set([...ran, ...descendants(run.child.pid!)])];
    run.child.kill("SIGINT");
    await until("node to exit", () => run.child.exitCode !== null || run.child.signalCode !== null, 30_000);
    const all = [...new Set([...ran, ...descendants(run.child.pid!)])];
    await until("every process it started to exit", () => !all.some(alive), 15_000).catch((e) => {
      throw new Error(`${e.message}: ${all.filter(alive).map((p) => `${p} ${cmdline(p)}`).join("; ")}\n${run.out}`);
    });
    expect(await answers(port)).toBe(false);
    expect(run.child.exitCode).toBe(0);
  });
});

describe("the watchdog npm start leaves behind", () => {
  it("stops the stack's process groups and processes once its owner is killed outright, and nothing once cancelled", async () => {
    const sleeper = (detached: boolean) => {
      const c = spawn("sleep", ["600"], { detached, stdio: "ignore" });
      started.push(c);
      return c;
    };
    const owner = sleeper(false);
    const group = sleeper(true); // like wrangler dev: a process group of its own
    const single = sleeper(false); // like redis-server
    watchdog({ owner: owner.pid!, groups: [group.pid!], pids: [single.pid!] });
    const spared = sleeper(true);
    const cancel = watchdog({ owner: owner.pid!, groups: [spared.pid!], pids: [] });
    cancel();
    await new Promise((r) => setTimeout(r, 1500));
    expect([group, single, spared].every((c) => c.exitCode === null && c.signalCode === null)).toBe(true);
    owner.kill("SIGKILL");
    await until("the watchdog to stop both", () => group.signalCode !== null && single.signalCode !== null, 20_000);
    expect(group.signalCode).toBe("SIGTERM");
    expect(single.signalCode).toBe("SIGTERM");
    await new Promise((r) => setTimeout(r, 2000));
    expect(spared.exitCode === null && spared.signalCode === null).toBe(true);
    spared.kill("SIGKILL");
  });
});
