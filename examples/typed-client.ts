/**
 * Using the typed client from a shop's server (Node, Bun, another worker). Type-checked with the
 * project (`npm run typecheck`), so the example cannot drift from the API.
 *
 *   GRU_URL=http://127.0.0.1:8787 GRU_SECRET_KEY=sk_dev npx tsx examples/typed-client.ts
 */
import { createClient } from "gru-edge-recommender/client";

const gru = createClient(process.env.GRU_URL ?? "http://127.0.0.1:8787", { key: process.env.GRU_SECRET_KEY ?? "sk_dev" });

// Keep stock in sync: a partial update.
const patched = await gru.v1.items[":item_id"].$patch({ param: { item_id: "1" }, json: { available: true, price: 9.99 } });
if (patched.status === 200) console.log("in stock:", (await patched.json()).title);

// Track a purchase on the server side (idempotent: the event_id makes a retry harmless).
await gru.v1.events.$post({ query: {}, json: { event_id: "order-1001-line-1", user_id: "alice", item_id: "1", type: "purchase" } });

// Recommendations with filters and catalog fields.
const res = await gru.v1.users[":user_id"].recommendations.$get({
  param: { user_id: "alice" },
  query: { k: "5", category: "Movies > 1990s", max_price: "12", include: "metadata" },
});
if (res.status === 200) {
  const body = await res.json();
  console.log(`source: ${body.source}${body.reason ? ` (${body.reason})` : ""}`);
  for (const i of body.items) console.log(`${i.item_id}\t${i.item?.title ?? ""}\t${i.item?.price ?? ""}`);
  // A click on the first item, tied to the list (A/B experiments count it for body.variant).
  const first = body.items[0];
  if (first) await gru.v1.events.$post({ query: {}, json: { user_id: "alice", item_id: first.item_id, type: "click", rec_id: body.rec_id } });
}
