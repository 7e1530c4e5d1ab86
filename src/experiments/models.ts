/**
 * Which model (and which users' states) a `model` strategy's version names. The one place a
 * version string is resolved: the served model (MODEL_NAME, or its manifest's version), or any
 * other live version of the model registry (src/model/live.ts) with its own state store.
 */
import type { ModelHandle } from "../model/registry";
import type { UserStateStore } from "../state/store";

/** A model version ready to rank: its model and the store of its users' states. */
export interface ResolvedModel {
  model: ModelHandle;
  store: UserStateStore;
}

/** What resolution needs: the served model and its state store; the registry's live versions. */
export interface ModelDeps {
  model: ModelHandle;
  store: UserStateStore;
  live?: readonly ModelHandle[];
  storeFor?: (v: { version: string; stateSize: number }) => UserStateStore;
}

/**
 * The model for `version` (undefined: the served one), or null when no such version can be
 * served here.
 */
export async function resolveModel(deps: ModelDeps, version: string | undefined): Promise<ResolvedModel | null> {
  if (version === undefined || version === deps.model.name) return { model: deps.model, store: deps.store };
  const meta = await deps.model.meta();
  if (meta && meta.version === version) return { model: deps.model, store: deps.store };
  for (const h of deps.live ?? []) {
    const m = await h.meta();
    if (m?.version === version && deps.storeFor) return { model: h, store: deps.storeFor({ version: m.version, stateSize: m.stateSize }) };
  }
  return null;
}

/** Can `version` be served? (What creating an experiment checks.) */
export async function canServeVersion(deps: ModelDeps, version: string | undefined): Promise<boolean> {
  return (await resolveModel(deps, version)) !== null;
}
