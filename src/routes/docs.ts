/**
 * GET /docs: Swagger UI for /openapi.json, served entirely by the worker from the bundled
 * swagger-ui-dist package (its script and stylesheet are text modules, see wrangler.toml's rules),
 * so the page works without internet and always shows the pinned version.
 */
import { Hono } from "hono";
import css from "swagger-ui-dist/swagger-ui.css";
import bundle from "swagger-ui-dist/swagger-ui-bundle.js";
import pkg from "swagger-ui-dist/package.json";

/** Cache lifetime of the Swagger UI files, seconds (their URLs carry the package version). */
const ASSET_MAX_AGE = 7 * 24 * 3600;

const page = (title: string, specUrl: string) => `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${title}</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css?v=${pkg.version}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js?v=${pkg.version}"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null });
  </script>
</body>
</html>`;

/** The API documentation pages: /docs and the two files it loads. */
export function docs(o: { title: string; specUrl: string }) {
  const html = page(o.title, o.specUrl);
  const asset = (body: string, type: string) => () =>
    new Response(body, { headers: { "content-type": type, "cache-control": `public, max-age=${ASSET_MAX_AGE}, immutable` } });
  return new Hono()
    .get("/", (c) => c.html(html))
    .get("/swagger-ui.css", asset(css, "text/css; charset=utf-8"))
    .get("/swagger-ui-bundle.js", asset(bundle, "text/javascript; charset=utf-8"));
}
