/**
 * Every accepted event advances every live model version: after the serving version applied a
 * request's events, each other live version (a shadow: the previous version after a rollout, or a
 * new one warming up) applies them to its own states, after the response. Each version keeps its
 * own event-id memory, so a resent event is applied once per version; a user the shadow has never
 * seen starts from their state rebuilt from the event log (rebuild.ts). Items a version does not
 * know leave its state as it is, as on the serving path.
 */
import type { ModelHandle } from "../model/registry";
import type { GruModel } from "../model/runtime";
import type { UserStateStore } from "../state/store";
import { type ResolvedEvent, applyUserEvents } from "./advance";
import { type RebuildDeps, rebuildOrFresh } from "./rebuild";

/** One accepted event as the request gave it (timestamp already defaulted). */
export interface AcceptedEvent {
  index: number;
  eventId?: string;
  userId: string;
  itemId: string;
  type: string;
  timestampMs: number;
}

export interface ShadowDeps {
  storeFor: (v: { version: string; stateSize: number }) => UserStateStore;
  rebuildDeps: (model: GruModel) => RebuildDeps;
  ringCapacity: number;
  casBudgetMs: number;
  retryAfterSeconds: number;
}

/** Apply `events` to every version in `shadows`. Never throws; returns events applied per version. */
export async function advanceShadows(deps: ShadowDeps, shadows: readonly ModelHandle[], events: readonly AcceptedEvent[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await Promise.all(
    shadows.map(async (h) => {
      const loaded = await h.get();
      if (!loaded.ok) return console.warn(`shadow model ${h.name} unavailable, its states were not advanced: ${loaded.message}`);
      const model = loaded.model;
      const store = deps.storeFor({ version: model.version, stateSize: model.stateSize });
      const byUser = new Map<string, ResolvedEvent[]>();
      for (const e of events) {
        const row = model.rowOf(e.itemId);
        if (row === undefined) continue;
        const l = byUser.get(e.userId) ?? [];
        l.push({ ...e, row });
        byUser.set(e.userId, l);
      }
      const rebuild = deps.rebuildDeps(model);
      const advance = {
        store,
        model,
        ringCapacity: deps.ringCapacity,
        casBudgetMs: deps.casBudgetMs,
        retryAfterSeconds: deps.retryAfterSeconds,
        rebuild: (userId: string, exclude: ReadonlySet<string>) => rebuildOrFresh(rebuild, userId, exclude),
      };
      const results = await Promise.allSettled([...byUser].map(([userId, evs]) => applyUserEvents(advance, userId, evs)));
      let applied = 0;
      for (const r of results) {
        if (r.status === "fulfilled") applied += r.value.outcomes.filter((o) => o.status === "applied").length;
        else console.warn(`shadow model ${model.version}: a user's events were not applied: ${(r.reason as Error).message}`);
      }
      out[model.version] = applied;
    }),
  );
  return out;
}
