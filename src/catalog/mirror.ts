/**
 * A per-isolate copy of what filtering and arranging need from the catalog (availability, price,
 * category, arrival time, short scalar attributes),
 * kept in step with D1 by revision: `sync` reads only rows changed since the last one. It syncs
 * when the shared revision stamp (published by every catalog write) moved, and at least every
 * `maxStaleMs` in case a stamp was lost. Lookups are then memory reads on the request path.
 */
import { itemKeys } from "../model/item-keys";
import type { GruModel } from "../model/runtime";
import { RowMask } from "../model/row-mask";
import { inCategory } from "./schemas";
import { type Db, itemsChangedSince } from "./db";
import { sql } from "drizzle-orm";

export interface ItemFacts {
  available: boolean;
  /** NaN when the item has no price. */
  price: number;
  categoryKey: string;
  /** When the item entered the catalog, epoch ms (0 when unknown). */
  createdMs: number;
  /** Scalar attributes (strings up to 100 characters, numbers, booleans) for boosts; absent when none. */
  attrs?: Readonly<Record<string, string | number | boolean>>;
}

const MAX_ATTR_STRING = 100;

/** The attributes boosts can match: scalars only, long strings dropped (memory per item stays small). */
export function scalarAttributes(json: string | null | Record<string, unknown>): Record<string, string | number | boolean> | undefined {
  if (!json) return undefined;
  let parsed: unknown = json;
  if (typeof json === "string") {
    try {
      parsed = JSON.parse(json);
    } catch {
      return undefined;
    }
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  let out: Record<string, string | number | boolean> | undefined;
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === "number" ? Number.isFinite(v) : typeof v === "boolean" || (typeof v === "string" && v.length <= MAX_ATTR_STRING)) {
      (out ??= Object.create(null) as Record<string, string | number | boolean>)[k] = v as string | number | boolean;
    }
  }
  return out;
}

/** Catalog facts aligned to one model's embedding rows (index = row). */
export interface RowView {
  /** The model mask of the catalog alone: the padding row and every row not in the catalog or not
   * available (a copy is the start of a request's mask). */
  mask: RowMask;
  /** The category key of a row's item (undefined when the catalog does not have it). */
  categoryOf(row: number): string | undefined;
  /** Set every row of `mask` whose item is not under `category` (when given) or whose price is
   * outside [minPrice, maxPrice] (when either is given; no price: outside). */
  restrict(mask: RowMask, rules: { category?: string; minPrice?: number; maxPrice?: number }): void;
}

const PAGE = 5000;

/** Category masks a row view keeps (the most recently asked; N/8 bytes each). */
const CATEGORY_MASKS = 16;

/**
 * The catalog facts in columns indexed by the isolate's item keys (item-keys.ts): typed arrays for
 * the facts, category keys interned, attributes only where an item has some. The id strings and
 * their lookup table are shared with the loaded models: at a million items the columns take 22 bytes
 * an item and the copy 52 in all with its ids' keys (it took 76 with its own id -> slot map, and a
 * Map of fact objects about 280; Node, `--expose-gc`).
 */
class FactColumns {
  private live = new Uint8Array(1024);
  private available = new Uint8Array(1024);
  private price = new Float64Array(1024);
  private created = new Float64Array(1024);
  private category = new Uint32Array(1024);
  private readonly attrs = new Map<number, Readonly<Record<string, string | number | boolean>>>();
  private readonly categories: string[] = [];
  private readonly categoryIndex = new Map<string, number>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Live ids, in key order (the order the isolate first met them). */
  *keys(): IterableIterator<string> {
    const n = Math.min(this.live.length, itemKeys.size + 1);
    for (let k = 1; k < n; k++) if (this.live[k]) yield itemKeys.id(k);
  }

  /** Live keys, in key order. */
  liveKeys(): number[] {
    const out: number[] = [];
    const n = Math.min(this.live.length, itemKeys.size + 1);
    for (let k = 1; k < n; k++) if (this.live[k]) out.push(k);
    return out;
  }

  /** Sort order of live keys: newest first, equal times by id (as strings order). */
  readonly newestFirst = (a: number, b: number): number => this.created[b]! - this.created[a]! || itemKeys.compare(a, b);

  /** When key k's item entered the catalog. */
  createdAt(k: number): number {
    return this.created[k]!;
  }

  private at(id: string): number {
    const k = itemKeys.find(id);
    return k < this.live.length && this.live[k] ? k : 0;
  }

  get(id: string): ItemFacts | undefined {
    const i = this.at(id);
    if (!i) return undefined;
    const a = this.attrs.get(i);
    return { available: this.available[i] === 1, price: this.price[i]!, categoryKey: this.categories[this.category[i]!]!, createdMs: this.created[i]!, ...(a ? { attrs: a } : {}) };
  }

