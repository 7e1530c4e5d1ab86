/**
 * Catalog queries on D1 (drizzle-orm). Bulk writes send their rows as one JSON parameter and
 * expand it with SQLite's json_each, so a chunk of 500 items is one statement (D1 allows 100
 * bound parameters per statement); all chunks of a request go in one batch, i.e. one transaction.
 * Every write stamps the rows it touches with a revision above all earlier ones (see schema).
 */
import { and, eq, isNull, sql } from "drizzle-orm";
import { type DrizzleD1Database, drizzle } from "drizzle-orm/d1";
import * as schema from "../../schema/schema";
import { CATEGORY_SEPARATOR, type ItemInput, type ItemPatch } from "./schemas";

export type Db = DrizzleD1Database<typeof schema> & { $client: D1Database };

const dbs = new WeakMap<D1Database, Db>();

/** The drizzle handle of a D1 binding (one per binding per isolate). */
export function database(d1: D1Database): Db {
  let db = dbs.get(d1);
  if (!db) dbs.set(d1, (db = drizzle(d1, { schema }) as Db));
  return db;
}

const CHUNK = 500;
const NEXT_REV = "(SELECT coalesce(max(rev), 0) + 1 FROM items)";

// Raw statements for the bulk paths (drizzle's batch does not take raw SQL); ?1 created/updated
// time, ?2 updated time, ?3 the rows as a JSON array.
const UPSERT_SQL = `
  INSERT INTO items (id, title, category_path, category_key, price, currency, available, url, image_url, attributes, created_at, updated_at, deleted_at, rev)
  SELECT json_extract(j.value, '$.id'), json_extract(j.value, '$.title'), json_extract(j.value, '$.category_path'),
         json_extract(j.value, '$.category_key'), json_extract(j.value, '$.price'), json_extract(j.value, '$.currency'),
         json_extract(j.value, '$.available'), json_extract(j.value, '$.url'), json_extract(j.value, '$.image_url'),
         json_extract(j.value, '$.attributes'), coalesce(json_extract(j.value, '$.created_at'), ?1), ?2, NULL, ${NEXT_REV}
  FROM json_each(?3) AS j WHERE true
  ON CONFLICT(id) DO UPDATE SET
    title = excluded.title, category_path = excluded.category_path, category_key = excluded.category_key,
    price = excluded.price, currency = excluded.currency, available = excluded.available, url = excluded.url,
    image_url = excluded.image_url, attributes = excluded.attributes, updated_at = excluded.updated_at,
    created_at = CASE WHEN excluded.created_at <> ?1 THEN excluded.created_at ELSE items.created_at END,
    deleted_at = NULL, rev = excluded.rev`;

const keep = (f: string) => `CASE WHEN json_type(p.value, '$.${f}') IS NULL THEN items.${f} ELSE json_extract(p.value, '$.${f}') END`;
const PATCH_SQL = `
  UPDATE items SET
    title = ${keep("title")}, category_path = ${keep("category_path")}, category_key = ${keep("category_key")},
    price = ${keep("price")}, currency = ${keep("currency")}, available = ${keep("available")}, url = ${keep("url")},
    image_url = ${keep("image_url")}, attributes = ${keep("attributes")}, created_at = ${keep("created_at")}, updated_at = ?1, rev = ${NEXT_REV}
  FROM json_each(?2) AS p
  WHERE items.id = json_extract(p.value, '$.id') AND items.deleted_at IS NULL`;

const REV_SQL = "SELECT max(rev) AS rev FROM items";

