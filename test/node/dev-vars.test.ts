/**
 * What `npm start` passes to the worker: every var of the README's configuration table, taken
 * from the environment over `.dev.vars` over the defaults, and never the Redis endpoint.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { localConfig, passThroughNames } from "../../local/dev-vars.ts";
import { ROOT } from "../../local/stack.ts";

/** The var and secret names in the README's "Configuration" table (bindings and the cron left out). */
function readmeConfigNames(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Configuration"));
  const table = section.slice(0, section.indexOf("\n## "));
  const names = new Set<string>();
  for (const line of table.split("\n")) {
    const first = line.split("|")[1] ?? "";
    if (!line.startsWith("| ") || /binding|cron/.test(first)) continue;
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) names.add(m[1]!);
  }
  return [...names];
}

describe("npm start configuration", () => {
  const names = passThroughNames(ROOT);

  it("passes every var and secret of the README's configuration table except the Redis endpoint", () => {
    const documented = readmeConfigNames();
    expect(documented.length).toBeGreaterThan(15);
    const expected = documented.filter((n) => !n.startsWith("UPSTASH_"));
    expect(names).toEqual(expect.arrayContaining(expected));
    expect(names).not.toContain("UPSTASH_REDIS_REST_URL");
    expect(names).not.toContain("UPSTASH_REDIS_REST_TOKEN");
  });

  it("takes the environment over .dev.vars over the defaults, and keeps CORS_ORIGINS empty unless set", () => {
    const c = localConfig({
      names,
      env: { CORS_ORIGINS: "https://a.test", MAX_K: "9", PATH: "/bin" },
      devVars: { CORS_ORIGINS: "https://b.test", MODEL_NAME: "other", PUBLISHABLE_KEYS: "pk_file", PORT: "9000", UPSTASH_REDIS_REST_URL: "http://x" },
    });
    expect(c).toEqual({
      port: 9000,
      secretKeys: "sk_dev",
      publishableKeys: "pk_file",
      vars: { CORS_ORIGINS: "https://a.test", MAX_K: "9", MODEL_NAME: "other" },
      origin: { CORS_ORIGINS: "env", MAX_K: "env", MODEL_NAME: ".dev.vars", PUBLISHABLE_KEYS: ".dev.vars", PORT: ".dev.vars" },
    });
    const bare = localConfig({ names, env: {}, devVars: {} });
    expect(bare).toEqual({ port: 8787, secretKeys: "sk_dev", publishableKeys: "pk_dev", vars: {}, origin: {} });
  });

  it("lets an empty value in the environment override .dev.vars, and refuses a PORT that is not a port", () => {
    expect(localConfig({ names, env: { CORS_ORIGINS: "" }, devVars: { CORS_ORIGINS: "*" } }).vars).toEqual({ CORS_ORIGINS: "" });
    expect(() => localConfig({ names, env: { PORT: "http" }, devVars: {} })).toThrow(/PORT must be a port number/);
  });
});
