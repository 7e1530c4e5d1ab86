/**
 * Business rules shared by recommendations and similar items: only available catalog items (once
 * the shop has a catalog), never a purchased item, the user's recent items left out on request,
 * the items of the user's seen filter on request, a category subtree, a price range and an
 * explicit exclude list.
 */
import type { CatalogMirror } from "../catalog/mirror";
import type { Arrangement } from "./arrange";
import { inCategory } from "../catalog/schemas";
import type { RowMask } from "../model/row-mask";
import type { GruModel } from "../model/runtime";
import { maskSeenRows, rowPositions, type SeenFilter, seenHas } from "../state/seen";

export interface Filters {
  /** Category key prefix ("Shoes" or "Shoes > Running"): only items under it. */
  category?: string;
  /** Inclusive price bounds (in the items' own currency); items without a price are left out. */
  minPrice?: number;
  maxPrice?: number;
  /** Item ids never to return. */
  exclude?: readonly string[];
  /** Boosts, a cap per category and an exploration share (arrange.ts); never changes what may be shown. */
  arrange?: Arrangement;
}

/** Everything a candidate is checked against. */
export interface Rules extends Filters {
  catalog: CatalogMirror;
  /** Item ids never to return on top of `exclude` (purchases, recent items, the seed item). */
  never: ReadonlySet<string>;
  /** The user's seen filter when its items are left out (`exclude_seen`). */
  seen?: SeenFilter;
}

const hasPrice = (f: Filters) => f.minPrice !== undefined || f.maxPrice !== undefined;

/** May this item id be shown? */
export function allowed(r: Rules, id: string): boolean {
  if (r.never.has(id) || r.exclude?.includes(id)) return false;
  if (r.seen && seenHas(r.seen, id)) return false;
  const f = r.catalog.get(id);
  if (r.catalog.restricts && (!f || !f.available)) return false;
  if (r.category !== undefined && !(f && inCategory(f.categoryKey, r.category))) return false;
  if (hasPrice(r)) {
    const p = f?.price ?? Number.NaN;
    if (!(p >= (r.minPrice ?? -Infinity) && p <= (r.maxPrice ?? Infinity))) return false;
  }
  return true;
}

/** The model mask (the rows never to return) for these rules, over all embedding rows. */
export function modelMask(model: GruModel, r: Rules): RowMask {
  const price = hasPrice(r);
  const needView = r.catalog.restricts || r.category !== undefined || price;
  const view = needView ? r.catalog.rowView(model) : null;
  // Availability is precomputed per catalog version; only category and price need a pass.
  const mask = view && r.catalog.restricts ? view.mask.copy() : model.mask();
  if (view && (r.category !== undefined || price)) view.restrict(mask, r);
  if (r.seen) maskSeenRows(r.seen, rowPositions(model), mask);
  for (const id of r.never) {
    const row = model.rowOf(id);
    if (row !== undefined) mask.set(row);
  }
  for (const id of r.exclude ?? []) {
    const row = model.rowOf(id);
    if (row !== undefined) mask.set(row);
  }
  return mask;
}

/** Count of rows a mask leaves free (padding row 0 never counts). */
export function freeRows(mask: RowMask): number {
  return mask.free() - (mask.has(0) ? 0 : 1);
}
