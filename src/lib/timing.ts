/**
 * Per-request timing: where a request's time goes (Redis, model, D1) and how many subrequests it
 * makes, for the `Server-Timing` header and the one JSON log line per request.
 *
 * The first middleware creates a `Timing` and runs the rest of the request inside it
 * (AsyncLocalStorage), so clients shared by every request of an isolate (the Upstash client, the
 * D1 binding, the model) attribute their calls to the right request even when requests overlap.
 * Outside a request (scripts, the cron trigger) the wrappers simply run the call.
 *
 * A metric's time is wall time during which at least one call of its kind was in flight
 * (overlapping calls are not added twice), so each metric is at most `total`. Clock: workerd's
 * `performance.now()`, which advances in whole milliseconds locally and, in production, only
 * across I/O (so there the model's pure compute reads as 0): averages over many requests are
 * unbiased, single values are coarse.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** What a timed call was. `r2` counts model-file reads, `shard` calls to item shards (Durable Objects). */
export type Kind = "redis" | "model" | "db" | "r2" | "shard";
const KINDS: readonly Kind[] = ["redis", "model", "db", "r2", "shard"];
/** Kinds that Cloudflare counts as subrequests (Upstash is a fetch; D1, R2 and Durable Objects are bindings). */
const SUBREQUEST: ReadonlySet<Kind> = new Set(["redis", "db", "r2", "shard"]);

interface Meter {
  /** Calls started. */
  calls: number;
  /** Calls in flight now. */
  active: number;
  /** When the current busy stretch began (ms). */
  since: number;
  /** Busy wall time before the current stretch (ms). */
  busy: number;
}

const now = () => performance.now();

/** One request's collector. */
export class Timing {
  /** When the request began (ms, performance.now()). */
  readonly start = now();
  /** When the response was ready (set by `finish`). */
  end: number | undefined;
  private readonly meters = new Map<Kind, Meter>(KINDS.map((k) => [k, { calls: 0, active: 0, since: 0, busy: 0 }]));
  private readonly pending = new Set<Promise<unknown>>();
  /** Busy times and call counts when the response was ready (the rest ran in the background). */
  private atEnd: { ms: Record<Kind, number>; calls: Record<Kind, number>; sub: number } | undefined;

  /**
   * Mark a call of `kind` as started (at `startedAt`, default now); call the returned function
   * when it has settled. `count: false` adds time without counting a call (a model load).
   */
  begin(kind: Kind, startedAt = now(), count = true): () => void {
    const m = this.meters.get(kind)!;
    if (count) m.calls++;
    if (m.active++ === 0) m.since = startedAt;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--m.active === 0) m.busy += now() - m.since;
    };
  }

  /** Busy wall time of `kind` so far, ms. */
  ms(kind: Kind): number {
    const m = this.meters.get(kind)!;
    return m.busy + (m.active ? now() - m.since : 0);
  }

  /** Calls of `kind` so far. */
  calls(kind: Kind): number {
    return this.meters.get(kind)!.calls;
  }

  /** Subrequests so far (every Upstash, D1 and R2 call). */
  subrequests(): number {
    let n = 0;
    for (const k of SUBREQUEST) n += this.calls(k);
    return n;
  }

  /** Track a background task (waitUntil) so the log line can wait for it. */
  track(p: Promise<unknown>): void {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.pending.add(settled);
    void settled.then(() => this.pending.delete(settled));
  }

  /** Resolves once every tracked background task has settled (including ones they add). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  /** The response is ready: freeze `total` and the metrics so far (later calls are background). */
  finish(): void {
    if (this.atEnd) return;
    this.end = now();
    const ms = {} as Record<Kind, number>;
    const calls = {} as Record<Kind, number>;
    for (const k of KINDS) {
      ms[k] = this.ms(k);
      calls[k] = this.calls(k);
    }
    this.atEnd = { ms, calls, sub: this.subrequests() };
  }

  /** Metrics up to the response (or up to now before `finish`). */
  private fg() {
    if (this.atEnd) return this.atEnd;
    const ms = {} as Record<Kind, number>;
    const calls = {} as Record<Kind, number>;
    for (const k of KINDS) {
      ms[k] = this.ms(k);
      calls[k] = this.calls(k);
    }
    return { ms, calls, sub: this.subrequests() };
  }

  /** `total` in ms (up to `finish`, or up to now). */
  total(): number {
    return (this.end ?? now()) - this.start;
  }

  /** The `Server-Timing` header value: total, redis, model, db (durations in ms) and the subrequest count. */
  header(): string {
    const f = (x: number) => x.toFixed(1);
    const { ms, calls, sub } = this.fg();
    return [
      `total;dur=${f(this.total())}`,
      `redis;dur=${f(ms.redis)};desc="${calls.redis} calls"`,
      `model;dur=${f(ms.model + ms.r2)};desc="${calls.model} runs"`,
      `db;dur=${f(ms.db)};desc="${calls.db} queries"`,
      ...(calls.shard ? [`shard;dur=${f(ms.shard)};desc="${calls.shard} calls"`] : []),
      `subreq;desc="${sub}"`,
    ].join(", ");
  }

  /**
   * The log line's fields (times in ms, rounded to 0.1): the timings and calls up to the response,
   * as in Server-Timing, and `subrequests` for the whole invocation (background included).
   */
  record(base: Record<string, unknown>): Record<string, unknown> {
    const r = (x: number) => Math.round(x * 10) / 10;
    const { ms, calls, sub } = this.fg();
    const all = this.subrequests();
    return {
      ...base,
      total_ms: r(this.total()),
      redis_ms: r(ms.redis),
      model_ms: r(ms.model + ms.r2),
      db_ms: r(ms.db),
      redis_calls: calls.redis,
      model_runs: calls.model,
      db_queries: calls.db,
      r2_reads: calls.r2,
      subrequests: all,
      subrequests_background: all - sub,
    };
  }
}

