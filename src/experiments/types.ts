/**
 * What an experiment is: zod schemas for its definition (shared by the admin API, the CLI and
 * the D1 rows) and the strategies a variant can serve.
 *
 * A strategy is how a variant ranks: `model` (a model version, default the served one, resolved
 * by resolveModel in models.ts), `popular` (the popularity fallback for everyone) or
 * `given_order` (re-ranking keeps the shop's order; other lists are popular), each with an
 * optional rules preset (`rules`: filters and arrangement) applied on top of the request's own.
 */
import { z } from "@hono/zod-openapi";
import { arrangeFields } from "../lib/arrange-input";

const Slug = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9_.-]*$/, "must be lower-case letters, digits, '_', '.' or '-' (starting with a letter or digit)");

/** A rules preset: applied to every list the variant serves. */
export const RulesPreset = z
  .strictObject({
    exclude_recent: z.boolean().optional().openapi({ description: "Leave out the user's recent items (overrides the request's default)." }),
    exclude_seen: z.boolean().optional().openapi({ description: "Leave out every item the user already had, across sessions (overrides the request's default)." }),
    category: z.string().min(1).max(900).optional().openapi({ description: "Only items under this category, unless the request names one." }),
    min_price: z.number().finite().nonnegative().optional(),
    max_price: z.number().finite().nonnegative().optional(),
    ...arrangeFields,
  })
  .openapi("RulesPreset", { description: "Rules and arrangement applied to every list served with it; the request's own category and prices win, its boosts add to the preset's, its cap and exploration share win." });
export type RulesPreset = z.infer<typeof RulesPreset>;

export const Strategy = z
  .discriminatedUnion("type", [
    z.strictObject({
      type: z.literal("model"),
      model_version: z
        .string()
        .min(1)
        .max(128)
        .optional()
        .openapi({ description: "A model version (default: the served model, MODEL_NAME). Resolved through the model registry." }),
      rules: RulesPreset.optional(),
    }),
    z.strictObject({ type: z.literal("popular"), rules: RulesPreset.optional() }),
    z.strictObject({ type: z.literal("given_order"), rules: RulesPreset.optional() }),
  ])
  .openapi("Strategy", {
    description:
      "How a variant ranks: a model version, the popularity fallback, or `given_order` (re-ranking keeps the shop's own order, the control of a personalised-ranking test; other lists get popular items); each with a rules preset.",
  });
export type Strategy = z.infer<typeof Strategy>;

export const Variant = z
  .strictObject({
    key: Slug.openapi({ example: "control" }),
    weight: z.number().positive().max(1e6).default(1).openapi({ description: "Relative share of traffic (normalised over the variants)." }),
    strategy: Strategy,
  })
  .openapi("Variant");
export type Variant = z.infer<typeof Variant>;

/** Hours -> ms for the attribution window. Default 24 h, at most 30 days. */
export const DEFAULT_ATTRIBUTION_HOURS = 24;

export const ExperimentInput = z
  .strictObject({
    id: Slug.openapi({ example: "home-model-vs-popular" }),
    name: z.string().min(1).max(200),
    description: z.string().max(2000).optional(),
    placement: Slug.openapi({ description: "Where lists are shown: `home` (user recommendations by default), `product` (similar items by default), or any name the storefront sends as `placement`.", example: "home" }),
    salt: z.string().min(1).max(128).optional().openapi({ description: "Hash seed (GrowthBook's `seed`); default: the id. Users are bucketed by hash(salt + user_id)." }),
    variants: z
      .array(Variant)
      .min(2)
      .max(8)
      .refine((vs) => new Set(vs.map((v) => v.key)).size === vs.length, "variant keys must be unique"),
    attribution_window_hours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(DEFAULT_ATTRIBUTION_HOURS)
      .openapi({ description: "An add-to-cart or purchase of a shown item counts for the list within this time (hours, default 24)." }),
  })
  .openapi("ExperimentInput");
export type ExperimentInput = z.infer<typeof ExperimentInput>;

export const ExperimentPatch = ExperimentInput.omit({ id: true }).partial().strict().openapi("ExperimentPatch");
export type ExperimentPatch = z.infer<typeof ExperimentPatch>;

export type Status = "draft" | "running" | "stopped";

/** An experiment as the domain uses it. */
export interface Experiment {
  id: string;
  name: string;
  description: string;
  placement: string;
  status: Status;
  salt: string;
  variants: Variant[];
  attributionWindowMs: number;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  stoppedAt: number | null;
}

export const ExperimentSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string(),
    placement: z.string(),
    status: z.enum(["draft", "running", "stopped"]),
    salt: z.string(),
    variants: z.array(Variant),
    attribution_window_hours: z.number(),
    created_at: z.string(),
    updated_at: z.string(),
    started_at: z.string().nullable(),
    stopped_at: z.string().nullable(),
  })
  .openapi("Experiment");

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The API shape of an experiment. */
export function experimentOut(e: Experiment): z.infer<typeof ExperimentSchema> {
  return {
    id: e.id,
    name: e.name,
    description: e.description,
    placement: e.placement,
    status: e.status,
    salt: e.salt,
    variants: e.variants,
    attribution_window_hours: e.attributionWindowMs / 3_600_000,
    created_at: new Date(e.createdAt).toISOString(),
    updated_at: new Date(e.updatedAt).toISOString(),
    started_at: iso(e.startedAt),
    stopped_at: iso(e.stoppedAt),
  };
}
