/**
 * One @upstash/redis client per (endpoint, token, timeout) per isolate, shared by the state store,
 * the shared cache and the rate limiter. Every call has a timeout (AbortSignal) and no
 * client-side retries: callers decide what a failure means.
 */
import { Redis } from "@upstash/redis/cloudflare";
import { timed } from "../lib/timing";
import { StoreUnavailableError } from "./store";

const clients = new Map<string, Redis>();

export function redisClient(url: string, token: string, timeoutMs: number): Redis {
  const key = `${url}\n${token}\n${timeoutMs}`;
  let redis = clients.get(key);
  if (!redis) {
    redis = new Redis({
      url,
      token,
      automaticDeserialization: false,
      enableTelemetry: false,
      readYourWrites: false,
      retry: { retries: 0 },
      signal: () => AbortSignal.timeout(timeoutMs),
    });
    // Timing hook: every REST call (one subrequest) is timed as `redis` for the current request.
    const http = (redis as unknown as { client: { request: (req: unknown) => Promise<unknown> } }).client;
    const request = http.request.bind(http);
    http.request = (req) => timed("redis", () => request(req));
    clients.set(key, redis);
  }
  return redis;
}

/** Run one Redis call; any failure becomes a StoreUnavailableError saying what and why. */
export async function guarded<T>(what: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = e as Error;
    const timeout = err.name === "TimeoutError" || err.name === "AbortError" || /abort|timeout/i.test(err.message);
    throw new StoreUnavailableError(`redis ${what} ${timeout ? `timed out after ${timeoutMs} ms` : `failed: ${err.message}`}`, { cause: e });
  }
}
