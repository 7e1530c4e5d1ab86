/**
 * New catalog items in the model before a retrain. An item the model does not know gets the row
 * retraining would start it from (models/training/warmstart.py `grow`): the mean of the rows and
 * item biases of the known items of its category, walking up the category path until a level has
 * known items, else the mean of every known row. Scores are q·e + b, linear in the row, so its
 * score for a user is exactly the mean score of those items: one masked score run over the
 * categories in use gives every new item's score, and new items compete with the model's items in
 * the same ranking (recommendations, re-ranking, the exploration share). Similar items need the
 * row itself (a cosine), which the graphs do not expose: a new item's similar list stays the
 * popular items of its category, and it is not found in other items' similar lists until a retrain.
 */
import type { CatalogMirror, RowView } from "../catalog/mirror";
import { CATEGORY_SEPARATOR } from "../catalog/schemas";
import type { GruModel, Moment } from "../model/runtime";
import type { Candidate } from "./arrange";

/** At most this many catalog-only items (the newest) get a warm row. */
export const MAX_WARM_ITEMS = 20_000;

interface Warm {
  view: RowView;
  /** Catalog items the model does not know, newest first (at most MAX_WARM_ITEMS). */
  only: string[];
  /** New item -> the category key whose known rows give its row ("" = every known row). */
  group: Map<string, string>;
  /** Category key -> its known rows (only keys some new item uses). */
  rows: Map<string, number[]>;
}

const cache = new WeakMap<GruModel, Warm>();

/** The warm-start groups of a model under the current catalog (rebuilt only after the catalog changed). */
export function warmGroups(model: GruModel, catalog: CatalogMirror): Warm {
  const view = catalog.rowView(model);
  const hit = cache.get(model);
  if (hit && hit.view === view) return hit;
  const only: string[] = [];
  for (const id of catalog.arrivedSince(-Infinity)) {
    if (model.rowOf(id) === undefined) only.push(id);
    if (only.length >= MAX_WARM_ITEMS) break;
  }
  const byPrefix = new Map<string, number[]>();
  if (only.length) {
    for (let r = 1; r < model.rows; r++) {
      const key = view.category[r];
      if (!key) continue;
      const levels = key.split(CATEGORY_SEPARATOR);
      for (let l = 1; l <= levels.length; l++) {
        const p = levels.slice(0, l).join(CATEGORY_SEPARATOR);
        let list = byPrefix.get(p);
        if (!list) byPrefix.set(p, (list = []));
        list.push(r);
      }
    }
  }
  const group = new Map<string, string>();
  const rows = new Map<string, number[]>();
  for (const id of only) {
    const levels = (catalog.get(id)?.categoryKey ?? "").split(CATEGORY_SEPARATOR).filter(Boolean);
    let g = "";
    for (let l = levels.length; l >= 1; l--) {
      const p = levels.slice(0, l).join(CATEGORY_SEPARATOR);
      if (byPrefix.has(p)) {
        g = p;
        break;
      }
    }
    group.set(id, g);
    if (!rows.has(g)) rows.set(g, g === "" ? Array.from({ length: model.rows - 1 }, (_, i) => i + 1) : byPrefix.get(g)!);
  }
  const warm = { view, only, group, rows };
  cache.set(model, warm);
  return warm;
}

/** Catalog items the model does not know that get a warm row, newest first. */
export function warmIds(model: GruModel, catalog: CatalogMirror): readonly string[] {
  return warmGroups(model, catalog).only;
}

/**
 * Model scores of new items (ids the model does not know; others and items without a warm row
 * are skipped), best first, each as its warm row would score: the mean score of its group's rows.
 */
export async function warmScores(model: GruModel, catalog: CatalogMirror, vector: Float32Array, at: Moment, ids: readonly string[]): Promise<Candidate[]> {
  if (!ids.length) return [];
  const w = warmGroups(model, catalog);
  const used = new Set<string>();
  for (const id of ids) {
    const g = w.group.get(id);
    if (g !== undefined) used.add(g);
  }
  if (!used.size) return [];
  const mask = new Float32Array(model.rows).fill(1);
  let n = 0;
  for (const g of used) {
    for (const r of w.rows.get(g)!) {
      if (mask[r] === 1) n++;
      mask[r] = 0;
    }
  }
  const top = await model.topKMasked(vector, at, n, mask);
  const score = new Float64Array(model.rows);
  for (const t of top) score[t.row] = t.score;
  const mean = new Map<string, number>();
  for (const g of used) {
    const rows = w.rows.get(g)!;
    let s = 0;
    for (const r of rows) s += score[r]!;
    mean.set(g, s / rows.length);
  }
  const out: Candidate[] = [];
  for (const id of ids) {
    const g = w.group.get(id);
    if (g !== undefined) out.push({ item_id: id, score: Math.fround(mean.get(g)!), source: "model", warm: true });
  }
  return out.sort((a, b) => b.score - a.score);
}
