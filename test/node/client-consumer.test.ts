/**
 * The typed client from another TypeScript project: the client is built (scripts/build-client.mjs,
 * as `npm install` does), the shop project in test/consumer/ is copied to a folder of its own with
 * this package linked into its node_modules (what `npm install ../gru-edge-recommender` makes), and
 * type-checked with `moduleResolution: bundler` and with `NodeNext`, without skipLibCheck, without
 * Cloudflare's types. The built JavaScript then sends the request the types describe.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../local/stack.ts";

const run = promisify(execFile);
const shop = mkdtempSync(join(tmpdir(), "gru-shop-"));
afterAll(() => rmSync(shop, { recursive: true, force: true }));

beforeAll(async () => {
  await run(process.execPath, [join(ROOT, "scripts", "build-client.mjs")], { cwd: ROOT });
  cpSync(join(ROOT, "test", "consumer"), shop, { recursive: true });
  mkdirSync(join(shop, "node_modules"));
  symlinkSync(ROOT, join(shop, "node_modules", "gru-edge-recommender"), "dir");
}, 300_000);

/** Run tsc on one of the shop's configs; its diagnostics, or "" when it type-checks. */
async function typecheck(config: string): Promise<string> {
  try {
    await run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", config], { cwd: shop });
    return "";
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    return `${err.stdout ?? ""}${err.stderr ?? ""}` || err.message;
  }
}

describe("gru-edge-recommender/client in a shop's own TypeScript project", () => {
  it("type-checks with moduleResolution bundler, with the types intact (the expected errors are errors)", async () => {
    expect(await typecheck("tsconfig.bundler.json")).toBe("");
  }, 300_000);

  it("type-checks with module and moduleResolution NodeNext", async () => {
    expect(await typecheck("tsconfig.nodenext.json")).toBe("");
  }, 300_000);

  it("the built client sends the request its types describe, with the key", async () => {
    const { createClient } = (await import(pathToFileURL(join(ROOT, "dist", "client.js")).href)) as typeof import("../../src/client.ts");
    const seen: Request[] = [];
    const gru = createClient("https://recs.example.com", {
      key: "sk_test",
      fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
        seen.push(new Request(input, init));
        return Response.json({ items: [], source: "popular", model_version: "m" });
      },
    });
    const res = await gru.v1.users[":user_id"].recommendations.$get({ param: { user_id: "alice" }, query: { k: "5" } });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe("GET");
    expect(seen[0]!.url).toBe("https://recs.example.com/v1/users/alice/recommendations?k=5");
    expect(seen[0]!.headers.get("authorization")).toBe("Bearer sk_test");
  });
});
