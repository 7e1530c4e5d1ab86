/**
 * Typed TypeScript client, generated from the app's route types by `hono/client`:
 *
 *   import { createClient } from "gru-edge-recommender/client";
 *   const gru = createClient("https://recs.example.com", { key: process.env.GRU_SECRET_KEY! });
 *   const res = await gru.v1.users[":user_id"].recommendations.$get({ param: { user_id: "u1" }, query: { k: "10" } });
 *   if (res.ok) for (const item of (await res.json()).items) console.log(item.item_id);
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
  /** A fetch implementation (default: global fetch). */
  fetch?: typeof fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

/** A client for the recommender API at `baseUrl`. */
export function createClient(baseUrl: string, o: ClientOptions) {
  return hc<AppType>(baseUrl, { headers: { ...o.headers, authorization: `Bearer ${o.key}` }, ...(o.fetch ? { fetch: o.fetch } : {}) });
}

export type Client = ReturnType<typeof createClient>;
