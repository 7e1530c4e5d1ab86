/**
 * The pages in real Chromium (Debian's /usr/bin/chromium through playwright-core) against the
 * local stack (wrangler dev with its static assets, local D1, redis-server behind the bridge),
 * loaded with the demo catalog: the storefront follows a visitor and remembers them across
 * visits; `/?device=1` scores on WebGPU (SwiftShader, no GPU needed) and on WASM, matching the
 * golden vectors and the worker; the console shows health, the model, coverage, experiments and
 * the shopper's memory, and a running experiment's results. One stack and one browser for the
 * whole file.
 * GRU_SCREENSHOTS=1 also writes the README's screenshots to docs/.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type Page, chromium } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../local/redis-server.ts";
import { ROOT, type Stack, startStack } from "../../local/stack.ts";
import { demoCatalog } from "../../scripts/demo-catalog.ts";
import { copyVendor } from "../../scripts/vendor.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"];
const SK = "sk_browser";
const PK = "pk_browser";
const SHOTS = process.env.GRU_SCREENSHOTS === "1";
const golden = JSON.parse(readFileSync(join(ROOT, "models", "ml-small", "golden.json"), "utf8"));
const dir = mkdtempSync(join(tmpdir(), "gru-browser-"));
let stack: Stack;
let browser: Browser;
/** The storefront visitor of the first tests (the console reads their memory). */
let visitor = "";

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does`);
  copyVendor();
  [stack, browser] = await Promise.all([
    startStack({ port: await freePort(), apiKey: SK, publishableKey: PK, dataDir: dir, vars: { USER_TOKEN_SECRETS: "ut_browser", DEMO_LOGIN: "true" } }),
    chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true }),
  ]);
  const r = await fetch(`${stack.url}/v1/items/batch`, {
    method: "POST",
    headers: { authorization: `Bearer ${SK}`, "content-type": "application/json" },
    body: JSON.stringify(demoCatalog()),
  });
  expect(r.status).toBe(200);
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Uncaught errors of the pages opened by the current test (each fails it). */
let pageErrors: string[] = [];
afterEach(() => {
  const errors = pageErrors;
  pageErrors = [];
  expect(errors).toEqual([]);
});

/** A fresh visitor (new browser context: empty storage) on `path`. */
async function open(path: string, viewport = { width: 1280, height: 800 }): Promise<Page> {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(stack.url + path);
  await page.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
  return page;
}

const forYou = (p: Page) => p.getAttribute("[data-testid=for-you]", "data-items");

/** Open a product page and wait until "for you" was redrawn after its view was tracked. */
async function view(p: Page, id: string, previous: string | null) {
  await p.evaluate((i) => ((globalThis as any).location.hash = `#/item/${i}`), id);
  await p.waitForSelector(`[data-testid=product][data-item="${id}"]`);
  await p.waitForFunction((prev) => {
    const el = (globalThis as any).document.querySelector("[data-testid=for-you]") ;
    return !!el?.dataset.items && el.dataset.items !== prev && !(globalThis as any).document.querySelector("[data-testid=for-you-source]")?.textContent?.includes("cold-user");
  }, previous, { timeout: 120_000 });
  return forYou(p);
}

describe("the storefront", () => {
  it("lists the demo catalog, tracks views, and 'for you' and 'similar' follow the visitor", async () => {
    const p = await open("/");
    visitor = (await p.textContent("[data-testid=uid]"))!;
    expect(visitor).toMatch(/^anon-/);
    expect(await p.locator("[data-testid=product-card]").count()).toBeGreaterThan(20);
    await p.waitForSelector("[data-testid=for-you] li");
    expect(await p.textContent("[data-testid=for-you-source]")).toContain("cold-user");
    const cold = await forYou(p);
    const afterToyStory = await view(p, "1", cold);
    expect(await p.textContent("[data-testid=for-you-source]")).toContain("model");
    expect(await p.textContent("[data-testid=product-title]")).toContain("Toy Story");
    await p.waitForSelector("[data-testid=similar] li");
    expect(await p.textContent("[data-testid=similar-source]")).toContain("model");
    const afterJumanji = await view(p, "2", afterToyStory);
    expect(afterJumanji).not.toBe(afterToyStory);
    // buying: the item never comes back
    await view(p, "3114", afterJumanji);
    const before = await forYou(p);
    const bought = before!.split(",")[0]!;
    await view(p, bought, before);
    await p.click("[data-testid=buy]");
    await p.waitForSelector("[data-testid=flash]:has-text('purchased')");
    await p.evaluate(() => (globalThis as any).gru.flush());
    const all = await (await fetch(`${stack.url}/v1/users/${visitor}/recommendations?k=100&exclude_recent=false`, { headers: { authorization: `Bearer ${PK}` } })).json() as any;
    expect(all.items.map((i: { item_id: string }) => i.item_id)).not.toContain(bought);
    await p.waitForSelector("[data-testid=memory-events]");
    if (SHOTS) await p.screenshot({ path: join(ROOT, "docs", "storefront.png") });
    await p.context().close();
  });

  it("remembers a returning visitor: 'come back in 3 days' starts a new session on the same memory", async () => {
    const p = await open("/");
    const uid = (await p.textContent("[data-testid=uid]"))!;
    let items = await view(p, "260", null);
    await view(p, "1196", items);
    expect(await p.textContent("[data-testid=clock]")).toContain("visit 1");
    await p.click("[data-testid=come-back]");
    expect(await p.textContent("[data-testid=clock]")).toContain("visit 2");
    items = await forYou(p);
    await view(p, "2571", items);
    await p.evaluate(() => (globalThis as any).gru.flush());
    const summary = await (await fetch(`${stack.url}/v1/users/${uid}`, { headers: { authorization: `Bearer ${SK}` } })).json() as any;
    expect(summary).toMatchObject({ event_count: 3, session_count: 2 });
    // the first visit's events were sent 9 days back, the return 3 days later
    const days = (Date.now() - Date.parse(summary.session_started_at)) / 86_400_000;
    expect(days).toBeGreaterThan(5.9);
    expect(days).toBeLessThan(6.1);
    const recs = await (await fetch(`${stack.url}/v1/users/${uid}/recommendations?k=5`, { headers: { authorization: `Bearer ${PK}` } })).json() as any;
    expect(recs.source).toBe("model");
    await p.context().close();
  });
});

