/**
 * Experiments in D1: create, read, list, update (drafts only), start, stop; the running
 * experiments per placement, cached per isolate (EXPERIMENT_CACHE_SECONDS) because every
 * recommendation asks for them. Domain code: takes the db as an argument, throws ApiError for
 * requests that cannot be honoured (404, 409).
 */
import { and, desc, eq } from "drizzle-orm";
import { type ExperimentRow, experiments } from "../../schema/schema";
import type { Db } from "../catalog/db";
import { ApiError } from "../errors";
import { type Experiment, type ExperimentInput, type ExperimentPatch, type Status, type Variant } from "./types";

function fromRow(r: ExperimentRow): Experiment {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    placement: r.placement,
    status: r.status as Status,
    salt: r.salt,
    variants: r.variants as Variant[],
    attributionWindowMs: r.attributionWindowMs,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    startedAt: r.startedAt,
    stoppedAt: r.stoppedAt,
  };
}

const notFound = (id: string) => new ApiError(404, "experiment_not_found", `no experiment ${id}`, { field: "id" });

/** Check that every model variant names a version we can serve (422 otherwise). */
export type VersionCheck = (version: string | undefined) => Promise<boolean>;

async function checkVariants(variants: readonly Variant[], canServe: VersionCheck) {
  for (const [i, v] of variants.entries()) {
    if (v.strategy.type === "model" && !(await canServe(v.strategy.model_version))) {
      throw new ApiError(422, "unknown_model_version", `variants[${i}].strategy.model_version: no model version ${v.strategy.model_version} can be served`, {
        field: `variants[${i}].strategy.model_version`,
      });
    }
  }
}

/** Create a draft experiment. 409 when the id exists. */
export async function createExperiment(db: Db, input: ExperimentInput, canServe: VersionCheck, now = Date.now()): Promise<Experiment> {
  await checkVariants(input.variants, canServe);
  const row = {
    id: input.id,
    name: input.name,
    description: input.description ?? "",
    placement: input.placement,
    status: "draft" as const,
    salt: input.salt ?? input.id,
    variants: input.variants,
    attributionWindowMs: Math.round(input.attribution_window_hours * 3_600_000),
    createdAt: now,
    updatedAt: now,
    startedAt: null,
    stoppedAt: null,
  };
  const r = await db.insert(experiments).values(row).onConflictDoNothing().returning({ id: experiments.id });
  if (!r.length) throw new ApiError(409, "experiment_exists", `an experiment ${input.id} exists already`, { field: "id" });
  invalidate();
  return row;
}

export async function getExperiment(db: Db, id: string): Promise<Experiment> {
  const r = await db.select().from(experiments).where(eq(experiments.id, id)).limit(1);
  if (!r[0]) throw notFound(id);
  return fromRow(r[0]);
}

export async function listExperiments(db: Db, o: { status?: Status; placement?: string } = {}): Promise<Experiment[]> {
  const where = [];
  if (o.status) where.push(eq(experiments.status, o.status));
  if (o.placement) where.push(eq(experiments.placement, o.placement));
  const rows = await db.select().from(experiments).where(and(...where)).orderBy(desc(experiments.createdAt)).limit(500);
  return rows.map(fromRow);
}

/** Change a draft (a running or stopped experiment keeps its definition: changing weights mid-run reshuffles users). */
export async function updateExperiment(db: Db, id: string, patch: ExperimentPatch, canServe: VersionCheck, now = Date.now()): Promise<Experiment> {
  const cur = await getExperiment(db, id);
  if (cur.status !== "draft") throw new ApiError(409, "experiment_not_draft", `experiment ${id} is ${cur.status}; only drafts can be changed (create a new one)`);
  if (patch.variants) await checkVariants(patch.variants, canServe);
  const set: Partial<ExperimentRow> = { updatedAt: now };
  if (patch.name !== undefined) set.name = patch.name;
  if (patch.description !== undefined) set.description = patch.description;
  if (patch.placement !== undefined) set.placement = patch.placement;
  if (patch.salt !== undefined) set.salt = patch.salt;
  if (patch.variants !== undefined) set.variants = patch.variants;
  if (patch.attribution_window_hours !== undefined) set.attributionWindowMs = Math.round(patch.attribution_window_hours * 3_600_000);
  await db.update(experiments).set(set).where(and(eq(experiments.id, id), eq(experiments.status, "draft")));
  invalidate();
  return getExperiment(db, id);
}

