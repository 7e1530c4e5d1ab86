/**
 * /v1/admin/placements — per-placement rules presets (secret key): filters and arrangement every
 * list served on a placement gets, inside or outside experiments (src/experiments/placements.ts).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { deletePlacementRules, placementPresets, putPlacementRules } from "../experiments/placements";
import { RulesPreset } from "../experiments/types";
import { ApiError } from "../errors";
import { errors, featureApp, json } from "../lib/openapi";

const Placement = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "must be a placement name such as home or product")
  .openapi({ param: { name: "placement", in: "path" }, example: "home" });

const PlacementRulesSchema = z
  .object({ placement: z.string(), rules: RulesPreset, updated_at: z.string() })
  .openapi("PlacementRules");

const out = (p: { placement: string; rules: z.infer<typeof RulesPreset>; updatedAt: number }) => ({ placement: p.placement, rules: p.rules, updated_at: new Date(p.updatedAt).toISOString() });

const list = createRoute({
  method: "get",
  path: "/",
  summary: "Every placement's rules preset",
  tags: ["experiments"],
  responses: { 200: json(z.object({ placements: z.array(PlacementRulesSchema) }), "The presets"), ...errors(403) },
});

const show = createRoute({
  method: "get",
  path: "/{placement}",
  summary: "A placement's rules preset",
  tags: ["experiments"],
  request: { params: z.object({ placement: Placement }) },
  responses: { 200: json(PlacementRulesSchema, "The preset"), ...errors(403, 404) },
});

const put = createRoute({
  method: "put",
  path: "/{placement}",
  summary: "Set a placement's rules preset",
  description:
    "Filters and arrangement (boosts, max_per_category, explore, ...) every list served on this placement gets, inside or outside experiments; a running experiment's variant rules go on top (their fields win, their boosts add); a request's own category and prices win, its boosts add. Other isolates apply a change within EXPERIMENT_CACHE_SECONDS.",
  tags: ["experiments"],
  request: { params: z.object({ placement: Placement }), body: { required: true, content: { "application/json": { schema: RulesPreset } } } },
  responses: { 200: json(PlacementRulesSchema, "Set"), ...errors(403) },
});

const remove = createRoute({
  method: "delete",
  path: "/{placement}",
  summary: "Remove a placement's rules preset",
  tags: ["experiments"],
  request: { params: z.object({ placement: Placement }) },
  responses: { 200: json(z.object({ placement: z.string(), deleted: z.boolean() }), "Removed (or there was none)"), ...errors(403) },
});

const opts = (cfg: { EXPERIMENT_CACHE_SECONDS: number; DB_TIMEOUT_MS: number }) => ({ maxAgeMs: 0, timeoutMs: cfg.DB_TIMEOUT_MS });

export const placements = featureApp()
  .openapi(list, async (c) => {
    const all = await placementPresets(c.var.db, opts(c.var.config));
    return c.json({ placements: [...all.values()].sort((a, b) => (a.placement < b.placement ? -1 : 1)).map(out) }, 200);
  })
  .openapi(show, async (c) => {
    const { placement } = c.req.valid("param");
    const p = (await placementPresets(c.var.db, opts(c.var.config))).get(placement);
    if (!p) throw new ApiError(404, "placement_not_found", `no rules preset for placement ${placement}`, { field: "placement" });
    return c.json(out(p), 200);
  })
  .openapi(put, async (c) => {
    const { placement } = c.req.valid("param");
    return c.json(out(await putPlacementRules(c.var.db, placement, c.req.valid("json"))), 200);
  })
  .openapi(remove, async (c) => {
    const { placement } = c.req.valid("param");
    return c.json({ placement, deleted: await deletePlacementRules(c.var.db, placement) }, 200);
  });
