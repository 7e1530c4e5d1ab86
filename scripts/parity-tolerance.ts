/**
 * Tolerances for comparing the serving runtime with the golden vectors PyTorch wrote at export.
 *
 * The step and score graphs read their weights exactly as the golden vectors were computed (an fp16
 * export stores weights as float16 and casts them back to float32; the golden run rounds the same
 * weights the same way), so their outputs agree to float32 rounding: the golden `tolerance` (1e-4).
 *
 * The similar graph is different: the ONNX export folds `normalize(embedding)` into a constant,
 * and an fp16 export stores that *normalized* table as float16, while PyTorch normalizes the
 * fp16-rounded embedding in float32. Each component of both unit vectors then carries a relative
 * rounding error of at most u = 2^-11 (float16's unit roundoff), so their cosine
 * sum(a_i (1 + d_i) b_i (1 + e_i)) differs by at most 2u * sum|a_i b_i| <= 2u = 9.77e-4
 * (Cauchy-Schwarz; second-order terms below 1e-6). Measured on fresh fp16 builds: up to 4.6e-4.
 */

/** float16 unit roundoff (2^-11). */
export const FP16_UNIT_ROUNDOFF = 2 ** -11;

/**
 * The largest allowed |ort - torch| of a similar-items cosine for a model whose manifest stores
 * weights as `dtype`: `golden` (the golden file's tolerance, 1e-4) for float32, and
 * 2 * 2^-11 + golden for float16 (the bound above plus float32 accumulation).
 */
export function similarTolerance(dtype: string | undefined, golden: number): number {
  return dtype === "float16" ? 2 * FP16_UNIT_ROUNDOFF + golden : golden;
}

/**
 * Whether the runtime's top-k list (`ids`, `scores`) is the golden one up to reorderings the
 * tolerance allows: at every position the two lists hold the same item, or the runtime's item is
 * a near-tie that rounding may swap: a golden item whose golden score is within 2 * tol of the
 * golden score at that position, or an item beyond the golden list whose runtime score is within
 * tol of the golden list's last score, in place of a golden item within 2 * tol of that score.
 */
export function sameTopK(goldenIds: string[], goldenScores: number[], ids: string[], scores: number[], tol: number): boolean {
  if (ids.length !== goldenIds.length || new Set(ids).size !== ids.length) return false;
  const at = new Map(goldenIds.map((id, i) => [id, i]));
  const last = goldenScores[goldenScores.length - 1]!;
  return ids.every((id, j) => {
    if (id === goldenIds[j]) return true;
    const i = at.get(id);
    if (i !== undefined) return Math.abs(goldenScores[i]! - goldenScores[j]!) <= 2 * tol;
    return scores[j]! <= last + tol && goldenScores[j]! - last <= 2 * tol;
  });
}
