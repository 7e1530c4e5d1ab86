/**
 * What `npm start` hands the worker: every documented var and secret, taken from the environment
 * first, then from `.dev.vars` (dotenv syntax, next to wrangler.toml), then the local defaults
 * (keys `sk_dev` / `pk_dev`, user-token secret `ut_dev`, the demo sign-in on; everything else as in wrangler.toml and the README, so CORS_ORIGINS
 * stays empty unless set). The Redis endpoint is never taken from either: the local stack always
 * runs its own redis-server and bridge.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { CONFIG_VARS } from "../src/config.ts";

/** Secrets and key lists the worker reads besides the validated config (src/config.ts). */
export const KEY_VARS = ["SECRET_KEYS", "PUBLISHABLE_KEYS", "USER_TOKEN_SECRETS", "DEMO_LOGIN"] as const;

/** Set by the local stack itself (its own bridge); ignored in the environment and .dev.vars. */
export const STACK_VARS = ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"] as const;

/**
 * Every var name `npm start` passes through: the config's, the keys, wrangler.toml's [vars] and
 * the README's configuration table (vars some module reads on its own, such as REQUEST_LOG).
 */
export function passThroughNames(root: string): string[] {
  const names = new Set<string>([...CONFIG_VARS, ...KEY_VARS, ...wranglerVarNames(root), ...readmeConfigNames(root)]);
  for (const n of STACK_VARS) names.delete(n);
  return [...names].sort();
}

/** The var and secret names in the first column of `<root>/README.md`'s "Configuration" table (bindings and the cron left out). */
export function readmeConfigNames(root: string): string[] {
  const file = join(root, "README.md");
  if (!existsSync(file)) return [];
  const readme = readFileSync(file, "utf8");
  const at = readme.indexOf("\n## Configuration");
  if (at < 0) return [];
  const section = readme.slice(at + 1);
  const end = section.indexOf("\n## ");
  const names = new Set<string>();
  for (const line of (end < 0 ? section : section.slice(0, end)).split("\n")) {
    const first = line.split("|")[1] ?? "";
    if (!line.startsWith("| ") || /binding|cron/.test(first)) continue;
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) names.add(m[1]!);
  }
  return [...names];
}

/** Names in the `[vars]` table of `<root>/wrangler.toml` (one `NAME = value` per line). */
export function wranglerVarNames(root: string): string[] {
  const file = join(root, "wrangler.toml");
  if (!existsSync(file)) return [];
  const names: string[] = [];
  let inVars = false;
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) inVars = line === "[vars]";
    else if (inVars) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line);
      if (m) names.push(m[1]!);
    }
  }
  return names;
}

/** The contents of `<root>/.dev.vars` as name -> value (empty when there is no such file). */
export function readDevVars(root: string): Record<string, string> {
  const file = join(root, ".dev.vars");
  return existsSync(file) ? (parseEnv(readFileSync(file, "utf8")) as Record<string, string>) : {};
}

export interface LocalConfig {
  /** Worker port: PORT, default 8787. */
  port: number;
  /** Bearer secret key(s): SECRET_KEYS, default "sk_dev". */
  secretKeys: string;
  /** Publishable key(s): PUBLISHABLE_KEYS, default "pk_dev". */
  publishableKeys: string;
  /** Secret(s) signing user tokens: USER_TOKEN_SECRETS, default "ut_dev". */
  userTokenSecrets: string;
  /** The demo storefront's sign-in (POST /demo/login): DEMO_LOGIN, default "true" (local only). */
  demoLogin: string;
  /** Every other documented var that is set (environment over .dev.vars), to pass as worker vars. */
  vars: Record<string, string>;
  /** Where each value came from, for the start banner: name -> "env" | ".dev.vars". */
  origin: Record<string, "env" | ".dev.vars">;
}

/**
 * Merge the environment over `.dev.vars` over the local defaults. Empty strings count as set
 * (`CORS_ORIGINS=` in the environment overrides an allowlist in .dev.vars).
 */
export function localConfig(o: { names: string[]; env: Record<string, string | undefined>; devVars: Record<string, string> }): LocalConfig {
  const origin: LocalConfig["origin"] = {};
  const pick = (name: string): string | undefined => {
    if (o.env[name] !== undefined) {
      origin[name] = "env";
      return o.env[name];
    }
    if (o.devVars[name] !== undefined) {
      origin[name] = ".dev.vars";
      return o.devVars[name];
    }
    return undefined;
  };
  const vars: Record<string, string> = {};
  for (const name of o.names) {
    if ((KEY_VARS as readonly string[]).includes(name)) continue;
    const v = pick(name);
    if (v !== undefined) vars[name] = v;
  }
  const portText = pick("PORT");
  const port = portText === undefined || portText === "" ? 8787 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PORT must be a port number (1-65535), got "${portText}"`);
  const secretKeys = pick("SECRET_KEYS") || "sk_dev";
  const publishableKeys = pick("PUBLISHABLE_KEYS") || "pk_dev";
  const userTokenSecrets = pick("USER_TOKEN_SECRETS") || "ut_dev";
  const demoLogin = pick("DEMO_LOGIN") || "true";
  return { port, secretKeys, publishableKeys, userTokenSecrets, demoLogin, vars, origin };
}
