/**
 * New catalog items in the model before a retrain. An item the model does not know gets the row
 * retraining would start it from (models/training/warmstart.py `grow`): the mean of the rows and
 * item biases of the known items of its category, walking up the category path until a level has
 * known items, else the mean of every known row. Scores are q·e + b, linear in the row, so its
 * score for a user is exactly the mean score of those items: one masked score run over the
 * categories in use gives every new item's score, and new items compete with the model's items in
 * the same ranking (recommendations, re-ranking, the exploration share); a sharded model takes the
 * mean over the group's SIMILAR_SAMPLE most trained rows (a department of a million-item catalog is
 * tens of thousands of rows, each a score its shard would return). Similar items are a
 * cosine, not linear in the row: there a new item takes the mean direction of its category's most
 * trained items (SIMILAR_SAMPLE), computed from the similar graph's own cosines, so it has a
 * similar list and is found in trained items' similar lists before a retrain.
 */
import type { CatalogMirror, RowView } from "../catalog/mirror";
import { CATEGORY_SEPARATOR } from "../catalog/schemas";
import { RowMask } from "../model/row-mask";
import type { GruModel, Moment } from "../model/runtime";
import type { Candidate } from "./arrange";
import { freeRows } from "./filters";

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
  const only = catalog.unknownTo((k) => model.knowsKey(k), MAX_WARM_ITEMS);
  const byPrefix = new Map<string, number[]>();
  if (only.length) {
    for (let r = 1; r < model.rows; r++) {
      const key = view.categoryOf(r);
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

/** The warm groups `ids` use. */
function groupsOf(w: Warm, ids: readonly string[]): Set<string> {
  const used = new Set<string>();
  for (const id of ids) {
    const g = w.group.get(id);
    if (g !== undefined) used.add(g);
  }
  return used;
}

/** Each id with a warm group as a candidate scored by its group's score, best first. */
function byGroupScore(w: Warm, ids: readonly string[], score: ReadonlyMap<string, number>): Candidate[] {
  const out: Candidate[] = [];
  for (const id of ids) {
    const g = w.group.get(id);
    if (g !== undefined) out.push({ item_id: id, score: Math.fround(score.get(g)!), source: "model", warm: true });
  }
  return out.sort((a, b) => b.score - a.score);
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
  const used = groupsOf(w, ids);
  if (!used.size) return [];
  // A sharded model averages over each group's SIMILAR_SAMPLE most trained rows (as its similar
  // direction does): its shards return every score they are asked for, and a department of a
  // million-item catalog is tens of thousands of rows a request.
  const rowsOf = (g: string) => (model.sharded ? groupSample(model, w, g) : w.rows.get(g)!);
  const mask = RowMask.full(model.rows);
  let n = 0;
  for (const g of used) {
    for (const r of rowsOf(g)) {
      if (mask.has(r)) n++;
      mask.clear(r);
    }
  }
  const top = await model.topKMasked(vector, at, n, mask);
  const score = new Float64Array(model.rows);
  for (const t of top) score[t.row] = t.score;
  const mean = new Map<string, number>();
  for (const g of used) {
    const rows = rowsOf(g);
    let s = 0;
    for (const r of rows) s += score[r]!;
    mean.set(g, s / rows.length);
  }
  return byGroupScore(w, ids, mean);
}

/** Items of a category whose directions make a new item's direction (its most trained ones). */
export const SIMILAR_SAMPLE = 64;
const BATCH = 8;

/**
 * A new item's place for similarity: the mean direction of (up to SIMILAR_SAMPLE of) its group's
 * most trained items, w = Σ ê_i / |Σ ê_i|. `sum[j]` = Σ_i cos(i, j) over the sample, so
 * cos(w, e_j) = sum[j] / norm with norm = |Σ ê_i| = sqrt(Σ_{i,l} cos(i, l)).
 */
interface Direction {
  sample: number[];
  /** Single isolate: Σ_i cos(i, j) for every row j (from the similar graph's batched cosines). */
  sum?: Float64Array;
  /** Sharded: w / |w|, w = Σ_i ê_i from the shards' normalised rows (no pass over every row). */
  vec?: Float32Array;
  /** |Σ_i ê_i|. */
  norm: number;
}

const directions = new WeakMap<GruModel, { view: RowView; byGroup: Map<string, Promise<Direction>>; samples: Map<string, number[]> }>();

function directionCache(model: GruModel, w: Warm) {
  let c = directions.get(model);
  if (!c || c.view !== w.view) {
    c = { view: w.view, byGroup: new Map(), samples: new Map() };
    directions.set(model, c);
  }
  return c;
}

const popularRank = new WeakMap<GruModel, Map<number, number>>();

/** A group's SIMILAR_SAMPLE most trained rows (the model's popular list first, then by row). */
function groupSample(model: GruModel, w: Warm, g: string): number[] {
  const c = directionCache(model, w);
  const hit = c.samples.get(g);
  if (hit) return hit;
  let rank = popularRank.get(model);
  if (!rank) {
    rank = new Map<number, number>();
    for (const [i, id] of model.manifest.popular.ids.entries()) {
      const r = model.rowOf(id);
      if (r !== undefined && !rank.has(r)) rank.set(r, i);
    }
    popularRank.set(model, rank);
  }
  const rk = rank;
  const sample = [...(w.rows.get(g) ?? [])].sort((a, b) => (rk.get(a) ?? Number.MAX_SAFE_INTEGER) - (rk.get(b) ?? Number.MAX_SAFE_INTEGER) || a - b).slice(0, SIMILAR_SAMPLE);
  c.samples.set(g, sample);
  return sample;
}

/** A sharded model's direction from its sample's normalised rows: w / |w|, w = Σ_i ê_i. */
function directionOf(sample: number[], vectors: Float32Array[], dim: number): Direction {
  const w = new Float64Array(dim);
  for (const v of vectors) for (let c = 0; c < dim; c++) w[c] = w[c]! + v[c]!;
  const norm = Math.sqrt(Math.max(w.reduce((t, x) => t + x * x, 0), 1e-12));
  return { sample, norm, vec: Float32Array.from(w, (x) => x / norm) };
}

/** The directions of the `groups` a sharded model has none for yet, from one read of all their
 * sample rows (one `rows` call per shard), stored with the others. */
async function shardedDirections(model: GruModel, w: Warm, groups: string[]): Promise<void> {
  const c = directionCache(model, w);
  const missing = groups.filter((g) => !c.byGroup.has(g));
  if (!missing.length) return;
  const samples = missing.map((g) => groupSample(model, w, g));
  const vectors = await model.itemVectors(samples.flat());
  let at = 0;
  missing.forEach((g, i) => {
    const n = samples[i]!.length;
    c.byGroup.set(g, Promise.resolve(directionOf(samples[i]!, vectors.slice(at, at + n), model.dim)));
    at += n;
  });
}

/** The direction of a warm group (computed once per model and catalog version, in batches of the similar graph). */
function groupDirection(model: GruModel, w: Warm, g: string): Promise<Direction> {
  const c = directionCache(model, w);
  let d = c.byGroup.get(g);
  if (!d) {
    d = (async () => {
      const sample = groupSample(model, w, g);
      // cos(w, e_j) = ê_j . w / |w|: the direction itself, from the sample's normalised rows; a
      // sharded model's similar graphs then rank every row by it (similarTo), exactly as a seed's.
      if (model.sharded) return directionOf(sample, await model.itemVectors(sample), model.dim);
      const sum = new Float64Array(model.rows);
      for (let i = 0; i < sample.length; i += BATCH) {
        for (const cos of await model.similarityRows(sample.slice(i, i + BATCH))) for (let j = 1; j < model.rows; j++) sum[j] = sum[j]! + cos[j]!;
      }
      let n2 = 0;
      for (const l of sample) n2 += sum[l]!;
      return { sample, sum, norm: Math.sqrt(Math.max(n2, 1e-12)) };
    })();
    d.catch(() => c.byGroup.delete(g));
    c.byGroup.set(g, d);
  }
  return d;
}

/** A new item's similar items as the picker reads them: the best `want` first, of `free` in all. */
export interface SimilarOfNew {
  free: number;
  fetch(want: number): Promise<Candidate[]>;
}

/**
 * Similar items of a new item (one the model was not trained on): trained rows by cosine with its
 * direction, best first, never a masked row. Null when it has no warm group or
 * the model has no similar graph.
 */
export async function similarOfNew(model: GruModel, catalog: CatalogMirror, id: string, mask: RowMask): Promise<SimilarOfNew | null> {
  if (!model.hasSimilar || model.rowOf(id) !== undefined) return null;
  const w = warmGroups(model, catalog);
  const g = w.group.get(id);
  if (g === undefined) return null;
  const d = await groupDirection(model, w, g);
  if (d.vec) {
    const vec = d.vec;
    return {
      free: freeRows(mask),
      fetch: async (want) => (await model.similarTo(vec, want, mask.copy())).map((t) => ({ item_id: model.idOf(t.row), score: t.score, source: "model" as const })),
    };
  }
  const sum = d.sum!;
  const out: Candidate[] = [];
  for (let j = 1; j < model.rows; j++) if (!mask.has(j)) out.push({ item_id: model.idOf(j), score: Math.fround(sum[j]! / d.norm), source: "model" });
  out.sort((a, b) => b.score - a.score);
  return { free: out.length, fetch: async (want) => out.slice(0, want) };
}

/**
 * New items (ids the model does not know) as similar items of a trained seed row, best first: the
 * seed's mean cosine with the group's sample, the seed itself left out, Σ_{i in sample, i != seed}
 * cos(seed, i) / (n - [seed in sample]): what the seed's cosine with an item of that category is
 * on average. Not the cosine with the group's mean direction: a mean of 64 directions lies close to
 * every one of them (the demo's cos 0.67 with every popular film), so new items would head the
 * similar lists of every item they share a category with. With no other sampled item, the cosine
 * with the direction.
 */
export async function newInSimilar(model: GruModel, catalog: CatalogMirror, seedRow: number, ids: readonly string[]): Promise<Candidate[]> {
  if (!model.hasSimilar || !ids.length) return [];
  const w = warmGroups(model, catalog);
  const groups = groupsOf(w, ids);
  if (!groups.size) return [];
  // a sharded model reads the sample rows of the groups without a direction yet first: one `rows`
  // call per shard in all
  if (model.sharded) await shardedDirections(model, w, [...groups]);
  const dirs = new Map<string, Direction>();
  for (const g of groups) dirs.set(g, await groupDirection(model, w, g));
  if (model.sharded) {
    // Σ_i cos(seed, i) = ê_seed . Σ_i ê_i = (ê_seed . w / |w|) |w|, from the seed's normalised row
    const [seed] = await model.itemVectors([seedRow]);
    const cos = new Map<string, number>();
    for (const [g, d] of dirs) {
      const toDirection = d.vec!.reduce((t, x, c) => t + x * seed![c]!, 0);
      const self = d.sample.includes(seedRow) ? 1 : 0;
      cos.set(g, meanCosine(toDirection * d.norm - self, d.sample.length - self, toDirection));
    }
    return byGroupScore(w, ids, cos);
  }
  // The seed's cosine with every sampled row: one similar run over those rows only.
  const mask = RowMask.full(model.rows);
  let n = 0;
  for (const d of dirs.values()) for (const r of d.sample) if (mask.has(r) && r !== seedRow) mask.clear(r), n++;
  const seed = new Float64Array(model.rows);
  for (const t of await model.similar(seedRow, n, mask)) seed[t.row] = t.score;
  const cos = new Map<string, number>();
  for (const [g, d] of dirs) {
    let s = 0; // the seed's own row is not ranked, so seed[seedRow] is 0
    for (const i of d.sample) s += seed[i]!;
    const self = d.sample.includes(seedRow) ? 1 : 0;
    cos.set(g, meanCosine(s, d.sample.length - self, (s + self) / d.norm));
  }
  return byGroupScore(w, ids, cos);
}

/** `sum / n`, or `direction` (the cosine with the group's direction) when no other item was sampled. */
function meanCosine(sum: number, n: number, direction: number): number {
  return n > 0 ? sum / n : direction;
}
