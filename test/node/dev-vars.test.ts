/**
 * What `npm start` passes to the worker: every var of the README's configuration table, taken
 * from the environment over `.dev.vars` over the defaults, and never the Redis endpoint.
 */
import { describe, expect, it } from "vitest";
import { localConfig, passThroughNames, readmeConfigNames } from "../../local/dev-vars.ts";
import { CONFIG_VARS } from "../../src/config.ts";
import { ROOT } from "../../local/stack.ts";

describe("npm start configuration", () => {
  const names = passThroughNames(ROOT);

  it("passes every var and secret of the README's configuration table except the Redis endpoint", () => {
    const documented = readmeConfigNames(ROOT);
    expect(documented).toEqual(expect.arrayContaining(["MODEL_NAME", "CORS_ORIGINS", "RATE_LIMIT_PUBLISHABLE_PER_MINUTE", "SECRET_KEYS", "MAX_CATALOG_BODY_BYTES"]));
    expect(documented).not.toContain("DB"); // bindings are not vars
    const expected = documented.filter((n) => !n.startsWith("UPSTASH_"));
    expect(names).toEqual(expect.arrayContaining([...expected, "PUBLISHABLE_KEYS"]));
    expect(names).not.toContain("UPSTASH_REDIS_REST_URL");
    expect(names).not.toContain("UPSTASH_REDIS_REST_TOKEN");
  });

  it("every var the worker's config reads is documented in the README's configuration table", () => {
    expect(readmeConfigNames(ROOT)).toEqual(expect.arrayContaining([...CONFIG_VARS]));
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
      userTokenSecrets: "ut_dev",
      demoLogin: "true",
      vars: { CORS_ORIGINS: "https://a.test", MAX_K: "9", MODEL_NAME: "other" },
      origin: { CORS_ORIGINS: "env", MAX_K: "env", MODEL_NAME: ".dev.vars", PUBLISHABLE_KEYS: ".dev.vars", PORT: ".dev.vars" },
    });
    const bare = localConfig({ names, env: {}, devVars: {} });
    expect(bare).toEqual({ port: 8787, secretKeys: "sk_dev", publishableKeys: "pk_dev", userTokenSecrets: "ut_dev", demoLogin: "true", vars: {}, origin: {} });
  });

  it("lets an empty value in the environment override .dev.vars, and refuses a PORT that is not a port", () => {
    expect(localConfig({ names, env: { CORS_ORIGINS: "" }, devVars: { CORS_ORIGINS: "*" } }).vars).toEqual({ CORS_ORIGINS: "" });
    expect(() => localConfig({ names, env: { PORT: "http" }, devVars: {} })).toThrow(/PORT must be a port number/);
  });
});