/** Start a draft. 409 when another experiment runs on the same placement. */
export async function startExperiment(db: Db, id: string, now = Date.now()): Promise<Experiment> {
  const cur = await getExperiment(db, id);
  if (cur.status === "running") return cur;
  if (cur.status !== "draft") throw new ApiError(409, "experiment_stopped", `experiment ${id} was stopped; a stopped experiment is not restarted (create a new one)`);
  // One statement: start only if no other experiment is running on this placement.
  const r = await db.$client
    .prepare(
      `UPDATE experiments SET status = 'running', started_at = ?2, updated_at = ?2
       WHERE id = ?1 AND status = 'draft'
         AND NOT EXISTS (SELECT 1 FROM experiments o WHERE o.placement = experiments.placement AND o.status = 'running')`,
    )
    .bind(id, now)
    .run();
  if (!r.meta.changes) {
    const other = (await listExperiments(db, { status: "running", placement: cur.placement }))[0];
    if (other) throw new ApiError(409, "placement_busy", `experiment ${other.id} is already running on placement ${cur.placement}; stop it first`);
  }
  invalidate();
  return getExperiment(db, id);
}

export async function stopExperiment(db: Db, id: string, now = Date.now()): Promise<Experiment> {
  const cur = await getExperiment(db, id);
  if (cur.status === "stopped") return cur;
  await db
    .update(experiments)
    .set({ status: "stopped", stoppedAt: now, updatedAt: now, startedAt: cur.startedAt ?? now })
    .where(eq(experiments.id, id));
  invalidate();
  return getExperiment(db, id);
}

/** Delete an experiment with its exposures and tagged events. */
export async function deleteExperiment(db: Db, id: string): Promise<void> {
  await getExperiment(db, id);
  await db.$client.batch([
    db.$client.prepare("DELETE FROM rec_events WHERE rec_id IN (SELECT rec_id FROM exposures WHERE experiment_id = ?1)").bind(id),
    db.$client.prepare("DELETE FROM exposures WHERE experiment_id = ?1").bind(id),
    db.$client.prepare("DELETE FROM experiments WHERE id = ?1").bind(id),
  ]);
  invalidate();
}

// ---- the running experiments, per isolate --------------------------------------------------------

let cache: { at: number; byPlacement: Map<string, Experiment> } | undefined;

/** Forget the cached running experiments (this isolate's own writes are seen at once). */
export function invalidate() {
  cache = undefined;
}

/**
 * The running experiment of each placement, read from D1 at most every `maxAgeMs` per isolate.
 * A D1 read that fails or takes longer than `timeoutMs` keeps the previous copy (or none):
 * recommendations never wait on experiments for longer than that.
 */
export async function runningExperiments(db: Db, o: { maxAgeMs: number; timeoutMs: number; now?: number }): Promise<Map<string, Experiment>> {
  const now = o.now ?? Date.now();
  if (cache && now - cache.at < o.maxAgeMs) return cache.byPlacement;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const rows = await Promise.race([
      db.select().from(experiments).where(eq(experiments.status, "running")),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`experiments read timed out after ${o.timeoutMs} ms`)), o.timeoutMs))),
    ]);
    cache = { at: now, byPlacement: new Map(rows.map((r) => [r.placement, fromRow(r)])) };
  } catch (e) {
    console.warn(`experiments unavailable, serving without them: ${(e as Error).message}`);
    cache = { at: now, byPlacement: cache?.byPlacement ?? new Map() };
  } finally {
    clearTimeout(timer);
  }
  return cache.byPlacement;
}
