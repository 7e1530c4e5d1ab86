/**
 * Serving a variant's strategy: the same ranking code as outside experiments (recommend,
 * similarItems), with the model a `model` strategy names (resolveModel), or popular items for a
 * `popular` strategy (reason "strategy"), and the variant's rules preset on top of the request.
 */
import { CATEGORY_SEPARATOR, parseCategory } from "../catalog/schemas";
import { mergeArrangements } from "../domain/arrange";
import type { Filters } from "../domain/filters";
import { arrangementOf } from "../lib/arrange-input";
import { type RankContext, type Recommendation, type RecommendDeps, type RecommendOptions, fillPopular, popular, recommend, userRules } from "../domain/recommend";
import { type RankOptions, type Reranked, givenOrder, rerank, rerankPopular } from "../domain/rerank";
import { type SimilarOptions, similarItems } from "../domain/similar";
import { StoreUnavailableError } from "../state/store";
import { resolveModel } from "./models";
import type { RulesPreset, Strategy } from "./types";

/** The request's filters with a preset applied: the request's own category and prices win. */
export function withPreset<T extends Filters & { excludeRecent?: boolean; excludeSeen?: boolean }>(o: T, preset: RulesPreset | undefined): T {
  if (!preset) return o;
  const out = { ...o };
  if (preset.exclude_recent !== undefined) out.excludeRecent = preset.exclude_recent;
  if (preset.exclude_seen !== undefined) out.excludeSeen = preset.exclude_seen;
  if (out.category === undefined && preset.category !== undefined) out.category = parseCategory(preset.category).join(CATEGORY_SEPARATOR);
  if (out.minPrice === undefined && preset.min_price !== undefined) out.minPrice = preset.min_price;
  if (out.maxPrice === undefined && preset.max_price !== undefined) out.maxPrice = preset.max_price;
  out.arrange = mergeArrangements(o.arrange, arrangementOf(preset));
  return out;
}

/** Recommendations for a user under `strategy` (null: outside any experiment). */
export async function recommendWith(deps: RecommendDeps, strategy: Strategy | null, userId: string, o: RecommendOptions): Promise<Recommendation> {
  if (!strategy) return recommend(deps, userId, o);
  const opts = withPreset(o, strategy.rules);
  if (strategy.type === "model") {
    const resolved = await resolveModel(deps, strategy.model_version);
    if (resolved) return recommend({ ...deps, model: resolved.model, store: resolved.store }, userId, opts);
    const [ctx, purchased] = await Promise.all([deps.context(), purchasesOf(deps, userId)]);
    return popular(ctx, userRules(ctx, opts, purchased, []), opts.k, "model-unavailable", strategy.model_version ?? null);
  }
  const [ctx, purchased] = await Promise.all([deps.context(), purchasesOf(deps, userId)]);
  return popular(ctx, userRules(ctx, opts, purchased, []), opts.k, "strategy", deps.model.known?.version ?? null);
}

/** A shop's list re-ranked for a user under `strategy` (null: outside any experiment). */
export async function rerankWith(deps: RecommendDeps, strategy: Strategy | null, userId: string, ids: readonly string[], o: RankOptions): Promise<Reranked> {
  if (!strategy) return rerank(deps, userId, ids, o);
  const opts = withPreset(o, strategy.rules);
  if (strategy.type === "model") {
    const resolved = await resolveModel(deps, strategy.model_version);
    if (resolved) return rerank({ ...deps, model: resolved.model, store: resolved.store }, userId, ids, opts);
    const [ctx, purchased] = await Promise.all([deps.context(), purchasesOf(deps, userId)]);
    return rerankPopular(ctx, purchased, ids, opts, "model-unavailable", strategy.model_version ?? null, Date.now());
  }
  const [ctx, purchased] = await Promise.all([deps.context(), purchasesOf(deps, userId)]);
  if (strategy.type === "given_order") return givenOrder(ctx, purchased, ids, opts, deps.model.known?.version ?? null);
  return rerankPopular(ctx, purchased, ids, opts, "strategy", deps.model.known?.version ?? null, Date.now());
}

async function purchasesOf(deps: RecommendDeps, userId: string): Promise<ReadonlySet<string>> {
  try {
    return (await deps.store.read(userId)).purchased;
  } catch (e) {
    if (e instanceof StoreUnavailableError) return new Set();
    throw e;
  }
}

/** Similar items under `strategy` (null: outside any experiment); null when the item is unknown. */
export async function similarWith(deps: RecommendDeps, strategy: Strategy | null, itemId: string, o: SimilarOptions): Promise<Recommendation | null> {
  if (!strategy) return similarItems(deps, itemId, o);
  const opts = withPreset(o, strategy.rules);
  if (strategy.type === "model") {
    const resolved = await resolveModel(deps, strategy.model_version);
    if (resolved) return similarItems({ model: resolved.model, context: deps.context }, itemId, opts);
    return popularSimilar(deps, itemId, opts, "model-unavailable");
  }
  return popularSimilar(deps, itemId, opts, "strategy");
}

/** Popular items of the seed's category (then overall), as similarItems' own fallback does. */
async function popularSimilar(deps: RecommendDeps, itemId: string, o: SimilarOptions, reason: "strategy" | "model-unavailable"): Promise<Recommendation | null> {
  const [loaded, ctx] = await Promise.all([deps.model.get(), deps.context()]);
  const facts = ctx.catalog.get(itemId);
  if (!facts && !(loaded.ok && loaded.model.rowOf(itemId) !== undefined)) return null;
  const never = new Set(o.never ?? []);
  never.add(itemId);
  const rules = { ...o, catalog: ctx.catalog, never };
  const category = o.category ?? (facts?.categoryKey || undefined);
  const items = fillPopular([], o.k, ctx as RankContext, { ...rules, category });
  if (items.length < o.k && category !== o.category) fillPopular(items, o.k, ctx, rules);
  return { items, source: "popular", reason, model_version: deps.model.known?.version ?? null };
}
