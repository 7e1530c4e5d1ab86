/**
 * /docs is served by the worker itself: the page references only its own copies of Swagger UI's
 * script and stylesheet (from swagger-ui-dist), never a CDN. (The page rendering in a browser
 * without internet is checked by test/node/local-stack.test.ts.)
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import pkg from "swagger-ui-dist/package.json";

const get = (path: string) => (exports as any).default.fetch(new Request(`http://worker.test${path}`)) as Promise<Response>;

describe("GET /docs", () => {
  it("is an HTML page that loads Swagger UI from the worker only, at the bundled version", async () => {
    const res = await get("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual([`/docs/swagger-ui.css?v=${pkg.version}`, `/docs/swagger-ui-bundle.js?v=${pkg.version}`]);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain('"/openapi.json"');
  });

  it("serves Swagger UI's script and stylesheet from the swagger-ui-dist package, cacheable", async () => {
    const js = await get("/docs/swagger-ui-bundle.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(js.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const code = await js.text();
    expect(code.length).toBeGreaterThan(500_000);
    expect(code).toContain("SwaggerUIBundle");
    const css = await get("/docs/swagger-ui.css");
    expect(css.status).toBe(200);
    expect(css.headers.get("content-type")).toMatch(/^text\/css/);
    expect(await css.text()).toContain(".swagger-ui");
  });
});
