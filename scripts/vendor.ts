/**
 * Copies what the demo pages (public/) load from packages into public/vendor/ (git-ignored), so
 * the pages work offline and `wrangler deploy` uploads them as static assets: onnxruntime-web's
 * JSPI build (WebGPU and WASM) and its plain WASM build (browsers without JSPI), uPlot, the
 * snippets from sdk/, the models' REPORT.md files, and the demo catalog as JSON. Run by `npm start`, `npm run deploy` and the
 * browser tests; `node scripts/vendor.ts` runs it alone. Files already up to date are skipped.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";

const ORT = join(ROOT, "node_modules", "onnxruntime-web", "dist");
const UPLOT = join(ROOT, "node_modules", "uplot", "dist");

/** [source, destination under public/vendor]. Each file is under Workers' 25 MiB asset limit. */
const FILES: [string, string][] = [
  [join(ORT, "ort.jspi.min.mjs"), "ort/ort.jspi.min.mjs"],
  [join(ORT, "ort-wasm-simd-threaded.jspi.mjs"), "ort/ort-wasm-simd-threaded.jspi.mjs"],
  [join(ORT, "ort-wasm-simd-threaded.jspi.wasm"), "ort/ort-wasm-simd-threaded.jspi.wasm"],
  [join(ORT, "ort.wasm.min.mjs"), "ort/ort.wasm.min.mjs"],
  [join(ORT, "ort-wasm-simd-threaded.mjs"), "ort/ort-wasm-simd-threaded.mjs"],
  [join(ORT, "ort-wasm-simd-threaded.wasm"), "ort/ort-wasm-simd-threaded.wasm"],
  [join(UPLOT, "uPlot.esm.js"), "uplot/uPlot.esm.js"],
  [join(UPLOT, "uPlot.min.css"), "uplot/uPlot.min.css"],
  [join(ROOT, "sdk", "gru.js"), "sdk/gru.js"],
  [join(ROOT, "sdk", "gru-device.js"), "sdk/gru-device.js"],
];

function upToDate(src: string, dst: string): boolean {
  try {
    const a = statSync(src);
    const b = statSync(dst);
    return a.size === b.size && a.mtimeMs <= b.mtimeMs;
  } catch {
    return false;
  }
}

/** Each bundled model's REPORT.md, shown by the console. */
function reports(root: string): [string, string][] {
  const dir = join(root, "models");
  return readdirSync(dir)
    .filter((name) => existsSync(join(dir, name, "REPORT.md")))
    .map((name) => [join(dir, name, "REPORT.md"), `reports/${name}.md`]);
}

/** Copy the pages' vendored files into `<root>/public/vendor`. Returns how many were written. */
export function copyVendor(root = ROOT): number {
  const out = join(root, "public", "vendor");
  let written = 0;
  for (const [src, rel] of [...FILES, ...reports(root)]) {
    const dst = join(out, rel);
    if (upToDate(src, dst)) continue;
    mkdirSync(dirname(dst), { recursive: true });
    copyFileSync(src, dst);
    written++;
  }
  const catalog = JSON.stringify(
    demoCatalog().map((i) => ({ id: i.id, title: i.title, category_path: i.category_path, price: i.price, currency: i.currency, available: i.available })),
  );
  const catalogPath = join(out, "catalog.json");
  let old = "";
  try {
    old = readFileSync(catalogPath, "utf8");
  } catch {}
  if (old !== catalog) {
    writeFileSync(catalogPath, catalog);
    written++;
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  console.log(`public/vendor: ${copyVendor()} file(s) written`);
}
