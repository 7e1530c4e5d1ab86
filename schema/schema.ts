/**
 * D1 (SQLite) schema, drizzle-orm. Migrations in schema/migrations are generated from this file
 * by drizzle-kit (`npm run db:generate`) and applied by wrangler (`wrangler d1 migrations apply`).
 *
 * Times are integers in milliseconds since the epoch.
 */
import { sql } from "drizzle-orm";
import { index, integer, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * The shop's catalog. A deleted item keeps its row (deleted_at set) so that per-isolate catalog
 * mirrors see the deletion through `rev`: every write stamps the row with a revision greater than
 * any before it, and a mirror syncs with `WHERE rev > <last seen>`.
 */
export const items = sqliteTable(
  "items",
  {
    id: text("id").primaryKey(),
    title: text("title").notNull(),
    /** Category path from the root, e.g. ["Shoes", "Running"]. JSON array. */
    categoryPath: text("category_path", { mode: "json" }).$type<string[]>().notNull().default(sql`'[]'`),
    /** The path joined with " > " (what category filters match by prefix). */
    categoryKey: text("category_key").notNull().default(""),
    price: real("price"),
    /** ISO 4217 code. */
    currency: text("currency"),
    available: integer("available", { mode: "boolean" }).notNull().default(true),
    url: text("url"),
    imageUrl: text("image_url"),
    /** Free-form attributes (brand, colour, sizes ...). JSON object. */
    attributes: text("attributes", { mode: "json" }).$type<Record<string, unknown>>().notNull().default(sql`'{}'`),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    deletedAt: integer("deleted_at"),
    rev: integer("rev").notNull(),
  },
  (t) => [index("items_rev").on(t.rev, t.id)],
);

/**
 * Every accepted event, append-only: what retraining and popularity read. (user_id, event_key)
 * is unique, so a resent event is stored once; event_key is the client's event_id, or a
 * server-generated id when the client sent none.
 */
export const events = sqliteTable(
  "events",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    userId: text("user_id").notNull(),
    eventKey: text("event_key").notNull(),
    itemId: text("item_id").notNull(),
    type: text("type").notNull(),
    /** When it happened (client timestamp, or receipt time). */
    ts: integer("ts").notNull(),
    receivedAt: integer("received_at").notNull(),
    /** Whether the serving model knew the item (false: logged, the GRU state was not advanced). */
    inModel: integer("in_model", { mode: "boolean" }).notNull(),
    /** The model version that served the user when the event came. */
    modelVersion: text("model_version"),
  },
  (t) => [
    uniqueIndex("events_user_key").on(t.userId, t.eventKey),
    index("events_ts").on(t.ts),
    index("events_user_type").on(t.userId, t.type),
  ],
);

export type ItemRow = typeof items.$inferSelect;
export type EventRow = typeof events.$inferInsert;
