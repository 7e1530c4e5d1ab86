/**
 * gru.js — the storefront snippet: track events and show recommendations from the browser with a
 * publishable key. Dependency-free ES module (about 4 KB), works in any modern browser (and Node).
 *
 *   import { createRecommender } from "./gru.js";
 *   const gru = createRecommender({ endpoint: "https://recs.example.com", key: "pk_live_..." });
 *   gru.track("view", "sku-123");                       // batched, retried, sent in the background
 *   const { items, rec_id } = await gru.recommend({ k: 8, category: "Shoes" });
 *   gru.click(items[0].item_id, rec_id);                 // a click on a recommended item (experiments)
 *   const ranked = await gru.rank(searchResultIds, { boost: [{ attribute: "brand", value: "Acme", weight: 0.5 }], maxPerCategory: 3 });
 *
 * Events are queued and sent in batches (every `flushIntervalMs`, or as soon as `maxBatch` are
 * queued, and when the page is hidden, with `keepalive`). Each event gets an `event_id`, so a
 * retried batch is applied once. Network errors, 429 and 5xx are retried with exponential backoff
 * (honouring Retry-After); other 4xx answers are not (the data is wrong) and go to `onError`.
 * The shopper's id is an anonymous id (`anon-<uuid>`) kept in localStorage until you call
 * `identify(customerId, { token })`. The token is signed by the shop's server for that customer
 * (see README "Signed user tokens"); it is sent as `X-User-Token` with every request, and the API
 * asks for it before it shows an identified customer's data to a publishable key. Pass a fresh
 * one with `setUserToken()` before it expires (`onError` gets a 401 `user_token_expired`).
 */

const UID_KEY = "gru_uid";

