/**
 * Observability: every response carries Server-Timing (total, redis, model, db and the subrequest
 * count), and every request writes one JSON log line whose timings and call counts say what the
 * request did (captured here, not printed).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { apiWith, ev, manifest, uid } from "./helpers";

const on = { REQUEST_LOG: "on" };
let lines: Record<string, any>[] = [];

beforeEach(() => {
  lines = [];
  const capture = (...args: unknown[]) => {
    const s = String(args[0]);
    if (s.startsWith("{") && s.includes('"msg":"request"')) lines.push(JSON.parse(s));
  };
  vi.spyOn(console, "log").mockImplementation(capture);
  vi.spyOn(console, "error").mockImplementation(capture);
});
afterEach(() => vi.restoreAllMocks());

/** Server-Timing as {name: {dur, desc}}. */
function serverTiming(h: Headers): Record<string, { dur?: number; desc?: string }> {
  const out: Record<string, { dur?: number; desc?: string }> = {};
  for (const part of (h.get("server-timing") ?? "").split(",")) {
    const [name, ...params] = part.trim().split(";");
    const m: { dur?: number; desc?: string } = {};
    for (const p of params) {
      const [k, v] = p.split("=");
      if (k === "dur") m.dur = Number(v);
      if (k === "desc") m.desc = v!.replace(/^"|"$/g, "");
    }
    out[name!] = m;
  }
  return out;
}

/** The log line of the request to `path` (written once its background tasks settle). */
async function lineFor(path: string): Promise<Record<string, any>> {
  for (let i = 0; i < 200; i++) {
    const l = lines.find((x) => x.path === path);
    if (l) return l;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no log line for ${path}; got ${JSON.stringify(lines.map((l) => l.path))}`);
}

describe("Server-Timing and the request log", () => {
  it("a recommendation reports its Redis calls, model runs and subrequests in the header and the log line", async () => {
    const u = uid("obs");
    const ids = manifest.items.ids;
    expect((await apiWith(on, "/v1/events", { body: [ev(u, ids[1]!), ev(u, ids[2]!)] })).status).toBe(200);
    const path = `/v1/users/${u}/recommendations`;
    const r = await apiWith(on, `${path}?k=5`);
    expect(r.status).toBe(200);
    expect(r.body.source).toBe("model");
    const st = serverTiming(r.headers);
    for (const m of ["total", "redis", "model", "db"]) expect(st[m]?.dur, m).toBeGreaterThanOrEqual(0);
    expect(st.redis!.desc).toMatch(/^[1-9]\d* calls$/);
    expect(st.model!.desc).toMatch(/^[1-9]\d* runs$/);
    expect(Number(st.subreq!.desc)).toBeGreaterThanOrEqual(1);
    for (const m of ["redis", "model", "db"]) expect(st[m]!.dur!, m).toBeLessThanOrEqual(st.total!.dur! + 0.05);

    const line = await lineFor(path);
    expect(line).toMatchObject({ level: "info", msg: "request", method: "GET", status: 200, route: "/v1/users/:user_id/recommendations" });
    expect(line.redis_calls).toBeGreaterThanOrEqual(1);
    expect(line.model_runs).toBeGreaterThanOrEqual(1);
    expect(line.subrequests - line.subrequests_background).toBe(line.redis_calls + line.db_queries + line.r2_reads);
    for (const f of ["total_ms", "redis_ms", "model_ms", "db_ms"]) expect(typeof line[f], f).toBe("number");
  });

  it("a 4xx answer carries Server-Timing and logs its error code", async () => {
    const r = await apiWith(on, "/v1/events", { body: { user_id: "x", item_id: "no-such-item-anywhere", type: "view" } });
    expect(r.status).toBe(422);
    expect(Object.keys(serverTiming(r.headers))).toEqual(["total", "redis", "model", "db", "subreq"]);
    const line = await lineFor("/v1/events");
    expect(line).toMatchObject({ status: 422, error: "unknown_item", method: "POST" });
    expect(line.model_runs).toBe(0);

    const denied = await apiWith(on, "/v1/events/export", { key: "wrong" });
    expect(denied.status).toBe(401);
    expect(serverTiming(denied.headers).total?.dur).toBeGreaterThanOrEqual(0);
    expect(await lineFor("/v1/events/export")).toMatchObject({ status: 401, error: "unauthorized" });
  });

  it("a 404 carries Server-Timing with no Redis, model or D1 work and is logged once", async () => {
    const path = `/no-such-route-${uid()}`;
    const r = await apiWith(on, path);
    expect(r.status).toBe(404);
    const st = serverTiming(r.headers);
    expect(st.redis).toEqual({ dur: 0, desc: "0 calls" });
    expect(st.model).toEqual({ dur: 0, desc: "0 runs" });
    expect(st.db).toEqual({ dur: 0, desc: "0 queries" });
    expect(st.subreq!.desc).toBe("0");
    const line = await lineFor(path);
    expect(line).toMatchObject({ status: 404, subrequests: 0 });
    await new Promise((res) => setTimeout(res, 50));
    expect(lines.filter((l) => l.path === path)).toHaveLength(1);
  });

  it("REQUEST_LOG=off keeps Server-Timing and writes no line", async () => {
    const path = `/no-such-route-${uid()}`;
    const r = await apiWith({ REQUEST_LOG: "off" }, path);
    expect(r.headers.get("server-timing")).toMatch(/^total;dur=/);
    await new Promise((res) => setTimeout(res, 100));
    expect(lines.filter((l) => l.path === path)).toHaveLength(0);
  });
});
