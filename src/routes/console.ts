/**
 * /v1/console — read-only views the console page (public/console.html) needs beyond the rest of
 * the API, secret key: GET /v1/console/coverage, how much of the catalog the live model can rank.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { ApiError } from "../errors";

import { errors, featureApp, json } from "../lib/openapi";

const Coverage = z
  .object({
    model_version: z.string(),
    model_items: z.number().int().openapi({ description: "Items the model has an embedding for." }),
    catalog_items: z.number().int(),
    available: z.number().int(),
    in_model: z.number().int().openapi({ description: "Catalog items the model was trained on (the rest are ranked with warm-start rows from their category until a retrain)." }),
    available_in_model: z.number().int(),
    model_items_not_in_catalog: z.number().int(),
    by_category: z.array(z.object({ category: z.string(), items: z.number().int(), in_model: z.number().int(), available: z.number().int() })),
  })
  .openapi("Coverage");

const coverage = createRoute({
  method: "get",
  path: "/coverage",
  summary: "Catalog coverage by the live model",
  tags: ["admin"],
  responses: { 200: json(Coverage, "Coverage, overall and per category (top level and below, most items first)"), ...errors(403, 503) },
});

export const consoleViews = featureApp().openapi(coverage, async (c) => {
  const [loaded] = await Promise.all([c.var.model.get(), c.var.catalogReady()]);
  if (!loaded.ok) throw new ApiError(503, "model_unavailable", loaded.message, { headers: { "Retry-After": "5" } });
  const m = loaded.model;
  const cat = c.var.catalog;
  let available = 0;
  let inModel = 0;
  let availableInModel = 0;
  const per = new Map<string, { items: number; in_model: number; available: number }>();
  for (const id of cat.ids()) {
    const f = cat.get(id)!;
    const known = m.rowOf(id) !== undefined;
    if (f.available) available++;
    if (known) inModel++;
    if (known && f.available) availableInModel++;
    const key = f.categoryKey || "(none)";
    const p = per.get(key) ?? { items: 0, in_model: 0, available: 0 };
    p.items++;
    if (known) p.in_model++;
    if (f.available) p.available++;
    per.set(key, p);
  }
  let missing = 0;
  for (let r = 1; r < m.rows; r++) if (!cat.get(m.idOf(r))) missing++;
  const by_category = [...per].map(([category, p]) => ({ category, ...p })).sort((a, b) => b.items - a.items).slice(0, 200);
  return c.json(
    {
      model_version: m.version,
      model_items: m.rows - 1,
      catalog_items: cat.size,
      available,
      in_model: inModel,
      available_in_model: availableInModel,
      model_items_not_in_catalog: missing,
      by_category,
    },
    200,
  );
});
