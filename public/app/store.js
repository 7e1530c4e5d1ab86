/**
 * The demo storefront (/): the demo catalog, product pages that track view / add_to_cart /
 * purchase through sdk/gru.js, and "for you" / "similar" lists that follow the visitor. "Come back
 * in 3 days" moves the visitor's clock: the first visit's events are sent 9 days in the past and
 * each return 3 days later, so a returning visitor's long-term memory shows. `/?device=1` ranks
 * "for you" and "similar" on this device (sdk/gru-device.js: WebGPU, else WASM) and compares
 * with the server. "Sign in" (with `npm start`'s DEMO_LOGIN) switches to a customer id with a
 * signed user token, as a shop's login would (its server signs the token; see README).
 */
import { createRecommender } from "/vendor/sdk/gru.js";

const DAY = 86_400_000;
const FIRST_VISIT_DAYS_AGO = 9;
const RETURN_DAYS = 3;
const K = 8;
const params = new URLSearchParams(location.search);
const onDevice = params.get("device") === "1";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const [config, catalog] = await Promise.all([fetch("/config.json").then((r) => r.json()), fetch("/vendor/catalog.json").then((r) => r.json())]);
const byId = new Map(catalog.map((i) => [i.id, i]));
const key = config.publishable_key ?? params.get("key") ?? prompt("Publishable key (PUBLISHABLE_KEYS):");

/** Days the visitor's clock is behind the real one; events carry real time minus this. */
const backlog = () => Number(localStorage.getItem("gru_demo_backlog_days") ?? FIRST_VISIT_DAYS_AGO);
const setBacklog = (d) => localStorage.setItem("gru_demo_backlog_days", String(d));
const visitorNow = () => Date.now() - backlog() * DAY;

let device = null;
const gru = createRecommender({
  endpoint: location.origin,
  key,
  flushIntervalMs: 300,
  onTrack: (e) => device?.observe(e),
  onError: (e) => flash(`not sent: ${e.message}`),
});
const track = (type, id, extra = {}) => gru.track(type, id, { timestamp: visitorNow(), ...extra });

/** A signed-in customer's token, as a shop's login would hand it to the page (demo: POST /demo/login). */
async function demoToken(userId) {
  const res = await fetch("/demo/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: userId }) });
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error?.message ?? res.statusText);
  return body.token;
}
// A customer signed in before this page load gets a fresh token (tokens expire).
if (!gru.userId.startsWith("anon-") && config.demo_login) gru.identify(gru.userId, { token: await demoToken(gru.userId).catch(() => undefined) });

/** The list (its rec_id) the visitor picked the current product from, for experiment attribution. */
let pickedFrom = null;
// Only on the real clock (the last visit): a click sent days back could not be matched to the list.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest?.("a[data-rec]");
  if (!a || backlog() > 0) return;
  pickedFrom = { itemId: a.dataset.item, recId: a.dataset.rec };
  track("click", a.dataset.item, { recId: a.dataset.rec });
});
const recIdFor = (id) => (pickedFrom?.itemId === id ? { recId: pickedFrom.recId } : {});

// ---- rendering -------------------------------------------------------------------------------

const hue = (id) => [...String(id)].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
const poster = (item) => `<div class="poster" style="background:hsl(${hue(item.id)} 55% 45%)">${esc((item.title ?? "?").replace(/^(The|A|An) /, "").slice(0, 2))}</div>`;
const money = (i) => (i.price == null ? "" : `${Number(i.price).toFixed(2)} ${esc(i.currency ?? "")}`);
const card = (i) => `<div class="card" data-testid="product-card">${poster(i)}
  <a class="title" href="#/item/${encodeURIComponent(i.id)}">${esc(i.title)}</a>
  <span class="muted small">${esc(i.category_path.join(" › "))}</span>
  <span class="price">${money(i)}</span>${i.available ? "" : `<span class="soldout">sold out</span>`}</div>`;

function flash(text) {
  const el = document.querySelector(".flash");
  if (el) el.textContent = text;
}

function renderClock() {
  const d = backlog();
  const visit = Math.round((FIRST_VISIT_DAYS_AGO - d) / RETURN_DAYS) + 1;
  $("clock").textContent = d > 0 ? `visit ${visit} · ${d} days ago` : `visit ${visit} · today`;
  $("come-back").disabled = d < RETURN_DAYS;
  $("uid").textContent = gru.userId;
}

