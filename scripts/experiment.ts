/**
 * `npm run experiment -- <command> [options]`: A/B experiments on a deployment (admin API,
 * secret key). URL and key default to GRU_URL and GRU_SECRET_KEY (then http://127.0.0.1:8787,
 * sk_dev).
 *
 *   list [--status running]
 *   create --id ID --placement home --variant control=popular --variant model=model[:VERSION][@WEIGHT]
 *          [--name NAME] [--salt SALT] [--window-hours 24]          (or --file definition.json)
 *   show ID | start ID | stop ID | delete ID
 *   results ID [--sequential] [--tau 0.1] [--cuped] [--pre-days 14] [--control KEY] [--json]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Results } from "../src/experiments/results";
import { formatResults } from "./experiment-report.ts";

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: process.env.GRU_URL ?? "http://127.0.0.1:8787" },
    key: { type: "string", default: process.env.GRU_SECRET_KEY ?? process.env.SECRET_KEYS?.split(",")[0] ?? "sk_dev" },
    id: { type: "string" },
    name: { type: "string" },
    placement: { type: "string" },
    variant: { type: "string", multiple: true },
    salt: { type: "string" },
    "window-hours": { type: "string" },
    file: { type: "string" },
    status: { type: "string" },
    sequential: { type: "boolean", default: false },
    tau: { type: "string" },
    cuped: { type: "boolean", default: false },
    "pre-days": { type: "string" },
    control: { type: "string" },
    json: { type: "boolean", default: false },
  },
});

const base = `${a.url!.replace(/\/+$/, "")}/v1/admin/experiments`;

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${a.key}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const out: any = await res.json().catch(() => null);
  if (!res.ok) {
    console.error(`${method} ${path || "/"}: ${res.status} ${out?.error?.code ?? ""}: ${out?.error?.message ?? JSON.stringify(out)}`);
    process.exit(1);
  }
  return out;
}

/** `key=popular`, `key=model`, `key=model:VERSION`, each optionally `@WEIGHT`. */
function parseVariant(s: string) {
  const m = /^([^=]+)=(popular|model)(?::([^@]+))?(?:@([0-9.]+))?$/.exec(s);
  if (!m) throw new Error(`--variant ${s}: expected KEY=popular or KEY=model[:VERSION], optionally @WEIGHT`);
  const strategy = m[2] === "popular" ? { type: "popular" } : { type: "model", ...(m[3] ? { model_version: m[3] } : {}) };
  return { key: m[1], weight: m[4] ? Number(m[4]) : 1, strategy };
}

const show = (e: any) =>
  `${e.id}\t${e.status}\t${e.placement}\t${e.variants.map((v: any) => `${v.key}=${v.strategy.type}${v.strategy.model_version ? `:${v.strategy.model_version}` : ""}@${v.weight}`).join(" ")}\t${e.started_at ?? "-"}\t${e.stopped_at ?? "-"}`;

const [cmd, id] = positionals;
const need = () => {
  if (!id) {
    console.error(`usage: npm run experiment -- ${cmd} <id>`);
    process.exit(2);
  }
  return encodeURIComponent(id);
};

switch (cmd) {
  case "list": {
    const q = a.status ? `?status=${encodeURIComponent(a.status)}` : "";
    const r = await call("GET", q);
    console.log("id\tstatus\tplacement\tvariants\tstarted\tstopped");
    for (const e of r.experiments) console.log(show(e));
    break;
  }
  case "create": {
    const body = a.file
      ? JSON.parse(readFileSync(a.file, "utf8"))
      : {
          id: a.id,
          name: a.name ?? a.id,
          placement: a.placement ?? "home",
          ...(a.salt ? { salt: a.salt } : {}),
          ...(a["window-hours"] ? { attribution_window_hours: Number(a["window-hours"]) } : {}),
          variants: (a.variant ?? []).map(parseVariant),
        };
    console.log(show(await call("POST", "", body)));
    break;
  }
  case "show":
    console.log(JSON.stringify(await call("GET", `/${need()}`), null, 2));
    break;
  case "start":
  case "stop":
    console.log(show(await call("POST", `/${need()}/${cmd}`)));
    break;
  case "delete":
    await call("DELETE", `/${need()}`);
    console.log(`deleted ${id}`);
    break;
  case "results": {
    const q = new URLSearchParams();
    if (a.sequential) q.set("sequential", "true");
    if (a.tau) q.set("tau", a.tau);
    if (a.cuped) q.set("cuped", "true");
    if (a["pre-days"]) q.set("pre_period_days", a["pre-days"]);
    if (a.control) q.set("control", a.control);
    const r = (await call("GET", `/${need()}/results?${q}`)) as Results;
    console.log(a.json ? JSON.stringify(r, null, 2) : formatResults(r));
    break;
  }
  default:
    console.error("usage: npm run experiment -- list | create ... | show ID | start ID | stop ID | delete ID | results ID [--sequential] [--cuped] [--json]");
    process.exit(2);
}
