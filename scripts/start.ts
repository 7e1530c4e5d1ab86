/**
 * `npm start` (through scripts/start.mjs, which checks the Node version first): the whole thing
 * locally — redis-server, the Upstash REST bridge and `wrangler dev` with the bundled demo model
 * and its local D1 (migrations applied), loaded with the demo catalog. Data lives in GRU_DATA_DIR
 * (default .data: Redis in redis/, D1 in wrangler/).
 *
 * Configuration: every var of the README's table, PORT, SECRET_KEYS and PUBLISHABLE_KEYS come from
 * the environment, else from .dev.vars, else the defaults (local/dev-vars.ts).
 *
 * Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP to this process, or its parent going away (npm
 * killed, terminal closed), stop everything it started — also in the middle of starting up. If this
 * process is killed outright once the stack is up (SIGKILL), a watchdog shell stops the rest.
 */
import { join } from "node:path";
import { localConfig, passThroughNames, readDevVars } from "../local/dev-vars.ts";
import { INSTALL_HINT, redisServerPath } from "../local/redis-server.ts";
import { ROOT, type Stack, startStack, watchdog } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";
import { DEMO_SHOPPERS, demoShopperEvents, shopperId } from "./demo-shoppers.ts";
import { copyVendor } from "./vendor.ts";

// A closed terminal or pipe must not crash us before we have stopped what we started.
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

const aborter = new AbortController();
let starting: Promise<Stack> | undefined;
let cancelWatchdog: (() => void) | undefined;
let stopping = false;

/** Stop everything started so far (or still starting), then exit with `code`. */
async function shutdown(why: string, code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`\n${why}: stopping redis-server, the bridge and wrangler dev ...`);
  aborter.abort(new Error(`stopped (${why})`));
  const stack = await starting?.catch(() => undefined);
  await stack?.stop();
  cancelWatchdog?.();
  process.exit(code);
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => void shutdown(sig));
// npm runs us under `sh -c`; a signal to npm ends the shell but not us, so watch the parent too.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) void shutdown("parent process exited");
}, 500).unref();