  /** Is key k live and available (the rows of a model read their facts by key). */
  okAt(k: number): boolean {
    return k > 0 && k < this.live.length && this.live[k] === 1 && this.available[k] === 1;
  }

  /** The category key of key k (undefined when not live). */
  categoryAt(k: number): string | undefined {
    return k > 0 && k < this.live.length && this.live[k] ? this.categories[this.category[k]!] : undefined;
  }

  /**
   * Set every row r of `mask` not set yet whose item (key `keys[r]`) is not under `category`
   * (when given) or has no price in [lo, hi] (when `price`): one test per category key, then one
   * pass over the rows reading the columns.
   */
  restrict(keys: Int32Array, mask: RowMask, category: string | undefined, price: boolean, lo: number, hi: number): void {
    const under = category === undefined ? undefined : Uint8Array.from(this.categories, (c) => (inCategory(c, category) ? 1 : 0));
    const live = this.live;
    const n = live.length;
    const bits = mask.bits;
    for (let r = 1; r < mask.rows; r++) {
      if ((bits[r >> 3]! >> (r & 7)) & 1) continue;
      const k = keys[r]!;
      let out = k <= 0 || k >= n || !live[k];
      if (!out && under) out = !under[this.category[k]!];
      if (!out && price) {
        const p = this.price[k]!;
        out = !(p >= lo && p <= hi);
      }
      if (out) bits[r >> 3]! |= 1 << (r & 7);
    }
  }

  set(id: string, f: ItemFacts): void {
    const i = itemKeys.key(id);
    if (i >= this.live.length) this.grow(i + 1);
    if (!this.live[i]) {
      this.live[i] = 1;
      this.count++;
    }
    let c = this.categoryIndex.get(f.categoryKey);
    if (c === undefined) {
      c = this.categories.push(f.categoryKey) - 1;
      this.categoryIndex.set(f.categoryKey, c);
    }
    this.available[i] = f.available ? 1 : 0;
    this.price[i] = f.price;
    this.created[i] = f.createdMs;
    this.category[i] = c;
    if (f.attrs) this.attrs.set(i, f.attrs);
    else this.attrs.delete(i);
  }

  delete(id: string): void {
    const i = this.at(id);
    if (!i) return;
    this.live[i] = 0;
    this.count--;
    this.attrs.delete(i);
  }

  clear(): void {
    this.live.fill(0);
    this.attrs.clear();
    this.count = 0;
  }

  private grow(need: number): void {
    let n = this.live.length;
    while (n < need) n *= 2;
    const more = <T extends Uint8Array | Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a as never);
      return b;
    };
    this.live = more(this.live, (k) => new Uint8Array(k));
    this.available = more(this.available, (k) => new Uint8Array(k));
    this.price = more(this.price, (k) => new Float64Array(k));
    this.created = more(this.created, (k) => new Float64Array(k));
    this.category = more(this.category, (k) => new Uint32Array(k));
  }
}

export class CatalogMirror {
  private readonly facts = new FactColumns();
  private rev = 0;
  private lastId = "";
  private stampSeen = -1;
  private syncedAt = 0;
  private changes = 0;
  private syncing: Promise<void> | undefined;
  private newest: { changes: number; keys: Int32Array } | undefined;
  private views = new WeakMap<GruModel, { changes: number; view: RowView }>();

  /** Live (not deleted) items in the catalog. */
  get size(): number {
    return this.facts.size;
  }

  /** When the catalog is empty nothing is restricted to it (a shop that has not synced yet). */
  get restricts(): boolean {
    return this.facts.size > 0;
  }

  get(id: string): ItemFacts | undefined {
    return this.facts.get(id);
  }

  /** Live item ids (in the order the isolate first met them: see item-keys.ts). */
  ids(): IterableIterator<string> {
    return this.facts.keys();
  }

  /** How old the copy is, ms. */
  age(nowMs = Date.now()): number {
    return this.syncedAt ? nowMs - this.syncedAt : Infinity;
  }

