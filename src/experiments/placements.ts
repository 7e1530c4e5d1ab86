/**
 * Per-placement rules presets: filters and arrangement (boosts, cap per category, exploration
 * share) a shop sets once for a placement (`home`, `product`, `search`, ...) and every list served
 * there gets, inside or outside experiments; a variant's own rules go on top (its fields win, its
 * boosts add). Read from D1 at most every `maxAgeMs` per isolate, like the running experiments; a
 * read that fails or is slow keeps the previous copy.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../catalog/db";
import type { RulesPreset, Strategy } from "./types";

export interface PlacementRules {
  placement: string;
  rules: RulesPreset;
  updatedAt: number;
}

let cache: { at: number; byPlacement: Map<string, PlacementRules> } | undefined;

/** Every placement's preset (cached per isolate for `maxAgeMs`). */
export async function placementPresets(db: Db, o: { maxAgeMs: number; timeoutMs: number; now?: number }): Promise<Map<string, PlacementRules>> {
  const now = o.now ?? Date.now();
  if (cache && now - cache.at < o.maxAgeMs) return cache.byPlacement;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const rows = await Promise.race([
      db.all<{ placement: string; rules: string; updated_at: number }>(sql`SELECT placement, rules, updated_at FROM placement_rules`),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`placement rules read timed out after ${o.timeoutMs} ms`)), o.timeoutMs))),
    ]);
    cache = { at: now, byPlacement: new Map(rows.map((r) => [r.placement, { placement: r.placement, rules: JSON.parse(r.rules) as RulesPreset, updatedAt: r.updated_at }])) };
  } catch (e) {
    console.warn(`placement rules unavailable, serving without them: ${(e as Error).message}`);
    cache = { at: now, byPlacement: cache?.byPlacement ?? new Map() };
  } finally {
    clearTimeout(timer);
  }
  return cache.byPlacement;
}

/** Set a placement's preset (this isolate sees it at once, others within their cache time). */
export async function putPlacementRules(db: Db, placement: string, rules: RulesPreset, nowMs = Date.now()): Promise<PlacementRules> {
  await db.run(sql`INSERT INTO placement_rules (placement, rules, updated_at) VALUES (${placement}, ${JSON.stringify(rules)}, ${nowMs})
    ON CONFLICT(placement) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at`);
  cache = undefined;
  return { placement, rules, updatedAt: nowMs };
}

/** Remove a placement's preset; false when it had none. */
export async function deletePlacementRules(db: Db, placement: string): Promise<boolean> {
  const r = await db.get<{ n: number }>(sql`SELECT count(*) AS n FROM placement_rules WHERE placement = ${placement}`);
  await db.run(sql`DELETE FROM placement_rules WHERE placement = ${placement}`);
  cache = undefined;
  return (r?.n ?? 0) > 0;
}

/** A variant's rules on top of a placement's: the variant's fields win, boosts add up. */
export function mergePresets(base: RulesPreset, over: RulesPreset | undefined): RulesPreset {
  if (!over) return base;
  const boosts = [...(base.boosts ?? []), ...(over.boosts ?? [])];
  return { ...base, ...over, ...(boosts.length ? { boosts } : {}) };
}

/** The strategy a list is served with once the placement's preset is applied (null strategy: the served model). */
export function withPlacement(strategy: Strategy | null, preset: RulesPreset | undefined): Strategy | null {
  if (!preset) return strategy;
  if (!strategy) return { type: "model", rules: preset };
  return { ...strategy, rules: mergePresets(preset, strategy.rules) };
}
