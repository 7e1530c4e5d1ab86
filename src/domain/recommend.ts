/**
 * Recommendations for a user: the read path and its fallback chain.
 *   model + state      -> source "model"
 *   no state           -> source "popular", reason "cold-user"
 *   state unreadable   -> source "popular", reason "state-corrupt"
 *   Redis unavailable  -> source "popular", reason "state-unavailable"
 *   model unavailable  -> source "popular", reason "model-unavailable"
 * Degradations are values, never errors.
 */
import type { ModelHandle } from "../model/registry";
import type { GruModel } from "../model/runtime";
import type { UserState } from "../state/codec";
import { StoreUnavailableError, type UserStateStore } from "../state/store";

export type Reason = "cold-user" | "state-corrupt" | "state-unavailable" | "model-unavailable";

export interface Recommendation {
  items: { item_id: string; score: number }[];
  source: "model" | "popular";
  reason?: Reason;
  model_version: string | null;
}

export interface RecommendOptions {
  k: number;
  /** Leave out the items in the user's recent ring. Default true. */
  excludeRecent?: boolean;
  /** Extra item ids never to return. */
  exclude?: readonly string[];
}

/** Popular items from the model's training counts (score = count / top count). */
export function popular(handle: ModelHandle, k: number, reason: Reason, exclude: ReadonlySet<string> = new Set()): Recommendation {
  const { ids, counts } = handle.known?.popular ?? { ids: [], counts: [] };
  const top = counts[0] || 1;
  const items: Recommendation["items"] = [];
  for (let i = 0; i < ids.length && items.length < k; i++) {
    if (!exclude.has(ids[i]!)) items.push({ item_id: ids[i]!, score: Math.round(((counts[i] ?? 0) / top) * 1e6) / 1e6 });
  }
  return { items, source: "popular", reason, model_version: handle.known?.version ?? null };
}

/** Rank from a known state (used after events, and by `recommend`). */
export async function rankFromState(model: GruModel, state: UserState, o: RecommendOptions, nowMs: number): Promise<Recommendation> {
  const exclude = new Set<number>(o.excludeRecent === false ? [] : state.ring);
  for (const id of o.exclude ?? []) {
    const r = model.rowOf(id);
    if (r !== undefined) exclude.add(r);
  }
  const at = model.moment(nowMs, state.eventCount === 0 ? undefined : state.lastEventMs);
  const top = await model.topK(state.vector, at, o.k, exclude);
  return {
    items: top.map((t) => ({ item_id: model.idOf(t.row), score: t.score })),
    source: "model",
    model_version: model.version,
  };
}

export async function recommend(
  deps: { store: UserStateStore; model: ModelHandle },
  userId: string,
  o: RecommendOptions,
  nowMs: number = Date.now(),
): Promise<Recommendation> {
  const exclude = new Set(o.exclude ?? []);
  await deps.model.meta();
  const loaded = await deps.model.get();
  if (!loaded.ok) return popular(deps.model, o.k, "model-unavailable", exclude);
  let snap;
  try {
    snap = await deps.store.read(userId);
  } catch (e) {
    if (e instanceof StoreUnavailableError) {
      console.warn(e.message);
      return popular(deps.model, o.k, "state-unavailable", exclude);
    }
    throw e;
  }
  if (!snap.state) return popular(deps.model, o.k, snap.raw ? "state-corrupt" : "cold-user", exclude);
  return rankFromState(loaded.model, snap.state, o, nowMs);
}
