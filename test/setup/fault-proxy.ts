/**
 * A fault-injecting HTTP proxy in front of the Upstash REST bridge, for tests of what the worker
 * does when Redis fails at a precise point. It forwards every request and counts them (the
 * worker's Upstash calls, i.e. its subrequests). Control endpoints (no token):
 *   POST /__fault  {"match": "<substring of a request body>", "nth": 2}
 *                  the nth request whose body contains `match` is executed by Redis, but its
 *                  reply is replaced by a 503 error (the commit happened, the caller never knows)
 *   POST /__count  {"match": "<substring>"} starts counting forwarded requests whose body contains
 *                  it; answers {"count": n}, the count since the previous call
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface FaultProxy {
  url: string;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  let fault: { match: string; nth: number; seen: number } | null = null;
  let count = 0;
  let counting = "\u0000";
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const reply = (status: number, json: unknown) => {
      const text = JSON.stringify(json);
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.url === "/__fault") {
      fault = { ...(JSON.parse(body) as { match: string; nth: number }), seen: 0 };
      return reply(200, { armed: true });
    }
    if (req.url === "/__count") {
      const n = count;
      count = 0;
      counting = (JSON.parse(body || "{}") as { match?: string }).match ?? "\u0000";
      return reply(200, { count: n });
    }
    if (body.includes(counting)) count++;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "content-length") headers[k] = v;
    try {
      const r = await fetch(`${target}${req.url ?? "/"}`, { method: req.method, headers, body: req.method === "GET" ? undefined : body });
      const text = await r.text();
      if (fault && body.includes(fault.match) && ++fault.seen === fault.nth) {
        fault = null;
        return reply(503, { error: "ERR injected: the command ran, its reply was lost" });
      }
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
      res.end(text);
    } catch (e) {
      reply(502, { error: `ERR proxy: ${(e as Error).message}` });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
