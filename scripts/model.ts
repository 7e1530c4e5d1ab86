/**
 * `npm run model -- <command>`: the model registry from the command line (secret key).
 *
 *   list                                   versions, status, serving, metrics, digests
 *   upload <dir> [--version V] [--part-mb 32]
 *                                          verify the folder locally (every checksum in the manifest),
 *                                          upload each file with its SHA-256 (a file over --part-mb
 *                                          MiB in parts of that size), stage it (the worker verifies
 *                                          again: checksums, graphs, golden vectors)
 *   activate <version> [--shadow] [--previous auto|shadow|retire]
 *                                          serve it (or run it as a shadow: advanced, not serving);
 *                                          --previous: what happens to the version that served
 *                                          (auto: kept as a shadow when both fit the memory budget)
 *   retire <version>                       stop serving and advancing it (files kept for a rollback)
 *   rebuild <version> [--since-days 30]    rebuild active users' states for it from the event log,
 *                                          ahead of a switch (a staged version becomes a shadow first)
 *
 * Options: --url (GRU_URL, default http://127.0.0.1:8787), --key (GRU_SECRET_KEY or the first of
 * SECRET_KEYS, default sk_dev). Exit status 1 on any refusal, with the server's reason.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

export interface Client {
  url: string;
  key: string;
}

export class RegistryError extends Error {}

/** Call the admin API; throws RegistryError with the server's error message on a non-2xx. */
export async function call(c: Client, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${c.key}`, ...headers } };
  if (body instanceof Uint8Array) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const res = await fetch(`${c.url.replace(/\/+$/, "")}${path}`, init);
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new RegistryError(`${method} ${path}: ${res.status} ${json?.error?.code ?? ""}: ${json?.error?.message ?? text}`);
  return json;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The files of an exported model folder that belong to it (manifest, graphs, weights, golden). */
export function modelFiles(dir: string): { manifest: any; files: Map<string, Uint8Array> } {
  const mpath = join(dir, "manifest.json");
  if (!existsSync(mpath)) throw new RegistryError(`${dir}: no manifest.json`);
  const raw = readFileSync(mpath);
  const manifest = JSON.parse(raw.toString("utf8"));
  const shards = ((manifest.shards ?? []) as { rank?: { file: string }; score?: { file: string }; similar?: { file: string }; weights: { file: string } }[]).flatMap((s) => [s.rank?.file, s.score?.file, s.similar?.file, s.weights.file]);
  const names = [manifest.graphs?.step?.file, manifest.graphs?.score?.file, manifest.graphs?.similar?.file, manifest.weights?.file, ...shards, manifest.golden].filter(Boolean);
  const files = new Map<string, Uint8Array>([["manifest.json", raw]]);
  for (const n of names) {
    const p = join(dir, n);
    if (!existsSync(p)) throw new RegistryError(`${dir}: the manifest names ${n}, which is missing`);
    files.set(n, readFileSync(p));
  }
  const w = files.get(manifest.weights.file)!;
  if (w.byteLength !== manifest.weights.bytes || sha256(w) !== manifest.weights.sha256) {
    throw new RegistryError(`${dir}: ${manifest.weights.file} does not match the manifest's size and SHA-256 (corrupt copy?); nothing was uploaded`);
  }
  return { manifest, files };
}

/** Files larger than this are sent in parts of this size (`--part-mb`; the worker takes up to
 * MAX_MODEL_BODY_BYTES, 64 MiB by default, in one body). */
export const PART_BYTES = 32 * 2 ** 20;

/**
 * Upload a model folder and stage it; returns the staged version. `log` gets progress lines.
 * manifest.json goes first (the worker checks sizes and memory from it); a file over `partBytes`
 * is sent in parts of that size (PUT .../files/{file}/parts/{n}, one at a time).
 */
export async function upload(c: Client, dir: string, log: (s: string) => void = console.error, version?: string, partBytes = PART_BYTES): Promise<any> {
  const { manifest, files } = modelFiles(dir);
  const v = version ?? manifest.version;
  if (version && version !== manifest.version) throw new RegistryError(`--version ${version} differs from the manifest's ${manifest.version}`);
  const sums: Record<string, string> = {};
  const base = `/v1/admin/models/${encodeURIComponent(v)}/files`;
  for (const [name, bytes] of files) {
    const sum = sha256(bytes);
    const parts = name === "manifest.json" ? 1 : Math.ceil(bytes.byteLength / partBytes);
    if (parts <= 1) {
      const r = await call(c, "PUT", `${base}/${encodeURIComponent(name)}`, bytes, { "x-content-sha256": sum, "content-type": "application/octet-stream" });
      sums[name] = r.sha256;
    } else {
      for (let i = 0; i < parts; i++) {
        const part = bytes.subarray(i * partBytes, Math.min(bytes.byteLength, (i + 1) * partBytes));
        const r = await call(c, "PUT", `${base}/${encodeURIComponent(name)}/parts/${i + 1}`, part, {
          "x-content-sha256": sha256(part),
          "x-file-sha256": sum,
          "x-upload-parts": String(parts),
          "content-type": "application/octet-stream",
        });
        if (r.complete) sums[name] = r.sha256;
      }
      if (!sums[name]) throw new RegistryError(`${name}: the worker did not complete the file after its ${parts} parts`);
    }
    log(`  uploaded ${name} (${(bytes.byteLength / 1024).toFixed(1)} KiB${parts > 1 ? ` in ${parts} parts` : ""}, sha256 ${sum.slice(0, 12)}…)`);
  }
  log(`  verifying ${v} on the worker (checksums, graphs, golden vectors) ...`);
  return call(c, "POST", `/v1/admin/models/${encodeURIComponent(v)}`, { files: sums });
}

