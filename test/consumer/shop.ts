/**
 * A shop's server code using the typed client the way a separate project does: the package is
 * installed (a file: link), nothing of the worker's sources or Cloudflare's types is around.
 * The `@ts-expect-error` lines prove the types are real: if the client's types were lost
 * (`any`), those lines would no longer be errors and the check fails.
 */
import { type Client, createClient, signUserToken } from "gru-edge-recommender/client";

export async function forYou(gru: Client, userId: string): Promise<string[]> {
  const res = await gru.v1.users[":user_id"].recommendations.$get({ param: { user_id: userId }, query: { k: "5", include: "metadata" } });
  if (res.status !== 200) return [];
  const body = await res.json();
  const source: "model" | "popular" | string = body.source;
  // @ts-expect-error the response's `source` is a string, not a number
  const wrong: number = body.source;
  void source, wrong;
  return body.items.map((i) => `${i.item_id} ${i.item?.title ?? ""}`);
}

export async function trackPurchase(gru: Client, userId: string, itemId: string, orderLine: string) {
  await gru.v1.events.$post({ query: {}, json: { event_id: orderLine, user_id: userId, item_id: itemId, type: "purchase" } });
  // @ts-expect-error user ids are strings
  await gru.v1.events.$post({ query: {}, json: { event_id: orderLine, user_id: 42, item_id: itemId, type: "purchase" } });
}

export async function markSoldOut(gru: Client, itemId: string) {
  const r = await gru.v1.items[":item_id"].$patch({ param: { item_id: itemId }, json: { available: false } });
  // @ts-expect-error there is no route /v1/itemz
  void gru.v1.itemz;
  return r.status;
}

export const gru = createClient("https://recs.example.com", { key: "sk_live_example" });

/** After the shop's own login: the token the customer's browser sends with the publishable key. */
export async function tokenForCustomer(secret: string, customerId: string): Promise<string> {
  const token: string = await signUserToken(secret, customerId, 3600);
  // @ts-expect-error the lifetime is a number of seconds
  void signUserToken(secret, customerId, "1h");
  return token;
}

/** A search page re-ranked for the shopper: the typed client knows the body and the answer. */
export async function personalisedSearch(gru: Client, userId: string, results: string[]): Promise<string[]> {
  const res = await gru.v1.users[":user_id"].rank.$post({ param: { user_id: userId }, query: {}, json: { item_ids: results, max_per_category: 3, boosts: [{ attribute: "brand", value: "Acme", weight: 0.5 }] } });
  if (res.status !== 200) return results;
  const body = await res.json();
  const left: string[] = body.excluded;
  // @ts-expect-error item_ids is an array of ids
  void gru.v1.users[":user_id"].rank.$post({ param: { user_id: userId }, query: {}, json: { item_ids: "sku-1" } });
  return [...body.items.map((i) => i.item_id), ...left];
}