if (!redisServerPath()) {
  console.error(INSTALL_HINT);
  process.exit(1);
}
copyVendor(); // the pages' files from packages (public/vendor)
let config;
try {
  config = localConfig({ names: passThroughNames(ROOT), env: process.env, devVars: readDevVars(ROOT) });
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
const first = (list: string) => list.split(",")[0]!.trim();
const dataDir = process.env.GRU_DATA_DIR || join(ROOT, ".data");

console.log("starting redis-server, the Upstash REST bridge and wrangler dev ...");
starting = startStack({
  port: config.port,
  apiKey: first(config.secretKeys),
  publishableKey: first(config.publishableKeys),
  dataDir: join(dataDir, "redis"),
  persistTo: join(dataDir, "wrangler"),
  vars: { ...config.vars, SECRET_KEYS: config.secretKeys, PUBLISHABLE_KEYS: config.publishableKeys, USER_TOKEN_SECRETS: config.userTokenSecrets, DEMO_LOGIN: config.demoLogin },
  verbose: process.argv.includes("--verbose"),
  signal: aborter.signal,
});
const stack = await starting.catch((e: Error): Promise<never> => {
  if (!stopping) {
    console.error(`could not start: ${e.message}`);
    process.exit(1);
  }
  return new Promise<never>(() => {}); // shutdown() exits once everything is stopped
});

void stack.worker.exited.then(() => shutdown("wrangler dev exited", 1));
// Should this process be killed outright (SIGKILL) or crash, a watchdog still stops the rest.
cancelWatchdog = watchdog({ groups: [stack.worker.pid], pids: stack.redis ? [stack.redis.pid] : [] });

let loadedBody: { stored?: number; error?: unknown } = {};
try {
  const loaded = await fetch(`${stack.url}/v1/items/batch`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(demoCatalog()),
    signal: aborter.signal,
  });
  loadedBody = (await loaded.json()) as typeof loadedBody;
  if (!loaded.ok) console.error("demo catalog not loaded:", loadedBody);
  // The demo's returning shoppers, once per data folder (their state survives restarts).
  const auth = { authorization: `Bearer ${stack.apiKey}` };
  let shoppers = "already there";
  const known = await fetch(`${stack.url}/v1/users/${shopperId(0)}`, { headers: auth, signal: aborter.signal });
  await known.body?.cancel();
  if (known.status === 404) {
    const events = demoShopperEvents(Date.now());
    const sent = await fetch(`${stack.url}/v1/events`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(events), signal: aborter.signal });
    const body = (await sent.json()) as { applied?: number; error?: { message?: string } };
    shoppers = sent.ok ? `${body.applied ?? 0} events sent` : `not sent: ${body.error?.message ?? sent.status}`;
  }
  const health = (await (await fetch(`${stack.url}/health`, { signal: aborter.signal })).json()) as any;
  const set = Object.entries(config.origin).map(([k, from]) => `${k} (${from})`);
  const cors = config.vars.CORS_ORIGINS ? `CORS_ORIGINS=${config.vars.CORS_ORIGINS}` : "no browser origins allowed (set CORS_ORIGINS)";
  console.log(`
  Recommender running at ${stack.url}   (model ${health.model?.version}, redis ${health.redis?.reachable ? "up" : "DOWN"}, D1 ${health.database?.reachable ? "up" : "DOWN"})
  Demo catalog: ${loadedBody.stored ?? 0} items (Movies > decade, 1 in 20 sold out)   API docs: ${stack.url}/docs
  Demo shoppers: ${shopperId(0)} .. ${shopperId(DEMO_SHOPPERS - 1)} (${shoppers}); batch lists for them: npm run batch -- --since-days 30
  Storefront: ${stack.url}/  (on-device scoring: ${stack.url}/?device=1)   Console: ${stack.url}/console (secret key)
  Secret key: ${stack.apiKey}   Publishable key: ${stack.publishableKey}   User-token secret: ${first(config.userTokenSecrets)}   ${cors}
  Config set: ${set.length ? set.join(", ") : "none (defaults of wrangler.toml)"}
  Data: ${dataDir} (redis-server on 127.0.0.1:${stack.redisPort}, bridge ${stack.bridge.url})

  Try it (Toy Story, Jumanji, then recommendations from the 1990s under 12 EUR, with titles):
    curl -s -X POST '${stack.url}/v1/events?recommend=5' \\
      -H 'Authorization: Bearer ${stack.publishableKey}' -H 'Content-Type: application/json' \\
      -d '[{"event_id":"e1","user_id":"alice","item_id":"1","type":"view"},{"event_id":"e2","user_id":"alice","item_id":"2","type":"view"}]'
    curl -s '${stack.url}/v1/users/alice/recommendations?k=5&category=Movies%3E1990s&max_price=12&include=metadata' -H 'Authorization: Bearer ${stack.publishableKey}'
    curl -s '${stack.url}/v1/items/1/similar?k=5&include=metadata' -H 'Authorization: Bearer ${stack.publishableKey}'
    curl -s '${stack.url}/v1/users/alice' -H 'Authorization: Bearer ${stack.apiKey}'

  A customer's own data with the publishable key needs a token your server signs (README "Signed user tokens"):
    TOKEN=$(curl -s -X POST ${stack.url}/demo/login -H 'Content-Type: application/json' -d '{"user_id":"alice"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
    curl -s '${stack.url}/v1/users/alice/state' -H 'Authorization: Bearer ${stack.publishableKey}' -H "X-User-Token: $TOKEN"

  Ctrl-C stops everything.
`);
} catch (e) {
  if (!stopping) {
    console.error(`started, but the demo catalog could not be loaded: ${(e as Error).message}`);
  }
}
