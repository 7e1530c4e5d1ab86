/**
 * The first middleware: runs the request inside a per-request `Timing` (src/lib/timing.ts), then
 * puts `Server-Timing` on the response (every response: 2xx, 4xx, 404, 5xx) and writes one JSON
 * log line per request. The line waits for the request's background tasks (waitUntil: event log,
 * rate-limit sync, popularity refresh) so that its subrequest count is the whole invocation's.
 *
 * REQUEST_LOG=off (a var) turns the log line off; Server-Timing stays.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../errors";
import { Timing, withTiming } from "./timing";

/** The fields of the log line besides the timings. */
function describe(c: Parameters<MiddlewareHandler>[0]): Record<string, unknown> {
  const url = new URL(c.req.url);
  const base: Record<string, unknown> = {
    msg: "request",
    time: new Date().toISOString(),
    method: c.req.method,
    path: url.pathname.slice(0, 300),
    route: c.req.routePath,
    status: c.res.status,
  };
  const err = c.error;
  if (err) base.error = err instanceof ApiError ? err.code : c.res.status >= 500 ? "internal" : err.name;
  if (err && c.res.status >= 500) base.detail = err.message.slice(0, 500);
  const key = c.get("keyId" as never) as unknown;
  if (typeof key === "string") base.key = key;
  return base;
}

function setHeader(c: Parameters<MiddlewareHandler>[0], value: string) {
  try {
    c.res.headers.set("Server-Timing", value);
  } catch {
    // Immutable headers (a response passed through as is): copy it.
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set("Server-Timing", value);
  }
}

/** Server-Timing on every response and one structured log line per request. */
export const observe: MiddlewareHandler = async (c, next) => {
  const t = new Timing();
  await withTiming(t, next);
  t.finish();
  // A route's own metrics (e.g. `rebuild`) are kept after ours.
  const own = c.res.headers.get("Server-Timing");
  setHeader(c, own ? `${t.header()}, ${own}` : t.header());
  if ((c.env as Record<string, unknown> | undefined)?.REQUEST_LOG === "off") return;
  const base = describe(c);
  const line = () => {
    const rec = t.record(base);
    if (c.res.status >= 500) console.error(JSON.stringify({ level: "error", ...rec }));
    else console.log(JSON.stringify({ level: "info", ...rec }));
  };
  const wait = t.settled().then(line);
  try {
    c.executionCtx.waitUntil(wait);
  } catch {
    // No execution context (app.request in scripts): the line is written when the tasks settle.
  }
};