const als = new AsyncLocalStorage<Timing>();

/** Run `fn` with `timing` as the current request's collector. */
export function withTiming<T>(timing: Timing, fn: () => T): T {
  return als.run(timing, fn);
}

/** The current request's collector, if any. */
export function currentTiming(): Timing | undefined {
  return als.getStore();
}

/** Time one async call of `kind` against the current request (if there is one); `count: false` adds time only. */
export function timed<T>(kind: Kind, fn: () => Promise<T>, count = true): Promise<T> {
  const t = als.getStore();
  if (!t) return fn();
  const done = t.begin(kind, now(), count);
  let p: Promise<T>;
  try {
    p = fn();
  } catch (e) {
    done();
    throw e;
  }
  return p.finally(done);
}

/** Proxies made here -> their targets (native bindings must be given the real objects). */
const targets = new WeakMap<object, object>();
const unwrap = (a: unknown): unknown => (a && typeof a === "object" ? (targets.get(a) ?? (Array.isArray(a) ? a.map(unwrap) : a)) : a);

/**
 * `obj` with every method that returns a promise timed as `kind`; results of sync methods
 * (statement building, lookups) pass through `wrap` untimed. Methods run on the original object
 * with proxies in their arguments replaced by the originals. A method found to be sync on its
 * first call is called directly from then on (hot lookups such as `model.idOf` stay cheap).
 */
export function timedMethods<T extends object>(obj: T, kind: Kind, wrap?: (key: string | symbol, value: unknown) => unknown): T {
  const methods = new Map<string | symbol, (...args: unknown[]) => unknown>();
  const proxy = new Proxy(obj, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (typeof v !== "function") return v;
      const known = methods.get(key);
      if (known) return known;
      const fn = v as (...a: unknown[]) => unknown;
      const sync = wrap ? (...args: unknown[]) => wrap(key, fn.apply(target, args.map(unwrap))) : fn.bind(target);
      const first = (...args: unknown[]) => {
        const t = als.getStore();
        const startedAt = t ? now() : 0;
        const out = fn.apply(target, args.map(unwrap));
        if (!out || typeof (out as Promise<unknown>).then !== "function") {
          methods.set(key, sync);
          return wrap ? wrap(key, out) : out;
        }
        methods.set(key, timedAsync);
        return t ? (out as Promise<unknown>).finally(t.begin(kind, startedAt)) : out;
      };
      const timedAsync = (...args: unknown[]) => {
        const t = als.getStore();
        if (!t) return fn.apply(target, args.map(unwrap));
        const startedAt = now();
        const out = fn.apply(target, args.map(unwrap)) as Promise<unknown>;
        return out.finally(t.begin(kind, startedAt));
      };
      methods.set(key, first);
      return first;
    },
  });
  targets.set(proxy, obj);
  return proxy;
}

const d1s = new WeakMap<D1Database, D1Database>();

/** The D1 binding with every query (first/all/run/raw, batch, exec) timed as `db`; one per binding. */
export function timedD1(d1: D1Database): D1Database {
  let t = d1s.get(d1);
  if (!t) {
    const stmt = (s: unknown): unknown => timedMethods(s as D1PreparedStatement, "db", (k, v) => (k === "bind" ? stmt(v) : v));
    d1s.set(d1, (t = timedMethods(d1, "db", (k, v) => (k === "prepare" ? stmt(v) : v))));
  }
  return t;
}

const r2s = new WeakMap<R2Bucket, R2Bucket>();

/** An R2 bucket with every call timed as `r2` (model files); one per binding. */
export function timedR2(bucket: R2Bucket): R2Bucket {
  let t = r2s.get(bucket);
  if (!t) r2s.set(bucket, (t = timedMethods(bucket, "r2")));
  return t;
}
