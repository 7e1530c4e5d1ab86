/**
 * GET /config.json — what the demo pages in public/ (storefront at /, console at /console) need
 * to start: the first publishable key (PUBLISHABLE_KEYS is browser-safe by design) and the model
 * name. No key needed; never a secret key (the console asks its user for one).
 *
 * POST /demo/login — the demo storefront's "sign in": a signed user token for any customer id,
 * standing in for a shop's own login (a shop signs tokens on its server after a real login). Only
 * with DEMO_LOGIN=true, which `npm start` sets; 404 everywhere else.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { ApiError } from "../errors";

import { featureApp, json } from "../lib/openapi";

import { Id } from "../lib/schemas";

import { signUserToken, tokenSecrets } from "../lib/user-token";

const PageConfig = z
  .object({
    publishable_key: z.string().nullable().openapi({ description: "The first key of PUBLISHABLE_KEYS, or null when none is set." }),
    model: z.string(),
    demo_login: z.boolean().openapi({ description: "Whether POST /demo/login signs in demo customers (DEMO_LOGIN=true, `npm start` only)." }),
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
  return c.json({ publishable_key: key, model: c.var.config.MODEL_NAME, demo_login: demoLogin(c.env) }, 200);
});

const demoLogin = (env: { DEMO_LOGIN?: string; USER_TOKEN_SECRETS?: string }) => env.DEMO_LOGIN === "true" && tokenSecrets(env.USER_TOKEN_SECRETS).length > 0;

/** Lifetime of a demo sign-in's token, seconds. */
const DEMO_TOKEN_SECONDS = 3600;

const login = createRoute({
  method: "post",
  path: "/login",
  summary: "Demo sign-in: a user token for a customer id (DEMO_LOGIN=true only)",
  tags: ["operations"],
  security: [],
  request: { body: { required: true, content: { "application/json": { schema: z.strictObject({ user_id: Id }) } } } },
  responses: {
    200: json(z.object({ user_id: z.string(), token: z.string(), expires_at: z.string() }).openapi("DemoLogin"), "A signed user token"),
    404: json(z.object({ error: z.object({ code: z.string(), message: z.string() }) }), "Demo sign-in is off"),
  },
});

export const demo = featureApp().openapi(login, async (c) => {
  if (!demoLogin(c.env)) throw new ApiError(404, "not_found", "demo sign-in is off (DEMO_LOGIN=true and USER_TOKEN_SECRETS turn it on, for the local demo only)");
  const { user_id } = c.req.valid("json");
  const now = Date.now();
  const token = await signUserToken(tokenSecrets(c.env.USER_TOKEN_SECRETS)[0]!, user_id, DEMO_TOKEN_SECONDS, now);
  c.header("Cache-Control", "no-store");
  return c.json({ user_id, token, expires_at: new Date(now + DEMO_TOKEN_SECONDS * 1000).toISOString() }, 200);
});
