/**
 * Keys, scopes, CORS and rate limits for /v1.
 *
 * Two kinds of bearer key, each a comma-separated list (several keys let you rotate):
 *   SECRET_KEYS       (a secret)  everything: catalog, export, deletion, admin, and the below
 *   PUBLISHABLE_KEYS  (a var)     safe in a browser: POST /v1/events, GET recommendations,
 *                                 similar items, a user's state and summary and the model's files
 *                                 (on-device scoring) only; browsers are admitted by the CORS
 *                                 allowlist. Which users it may act for: src/user-access.ts
 * Keys are compared in constant time over SHA-256 digests. Requests are rate limited per key
 * (publishable keys: per key and client IP, since every shopper shares the key; their events also
 * per user id, `limitUsers`) with @upstash/ratelimit; an unreachable Redis lets requests through rather than failing the shop.
 */
import { Ratelimit } from "@upstash/ratelimit";
import type { Context, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv, KeyScope } from "./env";
import { ApiError } from "./errors";
import { redisClient } from "./state/redis-client";

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

const list = (s: string | undefined) => (s ?? "").split(",").map((k) => k.trim()).filter(Boolean);

const digestsCache = new Map<string, Promise<Uint8Array[]>>();

/** SHA-256 digests of a comma-separated key list (computed once per isolate per list). */
function digests(keys: string | undefined): Promise<Uint8Array[]> {
  const k = keys ?? "";
  let d = digestsCache.get(k);
  if (!d) {
    if (digestsCache.size > 32) digestsCache.clear();
    digestsCache.set(k, (d = Promise.all(list(k).map(digest))));
  }
  return d;
}

/** Endpoints a publishable key may call (method and path pattern). */
const PUBLISHABLE: [string, RegExp][] = [
  ["POST", /^\/v1\/events\/?$/],
  ["GET", /^\/v1\/users\/[^/]+\/recommendations\/?$/],
  ["POST", /^\/v1\/users\/[^/]+\/rank\/?$/],
  ["GET", /^\/v1\/items\/[^/]+\/similar\/?$/],
  // A user's summary and, for on-device scoring, state: with a signed user token (src/user-access.ts).
  ["GET", /^\/v1\/users\/[^/]+\/?$/],
  ["GET", /^\/v1\/users\/[^/]+\/state\/?$/],
  ["GET", /^\/v1\/device\/model(\/[^/]+\/[^/]+)?\/?$/],
];

/** May a publishable key call this? */
export function publishableMay(method: string, path: string): boolean {
  return PUBLISHABLE.some(([m, p]) => m === method && p.test(path));
}

const unauthorized = (message: string) => new ApiError(401, "unauthorized", message, { headers: { "WWW-Authenticate": "Bearer" } });

/** Identify the key (scope and a short id) and enforce the publishable scope. */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
  if (!m) throw unauthorized("send the API key as 'Authorization: Bearer <key>'");
  const given = await digest(m[1]!);
  let scope: KeyScope | undefined;
  for (const d of await digests(c.env.SECRET_KEYS)) if (equal(given, d)) scope = "secret";
  for (const d of await digests(c.env.PUBLISHABLE_KEYS)) if (equal(given, d)) scope ??= "publishable";
  if (!scope) throw unauthorized("invalid API key");
  if (scope === "publishable" && !publishableMay(c.req.method, c.req.path)) {
    throw new ApiError(403, "insufficient_scope", `a publishable key may not call ${c.req.method} ${c.req.path}; use a secret key from your server`);
  }
  c.set("keyScope", scope);
  c.set("keyId", Array.from(given.slice(0, 8), (x) => x.toString(16).padStart(2, "0")).join(""));
  await next();
};

