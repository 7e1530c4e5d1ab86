/**
 * `npm run bench:catalog`: the shop-integration paths on the local stack (wrangler dev with its
 * local D1, redis-server behind the bridge), throwaway data, rate limits off. Prints the time of:
 * three 10,000-item NDJSON catalog uploads, 20,000 events sent in 40 batches of 500, the NDJSON
 * export of those events, and one popularity recompute over them.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../local/redis-server.ts";
import { ROOT, startStack } from "../local/stack.ts";

const dir = mkdtempSync(join(tmpdir(), "gru-bench-catalog-"));
const stack = await startStack({ port: await freePort(), apiKey: "sk", dataDir: dir, vars: { RATE_LIMIT_SECRET_PER_MINUTE: "0" } });
const auth = { authorization: "Bearer sk" };
const ms = (t: number) => `${(performance.now() - t).toFixed(0)} ms`;
try {
  for (let rep = 0; rep < 3; rep++) {
    const body = Array.from({ length: 10_000 }, (_, i) =>
      JSON.stringify({ id: `p-${rep}-${i}`, title: `Product ${i}`, category_path: ["A", `B${i % 20}`], price: i % 100, currency: "EUR", attributes: { size: i % 7 } }),
    ).join("\n");
    const t = performance.now();
    const r = (await (await fetch(`${stack.url}/v1/items/batch`, { method: "POST", headers: { ...auth, "content-type": "application/x-ndjson" }, body })).json()) as { stored: number };
    console.log(`catalog upload, 10,000 items NDJSON (${(body.length / 1e6).toFixed(2)} MB): ${ms(t)}, stored ${r.stored}`);
  }
  const ids = (JSON.parse(readFileSync(join(ROOT, "models", "ml-small", "manifest.json"), "utf8")) as { items: { ids: string[] } }).items.ids;
  const t1 = performance.now();
  for (let b = 0; b < 40; b++) {
    const evs = Array.from({ length: 500 }, (_, i) => ({ user_id: `u${b}-${i % 50}`, item_id: ids[(b * 500 + i) % ids.length], type: "view", event_id: `e${b}-${i}` }));
    const r = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(evs) });
    if (!r.ok) throw new Error(`events: ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  }
  console.log(`20,000 events in 40 batches of 500: ${ms(t1)}`);
  let lines = 0;
  let text = "";
  for (let i = 0; i < 60 && lines < 20_000; i++) {
    if (i) await new Promise((r) => setTimeout(r, 250)); // the log is written after each response
    const t2 = performance.now();
    text = await (await fetch(`${stack.url}/v1/events/export`, { headers: auth })).text();
    lines = text.split("\n").filter(Boolean).length;
    if (lines >= 20_000) console.log(`export: ${lines} lines, ${(text.length / 1e6).toFixed(2)} MB: ${ms(t2)}`);
  }
  const t3 = performance.now();
  const p = (await (await fetch(`${stack.url}/v1/admin/popular/refresh`, { method: "POST", headers: auth })).json()) as { events: number };
  console.log(`popularity recompute over ${p.events} events: ${ms(t3)}`);
  console.log(`machine: ${(await import("node:os")).cpus().length} cores, node ${process.version}, wrangler dev (workerd) on loopback`);
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