describe("the storefront's sign-in", () => {
  it("signs a visitor in as a customer: their memory is read with the token the (demo) login signed, the publishable key alone reads nothing", async () => {
    const p = await open("/");
    const customer = `customer-browser-${process.pid}`;
    p.once("dialog", (d) => void d.accept(customer));
    await p.click("[data-testid=sign-in]");
    await p.waitForFunction((c) => (globalThis as any).document.querySelector("[data-testid=uid]")?.textContent === c, customer);
    expect(await p.evaluate(() => (globalThis as any).gru.userToken)).toMatch(/^ut1\./);
    await view(p, "1", await forYou(p));
    await p.waitForSelector("[data-testid=memory-events]");
    expect(await p.textContent("[data-testid=memory-events]")).toBe("1");
    const bare = await fetch(`${stack.url}/v1/users/${customer}/state`, { headers: { authorization: `Bearer ${PK}` } });
    expect(bare.status).toBe(401);
    await p.context().close();
  });
});

describe("on-device scoring (/?device=1)", () => {
  for (const backend of ["webgpu", "wasm"] as const) {
    it(`runs on ${backend}${backend === "webgpu" ? " (SwiftShader)" : ""}, matches the golden vectors within 1e-4 and ranks exactly as the worker`, async () => {
      const p = await open(`/?device=1${backend === "wasm" ? "&backend=wasm" : ""}`);
      expect(await p.textContent("[data-testid=backend]")).toBe(backend);
      // before its first step the panel shows "–", never "NaN"
      expect(await p.textContent("#device-info")).not.toContain("NaN");
      const parity = await p.evaluate((g) => (globalThis as any).gruDevice.checkGolden(g), golden);
      expect(parity.max_state_diff).toBeLessThan(1e-4);
      expect(parity.max_score_diff).toBeLessThan(1e-4);
      expect(parity.topk_equal).toBe(true);
      expect(parity.similar_equal).toBe(true);
      let items = await view(p, "1", null);
      items = await view(p, "2", items);
      await view(p, "3114", items);
      await p.waitForFunction(() => ((globalThis as any).document.querySelector("[data-testid=for-you]")).dataset.matchesServer === "true", null, { timeout: 120_000 });
      // the same shopper ranked by the worker and on the device, scores included
      const uid = (await p.textContent("[data-testid=uid]"))!;
      await p.evaluate(() => (globalThis as any).gru.flush());
      const server = await (await fetch(`${stack.url}/v1/users/${uid}/recommendations?k=20`, { headers: { authorization: `Bearer ${PK}` } })).json() as any;
      const local = await p.evaluate(() => (globalThis as any).gruDevice.recommend({ k: 20 }));
      expect(local.items.map((i: any) => i.item_id)).toEqual(server.items.map((i: any) => i.item_id));
      const diff = Math.max(...local.items.map((x: any, i: number) => Math.abs(x.score - server.items[i].score)));
      expect(diff).toBeLessThan(1e-4);
      // model files come from Cache Storage on the next load
      const cached = await p.evaluate(async () => (await (await (globalThis as any).caches.open("gru-model")).keys()).length);
      expect(cached).toBeGreaterThanOrEqual(4);
      const t = await p.evaluate(() => (globalThis as any).gruDevice.timings);
      const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(
        `device ${backend}: golden max |state diff| ${parity.max_state_diff.toExponential(2)}, max |score diff| ${parity.max_score_diff.toExponential(2)}; ` +
          `vs worker max |score diff| ${diff.toExponential(2)}; load ${t.load_ms.toFixed(0)} ms, step p50 ${p50(t.step_ms).toFixed(2)} ms (${t.step_ms.length}), ranking p50 ${p50(t.rank_ms).toFixed(2)} ms (${t.rank_ms.length})`,
      );
      if (SHOTS && backend === "webgpu") await p.screenshot({ path: join(ROOT, "docs", "storefront-device.png") });
      await p.context().close();
    }, 300_000);
  }
});

