/**
 * GET /config.json — what the demo pages in public/ (storefront at /, console at /console) need
 * to start: the first publishable key (PUBLISHABLE_KEYS is browser-safe by design) and the model
 * name. No key needed; never a secret key (the console asks its user for one).
 */
import { createRoute, z } from "@hono/zod-openapi";

import { featureApp, json } from "../lib/openapi";

const PageConfig = z
  .object({
    publishable_key: z.string().nullable().openapi({ description: "The first key of PUBLISHABLE_KEYS, or null when none is set." }),
    model: z.string(),
  })
  .openapi("PageConfig");

const route = createRoute({
  method: "get",
  path: "/",
  summary: "Configuration of the demo pages",
  tags: ["operations"],
  security: [],
  responses: { 200: json(PageConfig, "The pages' configuration") },
});

export const pages = featureApp().openapi(route, (c) => {
  const key = (c.env.PUBLISHABLE_KEYS ?? "").split(",").map((k) => k.trim()).find(Boolean) ?? null;
  c.header("Cache-Control", "no-cache");
  return c.json({ publishable_key: key, model: c.var.config.MODEL_NAME }, 200);
});