/** @param {import("./gru").RecommenderOptions} o */
export function createRecommender(o) {
  if (!o || !o.endpoint || !o.key) throw new Error("gru: endpoint and key are required");
  const base = o.endpoint.replace(/\/+$/, "");
  const maxBatch = Math.min(o.maxBatch ?? 50, 500);
  const interval = o.flushIntervalMs ?? 1000;
  const maxRetries = o.maxRetries ?? 6;
  const maxQueue = o.maxQueue ?? 1000;
  const doFetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  const storage = o.storage !== undefined ? o.storage : safeLocalStorage();
  const onError = o.onError ?? ((e) => console.warn("gru:", e.message));
  const sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  const onTrack = o.onTrack ?? null;

  let userId = o.userId ?? storage?.getItem(UID_KEY) ?? null;
  let userToken = o.userToken ?? null;
  if (!userId) {
    userId = `anon-${uuid()}`;
    storage?.setItem(UID_KEY, userId);
  }
  /** @type {object[]} */
  let queue = [];
  let timer = null;
  let inflight = Promise.resolve();

  const authHeaders = () => (userToken ? { authorization: `Bearer ${o.key}`, "x-user-token": userToken } : { authorization: `Bearer ${o.key}` });

  async function send(batch, keepalive) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await doFetch(`${base}/v1/events`, { method: "POST", headers: { ...authHeaders(), "content-type": "application/json" }, body: JSON.stringify(batch), keepalive });
      } catch (e) {
        if (attempt >= maxRetries) throw new Error(`events not sent after ${attempt + 1} tries: ${e.message}`);
        await sleep(backoff(attempt));
        continue;
      }
      if (res.ok) return res.json();
      if ((res.status === 429 || res.status >= 500) && attempt < maxRetries) {
        const after = Number(res.headers.get("retry-after"));
        await sleep(after > 0 ? after * 1000 : backoff(attempt));
        continue;
      }
      const body = await res.json().catch(() => ({}));
      const err = new Error(`events rejected (${res.status}): ${body?.error?.message ?? res.statusText}`);
      err.status = res.status;
      err.body = body;
      throw err;
    }
  }

  /** Send everything queued now. Resolves when the server has accepted it (or it failed). */
  function flush(keepalive = false) {
    if (timer) clearTimeout(timer);
    timer = null;
    const run = async () => {
      while (queue.length) {
        const batch = queue.splice(0, maxBatch);
        try {
          await send(batch, keepalive);
        } catch (e) {
          onError(e);
        }
      }
    };
    inflight = inflight.then(run, run);
    return inflight;
  }

  function schedule() {
    if (queue.length >= maxBatch) return void flush();
    if (!timer) timer = setTimeout(() => flush(), interval);
  }

  /**
   * Queue an event. `type`: "view", "click", "add_to_cart", "purchase" or your own lower-case name.
   * `recId`: the `rec_id` of the list the item was picked from (ties the event to its experiment).
   * @param {string} type @param {string} itemId @param {{timestamp?: number, eventId?: string, recId?: string}} [extra]
   */
  function track(type, itemId, extra = {}) {
    const event = { event_id: extra.eventId ?? uuid(), user_id: userId, item_id: String(itemId), type, timestamp: extra.timestamp ?? Date.now() };
    if (extra.recId) event.rec_id = String(extra.recId);
    queue.push(event);
    if (onTrack) onTrack({ ...event });
    if (queue.length > maxQueue) {
      queue.splice(0, queue.length - maxQueue);
      onError(new Error(`queue over ${maxQueue} events: the oldest were dropped`));
    }
    schedule();
  }

  const NAMES = {
    minPrice: "min_price",
    maxPrice: "max_price",
    excludeRecent: "exclude_recent",
    excludeSeen: "exclude_seen",
    maxPerCategory: "max_per_category",
    categoryLevel: "category_level",
    newDays: "new_days",
  };

  /** A boost as the query string writes it: `key:value^weight`. */
  function boostText(b) {
    if (typeof b === "string") return b;
    const w = b.weight ?? 1;
    if (b.attribute !== undefined) return `${b.attribute}:${b.value}^${w}`;
    if (b.category !== undefined) return `category:${b.category}^${w}`;
    return `new:${b.newWithinDays}^${w}`;
  }

  /** A boost as JSON bodies write it. */
  function boostJson(b) {
    if (typeof b !== "string") {
      const w = b.weight ?? 1;
      if (b.attribute !== undefined) return { attribute: b.attribute, value: b.value, weight: w };
      if (b.category !== undefined) return { category: b.category, weight: w };
      return { new_within_days: b.newWithinDays, weight: w };
    }
    const caret = b.lastIndexOf("^");
    const w = caret >= 0 ? Number(b.slice(caret + 1)) : 1;
    const [key, ...rest] = (caret >= 0 ? b.slice(0, caret) : b).split(":");
    const value = rest.join(":");
    if (key === "new") return { new_within_days: Number(value), weight: w };
    if (key === "category") return { category: value, weight: w };
    return { attribute: key, value, weight: w };
  }

  function query(opts) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts ?? {})) {
      if (v === undefined || v === null) continue;
      if (k === "boost") {
        q.set("boost", (Array.isArray(v) ? v : [v]).map(boostText).join(","));
        continue;
      }
      const name = NAMES[k] ?? k;
      q.set(name, Array.isArray(v) ? v.join(",") : String(v));
    }
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  async function get(path, init) {
    const res = await doFetch(`${base}${path}`, init ?? { headers: authHeaders() });
    const body = await res.json();
    if (!res.ok) {
      const err = new Error(`request failed (${res.status}): ${body?.error?.message ?? res.statusText}`);
      err.status = res.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  /** Recommendations for the current shopper (waits for queued events to be sent first). */
  async function recommend(opts = {}) {
    await flush();
    return get(`/v1/users/${encodeURIComponent(userId)}/recommendations${query(opts)}`);
  }

  /**
   * Your own list (search results, a category page; at most 500 ids) in this shopper's order, with
   * the same options as `recommend` (filters, boost, maxPerCategory, explore) and `placement`
   * (default "rank"). Items the rules leave out come back in `excluded`.
   */
  async function rank(itemIds, opts = {}) {
    await flush();
    const { placement, variant, boost, ...rest } = opts;
    const body = { item_ids: itemIds.map(String) };
    for (const [k, v] of Object.entries(rest)) if (v !== undefined && v !== null) body[NAMES[k] ?? k] = v;
    if (boost !== undefined) body.boosts = (Array.isArray(boost) ? boost : [boost]).map(boostJson);
    return get(`/v1/users/${encodeURIComponent(userId)}/rank${query({ placement, variant })}`, {
      method: "POST",
      headers: { ...authHeaders(), "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  /** Items similar to `itemId`, leaving out what the shopper purchased. */
  function similar(itemId, opts = {}) {
    return get(`/v1/items/${encodeURIComponent(itemId)}/similar${query({ ...opts, user_id: userId })}`);
  }

  /** A click on an item of a recommendation list (`recId`: the list's `rec_id`). */
  function click(itemId, recId, extra = {}) {
    track("click", itemId, { ...extra, recId });
  }

  /**
   * Switch to a known customer id (after login); later events and recommendations use it.
   * `token`: the customer's signed user token from your server (needed to read their data, and
   * for whatever else the API's REQUIRE_USER_TOKEN names).
   */
  function identify(id, opts = {}) {
    if (queue.length) flush();
    userId = String(id);
    userToken = opts.token ?? null;
    storage?.setItem(UID_KEY, userId);
  }

  /** Replace the signed user token (a fresh one before the old one expires). */
  function setUserToken(token) {
    userToken = token ?? null;
  }

  if (typeof addEventListener === "function" && typeof document !== "undefined") {
    addEventListener("pagehide", () => flush(true));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") flush(true);
    });
  }

  return {
    track,
    click,
    flush: () => flush(),
    recommend,
    rank,
    similar,
    identify,
    setUserToken,
    get userId() {
      return userId;
    },
    get userToken() {
      return userToken;
    },
    get pending() {
      return queue.length;
    },
  };
}

function backoff(attempt) {
  return Math.min(30_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

function uuid() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}

function safeLocalStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
