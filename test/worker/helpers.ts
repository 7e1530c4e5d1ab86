/** Helpers for tests that run inside workerd against the worker's own fetch handler. */
import { env, exports } from "cloudflare:workers";
import app from "../../src/index";

export const KEY = "test-key";

export interface Call {
  method?: string;
  body?: unknown;
  raw?: string;
  key?: string | null;
  headers?: Record<string, string>;
}

function request(path: string, o: Call = {}): Request {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.key !== null) headers.authorization ??= `Bearer ${o.key ?? KEY}`;
  let body: string | undefined;
  if (o.raw !== undefined) body = o.raw;
  else if (o.body !== undefined) body = JSON.stringify(o.body);
  if (body !== undefined) headers["content-type"] ??= "application/json";
  return new Request(`http://worker.test${path}`, { method: o.method ?? (body !== undefined ? "POST" : "GET"), headers, body });
}

/** Call the deployed-shape worker (its default export) as a client would. */
export async function api(path: string, o: Call = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await (exports as any).default.fetch(request(path, o));
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

/** Call the same app with bindings overridden (for example a Redis that is down). */
export async function apiWith(bindings: Record<string, string>, path: string, o: Call = {}) {
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
  const res = await app.fetch(request(path, o), { ...env, ...bindings } as Env, ctx);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

/** A user id no other test uses. */
export function uid(prefix = "user"): string {
  return `${prefix}-${crypto.randomUUID()}`;
}

/** Known item ids of the bundled model (most popular first). */
export { default as manifest } from "../../models/ml-small/manifest.json";

export function ev(user_id: string, item_id: string, extra: Record<string, unknown> = {}) {
  return { user_id, item_id, type: "view", ...extra };
}