  /**
   * Sync when needed. `stamp`: the shared revision stamp (null when it could not be read).
   * Once a copy exists, a sync slower than `timeoutMs` is not waited for (it goes on, and the
   * request uses the copy it has); a first sync is always waited for, since without a copy the
   * availability rules cannot be applied. Returns false when the request uses a stale copy.
   */
  async refresh(db: Db, stamp: number | null, maxStaleMs: number, timeoutMs: number, nowMs = Date.now()): Promise<boolean> {
    const moved = stamp !== null && stamp !== this.stampSeen;
    if (!moved && this.age(nowMs) <= maxStaleMs) return true;
    try {
      const sync = this.sync(db, stamp);
      if (!this.syncedAt) await sync;
      else {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`sync slower than ${timeoutMs} ms`)), timeoutMs)));
        sync.catch(() => undefined);
        await Promise.race([sync, late]).finally(() => clearTimeout(timer));
      }
      return true;
    } catch (e) {
      console.warn(`catalog sync failed, using a copy ${Math.round(this.age(nowMs) / 1000)} s old: ${(e as Error).message}`);
      return false;
    }
  }

  /** Read every row changed since the last sync (concurrent callers share one sync). */
  sync(db: Db, stamp: number | null = null): Promise<void> {
    this.syncing ??= this.pull(db, stamp).finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async pull(db: Db, stamp: number | null) {
    const started = Date.now();
    const top = await db.get<{ rev: number | null }>(sql`SELECT max(rev) AS rev FROM items`);
    if (Number(top?.rev ?? 0) < this.rev) {
      // The database is older than this copy (restored, or a fresh local one): start over.
      this.facts.clear();
      this.rev = 0;
      this.lastId = "";
    }
    // The views derived from the copy (rowView, arrivedSince, the warm rows) are rebuilt once per
    // pull, not once per page: a first sync of a large catalog reads hundreds of pages, and requests
    // served meanwhile keep the views of the copy as it was (a copy being synced is stale anyway).
    let changed = false;
    try {
      for (;;) {
        const rows = await itemsChangedSince(db, this.rev, this.lastId, PAGE);
        for (const r of rows) {
          if (r.deleted) this.facts.delete(r.id);
          else {
            const attrs = scalarAttributes(r.attributes);
            this.facts.set(r.id, { available: !!r.available, price: r.price ?? Number.NaN, categoryKey: r.category_key, createdMs: Number(r.created_at) || 0, ...(attrs ? { attrs } : {}) });
          }
          this.rev = r.rev;
          this.lastId = r.id;
        }
        if (rows.length) changed = true;
        if (rows.length < PAGE) break;
      }
    } finally {
      if (changed) this.changes++;
    }
    if (stamp !== null) this.stampSeen = stamp;
    this.syncedAt = started;
  }

  /** Apply a write this isolate just made without waiting for the next sync. */
  note(id: string, facts: ItemFacts | null) {
    if (facts) this.facts.set(id, facts);
    else this.facts.delete(id);
    this.changes++;
  }

  /**
   * Live item ids that entered the catalog at or after `sinceMs`, newest first (the sorted list is
   * rebuilt only after the catalog changed).
   */
  arrivedSince(sinceMs: number): string[] {
    if (!this.newest || this.newest.changes !== this.changes) {
      // keys, not ids: the isolate keeps each id once (item-keys.ts), and only the arrivals asked for become strings
      this.newest = { changes: this.changes, keys: Int32Array.from(this.facts.liveKeys().sort(this.facts.newestFirst)) };
    }
    const out: string[] = [];
    for (const k of this.newest.keys) {
      if (!(this.facts.createdAt(k) >= sinceMs)) break;
      out.push(itemKeys.id(k));
    }
    return out;
  }

  /**
   * Live catalog ids whose key (item-keys.ts) `known` says no to (the items a model was not trained
   * on), newest first, at most `limit`: one pass over the keys, only those sorted, only the kept
   * ones made strings.
   */
  unknownTo(known: (key: number) => boolean, limit: number): string[] {
    const out = this.facts.liveKeys().filter((k) => !known(k));
    return out.sort(this.facts.newestFirst).slice(0, limit).map((k) => itemKeys.id(k));
  }

  /** Catalog facts per model row (the mask rebuilt only after the catalog changed; the rest read
   * through the model's row keys, nothing copied per row). */
  rowView(model: GruModel): RowView {
    const cached = this.views.get(model);
    if (cached && cached.changes === this.changes) return cached.view;
    const keys = model.rowKeys;
    const facts = this.facts;
    const categories = new Map<string, RowMask>();
    const mask = new RowMask(model.rows);
    mask.set(0);
    for (let r = 1; r < model.rows; r++) if (!facts.okAt(keys[r]!)) mask.set(r);
    const view: RowView = {
      mask,
      categoryOf: (row) => facts.categoryAt(keys[row]!),
      restrict: (m, { category, minPrice, maxPrice }) => {
        if (category !== undefined) {
          // A category's rows (1 bit a row: not under it) are kept for the catalog version: the
          // pass over the columns reads them in key order, not row order (tens of ms at 1M rows).
          let outside = categories.get(category);
          if (outside) categories.delete(category);
          else {
            outside = new RowMask(model.rows);
            facts.restrict(keys, outside, category, false, 0, 0);
            if (categories.size >= CATEGORY_MASKS) categories.delete(categories.keys().next().value!);
          }
          categories.set(category, outside);
          m.add(outside);
        }
        if (minPrice !== undefined || maxPrice !== undefined) facts.restrict(keys, m, undefined, true, minPrice ?? -Infinity, maxPrice ?? Infinity);
      },
    };
    this.views.set(model, { changes: this.changes, view });
    return view;
  }
}

/** The isolate's mirror of the catalog (one DB binding per worker). */
export const catalogMirror = new CatalogMirror();
