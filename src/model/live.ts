/**
 * The live model versions, per isolate: which versions every event advances and which one serves.
 *
 * Read from the registry (D1 `models`, status `live`) at most every MODEL_CHECK_MS per isolate,
 * with a timeout; a failed read keeps the last known set. While the registry is empty (a fresh
 * deployment) the bundled MODEL_NAME model is the only live version. The serving version is the
 * live one that started serving last (`served_at`); the others are shadows. This isolate's own
 * registry writes take effect at once (`invalidateLive`).
 *
 * A version that leaves the live set (retired, or replaced by an activation) is unloaded from this
 * isolate as soon as the new set is read, before the version that replaces it loads on its first
 * use: onnxruntime's wasm memory never shrinks, so the next load must reuse the freed space for
 * the isolate to hold what the registry's memory budget counts (src/model/memory.ts).
 */
import { desc, eq } from "drizzle-orm";
import { type ModelRow, models } from "../../schema/schema";
import type { Db } from "../catalog/db";
import { type ModelHandle, modelHandle, versionHandle } from "./registry";

/** The live versions of this isolate. */
export interface LiveModels {
  /** The version that answers recommendations. */
  serving: ModelHandle;
  /** Every live version, the serving one first. Every accepted event advances each of them. */
  all: ModelHandle[];
  /** Registry rows behind them (empty while the registry is empty: the bundled model serves). */
  rows: ModelRow[];
}

export interface LiveOptions {
  db: Db;
  bucket?: R2Bucket;
  /** The bundled (or MODEL_NAME in R2) model serving while the registry is empty. */
  defaultName: string;
  /** How often the registry is re-read per isolate, ms. */
  checkMs: number;
  /** Timeout of the registry read, ms. */
  timeoutMs: number;
}

let cached: { at: number; rows: ModelRow[]; key: string } | undefined;
/** The handles of the last live set read in this isolate, by version. */
let lastLive = new Map<string, ModelHandle>();
let reading: Promise<ModelRow[]> | undefined;

/** Forget the cached set (after this isolate changed the registry). */
export function invalidateLive(): void {
  cached = undefined;
}

/** The registry's live rows, serving first (latest served_at), then shadows by activation. */
export async function liveRows(db: Db): Promise<ModelRow[]> {
  const rows = await db.select().from(models).where(eq(models.status, "live")).orderBy(desc(models.servedAt), desc(models.activatedAt));
  return rows;
}

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/** Handles for registry rows (the bundled model for a "bundled" row). */
export function handlesOf(rows: readonly ModelRow[], bucket: R2Bucket | undefined): ModelHandle[] {
  return rows.map((r) => versionHandle({ version: r.version, name: r.name, bundled: r.source === "bundled" }, bucket));
}

/** The live set for this request (cached per isolate for `checkMs`). Never throws. */
export async function liveModels(o: LiveOptions): Promise<LiveModels> {
  const now = Date.now();
  const key = o.defaultName;
  if (!cached || cached.key !== key || now - cached.at >= o.checkMs) {
    reading ??= timeout(liveRows(o.db), o.timeoutMs, "model registry read").finally(() => (reading = undefined));
    try {
      cached = { at: now, rows: await reading, key };
    } catch (e) {
      console.warn(`model registry unavailable, keeping the last known live versions: ${(e as Error).message}`);
      cached = { at: now, rows: cached?.key === key ? cached.rows : [], key };
    }
  }
  const rows = cached.rows;
  if (!rows.length) {
    const h = modelHandle(o.defaultName, o.bucket);
    await unloadLeft(new Map([[o.defaultName, h]]));
    return { serving: h, all: [h], rows: [] };
  }
  const all = handlesOf(rows, o.bucket);
  await unloadLeft(new Map(rows.map((r, i) => [r.version, all[i]!])));
  return { serving: all[0]!, all, rows };
}

/** Unload the models of the previous live set that are not in `now` (by handle: the bundled
 * model's handle is the same whether the registry is empty or lists it). Never throws. */
async function unloadLeft(now: Map<string, ModelHandle>): Promise<void> {
  const keep = new Set(now.values());
  const left = [...lastLive.values()].filter((h) => !keep.has(h) && h.loaded);
  lastLive = now;
  await Promise.all(left.map((h) => h.unload().catch(() => false)));
}

/** Unload, in this isolate, every registry version's model in `versions` (the registry calls this
 * when it takes versions out of the live set, before loading the one that replaces them). */
export async function unloadVersions(rows: readonly ModelRow[], bucket: R2Bucket | undefined): Promise<void> {
  const hs = handlesOf(rows, bucket);
  for (const [v, h] of lastLive) if (hs.includes(h)) lastLive.delete(v);
  await Promise.all(hs.map((h) => h.unload().catch(() => false)));
}
