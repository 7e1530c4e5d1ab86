/**
 * `npm run batch -- --since-days 30 [--k 10] [--part-size 200] [--out batch.ndjson]`
 * `npm run batch -- --resume <job-id> [--out ...]`      (send the parts not done yet again)
 * `npm run batch -- --status <job-id>`
 *
 * Batch recommendations for every user active in the period (an e-mail campaign), on a
 * deployment (admin API, secret key; URL and key default to GRU_URL and GRU_SECRET_KEY, then
 * http://127.0.0.1:8787 and sk_dev, as `npm start` runs). Starts the job (a Cloudflare Queue
 * message per part; parts written as NDJSON to R2), prints its progress until it is done, then
 * saves the output (one line per user: user_id, items, source, reason, model_version).
 * Interrupting this script stops nothing: the queue goes on; `--resume` picks the job up again.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RegistryError, call as admin } from "./model.ts";

const { values: a } = parseArgs({
  options: {
    url: { type: "string", default: process.env.GRU_URL ?? "http://127.0.0.1:8787" },
    key: { type: "string", default: process.env.GRU_SECRET_KEY ?? process.env.SECRET_KEYS?.split(",")[0] ?? "sk_dev" },
    "since-days": { type: "string", default: "30" },
    k: { type: "string", default: "10" },
    "part-size": { type: "string", default: "200" },
    "exclude-seen": { type: "boolean", default: false },
    out: { type: "string" },
    resume: { type: "string" },
    status: { type: "string" },
    "timeout-s": { type: "string", default: "3600" },
  },
});

const client = { url: a.url!, key: a.key! };
const base = "/v1/admin/batch";

/** The admin API (scripts/model.ts `call`); a refusal ends the script with its message. */
async function call(method: string, path: string, body?: unknown): Promise<any> {
  try {
    return await admin(client, method, `${base}${path}`, body);
  } catch (e) {
    if (!(e instanceof RegistryError)) throw e;
    console.error(e.message);
    process.exit(1);
  }
}

const show = (j: any) => `${j.id}: ${j.status}, ${j.done_parts}/${j.parts} parts, ${j.users} users`;

async function follow(id: string): Promise<any> {
  const until = Date.now() + Number(a["timeout-s"]) * 1000;
  let last = "";
  for (;;) {
    const j = await call("GET", `/${id}`);
    const line = show(j);
    if (line !== last) console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);
    last = line;
    if (j.status === "done") return j;
    if (Date.now() > until) {
      console.error(`not done after ${a["timeout-s"]} s; the queue goes on: npm run batch -- --resume ${id}`);
      process.exit(2);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function main() {
  if (a.status) return console.log(show(await call("GET", `/${a.status}`)));
  let id: string;
  const t0 = Date.now();
  if (a.resume) {
    const r = await call("POST", `/${a.resume}/resume`);
    console.log(`${show(r)}; ${r.resent} parts sent again`);
    id = r.id;
  } else {
    const r = await call("POST", "", { since_days: Number(a["since-days"]), k: Number(a.k), part_size: Number(a["part-size"]), exclude_seen: a["exclude-seen"] });
    console.log(`started ${show(r)} (users active since ${r.since})`);
    id = r.id;
  }
  const job = await follow(id);
  const res = await fetch(`${a.url!.replace(/\/+$/, "")}${base}/${id}/output`, { headers: { authorization: `Bearer ${a.key}` } });
  const text = await res.text();
  const file = a.out ?? `batch-${id}.ndjson`;
  writeFileSync(file, text);
  const lines = text.split("\n").filter(Boolean).length;
  console.log(`${lines} lists for ${job.users} users in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${file}`);
}

await main();
