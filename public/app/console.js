/**
 * The console (/console): health, the models (version, metrics from the manifest, training loss
 * plot; the registry's versions once /v1/admin/models exists), catalog coverage by the model, a
 * shopper's memory (event timeline from the event log, sessions, the stored state, current
 * recommendations and why), and experiments with their results once /v1/admin/experiments exists.
 * The secret key is typed by the user and kept in sessionStorage only. Plots: uPlot.
 */
import uPlot from "/vendor/uplot/uPlot.esm.js";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (x, d = 4) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : esc(x ?? "—"));
const iso = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
const body = (id) => $(id).querySelector(".body");
const KEY = "gru_console_key";
let key = sessionStorage.getItem(KEY) ?? "";
const titles = fetch("/vendor/catalog.json")
  .then((r) => (r.ok ? r.json() : []))
  .then((items) => new Map(items.map((i) => [i.id, i.title])))
  .catch(() => new Map());

/** GET with the secret key; resolves to {status, body} (body: parsed JSON, or text for NDJSON). */
async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${key}` } });
  const type = res.headers.get("content-type") ?? "";
  const data = type.includes("json") && !type.includes("ndjson") ? await res.json().catch(() => null) : await res.text();
  return { status: res.status, body: data };
}

const errorText = (r) => esc(r.body?.error?.message ?? `HTTP ${r.status}`);

function plot(el, opts, data) {
  el.innerHTML = "";
  const width = Math.max(300, el.clientWidth || 520);
  return new uPlot({ width, height: 200, ...opts }, data, el);
}

// ---- health ----------------------------------------------------------------------------------

async function showHealth() {
  const r = await fetch("/health").then(async (res) => ({ status: res.status, body: await res.json() }));
  const h = r.body;
  const up = (x) => (x?.reachable ? `<span class="ok">up</span> ${fmt(x.latency_ms, 1)} ms` : `<span class="bad">down</span> ${esc(x?.error ?? "")}`);
  body("health").className = "body";
  body("health").innerHTML = `<dl class="kv">
    <dt>status</dt><dd class="${h.status === "ok" ? "ok" : "bad"}" data-testid="health-status">${esc(h.status)}</dd>
    <dt>model</dt><dd>${h.model.loaded ? `<span class="ok">loaded</span>` : `<span class="bad">not loaded</span>`} ${esc(h.model.name)} · <code>${esc(h.model.version)}</code> · ${fmt(h.model.items)} items ${esc(h.model.error ?? "")}</dd>
    <dt>Redis</dt><dd>${up(h.redis)}</dd>
    <dt>D1</dt><dd>${up(h.database)}</dd>
    <dt>catalog</dt><dd>${fmt(h.catalog.items)} items, synced ${h.catalog.synced_seconds_ago ?? "—"} s ago</dd>
    <dt>versions</dt><dd>API ${esc(h.versions.api)}, state format ${esc(h.versions.state_format)}</dd></dl>`;
}

// ---- models ----------------------------------------------------------------------------------

function metricsTable(metrics) {
  const results = metrics?.results ?? {};
  const names = ["Recall@20", "MRR@20", "NDCG@20", "Recall@10", "NDCG@10"];
  const rows = Object.entries(results)
    .map(([method, m]) => `<tr><td>${esc(method)}</td>${names.map((n) => `<td class="num" title="${m[`${n}_ci`] ? `95% CI ${m[`${n}_ci`].map((x) => x.toFixed(4)).join(" – ")}` : ""}">${fmt(m[n])}</td>`).join("")}</tr>`)
    .join("");
  if (!rows) return `<p class="muted">no metrics in the manifest</p>`;
  return `<p class="small muted">held out: ${esc(metrics.dataset)}, protocol ${esc(metrics.protocol)}, ${fmt(metrics.targets)} targets (hover a figure for its 95% interval)</p>
    <table data-testid="metrics"><tr><th>method</th>${names.map((n) => `<th class="num">${n}</th>`).join("")}</tr>${rows}</table>`;
}

async function showModels() {
  const el = body("models");
  const reg = await api("/v1/admin/models");
  const live = await api("/v1/device/model");
  if (live.status !== 200) {
    el.innerHTML = `<p class="bad">${errorText(live)}</p>`;
    return;
  }
  const man = await api(live.body.files.manifest);
  const m = man.body;
  let versions = "";
  if (reg.status === 200) {
    const list = reg.body.versions ?? [];
    versions = `<h3>Registry (${list.length} versions)</h3><table data-testid="model-versions"><tr><th>version</th><th>status</th><th>from</th><th class="num">MiB</th><th>created</th><th>activated</th><th>metrics</th></tr>${list
      .map(
        (v) => `<tr><td><code>${esc(v.version)}</code></td><td>${esc(v.status)}${v.serving ? " <b class=\"ok\">serving</b>" : v.status === "live" ? " (shadow)" : ""}</td><td>${esc(v.source)}</td>
          <td class="num">${fmt(v.memory_mb, 1)}</td><td class="small">${esc(v.created_at ?? "")}</td><td class="small">${esc(v.activated_at ?? "—")}</td><td class="small">${esc(summaryOf(v.metrics))}</td></tr>`,
      )
      .join("")}</table>`;
  } else {
    versions = `<p class="small muted" data-testid="model-versions">one model: the registry (GET /v1/admin/models) is not available on this deployment</p>`;
  }
  const t = m.training ?? {};
  const cfg = t.config ?? {};
  el.className = "body";
  el.innerHTML = `<dl class="kv">
      <dt>live</dt><dd><code data-testid="model-version">${esc(m.version)}</code></dd>
      <dt>created</dt><dd>${esc(m.created_at)}</dd>
      <dt>trained on</dt><dd>${esc(t.dataset ?? "—")} · ${fmt(m.items.rows - 1)} items · state ${fmt(m.state.size)} floats (${m.state.layout.map((p) => esc(p.name)).join(" + ")})</dd>
      <dt>model</dt><dd>dim ${fmt(cfg.dim)}, design ${esc(cfg.kind ?? cfg.memory_kind ?? cfg.memory)}, ${fmt(t.train_seconds, 0)} s of training</dd>
      <dt>weights</dt><dd>${esc(m.weights.dtype)}, ${fmt(m.weights.bytes)} bytes, sha256 <code>${esc(m.weights.sha256.slice(0, 12))}…</code></dd>
    </dl>${versions}<h3>Held-out metrics</h3>${metricsTable(m.metrics)}
    <h3>Training loss per epoch</h3><div id="loss-plot" data-testid="loss-plot"></div>
    <p class="small"><a href="/vendor/reports/${encodeURIComponent(m.name)}.md" target="_blank">REPORT.md</a> of ${esc(m.name)}</p>`;
  const hist = t.history ?? [];
  if (hist.length) {
    plot($("loss-plot"), { scales: { x: { time: false } }, axes: [{ label: "epoch" }, { label: "loss" }], series: [{ label: "epoch" }, { label: "loss", stroke: "#4f46e5", width: 2 }] }, [
      hist.map((h) => h.epoch),
      hist.map((h) => h.loss),
    ]);
  } else $("loss-plot").textContent = "no training history in the manifest";
}

function summaryOf(metrics) {
  if (!metrics || typeof metrics !== "object") return "";
  const r = metrics.results ? Object.values(metrics.results)[0] : metrics;
  const preferred = ["Recall@20", "NDCG@20", "MRR@20"];
  return Object.entries(r ?? {})
    .filter(([, v]) => typeof v === "number")
    .sort(([a], [b]) => (preferred.indexOf(a) + 1 || 99) - (preferred.indexOf(b) + 1 || 99))
    .slice(0, 3)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(" · ");
}

// ---- coverage --------------------------------------------------------------------------------

async function showCoverage() {
  const el = body("coverage");
  const r = await api("/v1/console/coverage");
  if (r.status !== 200) {
    el.innerHTML = `<p class="bad">${errorText(r)}</p>`;
    return;
  }
  const c = r.body;
  const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(1)}%` : "—");
  el.className = "body";
  el.innerHTML = `<p data-testid="coverage-summary"><b>${pct(c.in_model, c.catalog_items)}</b> of the catalog's ${fmt(c.catalog_items)} items are known to the model
      (${fmt(c.in_model)}); the rest are ranked with warm-start rows from their category until a retrain. ${fmt(c.available)} available, ${fmt(c.available_in_model)} of them rankable by the model.
      ${fmt(c.model_items_not_in_catalog)} of the model's ${fmt(c.model_items)} items are not in the catalog.</p>
    <div class="scroll"><table><tr><th>category</th><th class="num">items</th><th>known to the model</th><th class="num">available</th></tr>${c.by_category
      .map((b) => `<tr><td>${esc(b.category.replaceAll(">", " › "))}</td><td class="num">${fmt(b.items)}</td><td class="bar-cell"><span style="width:${(100 * b.in_model) / Math.max(1, b.items)}%"></span><b>${pct(b.in_model, b.items)}</b></td><td class="num">${fmt(b.available)}</td></tr>`)
      .join("")}</table></div>`;
}

