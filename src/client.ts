/**
 * Typed TypeScript client, generated from the app's route types by `hono/client`:
 *
 *   import { createClient } from "gru-edge-recommender/client";
 *   const gru = createClient("https://recs.example.com", { key: process.env.GRU_SECRET_KEY! });
 *   const res = await gru.v1.users[":user_id"].recommendations.$get({ param: { user_id: "u1" }, query: { k: "10" } });
 *   if (res.ok) for (const item of (await res.json()).items) console.log(item.item_id);
 *
 * On the shop's server, `signUserToken(secret, customerId)` makes the token a browser needs to act
 * for a signed-in customer with a publishable key (README "Signed user tokens").
 *
 * Request and response bodies are checked by the compiler against the API's zod schemas.
 * Other projects get it compiled (`npm run build:client`: dist/client.js and a declaration that
 * spells out every route's types, so they need no worker sources or Cloudflare types); keep this
 * module's exports free of the worker's own types, or the build refuses.
 */
import { hc } from "hono/client";
import type { AppType } from "./index";

export interface ClientOptions {
  /** A secret key (server side) or a publishable key (browser). */
  key: string;
  /** With a publishable key: the customer's signed user token (`signUserToken`), sent as X-User-Token. */
  userToken?: string;
  /** A fetch implementation (default: global fetch). */
  fetch?: typeof fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

/** A client for the recommender API at `baseUrl`. */
export function createClient(baseUrl: string, o: ClientOptions) {
  const headers: Record<string, string> = { ...o.headers, authorization: `Bearer ${o.key}` };
  if (o.userToken) headers["x-user-token"] = o.userToken;
  return hc<AppType>(baseUrl, { headers, ...(o.fetch ? { fetch: o.fetch } : {}) });
}

/**
 * Sign a user token on the shop's server (never in a browser: the secret is one of the worker's
 * USER_TOKEN_SECRETS): `signUserToken(process.env.GRU_USER_TOKEN_SECRET!, customerId, 3600)`.
 * Hand it to the page with the customer's session; the snippet sends it (`identify(id, { token })`).
 */
export { signUserToken } from "./lib/user-token";

export type Client = ReturnType<typeof createClient>;
