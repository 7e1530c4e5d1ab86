/**
 * Write combining, measured: starts its own local stack (throwaway Redis and D1), then N times
 * fires 100 concurrent POST /v1/events for ONE user (distinct event_ids) and prints how long the
 * last answer took, how many were applied, any non-200, and how many state writes (folds) the
 * 100 events took. Loopback only; bounded (ROUNDS rounds).
 *
 *   npm run bench:burst [-- --rounds 5 --events 100]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startStack } from "../local/stack.ts";
import { freePort } from "../local/redis-server.ts";
import manifest from "../models/ml-small/manifest.json";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, events: { type: "string", default: "100" } } });
const ROUNDS = Number(values.rounds);
const N = Number(values.events);
const KEY = "burst-key";
const items = manifest.items.ids;

const dir = mkdtempSync(join(tmpdir(), "gru-burst-"));
const stack = await startStack({ port: await freePort(), apiKey: KEY, dataDir: dir, vars: { RATE_LIMIT_SECRET_PER_MINUTE: "0" } });
const h = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
const post = (body: unknown) => fetch(`${stack.url}/v1/events`, { method: "POST", headers: h, body: JSON.stringify(body) });
try {
  await (await post({ user_id: "warm-up", item_id: items[0], type: "view" })).arrayBuffer(); // model loaded
  const times: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const user = `burst-${round}-${Date.now()}`;
    const t0 = performance.now();
    const rs = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const r = await post({ event_id: `b-${i}`, user_id: user, item_id: items[i % 50], type: "view" });
        return { status: r.status, body: (await r.json()) as { applied?: number } };
      }),
    );
    const ms = performance.now() - t0;
    times.push(ms);
    const s = (await (await fetch(`${stack.url}/v1/users/${user}`, { headers: h })).json()) as { event_count: number; state_version: number };
    const applied = rs.reduce((n, r) => n + (r.body.applied ?? 0), 0);
    const bad = rs.filter((r) => r.status !== 200).map((r) => r.status);
    console.log(
      `round ${round + 1}: ${N} concurrent events for one user answered in ${ms.toFixed(0)} ms; applied ${applied}, non-200 ${bad.length ? bad.join(",") : "none"}; state: ${s.event_count} events in ${s.state_version} writes`,
    );
  }
  times.sort((a, b) => a - b);
  console.log(`median ${times[Math.floor(times.length / 2)]!.toFixed(0)} ms, best ${times[0]!.toFixed(0)} ms over ${ROUNDS} rounds`);
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
