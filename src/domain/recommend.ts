/**
 * Recommendations for a user: the read path and its fallback chain.
 *   model + state      -> source "model"
 *   no state           -> source "popular", reason "cold-user"
 *   state unreadable   -> source "popular", reason "state-corrupt"
 *   Redis unavailable  -> source "popular", reason "state-unavailable"
 *   model unavailable  -> source "popular", reason "model-unavailable"
 * A user with no state for the serving version who has logged events (a returning shopper after a
 * rollout) gets their state rebuilt from the log first (rebuild.ts) and is served by the model.
 * Every path applies the same rules (filters.ts). When the model cannot fill k (few candidates
 * left, or items it does not know), popular items fill the rest; each item says its source.
 * "Popular" is, in order: the event log's decayed popularity (per category when filtering by
 * one), the model's training counts, then any remaining catalog item.
 * Degradations are values, never errors.
 */
import type { CatalogMirror } from "../catalog/mirror";
import { RowMask } from "../model/row-mask";
import { whenShardsFail } from "../model/shards";
import type { ModelHandle } from "../model/registry";
import type { GruModel, Moment } from "../model/runtime";
import { type PopularLists, categoryList } from "../popular/lists";
import type { UserState } from "../state/codec";
import type { SeenFilter } from "../state/seen";
import { StoreUnavailableError, type UserStateStore } from "../state/store";
import { type Arrangement, type Candidate, DEFAULT_NEW_DAYS, type Picked, Picker, boosted, exploreSlots, isActive, isNew, pickBest, pickBestSync, withExploration } from "./arrange";
import { type Filters, type Rules, allowed, freeRows, modelMask } from "./filters";
import { warmIds, warmScores } from "./new-items";

export type Reason = "cold-user" | "state-corrupt" | "state-unavailable" | "model-unavailable" | "unknown-item" | "no-similar-graph" | "strategy";

export interface RecItem {
  item_id: string;
  /** Model score (logit or cosine) for model items; relative popularity in [0, 1] for popular ones; 0 for new arrivals the model does not know; plus `boost`. */
  score: number;
  /** `new`: a new arrival the model does not know, placed by the exploration share. */
  source: "model" | "popular" | "new";
  /** What the arrangement's boosts added to the score (absent when nothing). */
  boost?: number;
  /** Placed by the exploration share for new arrivals. */
  explore?: true;
  /** Scored by the model with a warm-start row: a catalog item it was not trained on (new-items.ts). */
  warm?: true;
}

export interface Recommendation {
  items: RecItem[];
  source: "model" | "popular";
  reason?: Reason;
  model_version: string | null;
  /** Set when the state was rebuilt from the event log for this answer (not part of the body). */
  rebuilt?: { events: number; ms: number };
}

export interface RecommendOptions extends Filters {
  k: number;
  /** Leave out the items in the user's recent ring. Default false. */
  excludeRecent?: boolean;
  /** Leave out every item of the user's seen filter (all sessions; src/state/seen.ts). Default false. */
  excludeSeen?: boolean;
}

/** What every ranking needs besides the model: the catalog and the popularity lists. */
export interface RankContext {
  catalog: CatalogMirror;
  /** Event-log popularity (null when never computed). */
  lists: PopularLists | null;
  /** The model's training popularity (manifest), the last resort before plain catalog order. */
  trained: { ids: string[]; counts: number[] };
}

/** Popular candidates in preference order, each scored relative to its list's top. */
function* popularCandidates(ctx: RankContext, category: string | undefined): Generator<[string, number]> {
  const lists = ctx.lists;
  if (lists) {
    const first = category !== undefined ? categoryList(lists, category) ?? [] : lists.overall;
    const top = first[0]?.[1] || 1;
    for (const [id, s] of first) yield [id, s / top];
    if (category !== undefined) for (const [id] of lists.overall) yield [id, 0];
  }
  const topCount = ctx.trained.counts[0] || 1;
  for (let i = 0; i < ctx.trained.ids.length; i++) yield [ctx.trained.ids[i]!, lists ? 0 : (ctx.trained.counts[i] ?? 0) / topCount];
  for (const id of ctx.catalog.ids()) yield [id, 0];
}