const categories = [...new Set(catalog.map((i) => i.category_path.join(" > ")))].sort();
function renderCategories(current) {
  $("categories").innerHTML =
    `<li><a href="#/" class="${current ? "" : "on"}">All (${catalog.length})</a></li>` +
    categories.map((c) => `<li><a href="#/c/${encodeURIComponent(c)}" class="${c === current ? "on" : ""}">${esc(c.split(" > ").pop())}</a></li>`).join("");
}

function renderGrid(category, q) {
  let items = catalog;
  if (category) items = items.filter((i) => i.category_path.join(" > ") === category);
  if (q) items = items.filter((i) => i.title.toLowerCase().includes(q.toLowerCase()));
  // Best-known titles first: the model's ids are MovieLens ids, low ids are the classics.
  const shown = items.slice(0, 60);
  $("main").innerHTML = `<h2>${esc(category ? category.split(" > ").pop() : q ? `“${q}”` : "All movies")} <span class="muted small">${items.length} items</span></h2>
    <div class="grid">${shown.map(card).join("")}</div>`;
  $("similar-box").hidden = true;
}

function renderProduct(id) {
  const i = byId.get(id);
  if (!i) {
    $("main").innerHTML = `<p>No such item: ${esc(id)}</p>`;
    return;
  }
  $("main").innerHTML = `<div class="product" data-testid="product" data-item="${esc(i.id)}">${poster(i)}<div>
      <h1 data-testid="product-title">${esc(i.title)}</h1>
      <div class="muted">${esc(i.category_path.join(" › "))} · item ${esc(i.id)}</div>
      <p class="price">${money(i)} ${i.available ? "" : `<span class="soldout">sold out</span>`}</p>
      <div class="actions">
        <button data-testid="add-to-cart" ${i.available ? "" : "disabled"}>Add to cart</button>
        <button data-testid="buy" class="ghost" ${i.available ? "" : "disabled"}>Buy now</button>
      </div>
      <div class="flash" data-testid="flash"></div>
    </div></div>`;
  $("main").querySelector("[data-testid=add-to-cart]").onclick = () => {
    track("add_to_cart", id, recIdFor(id));
    flash("added to cart");
    refreshForYou();
  };
  $("main").querySelector("[data-testid=buy]").onclick = () => {
    track("purchase", id, recIdFor(id));
    flash("purchased: never recommended to you again");
    refreshForYou();
    refreshSimilar(id);
  };
  track("view", id);
  refreshSimilar(id);
}

function renderList(el, srcEl, rec, extra = "") {
  // Lists served by the API carry a rec_id (experiments); clicks on their items send it back.
  const rec_id = rec.source === "device" ? null : rec.rec_id;
  const variant = rec.variant ? ` · variant <b data-testid="variant">${esc(rec.variant)}</b>` : "";
  const reason = rec.reason ? ` · ${esc(rec.reason)}` : "";
  srcEl.innerHTML = `source <b>${esc(rec.source)}</b>${reason}${variant}${extra}`;
  el.innerHTML = rec.items
    .map((x) => {
      const item = x.item ?? byId.get(x.item_id) ?? { title: `item ${x.item_id}` };
      const recAttr = rec_id ? ` data-rec="${esc(rec_id)}" data-item="${esc(x.item_id)}"` : "";
      return `<li data-item="${esc(x.item_id)}"><a href="#/item/${encodeURIComponent(x.item_id)}"${recAttr}>${esc(item.title)}</a> <span class="badge ${esc(x.source)}">${esc(x.source)}</span></li>`;
    })
    .join("");
  el.dataset.items = rec.items.map((x) => x.item_id).join(",");
}

// Only the latest answer is drawn, whatever order the requests finish in.
let forYouSeq = 0;
async function refreshForYou() {
  const seq = ++forYouSeq;
  // Recent items may be recommended (the API's default); the product on screen is not.
  const exclude = current ? [current] : undefined;
  const server = await gru.recommend({ k: K, include: "metadata", exclude });
  if (seq !== forYouSeq) return;
  if (device) {
    const local = await device.recommend({ k: K, exclude });
    if (seq !== forYouSeq) return;
    const same = local.items.length > 0 && local.items.map((i) => i.item_id).join() === server.items.map((i) => i.item_id).join();
    renderList($("for-you"), $("for-you-source"), local.items.length ? local : server, local.items.length ? ` (${device.backend}) · ${same ? "same as server" : "server differs"}` : "");
    $("for-you").dataset.server = server.items.map((i) => i.item_id).join(",");
    $("for-you").dataset.matchesServer = String(same);
    renderDevice();
  } else renderList($("for-you"), $("for-you-source"), server);
  renderMemory();
}