/** CORS for browsers on the allowlist (CORS_ORIGINS; "*" for any). Preflights need no key. */
export const corsPolicy: MiddlewareHandler<AppEnv> = (c, next) =>
  cors({
    origin: (origin) => {
      const allowed = c.var.config.CORS_ORIGINS;
      return allowed.includes("*") || allowed.includes(origin) ? origin : null;
    },
    allowMethods: ["GET", "POST", "PUT", "PATCH", "DELETE"],
    allowHeaders: ["Authorization", "Content-Type", "X-User-Token"],
    exposeHeaders: ["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
    maxAge: 600,
  })(c, next);

const limiters = new Map<string, Ratelimit>();

function limiter(url: string, token: string, timeoutMs: number, perMinute: number, kind: KeyScope | "user"): Ratelimit {
  const key = `${url}\n${token}\n${timeoutMs}\n${perMinute}\n${kind}`;
  let l = limiters.get(key);
  if (!l) {
    l = new Ratelimit({
      redis: redisClient(url, token, timeoutMs),
      limiter: Ratelimit.slidingWindow(perMinute, "60 s"),
      prefix: `gru:rl:${kind}`,
      timeout: timeoutMs,
      analytics: false,
    });
    limiters.set(key, l);
  }
  return l;
}

/**
 * 429 with Retry-After once a key (or publishable key and IP) exceeds its per-minute budget.
 * Reads (GET) run alongside the limiter and are answered 429 afterwards if over budget, so the
 * limiter's Redis round trip does not add to their latency; writes wait for it first.
 */
export const rateLimit: MiddlewareHandler<AppEnv> = async (c, next) => {
  const { config } = c.var;
  const scope = c.var.keyScope;
  const perMinute = scope === "secret" ? config.RATE_LIMIT_SECRET_PER_MINUTE : config.RATE_LIMIT_PUBLISHABLE_PER_MINUTE;
  if (perMinute === 0) return next();
  const ip = c.req.header("cf-connecting-ip") ?? "";
  const id = scope === "secret" ? c.var.keyId : `${c.var.keyId}:${ip}`;
  const verdict = limiter(c.env.UPSTASH_REDIS_REST_URL ?? "", c.env.UPSTASH_REDIS_REST_TOKEN ?? "", config.REDIS_TIMEOUT_MS, perMinute, scope)
    .limit(id)
    .catch((e: Error) => {
      console.warn(`rate limiter unavailable, request allowed: ${e.message}`);
      return null;
    });
  const check = async () => {
    const r = await verdict;
    if (!r) return;
    c.var.background(r.pending);
    c.header("X-RateLimit-Limit", String(r.limit));
    c.header("X-RateLimit-Remaining", String(Math.max(0, r.remaining)));
    c.header("X-RateLimit-Reset", String(Math.ceil(r.reset / 1000)));
    if (!r.success) {
      const wait = Math.max(1, Math.ceil((r.reset - Date.now()) / 1000));
      throw new ApiError(429, "rate_limited", `rate limit of ${perMinute} requests per minute exceeded; retry in ${wait} s`, {
        headers: { "Retry-After": String(wait) },
      });
    }
  };
  if (c.req.method !== "GET") {
    await check();
    return next();
  }
  await next();
  await check(); // throws 429: onError replaces the (discarded) read's response
};

/**
 * Publishable-key writes: at most RATE_LIMIT_USER_PER_MINUTE events requests per user id, whatever
 * the IP (one shopper's id cannot be flooded from many addresses). 429 with Retry-After when any
 * of `userIds` is over; an unreachable Redis lets the request through.
 */
export async function limitUsers(c: Context<AppEnv>, userIds: readonly string[]): Promise<void> {
  const perMinute = c.var.config.RATE_LIMIT_USER_PER_MINUTE;
  if (c.var.keyScope !== "publishable" || perMinute === 0 || !userIds.length) return;
  const l = limiter(c.env.UPSTASH_REDIS_REST_URL ?? "", c.env.UPSTASH_REDIS_REST_TOKEN ?? "", c.var.config.REDIS_TIMEOUT_MS, perMinute, "user");
  const verdicts = await Promise.all(
    userIds.map((id) =>
      l.limit(id).catch((e: Error) => {
        console.warn(`rate limiter unavailable, request allowed: ${e.message}`);
        return null;
      }),
    ),
  );
  const over = verdicts.filter((r) => r && !r.success) as NonNullable<(typeof verdicts)[number]>[];
  for (const r of verdicts) if (r) c.var.background(r.pending);
  if (over.length) {
    const wait = Math.max(1, Math.ceil((Math.max(...over.map((r) => r.reset)) - Date.now()) / 1000));
    throw new ApiError(429, "rate_limited", `more than ${perMinute} events requests per minute for one user; retry in ${wait} s`, {
      headers: { "Retry-After": String(wait) },
      field: "user_id",
    });
  }
}