/** Append popular items passing `rules` until `items` holds k (boosted and capped by `rules.arrange`). */
export function fillPopular(items: RecItem[], k: number, ctx: RankContext, rules: Rules, nowMs: number = Date.now()): RecItem[] {
  if (isActive(rules.arrange)) return fillPopularArranged(items, k, ctx, rules, rules.arrange, nowMs);
  const taken = new Set(items.map((i) => i.item_id));
  for (const [id, score] of popularCandidates(ctx, rules.category)) {
    if (items.length >= k) break;
    if (taken.has(id) || !allowed(rules, id)) continue;
    taken.add(id);
    items.push({ item_id: id, score: Math.round(score * 1e6) / 1e6, source: "popular" });
  }
  return items;
}

/** Popular candidates are scanned at most this far for an arranged fill. */
const POPULAR_SCAN = 50_000;

/** Fill `picker` from the popular candidates passing `rules`, boosted and capped. */
function pickPopular(picker: Picker, ctx: RankContext, rules: Rules, a: Arrangement, nowMs: number): void {
  const gen = popularCandidates(ctx, rules.category);
  const pool: Candidate[] = [];
  const pooled = new Set<string>();
  let scanned = 0;
  let done = false;
  const pull = (want: number) => {
    while (pool.length < want && !done) {
      const n = gen.next();
      if (n.done || ++scanned > POPULAR_SCAN) {
        done = true;
        break;
      }
      const [id, score] = n.value;
      if (picker.has(id) || pooled.has(id) || !allowed(rules, id)) continue;
      pooled.add(id);
      pool.push({ item_id: id, score: Math.round(score * 1e6) / 1e6, source: "popular" });
    }
    return pool.slice(0, want);
  };
  pickBestSync(pull, Number.MAX_SAFE_INTEGER, picker, a, ctx.catalog, nowMs);
}

function fillPopularArranged(items: RecItem[], k: number, ctx: RankContext, rules: Rules, a: Arrangement, nowMs: number): RecItem[] {
  const picker = new Picker(k, a, ctx.catalog);
  for (const it of items) picker.keep(it as Picked);
  pickPopular(picker, ctx, rules, a, nowMs);
  items.splice(0, items.length, ...picker.items);
  return items;
}

/**
 * Candidates for the exploration share: new arrivals passing the rules that are not in the list
 * yet; those the model scores first (trained or warm rows, `ranked`, boosted), then the others
 * newest first.
 */
function* exploreCandidates(ctx: RankContext, ids: readonly string[], ranked: readonly Candidate[], a: Arrangement, nowMs: number): Generator<Picked> {
  const scored = new Set<string>();
  for (const c of boosted(ranked, a, ctx.catalog, nowMs)) {
    scored.add(c.item_id);
    yield c;
  }
  for (const id of ids) if (!scored.has(id)) yield { item_id: id, score: 0, source: "new" };
}

/** The list with the exploration share applied (arrange.ts withExploration). */
function explored(items: Picked[], k: number, ctx: RankContext, a: Arrangement, ids: readonly string[], ranked: readonly Candidate[], nowMs: number): Picked[] {
  const n = exploreSlots(a, k);
  if (!n) return items;
  const days = a.explore!.newDays;
  return withExploration(items, k, n, exploreCandidates(ctx, ids, ranked, a, nowMs), (id) => isNew(ctx.catalog.get(id), days, nowMs), a, ctx.catalog);
}

/** Popular items only (cold users and every fallback), with the exploration share for new arrivals. */
export function popular(ctx: RankContext, rules: Rules, k: number, reason: Reason, modelVersion: string | null, nowMs: number = Date.now()): Recommendation {
  const a = rules.arrange;
  if (!isActive(a)) return { items: fillPopular([], k, ctx, rules, nowMs), source: "popular", reason, model_version: modelVersion };
  const main = new Picker(k, a, ctx.catalog);
  pickPopular(main, ctx, rules, a, nowMs);
  const ids = exploreSlots(a, k) ? newArrivals(ctx, rules, a, nowMs).filter((id) => !main.has(id)) : [];
  return { items: explored(main.items, k, ctx, a, ids, [], nowMs), source: "popular", reason, model_version: modelVersion };
}