describe("the console", () => {
  it("asks for the secret key and shows health, the model, coverage, experiments and a shopper's memory", async () => {
    const p = await open(`/console?user=${encodeURIComponent(visitor)}`, { width: 1280, height: 1500 });
    expect(await p.textContent("[data-testid=health-status]")).toBe("ok");
    await p.fill("[data-testid=key-input]", SK);
    await p.evaluate(() => ((globalThis as any).document.body.dataset.ready = "false"));
    await p.click("[data-testid=key-save]");
    await p.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
    expect(await p.evaluate(() => sessionStorage.getItem("gru_console_key"))).toBe(SK);
    expect(await p.textContent("[data-testid=model-version]")).toMatch(/^ml-small-/);
    expect(await p.textContent("[data-testid=metrics]")).toContain("GRU (memory)");
    // the registry holds the bundled model as its first version, live and serving
    expect(await p.textContent("[data-testid=model-versions]")).toMatch(/live\s+serving/);
    expect(await p.locator("[data-testid=loss-plot] canvas").count()).toBe(1);
    expect(await p.textContent("[data-testid=coverage-summary]")).toMatch(new RegExp(`99\\.9% of the catalog's ${demoCatalog().length} items`));
    expect(await p.textContent("[data-testid=experiments]")).toMatch(/no experiments yet|variant/);
    // the first storefront visitor: views and a purchase in one session, recommendations from the model
    expect(await p.textContent("[data-testid=event-count]")).toBe("5");
    expect(await p.textContent("[data-testid=session-count]")).toBe("1");
    expect(await p.textContent("[data-testid=timeline]")).toContain("Toy Story (1995)");
    expect(await p.textContent("[data-testid=timeline]")).toContain("purchase");
    expect(await p.textContent("[data-testid=rec-source]")).toBe("model");
    expect(await p.locator("[data-testid=recommendations] tr").count()).toBe(11);
    expect(await p.locator("[data-testid=events-plot] canvas").count()).toBe(1);
    if (SHOTS) await p.screenshot({ path: join(ROOT, "docs", "console.png"), fullPage: true });
    // a wrong key is refused, not shown
    await p.fill("[data-testid=key-input]", "sk_wrong");
    await p.evaluate(() => ((globalThis as any).document.body.dataset.ready = "false"));
    await p.click("[data-testid=key-save]");
    await p.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
    expect(await p.textContent("[data-testid=coverage]")).toContain("invalid API key");
    await p.context().close();
  });

  it("shows a running experiment's results: variants, lifts with intervals, SRM and guardrail flags, a lift plot", async () => {
    const H = { authorization: `Bearer ${SK}`, "content-type": "application/json" };
    const exp = { id: "console-demo", name: "Console demo: model vs popular", placement: "console-demo", variants: [{ key: "popular", strategy: { type: "popular" } }, { key: "model", strategy: { type: "model" } }] };
    expect((await fetch(`${stack.url}/v1/admin/experiments`, { method: "POST", headers: H, body: JSON.stringify(exp) })).status).toBe(201);
    expect((await fetch(`${stack.url}/v1/admin/experiments/console-demo/start`, { method: "POST", headers: H })).status).toBe(200);
    const shopper = async (n: number) => {
      const user = `exp-${n}-${Date.now()}`;
      await fetch(`${stack.url}/v1/events`, { method: "POST", headers: H, body: JSON.stringify([{ user_id: user, item_id: "1", type: "view" }]) });
      const rec = (await (await fetch(`${stack.url}/v1/users/${user}/recommendations?k=5&placement=console-demo`, { headers: H })).json()) as any;
      expect(rec.experiment).toBe("console-demo");
      if (n % 2) await fetch(`${stack.url}/v1/events`, { method: "POST", headers: H, body: JSON.stringify([{ user_id: user, item_id: rec.items[0].item_id, type: "click", rec_id: rec.rec_id }]) });
    };
    for (let i = 0; i < 24; i += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => shopper(i + j)));
    const p = await open("/console", { width: 1280, height: 1500 });
    await p.fill("[data-testid=key-input]", SK);
    await p.evaluate(() => ((globalThis as any).document.body.dataset.ready = "false"));
    await p.click("[data-testid=key-save]");
    await p.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
    await p.waitForSelector("[data-testid=experiment-variants]", { timeout: 120_000 });
    expect(await p.locator("[data-testid=experiment-variants] tr").count()).toBe(3);
    expect(await p.textContent("[data-testid=srm]")).toMatch(/ok|flagged/);
    expect(await p.textContent("[data-testid=experiments]")).toContain("guardrails");
    expect(await p.locator("[data-testid=lift-plot] canvas").count()).toBe(1);
    if (SHOTS) await p.locator("[data-testid=experiments]").screenshot({ path: join(ROOT, "docs", "console-experiment.png") });
    await p.context().close();
  });
});
