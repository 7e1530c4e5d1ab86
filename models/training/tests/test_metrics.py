"""Metric code on hand-computed cases (full ranking, ties against the model)."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from metrics import recall_mrr_ndcg, summary, target_ranks  # noqa: E402


def test_rank_counts_ties_against_the_model():
    scores = np.array([[0.1, 0.5, 0.5, 0.9]])
    # target 1 ties with item 2 and is beaten by item 3 -> rank 3 (not 2)
    assert target_ranks(scores, np.array([1])).tolist() == [3]
    assert target_ranks(scores, np.array([3])).tolist() == [1]
    assert target_ranks(scores, np.array([0])).tolist() == [4]


def test_all_equal_scores_rank_the_target_last():
    assert target_ranks(np.zeros((1, 5)), np.array([2])).tolist() == [5]


def test_excluded_items_do_not_count():
    scores = np.array([[0.9, 0.5, 0.1]])
    ex = np.array([[True, False, False]])
    assert target_ranks(scores, np.array([1]), ex).tolist() == [1]


def test_recall_mrr_ndcg_by_hand():
    ranks = np.array([1, 2, 5, 30])
    m = recall_mrr_ndcg(ranks, 20)
    assert m["Recall@20"] == 0.75
    assert math.isclose(m["MRR@20"], (1 + 1 / 2 + 1 / 5) / 4)
    assert math.isclose(m["NDCG@20"], (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    m10 = recall_mrr_ndcg(ranks, 2)
    assert m10["Recall@2"] == 0.5


def test_bootstrap_interval_contains_the_estimate():
    ranks = np.random.default_rng(0).integers(1, 40, 500)
    s = summary(ranks, ks=(20,), boot=200)
    lo, hi = s["Recall@20_ci"]
    assert lo <= s["Recall@20"] <= hi
    assert hi - lo < 0.15