/** New arrivals passing the rules, newest first. */
function newArrivals(ctx: RankContext, rules: Rules, a: Arrangement, nowMs: number): string[] {
  const days = a.explore?.newDays ?? DEFAULT_NEW_DAYS;
  return ctx.catalog.arrivedSince(nowMs - days * 86_400_000).filter((id) => allowed(rules, id));
}

/** Rules for one user: their purchases and (optionally) recent or seen items are never shown. */
export function userRules(ctx: RankContext, o: RecommendOptions, purchased: ReadonlySet<string>, recent: readonly string[], seen?: SeenFilter): Rules {
  const never = new Set(purchased);
  if (o.excludeRecent === true) for (const id of recent) never.add(id);
  return { ...o, catalog: ctx.catalog, never, seen: o.excludeSeen === true ? seen : undefined };
}

/** Rank from a known state, then fill from popular items if the model could not give k. */
export async function rankFromState(
  model: GruModel,
  state: UserState,
  purchased: ReadonlySet<string>,
  ctx: RankContext,
  o: RecommendOptions,
  nowMs: number,
): Promise<Recommendation> {
  const rules = userRules(ctx, o, purchased, state.ring.map((r) => model.idOf(r)), state.seen);
  const at = model.moment(nowMs, state.eventCount === 0 ? undefined : state.lastEventMs);
  if (isActive(o.arrange)) return rankArranged(model, state.vector, at, rules, ctx, o.k, o.arrange, nowMs);
  const top = await model.topKMasked(state.vector, at, o.k, modelMask(model, rules));
  let items: RecItem[] = top.map((t) => ({ item_id: model.idOf(t.row), score: t.score, source: "model" }));
  const fresh = await newItemScores(model, ctx, rules, state.vector, at);
  if (fresh.length) items = [...items, ...fresh].sort((a, b) => b.score - a.score).slice(0, o.k);
  if (items.length < o.k) fillPopular(items, o.k, ctx, rules);
  return { items, source: "model", model_version: model.version };
}

/** The rows of `ids` the model knows. */
function rowsOf(model: GruModel, ids: Iterable<string>): number[] {
  const rows: number[] = [];
  for (const id of ids) {
    const r = model.rowOf(id);
    if (r !== undefined) rows.push(r);
  }
  return rows;
}

/** Model ranking of only these ids (those the model knows), best first. */
export async function rankOnly(model: GruModel, vector: Float32Array, at: Moment, ids: readonly string[]): Promise<Candidate[]> {
  const rows = rowsOf(model, ids);
  if (!rows.length) return [];
  const mask = RowMask.full(model.rows);
  for (const r of rows) mask.clear(r);
  const top = await model.topKMasked(vector, at, rows.length, mask);
  return top.map((t) => ({ item_id: model.idOf(t.row), score: t.score, source: "model" as const }));
}

/** Warm-row scores of the catalog items the model does not know that pass the rules, best first. */
function newItemScores(model: GruModel, ctx: RankContext, rules: Rules, vector: Float32Array, at: Moment): Promise<Candidate[]> {
  if (!ctx.catalog.restricts) return Promise.resolve([]);
  const ids = warmIds(model, ctx.catalog).filter((id) => allowed(rules, id));
  return warmScores(model, ctx.catalog, vector, at, ids);
}

/** Model ranking (trained rows and warm rows) of only these ids, best first. */
export async function rankWithWarm(model: GruModel, ctx: RankContext, vector: Float32Array, at: Moment, ids: readonly string[]): Promise<Candidate[]> {
  const [known, fresh] = await Promise.all([rankOnly(model, vector, at, ids), ctx.catalog.restricts ? warmScores(model, ctx.catalog, vector, at, ids) : []]);
  return fresh.length ? [...known, ...fresh].sort((a, b) => b.score - a.score) : known;
}

/** rankFromState under an arrangement: the model's boosted and capped top (warm rows of new items among it), popular fill, then the exploration share. */
async function rankArranged(model: GruModel, vector: Float32Array, at: Moment, rules: Rules, ctx: RankContext, k: number, a: Arrangement, nowMs: number): Promise<Recommendation> {
  const main = new Picker(k, a, ctx.catalog);
  const mask = modelMask(model, rules);
  mask.set(0);
  const fetch = async (want: number) => {
    const top = await model.topKMasked(vector, at, want, mask.copy());
    return top.map((t) => ({ item_id: model.idOf(t.row), score: t.score, source: "model" as const }));
  };
  const fresh = await newItemScores(model, ctx, rules, vector, at);
  await pickBest(fetch, freeRows(mask), main, a, ctx.catalog, nowMs, fresh);
  if (!main.full) pickPopular(main, ctx, rules, a, nowMs);
  let items: Picked[] = main.items;
  if (exploreSlots(a, k)) {
    const ids = newArrivals(ctx, rules, a, nowMs).filter((id) => !main.has(id));
    items = explored(items, k, ctx, a, ids, await rankWithWarm(model, ctx, vector, at, ids), nowMs);
  }
  return { items, source: "model", model_version: model.version };
}

