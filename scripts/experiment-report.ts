/**
 * Printing an experiment's results (GET /v1/admin/experiments/{id}/results) as tables: used by
 * `npm run experiment -- results` and `npm run simulate:ab`.
 */
import type { Results } from "../src/experiments/results";

const f = (x: number | null | undefined, d = 4) => (x === null || x === undefined || Number.isNaN(x) ? "-" : x.toFixed(d));
const pct = (x: number | null | undefined) => (x === null || x === undefined || Number.isNaN(x) ? "-" : `${(x * 100).toFixed(1)}%`);
const pv = (p: number | null | undefined) => (p === null || p === undefined || Number.isNaN(p) ? "-" : p < 1e-4 ? p.toExponential(1) : p.toFixed(4));

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ")).join("\n");
}

/** A human-readable report of the results. */
export function formatResults(r: Results): string {
  const out: string[] = [];
  out.push(`experiment ${r.experiment} (${r.status}), control ${r.control}, attribution window ${r.attribution_window_hours} h, alpha ${r.alpha}`);
  out.push(
    table([
      ["variant", "weight", "users", "exposures", "clicks", "CTR", "add-to-cart", "conversion", "revenue/user", "fallback", "errors", "latency mean/p95 ms"],
      ...r.variants.map((v) => [
        v.key,
        String(v.weight),
        String(v.users),
        String(v.exposures),
        String(v.clicks),
        f(v.ctr),
        f(v.add_to_cart_rate),
        f(v.conversion),
        f(v.revenue_per_user, 3),
        pct(v.guardrails.fallback_rate),
        pct(v.guardrails.error_rate),
        `${f(v.guardrails.latency_ms.mean, 1)}/${f(v.guardrails.latency_ms.p95, 1)}`,
      ]),
    ]),
  );
  out.push(`sample ratio: chi2 ${f(r.srm.chi2, 2)}, p ${pv(r.srm.p)}${r.srm.flagged ? "  ** SAMPLE-RATIO MISMATCH (p < 0.001): do not trust these results **" : " (ok)"}`);
  for (const c of r.comparisons) {
    const rows = [["metric", "control", "treatment", "lift", "95% CI (delta)", "p", "sequential CI", "seq p", "CUPED lift", "CUPED CI", "CUPED p"]];
    for (const [m, x] of Object.entries(c.metrics)) {
      rows.push([
        m,
        f(x.control),
        f(x.treatment),
        pct(x.lift),
        `[${pct(x.ci[0])}, ${pct(x.ci[1])}]`,
        pv(x.p) + (x.significant ? " *" : ""),
        x.sequential ? `[${pct(x.sequential.ci[0])}, ${pct(x.sequential.ci[1])}]` : "-",
        x.sequential ? pv(x.sequential.p) : "-",
        x.cuped ? pct(x.cuped.lift) : "-",
        x.cuped ? `[${pct(x.cuped.ci[0])}, ${pct(x.cuped.ci[1])}]` : "-",
        x.cuped ? pv(x.cuped.p) : "-",
      ]);
    }
    out.push(`${c.variant} vs ${r.control}:`);
    out.push(table(rows));
    const g = c.guardrails;
    const flag = (x: { flagged: boolean }) => (x.flagged ? " WORSE" : "");
    out.push(
      `guardrails: fallback ${pct(g.fallback_rate.treatment)} vs ${pct(g.fallback_rate.control)} (p ${pv(g.fallback_rate.p)})${flag(g.fallback_rate)}; ` +
        `errors ${pct(g.error_rate.treatment)} vs ${pct(g.error_rate.control)} (p ${pv(g.error_rate.p)})${flag(g.error_rate)}; ` +
        `latency ${f(g.latency_ms.treatment, 1)} vs ${f(g.latency_ms.control, 1)} ms (p ${pv(g.latency_ms.p)})${flag(g.latency_ms)}`,
    );
  }
  if (r.excluded.forced_requests || r.excluded.users_in_several_variants) {
    out.push(`left out: ${r.excluded.forced_requests} QA-override requests, ${r.excluded.users_in_several_variants} users seen in several variants`);
  }
  return out.join("\n");
}
