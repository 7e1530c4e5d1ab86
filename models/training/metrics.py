"""Ranking metrics with full ranking over all items; ties are counted against the model."""
import numpy as np


def target_ranks(scores, targets, exclude=None):
    """1-based rank of each target. scores (B, N) float, targets (B,) int.

    rank = 1 + number of other items whose score is >= the target's score (ties against us).
    `exclude` (B, N) bool marks items removed from the ranking (never counted).
    """
    scores = np.asarray(scores, dtype=np.float64)
    t = scores[np.arange(len(targets)), targets][:, None]
    ge = scores >= t
    if exclude is not None:
        ge &= ~exclude
    return ge.sum(axis=1)  # includes the target itself, so this already is 1 + others


def recall_mrr_ndcg(ranks, k):
    ranks = np.asarray(ranks)
    hit = ranks <= k
    return {
        f"Recall@{k}": float(hit.mean()) if len(ranks) else 0.0,
        f"MRR@{k}": float(np.where(hit, 1.0 / ranks, 0.0).mean()) if len(ranks) else 0.0,
        f"NDCG@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()) if len(ranks) else 0.0,
    }


def summary(ranks, ks=(10, 20), boot=0, seed=0):
    """Metrics at each k; with boot > 0 also 95% bootstrap intervals as name+'_ci'."""
    out = {}
    for k in ks:
        out.update(recall_mrr_ndcg(ranks, k))
    if boot and len(ranks):
        rng = np.random.default_rng(seed)
        ranks = np.asarray(ranks)
        samples = [recall_mrr_ndcg(ranks[rng.integers(0, len(ranks), len(ranks))], k)
                   for _ in range(boot) for k in ks]
        for name in list(out):
            vals = [s[name] for s in samples if name in s]
            out[name + "_ci"] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]
    return out
