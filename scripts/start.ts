/**
 * `npm start`: the whole thing locally — redis-server (data kept in .data/redis), the Upstash
 * REST bridge and `wrangler dev` with the bundled demo model and its local D1 (.data/wrangler,
 * migrations applied), loaded with the demo catalog. PORT (default 8787), SECRET_KEYS (default
 * "sk_dev") and PUBLISHABLE_KEYS (default "pk_dev") come from the environment. Ctrl-C stops
 * everything it started.
 */
import { INSTALL_HINT, redisServerPath } from "../local/redis-server.ts";
import { startStack } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";
import { copyVendor } from "./vendor.ts";

if (!redisServerPath()) {
  console.error(INSTALL_HINT);
  process.exit(1);
}
copyVendor(); // the pages' files from packages (public/vendor)
console.log("starting redis-server, the Upstash REST bridge and wrangler dev ...");
const stack = await startStack({ verbose: process.argv.includes("--verbose"), vars: { CORS_ORIGINS: "*" } });
const catalog = demoCatalog();
const loaded = await fetch(`${stack.url}/v1/items/batch`, {
  method: "POST",
  headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
  body: JSON.stringify(catalog),
});
const loadedBody = (await loaded.json()) as { stored?: number; error?: unknown };
if (!loaded.ok) console.error("demo catalog not loaded:", loadedBody);
const health = (await (await fetch(`${stack.url}/health`)).json()) as any;
console.log(`
  Recommender running at ${stack.url}   (model ${health.model?.version}, redis ${health.redis?.reachable ? "up" : "DOWN"}, D1 ${health.database?.reachable ? "up" : "DOWN"})
  Demo catalog: ${loadedBody.stored ?? 0} items (Movies > decade, 1 in 20 sold out)   API docs: ${stack.url}/docs
  Storefront: ${stack.url}/  (on-device scoring: ${stack.url}/?device=1)   Console: ${stack.url}/console (secret key)
  Secret key: ${stack.apiKey}   Publishable key: ${stack.publishableKey}   Data: .data/redis, .data/wrangler

  Try it (Toy Story, Jumanji, then recommendations from the 1990s under 12 EUR, with titles):
    curl -s -X POST '${stack.url}/v1/events?recommend=5' \\
      -H 'Authorization: Bearer ${stack.publishableKey}' -H 'Content-Type: application/json' \\
      -d '[{"event_id":"e1","user_id":"alice","item_id":"1","type":"view"},{"event_id":"e2","user_id":"alice","item_id":"2","type":"view"}]'
    curl -s '${stack.url}/v1/users/alice/recommendations?k=5&category=Movies%3E1990s&max_price=12&include=metadata' -H 'Authorization: Bearer ${stack.publishableKey}'
    curl -s '${stack.url}/v1/items/1/similar?k=5&include=metadata' -H 'Authorization: Bearer ${stack.publishableKey}'
    curl -s '${stack.url}/v1/users/alice' -H 'Authorization: Bearer ${stack.apiKey}'

  Ctrl-C stops everything.
`);
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping ...");
  await stack.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