function fmtMetrics(m: Record<string, any>): string {
  const pick = (o: any) => (o && typeof o["Recall@20"] === "number" ? `R@20 ${o["Recall@20"].toFixed(4)} MRR@20 ${(o["MRR@20"] ?? 0).toFixed(4)}` : "");
  if (m.recent || m.older) return [m.recent && `recent ${pick(m.recent)}`, m.older && `older ${pick(m.older)}`].filter(Boolean).join(" · ");
  const r = m.results?.["GRU (memory)"];
  return r ? pick(r) : "";
}

async function main() {
  const { values: a, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: "string", default: process.env.GRU_URL ?? "http://127.0.0.1:8787" },
      key: { type: "string", default: process.env.GRU_SECRET_KEY ?? process.env.SECRET_KEYS?.split(",")[0] ?? "sk_dev" },
      shadow: { type: "boolean", default: false },
      previous: { type: "string" },
      version: { type: "string" },
      "since-days": { type: "string", default: "30" },
      "part-mb": { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const c: Client = { url: a.url!, key: a.key! };
  const [cmd, arg] = positionals;
  const need = (what: string) => {
    if (!arg) throw new RegistryError(`usage: npm run model -- ${cmd} <${what}>`);
    return arg;
  };
  switch (cmd) {
    case "list": {
      const r = await call(c, "GET", "/v1/admin/models");
      if (a.json) return console.log(JSON.stringify(r, null, 1));
      console.log(`serving: ${r.serving}   live: ${r.live.join(", ")}`);
      for (const v of r.versions) {
        const flag = v.serving ? "serving" : v.status === "live" ? "shadow" : v.status;
        console.log(`${v.version.padEnd(40)} ${flag.padEnd(8)} ${v.source.padEnd(7)} ${String(v.memory_mb).padStart(6)} MiB  manifest ${v.manifest_sha256.slice(0, 12)}  ${fmtMetrics(v.metrics)}`);
      }
      return;
    }
    case "upload": {
      const dir = need("dir");
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new RegistryError(`${dir} is not a folder`);
      console.error(`uploading ${dir} (${readdirSync(dir).length} files in the folder) to ${c.url} ...`);
      const partMb = Number(a["part-mb"] ?? PART_BYTES / 2 ** 20);
      if (!(partMb >= 5 && partMb <= 100)) throw new RegistryError("--part-mb: 5 to 100 (R2's smallest part, Cloudflare's largest body)");
      const v = await upload(c, dir, console.error, a.version, Math.round(partMb * 2 ** 20));
      console.log(`staged ${v.version} (${v.memory_mb} MiB per isolate). Activate it with:\n  npm run model -- activate ${v.version}${c.url !== "http://127.0.0.1:8787" ? ` --url ${c.url}` : ""}`);
      return;
    }
    case "activate": {
      const r = await call(c, "POST", `/v1/admin/models/${encodeURIComponent(need("version"))}/activate`, { shadow: a.shadow, ...(a.previous ? { previous: a.previous } : {}) });
      console.log(
        `${r.version.version} is live${a.shadow ? " as a shadow (advanced by every event, not serving)" : " and serving"}; serving: ${r.serving}; live: ${r.live.join(", ")}${r.retired?.length ? `; retired to fit the memory budget: ${r.retired.join(", ")}` : ""}`,
      );
      return;
    }
    case "retire": {
      const r = await call(c, "POST", `/v1/admin/models/${encodeURIComponent(need("version"))}/retire`);
      console.log(`${r.version.version} retired; serving: ${r.serving}; live: ${r.live.join(", ")}`);
      return;
    }
    case "rebuild": {
      const v = need("version");
      const info = await call(c, "GET", `/v1/admin/models/${encodeURIComponent(v)}`);
      if (info.status !== "live") {
        console.error(`${v} is ${info.status}: making it a live shadow first (advanced by every event from now on, not serving)`);
        await call(c, "POST", `/v1/admin/models/${encodeURIComponent(v)}/activate`, { shadow: true });
      }
      const since = Date.now() - Number(a["since-days"]) * 86_400_000;
      let after = "";
      const total = { users: 0, rebuilt: 0, kept: 0, cold: 0, events_replayed: 0, ms: 0 };
      const t0 = Date.now();
      for (;;) {
        const p = await call(c, "POST", `/v1/admin/models/${encodeURIComponent(v)}/rebuild`, { since, after_user: after, limit: 200 });
        for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += p[k];
        console.error(`  ${total.users} users: ${total.rebuilt} rebuilt (${total.events_replayed} events replayed), ${total.kept} already had a state, ${total.cold} with nothing to replay`);
        if (!p.next_after_user) break;
        after = p.next_after_user;
      }
      console.log(
        `rebuilt ${total.rebuilt} of ${total.users} active users' states for ${v} in ${((Date.now() - t0) / 1000).toFixed(1)} s${
          total.rebuilt ? ` (${(total.ms / Math.max(1, total.users)).toFixed(1)} ms per user on the worker)` : ""
        }${info.status !== "live" || !info.serving ? `; switch with: npm run model -- activate ${v}` : ""}`,
      );
      return;
    }
    default:
      console.error("usage: npm run model -- list | upload <dir> [--part-mb 32] | activate <version> [--shadow] [--previous auto|shadow|retire] | retire <version> | rebuild <version>   [--url URL --key KEY]");
      process.exit(2);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e instanceof RegistryError ? e.message : e);
    process.exit(1);
  });
}
