/**
 * `npm run retrain -- --url <deployment> --key <secret>`: retrain from the event log in one command.
 *
 *   1. export    the deployment's event log (GET /v1/events/export, resumable) and its catalog
 *   2. base      the serving version's files from the registry (checksums verified)
 *   3. train     models/training/retrain.py: prepare the log, warm start from the base (known items
 *                keep their rows, new catalog items start from their category's items), train
 *                (default: fine-tune with replay, chosen in models/INCREMENTAL.md), evaluate the
 *                base and the new model on the most recent sessions and on older ones
 *   4. export    models/training/export_shards.py: graphs, weights, manifest, golden vectors (export.py's
 *                model while it fits one isolate, else item shards)
 *   5. parity    scripts/parity.ts: onnxruntime-web (the worker's runtime) reproduces PyTorch
 *   6. upload    to the registry as `staged` (verified again by the worker)
 * then prints the report and the command that activates the new version.
 *
 * Offline: `--events <file.ndjson>` [--catalog <file.ndjson>] [--base <model folder>] trains from a
 * file (the base defaults to models/ml-small); without --url nothing is uploaded.
 * Options: --mode full|finetune|replay, --epochs N, --recent-days D, --out <folder> (default
 * .data/retrain/<time>), --python (default /usr/bin/python3).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../local/stack.ts";
import { type Client, RegistryError, call, upload } from "./model.ts";

const { values: a } = parseArgs({
  options: {
    url: { type: "string", default: process.env.GRU_URL },
    key: { type: "string", default: process.env.GRU_SECRET_KEY ?? process.env.SECRET_KEYS?.split(",")[0] ?? "sk_dev" },
    events: { type: "string" },
    catalog: { type: "string" },
    base: { type: "string" },
    mode: { type: "string" },
    epochs: { type: "string" },
    "recent-days": { type: "string" },
    out: { type: "string" },
    python: { type: "string", default: existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3" },
  },
});

if (!a.url && !a.events) {
  console.error("usage: npm run retrain -- --url <deployment> --key <secret>   |   npm run retrain -- --events <file.ndjson> [--catalog <file>] [--base <model folder>]");
  process.exit(2);
}

const STEPS = 6;
const started = Date.now();
let stepNo = 0;
const step = (what: string) => console.error(`\n[${++stepNo}/${STEPS}] ${what}  (+${((Date.now() - started) / 1000).toFixed(0)} s)`);
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const out = resolve(a.out ?? join(ROOT, ".data", "retrain", stamp));
mkdirSync(out, { recursive: true });
const client: Client | null = a.url ? { url: a.url, key: a.key! } : null;

/** Run a command, streaming its stderr (progress); resolves with its stdout. */
function run(cmd: string, args: string[], o: { echoStdout?: boolean } = {}): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      if (o.echoStdout) process.stderr.write(d);
    });
    child.stderr.on("data", (d) => process.stderr.write(d));
    child.on("error", rej);
    child.on("exit", (code) => (code === 0 ? res(stdout) : rej(new Error(`${cmd} ${args.join(" ")} exited with ${code}`))));
  });
}