let similarSeq = 0;
async function refreshSimilar(id) {
  const seq = ++similarSeq;
  $("similar-box").hidden = false;
  const rec = device ? await device.similar(id, { k: 6 }) : await gru.similar(id, { k: 6, include: "metadata" });
  if (seq !== similarSeq) return;
  renderList($("similar"), $("similar-source"), rec.items.length || !device ? rec : await gru.similar(id, { k: 6, include: "metadata" }), device ? ` (${device.backend})` : "");
}

/** What the server remembers of this visitor (the state endpoint the on-device scorer reads). */
async function renderMemory() {
  // An identified customer's state needs their signed token; an anonymous visitor's id is enough.
  const headers = { authorization: `Bearer ${key}`, ...(gru.userToken ? { "x-user-token": gru.userToken } : {}) };
  const res = await fetch(`/v1/users/${encodeURIComponent(gru.userId)}/state`, { headers });
  const s = res.ok ? await res.json() : null;
  const last = s?.last_event_ms ? new Date(s.last_event_ms).toISOString().slice(0, 16).replace("T", " ") : "";
  $("memory").innerHTML = s
    ? `<b data-testid="memory-events">${s.event_count}</b> events in <b data-testid="memory-sessions">${s.session_count}</b> sessions, last ${esc(last)} UTC;
       ${s.purchased.length} purchased · <a href="/console?user=${encodeURIComponent(gru.userId)}">see it in the console</a>`
    : "no events yet";
}

const pct = (xs, q) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] : null);
/** A percentile in ms, or "–" before the first measurement. */
const ms = (xs, q) => (xs.length ? pct(xs, q).toFixed(2) : "–");
function renderDevice() {
  if (!device) return;
  const t = device.timings;
  $("device").hidden = false;
  $("device-info").innerHTML = `backend <b>${esc(device.backend)}</b>${device.fallback ? ` <span class="muted">(${esc(device.fallback)})</span>` : ""}<br>
    model ${esc(device.version)}<br>load ${t.load_ms.toFixed(0)} ms · step p50 <span data-testid="step-ms">${ms(t.step_ms, 0.5)}</span> ms (${t.step_ms.length})
    · ranking p50 <span data-testid="rank-ms">${ms(t.rank_ms, 0.5)}</span> ms (${t.rank_ms.length})`;
}

// ---- navigation ------------------------------------------------------------------------------

/** The product on screen (null on a list page). */
let current = null;

function route() {
  const h = decodeURIComponent(location.hash.slice(1) || "/");
  const item = /^\/item\/(.+)$/.exec(h);
  current = item?.[1] ?? null;
  const cat = /^\/c\/(.+)$/.exec(h);
  renderCategories(cat?.[1]);
  if (item) renderProduct(item[1]);
  else renderGrid(cat?.[1], $("search").value.trim());
  refreshForYou();
}

$("search").addEventListener("input", () => renderGrid(undefined, $("search").value.trim()));
$("come-back").onclick = async () => {
  await gru.flush();
  setBacklog(Math.max(0, backlog() - RETURN_DAYS));
  renderClock();
  location.hash = "#/";
  refreshForYou();
};
$("sign-in").hidden = !config.demo_login;
$("sign-in").onclick = async () => {
  const id = prompt("Sign in as customer id:", "customer-1001");
  if (!id) return;
  await gru.flush();
  try {
    gru.identify(id.trim(), { token: await demoToken(id.trim()) });
  } catch (e) {
    flash(`sign-in failed: ${e.message}`);
    return;
  }
  if (device) await device.sync(gru.userId, { token: gru.userToken });
  renderClock();
  refreshForYou();
};
$("new-visitor").onclick = async () => {
  await gru.flush();
  localStorage.removeItem("gru_uid");
  setBacklog(FIRST_VISIT_DAYS_AGO);
  location.hash = "#/";
  location.reload();
};
addEventListener("hashchange", route);

if (onDevice) {
  $("backend").textContent = "loading…";
  const { createDeviceScorer } = await import("/vendor/sdk/gru-device.js");
  device = await createDeviceScorer({ endpoint: location.origin, key, backend: params.get("backend") ?? "auto", ortBase: "/vendor/ort/" });
  device.setCatalog(catalog);
  await device.sync(gru.userId, { token: gru.userToken });
  $("backend").textContent = device.backend;
  window.gruDevice = device;
}
window.gru = gru;
renderClock();
route();
document.body.dataset.ready = "true";