function chunks<T>(xs: T[], n = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

const categoryKey = (path: readonly string[]) => path.join(CATEGORY_SEPARATOR);

/** Insert or fully replace items (a deleted item comes back). Returns the catalog revision after. */
export async function upsertItems(db: Db, rows: (ItemInput & { id: string })[], nowMs: number): Promise<number> {
  const stmts = chunks(rows).map((part) => {
    const payload = JSON.stringify(
      part.map((r) => ({
        id: r.id,
        title: r.title,
        category_path: r.category_path,
        category_key: categoryKey(r.category_path),
        price: r.price,
        currency: r.currency,
        available: r.available ? 1 : 0,
        url: r.url,
        image_url: r.image_url,
        attributes: r.attributes,
        created_at: r.created_at ?? null,
      })),
    );
    return db.$client.prepare(UPSERT_SQL).bind(nowMs, nowMs, payload);
  });
  return runAndReadRev(db, stmts);
}

/** Which of `ids` exist (not deleted). */
export async function existingIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const part of chunks([...ids], 5000)) {
    const rows = await db.all<{ id: string }>(
      sql`SELECT id FROM items WHERE deleted_at IS NULL AND id IN (SELECT value FROM json_each(${JSON.stringify(part)}))`,
    );
    for (const r of rows) out.add(r.id);
  }
  return out;
}

/** Apply partial updates to existing items (absent fields stay). Returns the revision after. */
export async function patchItems(db: Db, rows: (ItemPatch & { id: string })[], nowMs: number): Promise<number> {
  const stmts = chunks(rows).map((part) => {
    const payload = JSON.stringify(
      part.map((r) => ({
        ...r,
        ...(r.category_path ? { category_key: categoryKey(r.category_path) } : {}),
        ...(r.available === undefined ? {} : { available: r.available ? 1 : 0 }),
      })),
    );
    return db.$client.prepare(PATCH_SQL).bind(nowMs, payload);
  });
  return runAndReadRev(db, stmts);
}

/** Run the statements and read the new top revision, all in one batch (one transaction). */
async function runAndReadRev(db: Db, stmts: D1PreparedStatement[]): Promise<number> {
  const results = await db.$client.batch<{ rev: number | null }>([...stmts, db.$client.prepare(REV_SQL)]);
  return Number(results[results.length - 1]?.results[0]?.rev ?? 0);
}

/** One item, or undefined when absent or deleted. */
export async function getItem(db: Db, id: string): Promise<schema.ItemRow | undefined> {
  return db.query.items.findFirst({ where: and(eq(schema.items.id, id), isNull(schema.items.deletedAt)) });
}

/** Items by id (absent and deleted ones are left out), in no particular order. */
export async function getItems(db: Db, ids: readonly string[]): Promise<schema.ItemRow[]> {
  if (!ids.length) return [];
  return db
    .select()
    .from(schema.items)
    .where(and(isNull(schema.items.deletedAt), sql`${schema.items.id} IN (SELECT value FROM json_each(${JSON.stringify(ids)}))`));
}

/** Soft-delete an item. Returns the revision after, or null when there was no such item. */
export async function deleteItem(db: Db, id: string, nowMs: number): Promise<number | null> {
  const [res, after] = await db.$client.batch<{ rev: number | null }>([
    db.$client.prepare(`UPDATE items SET deleted_at = ?1, updated_at = ?1, rev = ${NEXT_REV} WHERE id = ?2 AND deleted_at IS NULL`).bind(nowMs, id),
    db.$client.prepare(REV_SQL),
  ]);
  if (!res?.meta.changes) return null;
  return Number(after?.results[0]?.rev ?? 0);
}

/** What a catalog mirror keeps of an item. */
export interface ItemFactsRow {
  id: string;
  available: number;
  price: number | null;
  category_key: string;
  /** When the item first entered the catalog, epoch ms. */
  created_at: number;
  /** The item's attributes as stored (JSON text). */
  attributes: string | null;
  deleted: number;
  rev: number;
}

/** Rows changed after (rev, id), in (rev, id) order, at most `limit`. */
export async function itemsChangedSince(db: Db, rev: number, id: string, limit: number): Promise<ItemFactsRow[]> {
  return db.all<ItemFactsRow>(sql`
    SELECT id, available, price, category_key, created_at, attributes, deleted_at IS NOT NULL AS deleted, rev FROM items
    WHERE rev > ${rev} OR (rev = ${rev} AND id > ${id})
    ORDER BY rev, id LIMIT ${limit}`);
}