// ---- experiments -----------------------------------------------------------------------------

const METRICS = ["ctr", "add_to_cart_rate", "conversion", "revenue_per_user"];

async function showExperiments() {
  const el = body("experiments");
  const r = await api("/v1/admin/experiments");
  el.className = "body";
  const list = r.status === 200 ? r.body.experiments ?? [] : [];
  if (r.status === 404 || (r.status === 200 && !list.length)) {
    el.innerHTML = `<p class="muted" data-testid="no-experiments">no experiments yet</p>`;
    return;
  }
  if (r.status !== 200) {
    el.innerHTML = `<p class="bad">${errorText(r)}</p>`;
    return;
  }
  el.innerHTML = list
    .map(
      (x, i) => `<div class="experiment" data-testid="experiment"><h3>${esc(x.name)} · <code>${esc(x.id)}</code></h3>
        <p class="small">placement <b>${esc(x.placement)}</b> · <b>${esc(x.status)}</b>${x.started_at ? ` since ${esc(x.started_at)}` : ""} ·
        variants ${x.variants.map((v) => `${esc(v.key)} (${esc(v.strategy?.type ?? "")}${v.strategy?.version ? ` ${esc(v.strategy.version)}` : ""}, weight ${fmt(v.weight)})`).join(", ")}</p>
        <div id="exp-${i}">${x.status === "draft" ? `<p class="muted">draft: not started</p>` : "loading results…"}</div></div>`,
    )
    .join("");
  for (const [i, x] of list.entries()) {
    if (x.status === "draft") continue;
    const res = await api(`/v1/admin/experiments/${encodeURIComponent(x.id)}/results?sequential=true`);
    const box = $(`exp-${i}`);
    if (res.status !== 200) {
      box.innerHTML = `<p class="bad">${errorText(res)}</p>`;
      continue;
    }
    box.innerHTML = resultsHtml(res.body, i);
    liftPlot($(`lift-${i}`), res.body);
  }
}

