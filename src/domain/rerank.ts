/**
 * Re-ranking a shop's own list (search results, a category page) for one shopper: the given items
 * in the model's order with scores, under the same rules as recommendations (items that fail them
 * are returned in `excluded`, never ranked) and the same arrangement (boosts, cap per category,
 * exploration share). Items the model does not know follow the model's items in popularity order;
 * a cold user or any degradation gets the whole list in popularity order with the reason.
 * Over-cap items are not dropped (the shop asked for all of them): they follow the capped list.
 */
import { whenShardsFail } from "../model/shards";
import { type Arrangement, type Candidate, type Picked, Picker, boosted, exploreSlots, isNew, withExploration } from "./arrange";
import { allowed } from "./filters";
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import { type RankContext, type Reason, type RecItem, type RecommendOptions, type RecommendDeps, type Recommendation, loadUser, rankWithWarm, userRules } from "./recommend";

/** At most this many items per re-rank request. */
export const MAX_RANK_ITEMS = 500;

export type RankOptions = Omit<RecommendOptions, "k">;

export interface Reranked extends Recommendation {
  /** Given items the rules leave out (unavailable, purchased, excluded, outside the filters), in the given order. */
  excluded: string[];
}

/**
 * The given ids in popularity order, as popular lists rank: the event log's decayed popularity,
 * then the model's training counts; ids neither knows keep their given order at the end.
 */
export function popularityOrder(ctx: RankContext, ids: readonly string[]): Candidate[] {
  const place = new Map<string, [number, number]>();
  const overall = ctx.lists?.overall ?? [];
  const top = overall[0]?.[1] || 1;
  overall.forEach(([id, s], i) => place.set(id, [i, s / top]));
  const topCount = ctx.trained.counts[0] || 1;
  ctx.trained.ids.forEach((id, i) => {
    if (!place.has(id)) place.set(id, [overall.length + i, overall.length ? 0 : (ctx.trained.counts[i] ?? 0) / topCount]);
  });
  return ids
    .map((id, i) => ({ id, p: place.get(id)?.[0] ?? Number.MAX_SAFE_INTEGER, i, s: place.get(id)?.[1] ?? 0 }))
    .sort((a, b) => a.p - b.p || a.i - b.i)
    .map(({ id, s }) => ({ item_id: id, score: Math.round(s * 1e6) / 1e6, source: "popular" as const }));
}

/** The exploration share of a re-ranked list applies to its first page: this many positions. */
export const RANK_EXPLORE_PAGE = 20;

/**
 * Order candidates (already best-first) under the arrangement: the cap (over-cap items follow the
 * capped list, none is dropped), then the exploration share on the first page (new arrivals from
 * further down move up to evenly spaced slots when the page has fewer than its share).
 */
export function arrangeAll(ordered: readonly Candidate[], a: Arrangement, ctx: RankContext, nowMs: number): RecItem[] {
  const main = new Picker(ordered.length, a, ctx.catalog);
  const over: Picked[] = [];
  for (const c of ordered) if (!main.offer(c as Picked)) over.push(c as Picked);
  const all = [...main.items, ...over];
  const page = Math.min(RANK_EXPLORE_PAGE, all.length);
  const n = exploreSlots(a, page);
  if (!n) return all;
  const days = a.explore!.newDays;
  const fresh = all.slice(page).filter((p) => isNew(ctx.catalog.get(p.item_id), days, nowMs));
  const head = withExploration(all.slice(0, page), page, n, fresh, (id) => isNew(ctx.catalog.get(id), days, nowMs), { ...a, maxPerCategory: undefined }, ctx.catalog);
  const inHead = new Set(head.map((p) => p.item_id));
  return [...head, ...all.filter((p) => !inHead.has(p.item_id))];
}

/** Boost each source's candidates (model items first, then the others), then arrange them. */
function finish(groups: readonly Candidate[][], a: Arrangement | undefined, ctx: RankContext, nowMs: number): RecItem[] {
  const arr = a ?? { boosts: [] };
  const ordered = groups.flatMap((g) => boosted(g, arr, ctx.catalog, nowMs));
  return arrangeAll(ordered, arr, ctx, nowMs);
}

function split(ctx: RankContext, ids: readonly string[], rules: Parameters<typeof allowed>[0]) {
  const seen = new Set<string>();
  const ok: string[] = [];
  const excluded: string[] = [];
  for (const id of ids) {
    if (seen.has(id)) continue;
    seen.add(id);
    (allowed(rules, id) ? ok : excluded).push(id);
  }
  return { ok, excluded };
}

/** Re-rank from a known state: model order for the items it knows, popularity for the rest. */
export async function rerankFromState(
  model: GruModel,
  state: UserState,
  purchased: ReadonlySet<string>,
  ctx: RankContext,
  ids: readonly string[],
  o: RankOptions,
  nowMs: number,
): Promise<Reranked> {
  const rules = userRules(ctx, { ...o, k: ids.length }, purchased, state.ring.map((r) => model.idOf(r)), state.seen);
  const { ok, excluded } = split(ctx, ids, rules);
  const at = model.moment(nowMs, state.eventCount === 0 ? undefined : state.lastEventMs);
  const ranked = await rankWithWarm(model, ctx, state.vector, at, ok);
  const known = new Set(ranked.map((c) => c.item_id));
  const rest = popularityOrder(
    ctx,
    ok.filter((id) => !known.has(id)),
  );
  return { items: finish([ranked, rest], o.arrange, ctx, nowMs), source: "model", model_version: model.version, excluded };
}

/** Re-rank without a model ranking: popularity order, with the reason. */
export function rerankPopular(ctx: RankContext, purchased: ReadonlySet<string>, ids: readonly string[], o: RankOptions, reason: Reason, version: string | null, nowMs: number): Reranked {
  const rules = userRules(ctx, { ...o, k: ids.length }, purchased, []);
  const { ok, excluded } = split(ctx, ids, rules);
  return { items: finish([popularityOrder(ctx, ok)], o.arrange, ctx, nowMs), source: "popular", reason, model_version: version, excluded };
}

/** Re-rank `ids` for a user (the read path of recommend(): state, rebuild, degradations). */
export async function rerank(deps: RecommendDeps, userId: string, ids: readonly string[], o: RankOptions, nowMs: number = Date.now()): Promise<Reranked> {
  const u = await loadUser(deps, userId);
  if (!u.model || !u.state) return rerankPopular(u.ctx, u.purchased, ids, o, u.reason ?? "cold-user", u.version, nowMs);
  const r = await whenShardsFail(rerankFromState(u.model, u.state, u.purchased, u.ctx, ids, o, nowMs), () =>
    rerankPopular(u.ctx, u.purchased, ids, o, "model-unavailable", u.version, nowMs),
  );
  return u.rebuilt ? { ...r, rebuilt: u.rebuilt } : r;
}

/** The shop's own order, the rules applied (the `given_order` strategy: a personalised ranking's control). */
export function givenOrder(ctx: RankContext, purchased: ReadonlySet<string>, ids: readonly string[], o: RankOptions, version: string | null): Reranked {
  const { ok, excluded } = split(ctx, ids, userRules(ctx, { ...o, k: ids.length }, purchased, []));
  return { items: ok.map((id) => ({ item_id: id, score: 0, source: "popular" })), source: "popular", reason: "strategy", model_version: version, excluded };
}
