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
import type { ModelHandle } from "../model/registry";
import type { GruModel } from "../model/runtime";
import { type PopularLists, categoryList } from "../popular/lists";
import type { UserState } from "../state/codec";
import type { SeenFilter } from "../state/seen";
import { StoreUnavailableError, type UserStateStore } from "../state/store";
import { type Filters, type Rules, allowed, modelMask } from "./filters";

export type Reason = "cold-user" | "state-corrupt" | "state-unavailable" | "model-unavailable" | "unknown-item" | "no-similar-graph" | "strategy";

export interface RecItem {
  item_id: string;
  /** Model score (logit or cosine) for model items; relative popularity in [0, 1] otherwise. */
  score: number;
  source: "model" | "popular";
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

/** Append popular items passing `rules` until `items` holds k. */
export function fillPopular(items: RecItem[], k: number, ctx: RankContext, rules: Rules): RecItem[] {
  const taken = new Set(items.map((i) => i.item_id));
  for (const [id, score] of popularCandidates(ctx, rules.category)) {
    if (items.length >= k) break;
    if (taken.has(id) || !allowed(rules, id)) continue;
    taken.add(id);
    items.push({ item_id: id, score: Math.round(score * 1e6) / 1e6, source: "popular" });
  }
  return items;
}

/** Popular items only (cold users and every fallback). */
export function popular(ctx: RankContext, rules: Rules, k: number, reason: Reason, modelVersion: string | null): Recommendation {
  return { items: fillPopular([], k, ctx, rules), source: "popular", reason, model_version: modelVersion };
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
  const top = await model.topKMasked(state.vector, at, o.k, modelMask(model, rules));
  const items: RecItem[] = top.map((t) => ({ item_id: model.idOf(t.row), score: t.score, source: "model" }));
  if (items.length < o.k) fillPopular(items, o.k, ctx, rules);
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

export async function recommend(deps: RecommendDeps, userId: string, o: RecommendOptions, nowMs: number = Date.now()): Promise<Recommendation> {
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
  const cold = (reason: Reason) => popular(ctx, userRules(ctx, o, purchased, []), o.k, reason, version);
  if (!loaded.ok) return cold("model-unavailable");
  if (!read.snap) return cold("state-unavailable");
  if (!read.snap.state && !read.snap.raw && deps.rebuild) {
    const r = await deps.rebuild(userId, loaded.model, read.snap.forgottenAt).catch((e: Error) => {
      console.warn(`state rebuild from the event log failed, serving as a cold user: ${e.message}`);
      return null;
    });
    if (r) return { ...(await rankFromState(loaded.model, r.state, purchased, ctx, o, nowMs)), rebuilt: { events: r.replayed, ms: r.ms } };
  }
  if (!read.snap.state) return cold(read.snap.raw ? "state-corrupt" : "cold-user");
  return rankFromState(loaded.model, read.snap.state, purchased, ctx, o, nowMs);
}