export interface RecommendDeps {
  store: UserStateStore;
  model: ModelHandle;
  /**
   * Resolves once the catalog copy and popularity lists are as fresh as they can be. It is given
   * the catalog stamp read with the user's state (one Redis round trip for both).
   */
  context: (stamp?: Promise<number | null>) => Promise<RankContext>;
  /**
   * Rebuild (and store, in the background) the state of a user who has none for this model from
   * the event log; null when the log has nothing for them. Absent: no rebuild (cold user).
   */
  rebuild?: (userId: string, model: GruModel, forgottenAt: number | null) => Promise<{ state: UserState; replayed: number; ms: number } | null>;
  /** Every live model version (the registry), for strategies that name one. */
  live?: readonly ModelHandle[];
  /** The state store of a model version. */
  storeFor?: (v: { version: string; stateSize: number }) => UserStateStore;
}

/** What a ranking needs of one user: their state (or why there is none), purchases, model and context. */
export interface UserView {
  ctx: RankContext;
  purchased: ReadonlySet<string>;
  /** The serving model version (also when it could not be loaded). */
  version: string | null;
  model: GruModel | null;
  state: UserState | null;
  /** Why there is no model ranking (state or model missing). */
  reason?: Reason;
  rebuilt?: { events: number; ms: number };
}

/** Read a user's state with the model and the ranking context; rebuild a missing state from the log. */
export async function loadUser(deps: RecommendDeps, userId: string): Promise<UserView> {
  await deps.model.meta();
  const version = deps.model.known?.version ?? null;
  const reading = deps.store.read(userId).then(
    (snap) => ({ snap, error: null }),
    (e: unknown) => {
      if (!(e instanceof StoreUnavailableError)) throw e;
      console.warn(e.message);
      return { snap: null, error: e };
    },
  );
  const [loaded, ctx, read] = await Promise.all([deps.model.get(), deps.context(reading.then((r) => r.snap?.catalogRev ?? null)), reading]);
  const purchased = read.snap?.purchased ?? new Set<string>();
  const cold = (reason: Reason): UserView => ({ ctx, purchased, version, model: loaded.ok ? loaded.model : null, state: null, reason });
  if (!loaded.ok) return cold("model-unavailable");
  if (!read.snap) return cold("state-unavailable");
  if (!read.snap.state && !read.snap.raw && deps.rebuild) {
    const r = await deps.rebuild(userId, loaded.model, read.snap.forgottenAt).catch((e: Error) => {
      console.warn(`state rebuild from the event log failed, serving as a cold user: ${e.message}`);
      return null;
    });
    if (r) return { ctx, purchased, version: loaded.model.version, model: loaded.model, state: r.state, rebuilt: { events: r.replayed, ms: r.ms } };
  }
  if (!read.snap.state) return cold(read.snap.raw ? "state-corrupt" : "cold-user");
  return { ctx, purchased, version: loaded.model.version, model: loaded.model, state: read.snap.state };
}

export async function recommend(deps: RecommendDeps, userId: string, o: RecommendOptions, nowMs: number = Date.now()): Promise<Recommendation> {
  const u = await loadUser(deps, userId);
  if (!u.model || !u.state) return popular(u.ctx, userRules(u.ctx, o, u.purchased, []), o.k, u.reason ?? "cold-user", u.version, nowMs);
  const r = await whenShardsFail(rankFromState(u.model, u.state, u.purchased, u.ctx, o, nowMs), () =>
    popular(u.ctx, userRules(u.ctx, o, u.purchased, []), o.k, "model-unavailable", u.version, nowMs),
  );
  return u.rebuilt ? { ...r, rebuilt: u.rebuilt } : r;
}
