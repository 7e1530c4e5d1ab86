/**
 * Similar items ("customers also viewed"): the items whose embeddings are closest (cosine) to the
 * seed item's, under the same rules as recommendations. An item the model was not trained on (new
 * in the catalog) takes its category's direction, and new items join trained seeds' lists the same
 * way (new-items.ts). A model without the similar graph or one that failed to load gets popular
 * items of the seed's category instead, with the reason.
 */
import type { ModelHandle } from "../model/registry";
import type { GruModel } from "../model/runtime";
import { whenShardsFail } from "../model/shards";
import { NO_ARRANGEMENT, Picker, isActive, pickBest } from "./arrange";
import { type Filters, type Rules, allowed, freeRows, modelMask } from "./filters";
import { newInSimilar, similarOfNew, warmIds } from "./new-items";
import { type RankContext, type Reason, type RecItem, type Recommendation, fillPopular } from "./recommend";

export interface SimilarOptions extends Filters {
  k: number;
  /** Items never to return besides the seed (e.g. the viewer's purchases). */
  never?: ReadonlySet<string>;
}

/** Similar items of `itemId`, or null when neither the catalog nor the model knows it. */
export async function similarItems(deps: { model: ModelHandle; context: () => Promise<RankContext> }, itemId: string, o: SimilarOptions): Promise<Recommendation | null> {
  const [loaded, ctx] = await Promise.all([deps.model.get(), deps.context()]);
  const facts = ctx.catalog.get(itemId);
  const row = loaded.ok ? loaded.model.rowOf(itemId) : undefined;
  if (!facts && loaded.ok && row === undefined) return null;
  const never = new Set(o.never ?? []);
  never.add(itemId);
  const rules: Rules = { ...o, catalog: ctx.catalog, never };
  const version = loaded.ok ? loaded.model.version : deps.model.known?.version ?? null;
  const byModel = async (m: GruModel): Promise<Recommendation | null> => {
    const mask = modelMask(m, rules);
    mask.set(0);
    if (row !== undefined) mask.set(row);
    // A new seed: its whole list from its category's direction; a trained seed: new items join by theirs (new-items.ts).
    const whole = row === undefined ? await similarOfNew(m, ctx.catalog, itemId, mask) : null;
    const fresh =
      row !== undefined && ctx.catalog.restricts ? await newInSimilar(m, ctx.catalog, row, warmIds(m, ctx.catalog).filter((id) => id !== itemId && allowed(rules, id))) : [];
    if (row !== undefined || whole) {
      // Boosts and the cap, exactly (arrange.ts); the exploration share is for user lists only.
      const a = isActive(o.arrange) ? { ...o.arrange, explore: undefined } : NO_ARRANGEMENT;
      const free = whole ? whole.free : freeRows(mask);
      const picker = new Picker(o.k, a, ctx.catalog);
      const fetch = whole
        ? whole.fetch
        : async (want: number) => (await m.similar(row!, want, mask.copy())).map((t) => ({ item_id: m.idOf(t.row), score: t.score, source: "model" as const }));
      await pickBest(fetch, free, picker, a, ctx.catalog, Date.now(), fresh);
      const items: RecItem[] = picker.items;
      if (items.length < o.k) fillPopular(items, o.k, ctx, { ...rules, arrange: isActive(o.arrange) ? a : undefined });
      return { items, source: "model", model_version: version };
    }
    return null;
  };
  // Fallback: popular items from the seed's own category unless a category was asked for.
  const popular = (reason: Reason): Recommendation => {
    const category = o.category ?? (facts?.categoryKey || undefined);
    const items = fillPopular([], o.k, ctx, { ...rules, category });
    if (items.length < o.k && category !== o.category) fillPopular(items, o.k, ctx, rules);
    return { items, source: "popular", reason, model_version: version };
  };
  if (!loaded.ok) return popular("model-unavailable");
  if (loaded.model.hasSimilar) {
    const r = await whenShardsFail(byModel(loaded.model), () => popular("model-unavailable"));
    if (r) return r;
  }
  return popular(row === undefined ? "unknown-item" : "no-similar-graph");
}