const flag = (on, text) => `<span class="flag ${on ? "on" : "off"}">${on ? "flagged" : "ok"}</span>${text ? ` ${text}` : ""}`;

/** Per-variant table, lifts against the control with their intervals, SRM and guardrail flags. */
function resultsHtml(r, i) {
  const cols = ["users", "exposures", "clicks", "ctr", "add_to_cart_rate", "conversion", "revenue_per_user"];
  const pct = (x) => (x == null ? "—" : `${(100 * x).toFixed(1)}%`);
  const variants = `<table data-testid="experiment-variants"><tr><th>variant</th>${cols.map((c) => `<th class="num">${c.replaceAll("_", " ")}</th>`).join("")}<th class="num">fallback</th><th class="num">p50 ms</th></tr>${r.variants
    .map((v) => `<tr><td>${esc(v.key)}${v.key === r.control ? " <span class=\"muted small\">control</span>" : ""}</td>${cols.map((c) => `<td class="num">${fmt(v[c])}</td>`).join("")}<td class="num">${pct(v.guardrails.fallback_rate)}</td><td class="num">${fmt(v.guardrails.latency_ms.p50, 1)}</td></tr>`)
    .join("")}</table>`;
  const lifts = r.comparisons
    .map(
      (c) => `<table><tr><th>${esc(c.variant)} vs ${esc(r.control)}</th><th class="num">lift</th><th>${fmt(100 * (1 - r.alpha), 0)}% interval</th><th class="num">p</th><th>always-valid interval (mSPRT)</th></tr>${METRICS.map((m) => {
        const x = c.metrics[m];
        return `<tr><td>${m.replaceAll("_", " ")}</td><td class="num ${x.significant ? (x.lift > 0 ? "ok" : "bad") : ""}">${pct(x.lift)}</td><td>[${pct(x.ci[0])}, ${pct(x.ci[1])}]</td><td class="num">${fmt(x.p, 4)}</td><td>${x.sequential ? `[${pct(x.sequential.ci[0])}, ${pct(x.sequential.ci[1])}]` : "—"}</td></tr>`;
      }).join("")}</table>
      <p class="small">guardrails: ${Object.entries(c.guardrails).map(([k, g]) => `${esc(k.replaceAll("_", " "))} ${flag(g.flagged)}`).join(" · ")}</p>`,
    )
    .join("");
  return `${variants}<p class="small">sample-ratio mismatch: <span data-testid="srm">${flag(r.srm.flagged, `χ² ${fmt(r.srm.chi2, 2)}, p ${fmt(r.srm.p, 4)}`)}</span>
    · attribution window ${fmt(r.attribution_window_hours)} h</p>${lifts}<div id="lift-${i}" data-testid="lift-plot"></div>`;
}

