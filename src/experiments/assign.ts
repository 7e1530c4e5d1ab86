/**
 * Deterministic, sticky assignment without storage: GrowthBook's own bucketing
 * (`runInlineExperiment`, hash version 2: fnv1a32(fnv1a32(seed + id)) % 10000 / 10000 into the
 * weight ranges), so a shop that runs the same experiment in GrowthBook (key = experiment id,
 * seed = salt, hashAttribute `id` = the user id, same weights, coverage 1) gets the same split.
 * A pure function of (salt, weights, user id): every isolate and every restart agrees.
 */
import { GrowthBookClient } from "@growthbook/growthbook";

/** One client per isolate: no features, no network, no tracking; only inline experiments. */
let client: GrowthBookClient | undefined;

export interface Assignment {
  /** Index of the variant. */
  index: number;
  /** The variant's key. */
  variant: string;
  /** The user's hash in [0, 1) (GrowthBook's `bucket`). */
  bucket: number;
}

/** Variant weights normalised to sum 1 (GrowthBook ignores weights that do not). */
export function normalisedWeights(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

/**
 * The variant of `userId` in an experiment, or null when GrowthBook leaves the user out (never
 * with coverage 1 and a non-empty id).
 */
export function assign(exp: { id: string; salt: string; variants: readonly { key: string; weight: number }[] }, userId: string): Assignment | null {
  client ??= new GrowthBookClient({});
  const r = client.runInlineExperiment(
    {
      key: exp.id,
      seed: exp.salt,
      hashVersion: 2,
      hashAttribute: "id",
      variations: exp.variants.map((v) => v.key) as [string, string, ...string[]],
      weights: normalisedWeights(exp.variants.map((v) => v.weight)),
      coverage: 1,
    },
    { attributes: { id: userId } },
  );
  if (!r.inExperiment || r.variationId < 0) return null;
  return { index: r.variationId, variant: exp.variants[r.variationId]!.key, bucket: r.bucket ?? Number.NaN };
}
