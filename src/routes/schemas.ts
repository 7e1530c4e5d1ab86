/**
 * Request and response shapes shared by the recommendation-style routes (user recommendations,
 * similar items, recommendations after events).
 */
import { z } from "@hono/zod-openapi";
import type { Db } from "../catalog/db";
import { getItems } from "../catalog/db";
import { CATEGORY_SEPARATOR, ItemMetadata, itemMetadata, parseCategory } from "../catalog/schemas";
import type { Filters } from "../domain/filters";
import type { Recommendation } from "../domain/recommend";
import { ApiError } from "../errors";
import { arrangeFromQuery, arrangeQuery, arrangementOf } from "../lib/arrange-input";

/** Every list names the experiment and variant that served it and its own id (src/experiments). */
export const experimentFields = {
  experiment: z.string().nullable().openapi({ description: "The experiment this list was served in (null: none runs on this placement for this user)." }),
  variant: z.string().nullable().openapi({ description: "The experiment's variant that served it." }),
  rec_id: z.string().openapi({ description: "Id of this list: send it back with clicks and add-to-carts on its items (`rec_id` on events)." }),
};

export const RecItemSchema = z.object({
  item_id: z.string(),
  score: z.number().openapi({ description: "Model score for model items; relative popularity (0..1) for popular ones; 0 for new arrivals the model does not know; each plus `boost`." }),
  source: z.enum(["model", "popular", "new"]).openapi({ description: "`new`: a new arrival the model does not know, placed by the exploration share." }),
  boost: z.number().optional().openapi({ description: "What the boosts added to the score (absent when nothing)." }),
  explore: z.literal(true).optional().openapi({ description: "Placed by the exploration share for new arrivals." }),
  warm: z.literal(true).optional().openapi({ description: "Scored by the model with a warm-start row: a catalog item it was not trained on gets the mean row of its category's items until a retrain." }),
  item: ItemMetadata.optional().openapi({ description: "Catalog fields, with include=metadata." }),
});

export const RecommendationSchema = z
  .object({
    items: z.array(RecItemSchema),
    source: z.enum(["model", "popular"]).openapi({ description: "What served the list: the GRU model, or popularity (see reason)." }),
    reason: z
      .enum(["cold-user", "state-corrupt", "state-unavailable", "model-unavailable", "unknown-item", "no-similar-graph", "strategy"])
      .optional()
      .openapi({ description: "Why popularity served it (`strategy`: the experiment variant serves popular items; `no-similar-graph`: the model has no similar graph, as large catalogs are exported)." }),
    model_version: z.string().nullable(),
    metadata_unavailable: z.boolean().optional().openapi({ description: "include=metadata was asked but the catalog could not be read in time." }),
  })
  .openapi("Recommendations");

/** A list served by a recommendation endpoint: with its experiment, variant and rec_id. */
export const TaggedRecommendationSchema = RecommendationSchema.extend(experimentFields);

const Bool = z.enum(["true", "false"]);

/** Experiment query parameters of the recommendation-style endpoints (src/experiments). */
export const experimentQuery = {
  placement: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "must be a placement name such as home or product")
    .optional()
    .openapi({ description: "Where the list is shown (experiments run per placement). Default: `home` for recommendations, `product` for similar items." }),
  variant: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .openapi({ description: "QA override: serve this variant of the placement's running experiment (secret key only; not counted in results)." }),
};
const Price = z.coerce.number().finite().nonnegative();

/** Query parameters of every recommendation-style endpoint. */
export const filterQuery = {
  k: z.coerce.number().int().min(1).max(1000).default(10).openapi({ description: "How many items (at most MAX_K, default 100)." }),
  category: z
    .string()
    .min(1)
    .max(900)
    .optional()
    .openapi({ description: 'Only items under this category, levels separated by ">" ("Shoes > Running").', example: "Shoes > Running" }),
  min_price: Price.optional(),
  max_price: Price.optional(),
  exclude: z.string().max(26_000).optional().openapi({ description: "Comma-separated item ids never to return (at most 100)." }),
  include: z.enum(["metadata"]).optional().openapi({ description: "metadata: add each item's catalog fields." }),
  ...arrangeQuery,
};

/** Filters from the parsed query, checked against the configured limits. */
export function filtersFrom(
  q: { k: number; category?: string; min_price?: number; max_price?: number; exclude?: string } & Parameters<typeof arrangeFromQuery>[0],
  maxK: number,
): Filters & { k: number } {
  if (q.k > maxK) throw new ApiError(400, "invalid_request", `query.k: must be at most ${maxK}`, { field: "query.k" });
  if (q.min_price !== undefined && q.max_price !== undefined && q.min_price > q.max_price) {
    throw new ApiError(400, "invalid_request", "query.min_price: must not exceed max_price", { field: "query.min_price" });
  }
  const exclude = q.exclude
    ? q.exclude
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
  if (exclude && exclude.length > 100) throw new ApiError(400, "invalid_request", "query.exclude: at most 100 ids", { field: "query.exclude" });
  const category = q.category !== undefined ? parseCategory(q.category).join(CATEGORY_SEPARATOR) : undefined;
  if (category === "") throw new ApiError(400, "invalid_request", "query.category: names no category", { field: "query.category" });
  return { k: q.k, category, minPrice: q.min_price, maxPrice: q.max_price, exclude, arrange: arrangementOf(arrangeFromQuery(q)) };
}

export { Bool };

/** Add catalog fields to each item (include=metadata). A slow or failing D1 read degrades to a flag. */
export async function withMetadata<T extends Recommendation>(db: Db, rec: T, timeoutMs: number): Promise<T & { metadata_unavailable?: boolean }> {
  try {
    const rows = await Promise.race([
      getItems(
        db,
        rec.items.map((i) => i.item_id),
      ),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`catalog read timed out after ${timeoutMs} ms`)), timeoutMs)),
    ]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return {
      ...rec,
      items: rec.items.map((i) => {
        const r = byId.get(i.item_id);
        if (!r) return i;
        return { ...i, item: itemMetadata(r) };
      }),
    };
  } catch (e) {
    console.warn(`metadata unavailable: ${(e as Error).message}`);
    return { ...rec, metadata_unavailable: true };
  }
}