/** Lifts of every treatment with their intervals, one point per metric. */
function liftPlot(el, r) {
  if (!el || !r.comparisons.length) return;
  const xs = METRICS.map((_, k) => k + 1);
  const series = [{}];
  const data = [xs];
  const colors = ["#4f46e5", "#059669", "#b45309", "#dc2626"];
  r.comparisons.forEach((c, n) => {
    const col = colors[n % colors.length];
    for (const [label, pick, w] of [["lift", (x) => x.lift, 0], ["low", (x) => x.ci[0], 1], ["high", (x) => x.ci[1], 1]]) {
      series.push({ label: `${c.variant} ${label}`, stroke: col, width: 0, dash: w ? [4, 4] : undefined, points: { show: true, size: w ? 5 : 9, fill: w ? "#fff" : col } });
      data.push(METRICS.map((m) => (pick(c.metrics[m]) == null ? null : 100 * pick(c.metrics[m]))));
    }
  });
  plot(el, { scales: { x: { time: false, range: [0.5, METRICS.length + 0.5] } }, axes: [{ values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? METRICS[t - 1]?.replaceAll("_", " ") ?? "" : "")), splits: () => xs }, { label: "lift, % (with interval)" }], series }, data);
}

// ---- a shopper's memory ----------------------------------------------------------------------

/** Split a time-ordered event list into sessions at gaps longer than `idleMs`. */
function sessionsOf(events, idleMs) {
  const out = [];
  for (const e of events) {
    const cur = out[out.length - 1];
    if (!cur || e.timestamp - cur.end > idleMs) out.push({ start: e.timestamp, end: e.timestamp, events: [e] });
    else {
      cur.end = e.timestamp;
      cur.events.push(e);
    }
  }
  return out;
}

