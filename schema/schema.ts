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

// ---------------------------------------------------------------------------------------------
// A/B experiments (src/experiments): definitions, exposures (one row per recommendation list
// served inside an experiment) and the events that name the list they came from (rec_id).

/**
 * An experiment on one placement (`home`, `product`, ...). `variants` is a JSON array of
 * `{key, weight, strategy}` (see src/experiments/types.ts). Status: draft -> running -> stopped.
 * At most one experiment per placement is running (enforced when starting).
 */
export const experiments = sqliteTable(
  "experiments",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    placement: text("placement").notNull(),
    status: text("status", { enum: ["draft", "running", "stopped"] }).notNull(),
    /** Hash seed (GrowthBook's `seed`): users are bucketed by hash(salt + user_id). */
    salt: text("salt").notNull(),
    variants: text("variants", { mode: "json" }).$type<unknown[]>().notNull(),
    /** Add-to-cart / purchase of a shown item counts for the list within this time, ms. */
    attributionWindowMs: integer("attribution_window_ms").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    startedAt: integer("started_at"),
    stoppedAt: integer("stopped_at"),
  },
  (t) => [index("experiments_placement_status").on(t.placement, t.status)],
);

/**
 * One recommendation list served inside an experiment (or a request that failed inside one:
 * `error` set, no items). `items` is the JSON array of item ids in the order shown (position =
 * index). `forced`: a QA override, never counted in results.
 */
export const exposures = sqliteTable(
  "exposures",
  {
    recId: text("rec_id").primaryKey(),
    experimentId: text("experiment_id").notNull(),
    variant: text("variant").notNull(),
    userId: text("user_id").notNull(),
    placement: text("placement").notNull(),
    items: text("items", { mode: "json" }).$type<string[]>().notNull(),
    /** What served the list (`model` or `popular`) and why popularity did, if it did. */
    source: text("source"),
    reason: text("reason"),
    /** The variant's strategy could not be served as asked (it fell back to popular items). */
    fallback: integer("fallback", { mode: "boolean" }).notNull().default(false),
    modelVersion: text("model_version"),
    /** Time the worker spent building the answer, ms. */
    latencyMs: real("latency_ms").notNull(),
    /** Error code when the request failed after assignment. */
    error: text("error"),
    forced: integer("forced", { mode: "boolean" }).notNull().default(false),
    ts: integer("ts").notNull(),
  },
  (t) => [index("exposures_experiment_user").on(t.experimentId, t.userId, t.ts), index("exposures_user_ts").on(t.userId, t.ts)],
);

/**
 * Events that carried a `rec_id` (a click on a recommended item, an add-to-cart from a list):
 * what ties them to the list that caused them. Unique per (user_id, event_key) like the log.
 */
export const recEvents = sqliteTable(
  "rec_events",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    recId: text("rec_id").notNull(),
    userId: text("user_id").notNull(),
    eventKey: text("event_key").notNull(),
    itemId: text("item_id").notNull(),
    type: text("type").notNull(),
    ts: integer("ts").notNull(),
  },
  (t) => [uniqueIndex("rec_events_user_key").on(t.userId, t.eventKey), index("rec_events_rec").on(t.recId)],
);

/**
 * Users forgotten (DELETE /v1/users/{id}): log rows of theirs received up to `forgotten_at` (ms)
 * are never stored again, whichever drain arrives late with them. Pruned after 30 days.
 */
export const forgottenUsers = sqliteTable("forgotten_users", {
  userId: text("user_id").primaryKey(),
  forgottenAt: integer("forgotten_at").notNull(),
});

export type ExperimentRow = typeof experiments.$inferSelect;
export type ExposureRow = typeof exposures.$inferInsert;

/**
 * The model registry: every model version the worker may serve. Files live in R2 (MODEL_BUCKET)
 * under `models/<version>/`, except the bundled demo model (source "bundled"). Status:
 *   staged   uploaded and verified, not served
 *   live     loaded by every isolate and advanced by every event; the live version with the latest
 *            `served_at` serves recommendations, the others (served_at null or older) are shadows
 *   retired  kept in R2 for a rollback, neither served nor advanced
 */
export const models = sqliteTable(
  "models",
  {
    version: text("version").primaryKey(),
    name: text("name").notNull(),
    status: text("status", { enum: ["staged", "live", "retired"] }).notNull(),
    /** "r2" (files under models/<version>/ in MODEL_BUCKET) or "bundled" (in the worker). */
    source: text("source", { enum: ["r2", "bundled"] }).notNull(),
    /** SHA-256 of manifest.json as uploaded (hex). */
    manifestSha256: text("manifest_sha256").notNull(),
    /** Every file: name -> {bytes, sha256}. JSON object. */
    files: text("files", { mode: "json" }).$type<Record<string, { bytes: number; sha256: string }>>().notNull(),
    /** The manifest's metrics (held-out evaluation). JSON object. */
    metrics: text("metrics", { mode: "json" }).$type<Record<string, unknown>>().notNull().default(sql`'{}'`),
    /** Estimated per-isolate memory of the loaded model, bytes (checked against the budget). */
    memoryBytes: integer("memory_bytes").notNull(),
    createdAt: integer("created_at").notNull(),
    /** When it became live (null while staged). */
    activatedAt: integer("activated_at"),
    /** When it started serving (null for a shadow). */
    servedAt: integer("served_at"),
    retiredAt: integer("retired_at"),
  },
  (t) => [index("models_status").on(t.status)],
);

export type ModelRow = typeof models.$inferSelect;

// ---------------------------------------------------------------------------------------------
// Batch recommendations (src/batch): a job lists the users active in a period, split into parts;
// a Cloudflare Queue delivers one message per part, whose consumer writes the part's NDJSON to R2
// (BATCH_BUCKET, `batch/<job>/part-<n>.ndjson`) and marks it done. A part is redone until it is
// done (queue retries, or POST .../resume), and a done part is never redone.

export const batchJobs = sqliteTable("batch_jobs", {
  id: text("id").primaryKey(),
  /** queued -> running -> done (every part written). */
  status: text("status").notNull(),
  /** The period's start (ms): users with an event at or after it. */
  sinceMs: integer("since_ms").notNull(),
  /** Options of every list (k, rules, arrangement) as JSON. */
  options: text("options").notNull(),
  users: integer("users").notNull(),
  parts: integer("parts").notNull(),
  doneParts: integer("done_parts").notNull().default(0),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
  finishedAt: integer("finished_at"),
});

export const batchParts = sqliteTable(
  "batch_parts",
  {
    jobId: text("job_id").notNull(),
    part: integer("part").notNull(),
    /** The part's user ids (JSON array). */
    users: text("users").notNull(),
    /** pending | done */
    status: text("status").notNull(),
    /** Lines written (users with a list). */
    written: integer("written"),
    attempts: integer("attempts").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("batch_parts_job_part").on(t.jobId, t.part)],
);

/**
 * A placement's rules preset (src/experiments/placements.ts): filters and arrangement applied to
 * every list served on it, inside or outside experiments (a variant's own rules go on top).
 */
export const placementRules = sqliteTable("placement_rules", {
  placement: text("placement").primaryKey(),
  /** A RulesPreset as JSON. */
  rules: text("rules").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
