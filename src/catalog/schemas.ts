/**
 * Catalog item shapes: what a shop sends (full item or a partial update) and what it gets back.
 * Limits: ids as elsewhere (256 chars), title 500 chars, category path 8 levels of 100 chars,
 * URLs 2048 chars, attributes 8 KiB of JSON.
 */
import { z } from "@hono/zod-openapi";
import type { ItemRow } from "../../schema/schema";
import { Id } from "../lib/schemas";

export const MAX_TITLE = 500;
export const MAX_CATEGORY_DEPTH = 8;
export const MAX_ATTRIBUTES_BYTES = 8192;
/** Separator of category levels in `category_key` and in the `category` filter. */
export const CATEGORY_SEPARATOR = " > ";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const Segment = z
  .string()
  .min(1)
  .max(100)
  .refine((s) => !s.includes(">") && !CONTROL.test(s) && s.trim() === s, "a category level must not contain '>', control characters or outer spaces");

const Url = z.string().max(2048).regex(/^https?:\/\/\S+$/, "must be an http(s) URL");

const AttributeMap = z
  .record(z.string().min(1).max(64), z.unknown())
  .refine((a) => JSON.stringify(a).length <= MAX_ATTRIBUTES_BYTES, `attributes must be at most ${MAX_ATTRIBUTES_BYTES} bytes of JSON`);

/**
 * Attributes: a JSON object of up to 8 KiB. zod drops a key named "__proto__" from records
 * without a word (it would replace the parsed object's prototype), so such an attribute would be
 * silently lost: it is refused instead, before the record is parsed.
 */
const Attributes = z.preprocess((v, ctx) => {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.hasOwn(v, "__proto__")) {
    ctx.issues.push({ code: "custom", message: "an attribute must not be named __proto__", input: v, path: ["__proto__"] });
  }
  return v;
}, AttributeMap);

const fields = {
  title: z.string().min(1).max(MAX_TITLE).openapi({ example: "Trail running shoe" }),
  category_path: z.array(Segment).max(MAX_CATEGORY_DEPTH).openapi({ example: ["Shoes", "Running"] }),
  price: z.number().finite().nonnegative().max(1e12).nullable().openapi({ example: 89.9 }),
  currency: z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code such as EUR").nullable().openapi({ example: "EUR" }),
  available: z.boolean(),
  url: Url.nullable(),
  image_url: Url.nullable(),
  attributes: Attributes.openapi({ example: { brand: "Acme", color: "blue" } }),
  created_at: z
    .union([z.number().int().min(0).max(1e14), z.string().max(40).refine((s) => !Number.isNaN(Date.parse(s)), "must be an ISO 8601 time")])
    .transform((v) => (typeof v === "number" ? v : Date.parse(v)))
    .openapi({ description: "When the item arrived in the shop (ISO 8601, or ms since the epoch); default: when it was first stored. `new:` boosts and the exploration share read it.", example: "2026-11-20T00:00:00Z" }),
};

/** A full item (PUT, bulk upsert). Only `title` is required. */
export const ItemInput = z
  .strictObject({
    id: Id.optional().openapi({ description: "Required in bulk uploads; on PUT it must equal the path id when given." }),
    title: fields.title,
    category_path: fields.category_path.default([]),
    price: fields.price.optional().default(null),
    currency: fields.currency.optional().default(null),
    available: fields.available.default(true),
    url: fields.url.optional().default(null),
    image_url: fields.image_url.optional().default(null),
    attributes: fields.attributes.default({}),
    created_at: fields.created_at.optional(),
  })
  .openapi("ItemInput");
export type ItemInput = z.infer<typeof ItemInput>;

/** A partial update: any subset of the fields (PATCH, bulk with `?partial=true`). */
export const ItemPatch = z
  .strictObject({
    id: Id.optional(),
    title: fields.title.optional(),
    category_path: fields.category_path.optional(),
    price: fields.price.optional(),
    currency: fields.currency.optional(),
    available: fields.available.optional(),
    url: fields.url.optional(),
    image_url: fields.image_url.optional(),
    attributes: fields.attributes.optional(),
    created_at: fields.created_at.optional(),
  })
  .openapi("ItemPatch");
export type ItemPatch = z.infer<typeof ItemPatch>;

export const ItemSchema = z
  .object({
    id: z.string(),
    title: z.string(),
    category_path: z.array(z.string()),
    price: z.number().nullable(),
    currency: z.string().nullable(),
    available: z.boolean(),
    url: z.string().nullable(),
    image_url: z.string().nullable(),
    attributes: z.record(z.string(), z.unknown()),
    in_model: z.boolean().openapi({ description: "Whether the serving model was trained on the item (false: ranked with a warm-start row from its category until a retrain)." }),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Item");
export type Item = z.infer<typeof ItemSchema>;

/** Catalog fields returned with recommendations (`include=metadata`). */
export const ItemMetadata = ItemSchema.pick({ title: true, category_path: true, price: true, currency: true, available: true, url: true, image_url: true, attributes: true }).openapi("ItemMetadata");

/** The catalog fields of a stored row, as the API shows them. */
export function itemMetadata(r: ItemRow): z.infer<typeof ItemMetadata> {
  return {
    title: r.title,
    category_path: r.categoryPath,
    price: r.price,
    currency: r.currency,
    available: r.available,
    url: r.url,
    image_url: r.imageUrl,
    attributes: r.attributes,
  };
}

/** A stored row as the API shows it. */
export function toItem(r: ItemRow, inModel: boolean): Item {
  return { id: r.id, ...itemMetadata(r), in_model: inModel, created_at: new Date(r.createdAt).toISOString(), updated_at: new Date(r.updatedAt).toISOString() };
}

/** "Shoes > Running" -> ["Shoes", "Running"]. */
export function parseCategory(s: string): string[] {
  return s.split(">").map((x) => x.trim()).filter(Boolean);
}

/** Does an item's category key lie under `prefix` (a key, possibly several levels)? */
export function inCategory(key: string, prefix: string): boolean {
  return key === prefix || key.startsWith(prefix + CATEGORY_SEPARATOR);
}
