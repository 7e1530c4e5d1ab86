/**
 * `npm start`: the whole thing locally — redis-server (data kept in .data/redis), the Upstash
 * REST bridge and `wrangler dev` with the bundled demo model. PORT (default 8787) and API_KEY
 * (default "dev-key") come from the environment. Ctrl-C stops everything it started.
 */
import { INSTALL_HINT, redisServerPath } from "../local/redis-server.ts";
import { startStack } from "../local/stack.ts";

if (!redisServerPath()) {
  console.error(INSTALL_HINT);
  process.exit(1);
}
console.log("starting redis-server, the Upstash REST bridge and wrangler dev ...");
const stack = await startStack({ verbose: process.argv.includes("--verbose") });
const health = (await (await fetch(`${stack.url}/health`)).json()) as any;
console.log(`
  Recommender running at ${stack.url}   (model ${health.model?.version}, redis ${health.redis?.reachable ? "up" : "DOWN"})
  API key: ${stack.apiKey}   Redis data: .data/redis (port ${stack.redisPort})

  Try it (Toy Story, Jumanji, then recommendations):
    curl -s -X POST '${stack.url}/v1/events?recommend=5' \\
      -H 'Authorization: Bearer ${stack.apiKey}' -H 'Content-Type: application/json' \\
      -d '[{"event_id":"e1","user_id":"alice","item_id":"1","type":"view"},{"event_id":"e2","user_id":"alice","item_id":"2","type":"view"}]'
    curl -s '${stack.url}/v1/users/alice/recommendations?k=5' -H 'Authorization: Bearer ${stack.apiKey}'
    curl -s '${stack.url}/v1/users/alice' -H 'Authorization: Bearer ${stack.apiKey}'

  Item ids are MovieLens movieIds (titles: models/ml-small/titles.json). Ctrl-C stops everything.
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
