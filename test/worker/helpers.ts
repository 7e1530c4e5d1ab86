/** Helpers for tests that run inside workerd against the worker's own fetch handler. */
import { env, exports } from "cloudflare:workers";
import { expect, onTestFinished, vi } from "vitest";
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
import manifest from "../../models/ml-small/manifest.json";
export { manifest };

export function ev(user_id: string, item_id: string, extra: Record<string, unknown> = {}) {
  return { user_id, item_id, type: "view", ...extra };
}

/** The publishable key of the test worker (events and recommendations only). */
export const PK = "pk_test";

/** Fetch raw text (NDJSON export). */
export async function apiText(path: string, o: Call = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await (exports as any).default.fetch(request(path, o));
  // Decoded by hand: workerd warns when .text() reads a body whose type is not text (NDJSON).
  return { status: res.status, text: new TextDecoder().decode(await res.arrayBuffer()), headers: res.headers };
}

/** Logged events of a user (the log is written after the response: poll until `n` are there). */
export async function logged(userId: string, n: number, timeoutMs = 10_000): Promise<any[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await apiText(`/v1/events/export?user_id=${encodeURIComponent(userId)}`);
    const lines = r.text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    if (lines.length >= n || Date.now() > until) return lines;
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** A catalog item body. */
export function item(id: string, extra: Record<string, unknown> = {}) {
  return { id, title: `Item ${id}`, category_path: ["Misc"], price: 10, currency: "EUR", available: true, ...extra };
}

/**
 * The first `k` ids a cold user should get right now: the event log's popularity list when one
 * was computed (Redis is shared by all test files), else the model's training popularity.
 */
export async function expectedPopular(k: number, call: typeof api = api): Promise<string[]> {
  const r = await call(`/v1/admin/popular?top=${k}`);
  const lists: string[] = r.body.computed_at ? r.body.overall.map((x: [string, number]) => x[0]) : [];
  return [...new Set([...lists, ...manifest.popular.ids])].slice(0, k);
}

/**
 * Check that a cold-start answer is the current popularity, tolerating a background refresh of
 * the shared lists between the two reads (the expectation is taken before and after).
 */
export async function expectPopularNow(items: { item_id: string }[], k: number, before: string[]): Promise<void> {
  const got = items.map((i) => i.item_id);
  const after = await expectedPopular(k);
  if (JSON.stringify(got) !== JSON.stringify(before)) expect(got).toEqual(after);
}

/**
 * Capture console.warn and console.error for the rest of the current test: a test that provokes
 * a degradation asserts the warning it expects (`expect(logs.text()).toMatch(...)`) instead of
 * printing it into the test output.
 */
export function captureLogs(): { lines: string[]; text(): string } {
  const lines: string[] = [];
  const show = (a: unknown) => (a instanceof Error ? (a.stack ?? a.message) : typeof a === "string" ? a : JSON.stringify(a));
  const spies = (["warn", "error"] as const).map((m) => vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void lines.push(args.map(show).join(" "))));
  onTestFinished(() => {
    for (const s of spies) s.mockRestore();
  });
  return { lines, text: () => lines.join("\n") };
}

/**
 * A new item's similar-item scores as the API should give them, from the API's own pairwise
 * cosines of the trained items it takes its direction from: w = Σ ê_i / |Σ ê_i|, so
 * cos(w, e_j) = Σ_i cos(i, j) / sqrt(Σ_i Σ_l cos(i, l)). `query` narrows the similar lists (e.g. to
 * the items' category); `newId` is left out of them. Returns the expected score of a
 * trained item j, and the new item's score in a trained seed's list: the seed's mean cosine with
 * the other items, Σ_{i != seed} cos(seed, i) / (n - 1).
 */
export async function newItemCosines(items: readonly string[], query: string, newId: string) {
  const cos = new Map<string, number>();
  for (const i of items) {
    cos.set(`${i}|${i}`, 1);
    const sim = await api(`/v1/items/${i}/similar?k=${items.length}&${query}`);
    for (const it of sim.body.items) if (it.item_id !== newId) cos.set(`${i}|${it.item_id}`, it.score);
  }
  const norm = Math.sqrt(items.reduce((s, i) => s + items.reduce((t, l) => t + cos.get(`${i}|${l}`)!, 0), 0));
  return {
    expected: (j: string) => items.reduce((s, i) => s + cos.get(`${i}|${j}`)!, 0) / norm,
    /** The new item's score in trained `seed`'s list. */
    inSeedList: (seed: string) => items.reduce((s, i) => s + (i === seed ? 0 : cos.get(`${seed}|${i}`)!), 0) / (items.length - 1),
  };
}
