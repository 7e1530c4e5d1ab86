/**
 * Request guards in front of the routes: URLs too long for any route (414) and methods a path
 * does not take (405, with `Allow`), both in our error shape. Requests the runtime itself refuses
 * never reach these: workerd answers a method it does not parse (`get`, `FOO`) with a plain-text
 * 501 and a request target of 64 KiB or more with a plain-text 414 (see README, "Errors").
 */
import type { Context, Env, MiddlewareHandler } from "hono";
import { ApiError, errorBody } from "../errors";

/** Longest URL the worker reads, characters (the longest valid one, 100 excluded ids, is ~26,000). */
export const MAX_URL_LENGTH = 32_768;

/** 414 `uri_too_long` for a URL over MAX_URL_LENGTH, before any other work. */
export const urlLimit: MiddlewareHandler = async (c, next) => {
  if (c.req.url.length > MAX_URL_LENGTH) {
    throw new ApiError(414, "uri_too_long", `the URL is ${c.req.url.length} characters; at most ${MAX_URL_LENGTH} are read`);
  }
  await next();
};

/** A registered route: its method and path pattern (Hono syntax, `/v1/items/:item_id`). */
export interface RouteSpec {
  method: string;
  path: string;
}

type Matcher = { method: string; re: RegExp };

function compile(routes: readonly RouteSpec[]): Matcher[] {
  const out: Matcher[] = [];
  for (const r of routes) {
    // Middleware ("ALL") matches every method; it does not make a path exist.
    if (r.method === "ALL") continue;
    const src = r.path
      .split("/")
      .map((seg) => (seg === "*" ? ".*" : seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    out.push({ method: r.method, re: new RegExp(`^${src}/?$`) });
  }
  return out;
}

/**
 * The not-found handler: 405 `method_not_allowed` with `Allow` when the path exists under other
 * methods, else 404 `not_found`. `routes` is read once, on the first miss (after all routes are
 * registered).
 */
export function notFoundOrMethod(routes: () => readonly RouteSpec[]) {
  let matchers: Matcher[] | undefined;
  return (c: Context) => {
    matchers ??= compile(routes());
    const path = c.req.path;
    const allow = new Set<string>();
    for (const m of matchers) if (m.re.test(path)) allow.add(m.method);
    if (allow.has("GET")) allow.add("HEAD");
    if (allow.size) {
      const list = [...allow].sort().join(", ");
      c.header("Allow", list);
      return c.json(errorBody("method_not_allowed", `${c.req.method} is not allowed on ${path}; allowed: ${list}`), 405);
    }
    return c.json(errorBody("not_found", `no route for ${c.req.method} ${path}`), 404);
  };
}

/**
 * Route middleware: 413 `batch_too_large` for a JSON array body (or the array at `body[key]`) of
 * more than `max(c)` elements, before the route's schema looks at any element (a 60,000-element
 * batch is refused in milliseconds, not after seconds of parsing). Anything else passes on to the
 * validator, which reads the same parsed body (Hono caches it).
 */
export function arrayLimit<E extends Env>(max: (c: Context<E>) => number, what: string, field: string, key?: string): MiddlewareHandler<E> {
  return async (c, next) => {
    if (/^application\/(?:[\w.+-]+\+)?json/i.test(c.req.header("content-type") ?? "")) {
      const parsed: unknown = await c.req.json().catch(() => undefined);
      const body = key === undefined ? parsed : parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>)[key] : undefined;
      const limit = max(c);
      if (Array.isArray(body) && body.length > limit) {
        throw new ApiError(413, "batch_too_large", `a batch holds at most ${limit} ${what}, got ${body.length}`, { field });
      }
    }
    await next();
  };
}