async function download(c: Client, version: string, file: string, dest: string): Promise<void> {
  const res = await fetch(`${c.url.replace(/\/+$/, "")}/v1/admin/models/${encodeURIComponent(version)}/files/${encodeURIComponent(file)}`, {
    headers: { authorization: `Bearer ${c.key}` },
  });
  if (!res.ok) throw new RegistryError(`download ${version}/${file}: ${res.status} ${await res.text()}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const sum = createHash("sha256").update(bytes).digest("hex");
  const want = res.headers.get("x-content-sha256");
  if (want && want !== sum) throw new RegistryError(`download ${version}/${file}: SHA-256 ${sum}, the registry says ${want}`);
  writeFileSync(dest, bytes);
}

try {
  // 1. the event log and the catalog
  step("export the event log and the catalog");
  let events = a.events ? resolve(a.events) : join(out, "events.ndjson");
  let catalog = a.catalog ? resolve(a.catalog) : undefined;
  if (!a.events) {
    await run("npx", ["tsx", "scripts/export-events.ts", "--url", a.url!, "--key", a.key!, "--out", events]);
    const res = await fetch(`${a.url!.replace(/\/+$/, "")}/v1/admin/models/catalog`, { headers: { authorization: `Bearer ${a.key}` } });
    if (!res.ok) throw new RegistryError(`catalog export: ${res.status} ${await res.text()}`);
    catalog = join(out, "catalog.ndjson");
    writeFileSync(catalog, await res.text());
    console.error(`  catalog: ${readFileSync(catalog, "utf8").split("\n").filter(Boolean).length} items`);
  }
  const nEvents = readFileSync(events, "utf8").split("\n").filter(Boolean).length;
  console.error(`  event log: ${nEvents} events (${events})`);
  if (!nEvents) throw new RegistryError("the event log is empty: send some events first");

  // 2. the base model
  step("fetch the serving model version (warm start)");
  let base = a.base ? resolve(a.base) : join(ROOT, "models", "ml-small");
  let baseVersion = "";
  if (client && !a.base) {
    const reg = await call(client, "GET", "/v1/admin/models");
    baseVersion = reg.serving;
    const info = reg.versions.find((v: any) => v.version === baseVersion);
    base = join(out, "base");
    mkdirSync(base, { recursive: true });
    for (const f of Object.keys(info.files)) await download(client, baseVersion, f, join(base, f));
    console.error(`  ${baseVersion}: ${Object.keys(info.files).join(", ")} (checksums verified)`);
  } else {
    baseVersion = JSON.parse(readFileSync(join(base, "manifest.json"), "utf8")).version;
    console.error(`  ${baseVersion} from ${base}`);
  }
  const baseName = JSON.parse(readFileSync(join(base, "manifest.json"), "utf8")).name as string;

  // 3. prepare, train, evaluate
  step("prepare, train (warm start), evaluate on recent and older sessions");
  const ckpt = join(out, "model.pt");
  const trainArgs = ["models/training/retrain.py", "--events", events, "--base", base, "--out", ckpt, "--name", baseName];
  if (catalog) trainArgs.push("--catalog", catalog);
  if (a.mode) trainArgs.push("--mode", a.mode);
  if (a.epochs) trainArgs.push("--epochs", a.epochs, "--full-epochs", a.epochs);
  if (a["recent-days"]) trainArgs.push("--recent-days", a["recent-days"]);
  const trained = await run(a.python!, trainArgs);
  const report = JSON.parse(trained.trim().split("\n").pop()!);

  // 4. export
  // export_shards.py: export.py's single-isolate model while it fits one, else item shards.
  step("export (ONNX graphs, weights, manifest, golden vectors; item shards when the table needs them)");
  const modelDir = join(out, "model");
  const exported = JSON.parse((await run(a.python!, ["models/training/export_shards.py", "--ckpt", ckpt, "--out", modelDir, "--name", baseName])).trim().split("\n").pop()!);
  console.error(`  ${exported.version}: ${Object.entries(exported.sizes as Record<string, number>).map(([f, n]) => `${f} ${(n / 1024).toFixed(0)} KiB`).join(", ")}`);

  // 5. parity
  step("parity: the worker's runtime reproduces PyTorch");
  await run("npx", ["tsx", "scripts/parity.ts", modelDir], { echoStdout: true });

  // 6. upload
  step(client ? `upload to ${client.url} as staged` : "upload (skipped: no --url)");
  if (client) await upload(client, modelDir, (s) => console.error(s));

  const fmt = (m: any) => (m?.targets ? `Recall@20 ${m["Recall@20"].toFixed(4)}  MRR@20 ${m["MRR@20"].toFixed(4)}  (${m.targets} targets)` : "no held-out targets");
  console.log(`
Retrained ${baseVersion} -> ${exported.version} in ${((Date.now() - started) / 1000).toFixed(0)} s (mode ${report.mode}, ${report.train_events} training events of ${report.events}, ${report.users} users)
  items: ${report.items.known} known kept their rows, ${report.items.new} new (${report.items.from_category} from their category, ${report.items.from_all} from all items)
  recent sessions   base ${fmt(report.base.recent)}
                    new  ${fmt(report.retrained.recent)}
  older sessions    base ${fmt(report.base.older)}
                    new  ${fmt(report.retrained.older)}
  files: ${modelDir}
${
  client
    ? `Staged. Activate it with:\n  npm run model -- activate ${exported.version} --url ${client.url}`
    : `Upload and stage it with:\n  npm run model -- upload ${modelDir} --url <deployment>`
}`);
} catch (e) {
  console.error(`\nretrain failed: ${(e as Error).message}`);
  process.exit(1);
}