async function showShopper(userId) {
  const el = $("shopper").querySelector(".body");
  if (!userId) return;
  el.className = "body";
  el.innerHTML = "loading…";
  const u = encodeURIComponent(userId);
  const [summary, log, recs, live, names] = await Promise.all([
    api(`/v1/users/${u}`),
    api(`/v1/events/export?user_id=${u}`),
    api(`/v1/users/${u}/recommendations?k=10&include=metadata`),
    api("/v1/device/model"),
    titles,
  ]);
  const manifest = live.status === 200 ? (await api(live.body.files.manifest)).body : null;
  const idleMs = (manifest?.session?.idle_gap_seconds ?? 1800) * 1000;
  const title = (id) => names.get(id) ?? `item ${id}`;
  const events = typeof log.body === "string" ? log.body.split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
  events.sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
  const sessions = sessionsOf(events, idleMs);
  const s = summary.body;
  const state =
    summary.status === 200
      ? `<dl class="kv" data-testid="state-summary"><dt>model</dt><dd><code>${esc(s.model_version)}</code></dd>
        <dt>events applied</dt><dd data-testid="event-count">${fmt(s.event_count)}</dd><dt>sessions</dt><dd>${fmt(s.session_count)}</dd>
        <dt>last event</dt><dd>${esc(s.last_event_at)}</dd><dt>session started</dt><dd>${esc(s.session_started_at)}</dd><dt>recent items</dt><dd>${fmt(s.recent_items)} remembered</dd></dl>`
      : `<p class="muted">${summary.status === 404 ? "no state stored for this user (a new shopper: popular items)" : errorText(summary)}</p>`;

  // Why: each recommended item's closest recent item (cosine of the item embeddings), from the
  // similar lists of the shopper's last three distinct items.
  const recent = [...new Set(events.map((e) => e.item_id).reverse())].slice(0, 3);
  const near = new Map();
  await Promise.all(
    recent.map(async (id) => {
      const r = await api(`/v1/items/${encodeURIComponent(id)}/similar?k=100`);
      if (r.status === 200) for (const [rank, it] of r.body.items.entries()) if (!near.has(it.item_id) || near.get(it.item_id).rank > rank) near.set(it.item_id, { id, rank, score: it.score });
    }),
  );
  const rec = recs.body;
  const recHtml =
    recs.status === 200
      ? `<p>source <b data-testid="rec-source">${esc(rec.source)}</b>${rec.reason ? `, reason <b data-testid="rec-reason">${esc(rec.reason)}</b>` : ""}${rec.variant ? `, variant <b>${esc(rec.variant)}</b>` : ""} · model <code>${esc(rec.model_version)}</code></p>
         <table data-testid="recommendations"><tr><th>#</th><th>item</th><th class="num">score</th><th>source</th><th>why</th></tr>${rec.items
           .map((i, n) => {
             const w = near.get(i.item_id);
             const why = i.source === "model" ? (w ? `close to “${esc(title(w.id))}” (cosine ${fmt(w.score, 2)})` : "the long-term state as a whole") : "popular";
             return `<tr><td>${n + 1}</td><td>${esc(i.item?.title ?? title(i.item_id))}</td><td class="num">${fmt(i.score, 3)}</td><td>${esc(i.source)}</td><td class="small">${why}</td></tr>`;
           })
           .join("")}</table>`
      : `<p class="bad">${errorText(recs)}</p>`;

  const rows = sessions
    .map((ss, n) => `<tr class="session-row"><td colspan="3">session ${n + 1} · ${iso(ss.start)} → ${iso(ss.end)} UTC · ${ss.events.length} events</td></tr>${ss.events
      .map((e) => `<tr><td>${iso(e.timestamp)}</td><td>${esc(e.type)}</td><td>${esc(title(e.item_id))} <span class="muted small">${esc(e.item_id)}${e.in_model ? "" : " · not in model"}</span></td></tr>`)
      .join("")}`)
    .reverse()
    .join("");
  el.innerHTML = `<div class="twocol"><div><h3>Stored state</h3>${state}<h3>Events over time</h3><div id="events-plot" data-testid="events-plot"></div></div>
      <div><h3>Current recommendations and why</h3>${recHtml}</div></div>
    <h3>Event timeline (event log): ${events.length} events in <span data-testid="session-count">${sessions.length}</span> sessions</h3>
    <div class="scroll"><table data-testid="timeline"><tr><th>time (UTC)</th><th>type</th><th>item</th></tr>${rows}</table></div>`;
  if (events.length) {
    const xs = events.map((e) => e.timestamp / 1000);
    // A few seconds of events would give uPlot an empty time range: show at least a minute.
    const pad = Math.max(0, 60 - (xs[xs.length - 1] - xs[0])) / 2;
    plot($("events-plot"), { scales: { x: { range: [xs[0] - pad, xs[xs.length - 1] + pad] } }, axes: [{}, { label: "events so far" }], series: [{}, { label: "events", stroke: "#059669", width: 2, points: { show: true } }] }, [xs, xs.map((_, i) => i + 1)]);
  } else $("events-plot").textContent = "no logged events";
}

// ---- wiring ----------------------------------------------------------------------------------

async function refreshAll() {
  await showHealth().catch((e) => (body("health").textContent = e.message));
  if (!key) return;
  await Promise.all([
    showModels().catch((e) => (body("models").textContent = e.message)),
    showCoverage().catch((e) => (body("coverage").textContent = e.message)),
    showExperiments().catch((e) => (body("experiments").textContent = e.message)),
  ]);
  const user = $("user").value.trim();
  if (user) await showShopper(user).catch((e) => ($("shopper").querySelector(".body").textContent = e.message));
}

$("key").value = key;
$("user").value = new URLSearchParams(location.search).get("user") ?? localStorage.getItem("gru_uid") ?? "";
$("key-form").onsubmit = async (ev) => {
  ev.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem(KEY, key);
  await refreshAll();
  document.body.dataset.ready = "true";
};
$("user-form").onsubmit = async (ev) => {
  ev.preventDefault();
  document.body.dataset.ready = "false";
  await showShopper($("user").value.trim()).catch((e) => ($("shopper").querySelector(".body").textContent = e.message));
  document.body.dataset.ready = "true";
};
await refreshAll();
document.body.dataset.ready = "true";
