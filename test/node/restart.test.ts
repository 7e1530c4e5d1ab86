/**
 * The user's memory lives in Redis and survives restarts: events go in, the worker (and Redis
 * itself) are stopped, a new stack starts on the same data folder, and the recommendations and
 * summary still reflect the earlier events. Also: Redis stopped behind a live bridge.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import manifest from "../../models/ml-small/manifest.json";
import { freePort, startRedis } from "../../local/redis-server.ts";
import { type Stack, startStack } from "../../local/stack.ts";

const dir = mkdtempSync(join(tmpdir(), "gru-restart-"));
const KEY = "restart-key";
let stack: Stack | undefined;

afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function call(s: Stack, path: string, body?: unknown, method = body ? "POST" : "GET") {
  const r = await fetch(s.url + path, {
    method,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as any, headers: r.headers };
}

describe("long-term memory across restarts (wrangler dev + redis-server + bridge)", () => {
  const user = "returning-shopper";
  const items = manifest.items.ids.slice(100, 110);
  let recsBefore: string[] = [];

  it("records a user's events in the first run", async () => {
    stack = await startStack({ port: await freePort(), apiKey: KEY, dataDir: dir });
    const r = await call(stack, "/v1/events", items.map((item_id, i) => ({ event_id: `r${i}`, user_id: user, item_id, type: "view" })));
    expect(r.status).toBe(200);
    recsBefore = (await call(stack, `/v1/users/${user}/recommendations?k=10`)).body.items.map((i: any) => i.item_id);
    expect(recsBefore).toHaveLength(10);
  });

  it("after stopping worker and Redis and starting a new stack, the state and recommendations are the same", async () => {
    await stack!.stop();
    stack = await startStack({ port: await freePort(), apiKey: KEY, dataDir: dir });
    const s = await call(stack, `/v1/users/${user}`);
    expect(s.body).toMatchObject({ event_count: 10, session_count: 1, model_version: manifest.version });
    const r = await call(stack, `/v1/users/${user}/recommendations?k=10`);
    expect(r.body.source).toBe("model");
    expect(r.body.items.map((i: any) => i.item_id)).toEqual(recsBefore);
    // the earlier event ids are still remembered: resending them changes nothing
    const again = await call(stack, "/v1/events", [{ event_id: "r0", user_id: user, item_id: items[0], type: "view" }]);
    expect(again.body.results[0].status).toBe("duplicate");
  });

  it("with redis-server stopped behind the bridge: popular fallback, 503 on events, nothing half-written", async () => {
    await stack!.redis!.stop();
    const rec = await call(stack!, `/v1/users/${user}/recommendations?k=3`);
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({ source: "popular", reason: "state-unavailable" });
    const ev = await call(stack!, "/v1/events", [{ event_id: "late", user_id: user, item_id: items[1], type: "view" }]);
    expect(ev.status).toBe(503);
    expect(ev.headers.get("retry-after")).toBeTruthy();
    // Redis back on the same port and data: the state is exactly as before the outage
    const back = await startRedis({ dir, port: stack!.redisPort });
    stack!.redis = back;
    let s;
    for (let i = 0; i < 50; i++) {
      s = await call(stack!, `/v1/users/${user}`);
      if (s.status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(s!.body.event_count).toBe(10);
  });
});
