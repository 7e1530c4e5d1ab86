/**
 * How shops write an arrangement (boosts, cap per category, exploration share): as JSON in rules
 * presets and request bodies, and as query parameters on GET lists (`boost=brand:Acme^0.5,...`).
 * Both become the domain's Arrangement (src/domain/arrange.ts).
 */
import { z } from "@hono/zod-openapi";
import { CATEGORY_SEPARATOR, parseCategory } from "../catalog/schemas";
import { type Arrangement, type Boost, DEFAULT_NEW_DAYS } from "../domain/arrange";
import { ApiError } from "../errors";

export const MAX_BOOSTS = 10;
const D = {
  cap: "At most this many items of one category in the list (items without a category are not capped).",
  level: "How many levels of the category path count as one category for max_per_category (default: the whole path, the item's own leaf category).",
  explore: "Share of the list kept for new arrivals (rounded, at least one slot when above 0).",
  newDays: `An item is a new arrival for \`explore\` this many days after it entered the catalog (default ${DEFAULT_NEW_DAYS}).`,
};
const Weight = z.number().finite().min(-100).max(100).openapi({ description: "Added to the score (model scores are logits: +1 multiplies the item's odds by e; negative demotes)." });

export const BoostInput = z
  .union([
    z.strictObject({
      attribute: z.string().min(1).max(64).openapi({ description: "A catalog attribute name (scalar values: strings up to 100 characters, numbers, booleans)." }),
      value: z.union([z.string().max(100), z.number().finite(), z.boolean()]).openapi({ description: "Items whose attribute equals this (compared as text)." }),
      weight: Weight,
    }),
    z.strictObject({ category: z.string().min(1).max(900).openapi({ description: 'Items under this category ("Shoes > Running").' }), weight: Weight }),
    z.strictObject({
      new_within_days: z.number().positive().max(3650).openapi({ description: "Items that entered the catalog within this many days: the full weight at arrival, falling linearly to 0." }),
      weight: Weight,
    }),
  ])
  .openapi("Boost");
export type BoostInput = z.infer<typeof BoostInput>;

/** The arrangement fields of a rules preset or a request body. */
export const arrangeFields = {
  boosts: z.array(BoostInput).max(MAX_BOOSTS).optional().openapi({ description: `Additive boosts (at most ${MAX_BOOSTS}), applied inside the masked ranking (exact top-k).` }),
  max_per_category: z.number().int().min(1).max(1000).optional().openapi({ description: D.cap }),
  category_level: z.number().int().min(1).max(8).optional().openapi({ description: D.level }),
  explore: z.number().min(0).max(1).optional().openapi({ description: D.explore }),
  new_days: z.number().positive().max(3650).optional().openapi({ description: D.newDays }),
};
export const ArrangeInput = z.strictObject(arrangeFields);
export type ArrangeInput = z.infer<typeof ArrangeInput>;

function boostOfInput(b: BoostInput): Boost {
  if ("attribute" in b) return { weight: b.weight, attribute: { name: b.attribute, value: b.value } };
  if ("category" in b) return { weight: b.weight, category: parseCategory(b.category).join(CATEGORY_SEPARATOR) };
  return { weight: b.weight, newWithinDays: b.new_within_days };
}

/** The domain's arrangement of an input (undefined when it says nothing). */
export function arrangementOf(x: ArrangeInput | undefined): Arrangement | undefined {
  if (!x) return undefined;
  const a: Arrangement = { boosts: (x.boosts ?? []).map(boostOfInput) };
  if (x.max_per_category !== undefined) a.maxPerCategory = x.max_per_category;
  if (x.category_level !== undefined) a.categoryLevel = x.category_level;
  if (x.explore !== undefined) a.explore = { share: x.explore, newDays: x.new_days ?? DEFAULT_NEW_DAYS };
  return a;
}

/** Query parameters of an arrangement on GET lists. */
export const arrangeQuery = {
  boost: z
    .string()
    .max(4000)
    .optional()
    .openapi({
      description:
        'Comma-separated boosts `key:value^weight` (weight default 1; at most 10): `category:Shoes > Running^1`, `new:14^0.5` (arrived within 14 days, fading), any other key an attribute (`brand:Acme^0.5`). Values cannot contain "," or "^".',
      example: "brand:Acme^0.5,new:14^1",
    }),
  max_per_category: z.coerce.number().int().min(1).max(1000).optional().openapi({ description: D.cap }),
  category_level: z.coerce.number().int().min(1).max(8).optional().openapi({ description: D.level }),
  explore: z.coerce.number().min(0).max(1).optional().openapi({ description: D.explore }),
  new_days: z.coerce.number().positive().max(3650).optional().openapi({ description: D.newDays }),
};

const bad = (message: string) => new ApiError(400, "invalid_request", `query.boost: ${message}`, { field: "query.boost" });

/** Parse `boost=key:value^weight,...` into boost inputs (400 on a malformed one). */
export function parseBoostQuery(s: string): BoostInput[] {
  const parts = s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (parts.length > MAX_BOOSTS) throw bad(`at most ${MAX_BOOSTS} boosts`);
  return parts.map((p) => {
    const caret = p.lastIndexOf("^");
    const body = caret >= 0 ? p.slice(0, caret) : p;
    const weight = caret >= 0 ? Number(p.slice(caret + 1)) : 1;
    if (!Number.isFinite(weight) || Math.abs(weight) > 100 || (caret >= 0 && p.slice(caret + 1).trim() === "")) throw bad(`"${p}": the weight must be a number between -100 and 100`);
    const colon = body.indexOf(":");
    if (colon <= 0 || colon === body.length - 1) throw bad(`"${p}": expected key:value^weight`);
    const key = body.slice(0, colon).trim();
    const value = body.slice(colon + 1).trim();
    if (key === "new") {
      const days = Number(value);
      if (!(days > 0 && days <= 3650)) throw bad(`"${p}": new:<days> needs a number of days in (0, 3650]`);
      return { new_within_days: days, weight };
    }
    if (key === "category") {
      if (!parseCategory(value).length) throw bad(`"${p}": names no category`);
      return { category: value, weight };
    }
    const name = key.startsWith("attributes.") ? key.slice("attributes.".length) : key;
    if (!name || name.length > 64 || value.length > 100) throw bad(`"${p}": attribute names are 1-64 characters, values at most 100`);
    return { attribute: name, value, weight };
  });
}

/** The arrangement input of a GET list's query. */
export function arrangeFromQuery(q: { boost?: string; max_per_category?: number; category_level?: number; explore?: number; new_days?: number }): ArrangeInput | undefined {
  const out: ArrangeInput = {};
  if (q.boost !== undefined) out.boosts = parseBoostQuery(q.boost);
  if (q.max_per_category !== undefined) out.max_per_category = q.max_per_category;
  if (q.category_level !== undefined) out.category_level = q.category_level;
  if (q.explore !== undefined) out.explore = q.explore;
  if (q.new_days !== undefined) out.new_days = q.new_days;
  return Object.keys(out).length ? out : undefined;
}
