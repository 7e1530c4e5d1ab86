/**
 * `npm run bench:rebuild`: what a model switch costs a returning shopper on their first request.
 *
 * Starts its own local stack (throwaway data), gives groups of shoppers histories of N events
 * (items both models know), switches the serving model to another version (models/ml-100k,
 * uploaded through the registry), then times each shopper's first recommendation request (state
 * rebuilt from the event log: at most REBUILD_EVENTS = 200 events replayed) and the next one
 * (state stored). Prints, per history length, p50/p95 of the client latency and the worker's own
 * rebuild time (Server-Timing), and the `rebuild <version>` command's time per user for the same
 * kind of users ahead of a switch.
 *
 * Options: --users N per group (default 10)
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../local/redis-server.ts";
import { ROOT, startStack } from "../local/stack.ts";
import { call, upload } from "./model.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const USERS = arg("users", 10);
const SIZES = [10, 50, 200, 1000];
const KEY = "bench-key";

const small = JSON.parse(readFileSync(join(ROOT, "models", "ml-small", "manifest.json"), "utf8"));
const other = JSON.parse(readFileSync(join(ROOT, "models", "ml-100k", "manifest.json"), "utf8"));
const otherIds = new Set<string>(other.items.ids);
const shared: string[] = small.items.ids.filter((id: string) => otherIds.has(id));

const dir = mkdtempSync(join(tmpdir(), "gru-bench-rebuild-"));
const stack = await startStack({
  dataDir: dir,
  apiKey: KEY,
  port: await freePort(),
  vars: { RATE_LIMIT_SECRET_PER_MINUTE: "0", RATE_LIMIT_PUBLISHABLE_PER_MINUTE: "0" },
});
const c = { url: stack.url, key: KEY };
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
try {
  console.error(`stack at ${stack.url}; ${shared.length} items known to both models`);
  const now = Date.now();
  const groups = new Map<number, string[]>();
  for (const n of SIZES) {
    const users = Array.from({ length: USERS }, (_, u) => `bench-${n}-${u}`);
    groups.set(n, users);
    for (const [u, user] of users.entries()) {
      const evs = Array.from({ length: n }, (_, k) => ({
        event_id: `${user}-${k}`,
        user_id: user,
        item_id: shared[(k * 7 + u * 13) % shared.length]!,
        type: "view",
        timestamp: now - 14 * 86_400_000 + Math.floor((k / n) * 13 * 86_400_000),
      }));
      for (let i = 0; i < evs.length; i += 500) {
        const r = await fetch(`${stack.url}/v1/events`, {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
          body: JSON.stringify(evs.slice(i, i + 500)),
        });
        if (!r.ok) throw new Error(`events: ${r.status} ${await r.text()}`);
      }
    }
  }
  // The log is written after each response: wait until it holds every event.
  const total = SIZES.reduce((s, n) => s + n * USERS, 0);
  for (let i = 0; ; i++) {
    const text = await (await fetch(`${stack.url}/v1/events/export`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    const n = text.split("\n").filter(Boolean).length;
    if (n >= total) break;
    if (i > 600) throw new Error(`the log holds ${n} of ${total} events`);
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`${total} events logged; switching to ${other.version}`);
  await upload(c, join(ROOT, "models", "ml-100k"), () => {});
  await call(c, "POST", `/v1/admin/models/${other.version}/activate`, { shadow: false });

  const time = async (user: string) => {
    const t = performance.now();
    const r = await fetch(`${stack.url}/v1/users/${user}/recommendations?k=10`, { headers: { authorization: `Bearer ${KEY}` } });
    const body = (await r.json()) as { source: string; model_version: string };
    const ms = performance.now() - t;
    const st = r.headers.get("server-timing");
    const dur = st ? Number(/dur=([\d.]+)/.exec(st)?.[1]) : null;
    return { ms, dur, source: body.source, version: body.model_version };
  };
  console.log(`lazy rebuild on the first request after a switch to ${other.version} (REBUILD_EVENTS = 200; ${USERS} users per row; local stack, loopback)`);
  console.log("history  replayed  first request p50/p95 ms  rebuild on the worker p50/p95 ms  next request p50 ms  source");
  for (const n of SIZES) {
    const first: number[] = [];
    const dur: number[] = [];
    const next: number[] = [];
    const sources = new Set<string>();
    for (const user of groups.get(n)!) {
      const a = await time(user);
      first.push(a.ms);
      if (a.dur !== null) dur.push(a.dur);
      sources.add(`${a.source}@${a.version === other.version ? "new" : "old"}`);
    }
    await new Promise((r) => setTimeout(r, 300)); // the rebuilt states are stored after the responses
    for (const user of groups.get(n)!) next.push((await time(user)).ms);
    console.log(
      `${String(n).padStart(7)}  ${String(Math.min(n, 200)).padStart(8)}  ${pct(first, 50).toFixed(1).padStart(12)} / ${pct(first, 95).toFixed(1).padEnd(12)}` +
        `${dur.length ? `${pct(dur, 50).toFixed(0).padStart(14)} / ${pct(dur, 95).toFixed(0).padEnd(18)}` : "       (none)                  "}` +
        `${pct(next, 50).toFixed(1).padStart(10)}           ${[...sources].join(",")}`,
    );
  }
  // Ahead of a switch: `npm run model -- rebuild` for users the other version has never seen.
  await call(c, "POST", `/v1/admin/models/${small.version}/activate`, { shadow: false });
  await call(c, "POST", `/v1/admin/models/${other.version}/retire`);
  const fresh = Array.from({ length: USERS * 4 }, (_, u) => `ahead-${u}`);
  for (const [u, user] of fresh.entries()) {
    const evs = Array.from({ length: 200 }, (_, k) => ({
      event_id: `${user}-${k}`,
      user_id: user,
      item_id: shared[(k * 11 + u * 17) % shared.length]!,
      type: "view",
      timestamp: now - 10 * 86_400_000 + k * 60_000,
    }));
    const r = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify(evs) });
    if (!r.ok) throw new Error(`events: ${r.status} ${await r.text()}`);
  }
  for (let i = 0; ; i++) {
    const text = await (await fetch(`${stack.url}/v1/events/export?since=${now - 10 * 86_400_000 - 1}&until=${now - 10 * 86_400_000 + 200 * 60_000}`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    if (text.split("\n").filter((l) => l.includes('"ahead-')).length >= fresh.length * 200) break;
    if (i > 600) throw new Error("the log did not catch up");
    await new Promise((r) => setTimeout(r, 100));
  }
  await call(c, "POST", `/v1/admin/models/${other.version}/activate`, { shadow: true });
  const t = performance.now();
  let after = "";
  let rebuilt = 0;
  let users = 0;
  let replayed = 0;
  for (;;) {
    const p = await call(c, "POST", `/v1/admin/models/${other.version}/rebuild`, { after_user: after, limit: 200 });
    rebuilt += p.rebuilt;
    users += p.users;
    replayed += p.events_replayed;
    if (!p.next_after_user) break;
    after = p.next_after_user;
  }
  const ms = performance.now() - t;
  console.log(
    `rebuild ahead of a switch (${other.version} as a shadow): ${users} active users, ${rebuilt} rebuilt (${replayed} events replayed) in ${ms.toFixed(0)} ms, ${(ms / Math.max(1, rebuilt)).toFixed(1)} ms per rebuilt user`,
  );
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
