"""The evaluation protocols, ranking rules and baselines on hand-built cases (seconds)."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import data as D  # noqa: E402
import harness as H  # noqa: E402
import sasrec as S  # noqa: E402
import seen as SN  # noqa: E402
from metrics import summary  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def users(histories):
    """Events of users given as lists of item ids, order = time (Amazon style: no timestamps)."""
    u, i, t = [], [], []
    for n, h in enumerate(histories):
        for p, x in enumerate(h):
            u.append(f"{n:03d}"); i.append(x); t.append(float(p))
    return D._finish(u, i, t, idle_gap=float("inf"))


def indexed(ev):
    ids, _ = D.build_index(ev, 1)
    return ids, D.to_rows(ev, ids)


def test_last_item_tests_the_last_validates_the_second_to_last_and_never_trains_on_them():
    ev = H.apply_protocol(users([list("abcde"), list("xy"), list("pqr")]), "last-item")
    assert ev.split.tolist() == [0, 0, 0, 2, 1, 0, 1, 0, 2, 1]     # a user of two items has no validation item
    ids, rows = indexed(ev)
    # the index holds training and validation items (known items), never a test-only one
    assert "d" in ids and "q" in ids and "e" not in ids and "y" not in ids and "r" not in ids
    assert len(np.unique(ev.session)) == 3                           # one continuous sequence per user
    seqs, lost = H.sequences(ev, rows, "last-item", target=H.VALID)
    row = {k: n + 1 for n, k in enumerate(ids)}
    # validation: the test item is not even input; the target is the second-to-last item
    assert lost == 0
    assert [s[0].tolist() for s in seqs if s[2].any()] == [[row[x] for x in "abcd"], [row[x] for x in "pq"]]
    assert [s[0][s[2]].tolist() for s in seqs if s[2].any()] == [[row["d"]], [row["q"]]]
    seqs, lost = H.sequences(ev, rows, "last-item", target=H.TEST)
    assert lost == 3                                                  # e, y, r: test-only items
    # what training may see: split 0 only
    assert [s[0][H.training_part(s)].tolist() for s in seqs] == [[row["a"], row["b"], row["c"]], [row["x"]], [row["p"]]]


def test_cap_keeps_the_last_50_items_before_the_target():
    h = [f"i{n}" for n in range(60)]
    ev = H.apply_protocol(users([h, h[::-1]]), "last-item")
    rows = D.to_rows(ev, sorted(set(h)))                             # every item known, for the test
    seqs, _ = H.sequences(ev, rows, "last-item", target=H.TEST, cap=50)
    for s in seqs:
        assert len(s[0]) == 51 and s[2].tolist() == [False] * 50 + [True]
    full, _ = H.sequences(ev, rows, "last-item", target=H.TEST)
    assert [len(s[0]) for s in full] == [60, 60]
    # SASRec's input window is the last 50 as well, left-padded
    x = S.left_pad([np.arange(1, 61), np.arange(1, 4)], 50)
    assert x.shape == (2, 50) and x[0].tolist() == list(range(11, 61)) and x[1].tolist() == [0] * 47 + [1, 2, 3]


def test_rules_leave_out_what_they_say():
    p = np.array([1, 2, 3, 2, 5])
    assert H.excluded("none", p).tolist() == []
    assert H.excluded("current", p).tolist() == [5]
    assert sorted(H.excluded("history", p).tolist()) == [1, 2, 2, 3, 5]
    assert H.excluded("recent20", p).tolist() == [5, 2, 3, 1]           # distinct, most recent first
    long = np.r_[np.arange(1, 31), 3]                                    # 30 distinct items, 3 again last
    ring = H.excluded("recent20", long).tolist()
    assert len(ring) == 20 and ring[0] == 3 and 30 in ring and 11 not in ring and 12 in ring


def test_history_masking_and_served_rules_rank_by_hand():
    # 6 rows (0 = padding); scores favour rows the user already had
    sc = np.array([[9.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * 3)
    prefixes = [np.array([1, 2]), np.array([1, 2]), np.array([3, 1])]
    targets = np.array([3, 2, 4])
    assert H.ranks_under(sc, targets, prefixes, "none").tolist() == [3, 2, 4]        # row 0 never ranks
    assert H.ranks_under(sc, targets, prefixes, "history").tolist() == [1, 10**9, 2]  # a repeat can never be shown
    assert H.ranks_under(sc, targets, prefixes, "current").tolist() == [2, 10**9, 3]
    assert H.ranks_under(sc, targets, prefixes, "recent20").tolist() == [1, 10**9, 2]
    # a target row 0 (item unknown to the model) is a miss under every rule
    assert H.ranks_under(sc[:1], np.array([0]), prefixes[:1], "none").tolist() == [10**9]


def test_a_system_without_memory_leaves_out_only_the_current_sessions_items():
    # one user, two sessions: [1, 2] then [3, 1]; the target is the second event of session 2 (row 1)
    seq = (np.array([1, 2, 3, 1]), np.array([1.0, 0.0, 1.0, 0.0], np.float32), np.array([False, False, False, True]),
           None, np.array([0.0, 60.0, 86400.0, 86460.0]), np.zeros(4, np.int8))
    m = build(ModelConfig(n_items=5, dim=8, kind="seq", attn=3, dropout=0.0)).eval()
    # the remembered ring holds row 1 from session 1, so the served rule can never show it again
    assert H.model_ranks(m, [seq], rule="recent20").tolist() == [10**9]
    # forgetting at the session start, only row 3 is left out: the target stays rankable
    so = H.model_ranks(m, [seq], reset_sessions=True, rule="recent20").tolist()
    assert 1 <= so[0] <= 3
    # with nothing left out both rank it, and the rule-free walk agrees with rule "none"
    assert H.model_ranks(m, [seq], rule="none").tolist() == H.model_ranks(m, [seq]).tolist()


def test_the_seen_filter_leaves_out_earlier_sessions_items_only_for_a_system_with_memory():
    # one user, sessions [1, 2] and [3, 4]; targets: row 4 (new) and, for the rule, nothing else
    seq = (np.array([1, 2, 3, 4]), np.array([1.0, 0.0, 1.0, 0.0], np.float32), np.array([False, False, False, True]),
           None, np.array([0.0, 60.0, 86400.0, 86460.0]), np.zeros(4, np.int8))
    m = build(ModelConfig(n_items=6, dim=8, kind="seq", attn=3, dropout=0.0)).eval()
    tab = SN.row_positions(["a", "b", "c", "d", "e"])
    with torch.no_grad():                       # rows 1 and 2 score highest, then 4
        m.item_bias.copy_(torch.tensor([0.0, 50.0, 40.0, 0.0, 30.0, 0.0]))
    # with memory, rows 1, 2 (session 1) and 3 are left out: the target ranks first
    assert H.model_ranks(m, [seq], rule="seen", seen_table=tab).tolist() == [1]
    # without memory only row 3 is: rows 1 and 2 stay ahead of it
    assert H.model_ranks(m, [seq], reset_sessions=True, rule="seen", seen_table=tab).tolist() == [3]
    # a target the user already had is a miss, as the API can never show it
    rep = (seq[0].copy(), *seq[1:])
    rep[0][3] = 1
    assert H.model_ranks(m, [rep], rule="seen", seen_table=tab).tolist() == [10**9]


def test_model_ranks_and_target_places_come_in_target_order_across_users():
    # user A: sessions [1, 2, 3] | [4, 5], targets 2 and 4 and 5; user B: [1] | [2, 3], targets 1 (first) and 3
    a = (np.array([1, 2, 3, 4, 5]), np.array([1, 0, 0, 1, 0], np.float32), np.array([False, True, False, True, True]),
         None, np.arange(5.0), np.zeros(5, np.int8))
    b = (np.array([1, 2, 3]), np.array([1, 0, 1], np.float32), np.array([True, False, True]), None, np.arange(3.0), np.zeros(3, np.int8))
    # target order: user A's targets, then user B's (model_ranks walks time steps, then sorts)
    assert H.target_places([a, b]).tolist() == [1, 0, 1, 0, 0]
    m = build(ModelConfig(n_items=6, dim=8, kind="seq", attn=3, dropout=0.0)).eval()
    assert len(H.model_ranks(m, [a, b])) == 5
    for reset in (False, True):
        one_by_one = H.model_ranks(m, [a], reset_sessions=reset).tolist() + H.model_ranks(m, [b], reset_sessions=reset).tolist()
        assert H.model_ranks(m, [a, b], reset_sessions=reset).tolist() == one_by_one


def test_the_seen_filter_matches_its_golden_file_and_remembers_the_last_capacity_items():
    import json
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "test", "fixtures", "seen-golden.json")) as f:
        assert SN.golden() == json.load(f)
    f = SN.SeenFilter()
    n = 2 * SN.CAPACITY + 50
    for i in range(n):
        f.add(SN.positions(f"sku-{i}"))
    assert all(f.has(SN.positions(f"sku-{i}")) for i in range(n - SN.CAPACITY, n))
    assert sum(f.has(SN.positions(f"sku-{i}")) for i in range(40)) < 4


def test_metrics_at_5_10_20_by_hand():
    m = summary(np.array([1, 4, 7, 15, 10**9]), ks=(5, 10, 20))
    assert m["Recall@5"] == 0.4 and m["Recall@10"] == 0.6 and m["Recall@20"] == 0.8
    assert np.isclose(m["MRR@20"], (1 + 1 / 4 + 1 / 7 + 1 / 15) / 5)
    assert np.isclose(m["NDCG@5"], (1 + 1 / np.log2(5)) / 5)


def test_history_knn_by_hand():
    # users 0..2 are neighbours (training rows); user 3 asks with history [1, 2]
    seqs = [(np.array(r), None, np.zeros(len(r), bool), None, None, np.zeros(len(r), np.int8))
            for r in ([1, 2, 3], [2, 4], [5, 6], [1, 2])]
    knn = H.HistoryKNN(seqs, 7)
    # last n=2 items, linear decay: weight 1/2 for row 1, 1 for row 2
    S = knn.sims([np.array([1, 2])], np.array([3]), n=2)
    assert S[0].tolist() == [1.5, 1.0, 0.0, 0.0]                       # user 3 is not its own neighbour
    sc = knn.from_sims(S, k=2)
    assert np.isclose(sc[0, 3], 1.5, atol=1e-6) and np.isclose(sc[0, 4], 1.0, atol=1e-6) and sc[0, 5] < 1e-6
    # k=1: only the best neighbour votes
    assert knn.from_sims(S, k=1)[0, 4] < 1e-6
    # cosine: the neighbour's similarity is divided by sqrt(its length)
    assert np.isclose(knn.from_sims(S, k=2, norm="cosine")[0, 4], 1.0 / np.sqrt(2), atol=1e-6)
    # n=1: only the last item counts
    assert knn.sims([np.array([1, 2])], None, n=1)[0].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_rankings_of_every_method_line_up_target_by_target():
    torch.manual_seed(0)
    ev = H.apply_protocol(users([list("abcab"), list("cabca"), list("bcabc"), list("abcabc")]), "last-item")
    ev.split[:] = np.where(ev.split == H.TEST, H.TEST, 0)
    ids, rows = indexed(ev)
    rows = D.to_rows(ev, ids)
    seqs = [s for s in H.sequences(ev, rows, "last-item", target=H.TEST)[0] if s[2].any()]
    m = build(ModelConfig(n_items=len(ids) + 1, dim=8, kind="seq", attn=3, dropout=0.0)).eval()
    # the score batches give the ranks model_ranks gives (same state walk), in target order
    by_rule = H.ranks_by_rule(H.model_score_batches(m, seqs, batch=2), ["none", "history"])
    assert sorted(by_rule["none"].tolist()) == sorted(H.model_ranks(m, seqs, batch=2).tolist())
    hist = H.model_ranks(m, seqs, batch=2, rule="history")
    assert sorted(np.minimum(by_rule["history"], 10**6).tolist()) == sorted(np.minimum(hist, 10**6).tolist()) or \
        (by_rule["history"] == 10**9).all()
    bl = H.Baselines([s for s in H.sequences(ev, rows, "last-item", target=H.TEST)[0]], len(ids) + 1)
    assert len(bl.ranks(seqs, "Item-kNN")) == len(by_rule["none"]) == 4


def test_sasrec_learns_a_deterministic_next_item_on_a_toy_set():
    torch.manual_seed(0)
    # 80 users walking a cycle 1 -> 2 -> ... -> 8 -> 1 from random starts, for random lengths
    # (lengths vary, so the only rule that fits is "the item after the last one")
    rng = np.random.default_rng(0)
    train, vp, vt = [], [], []
    for _ in range(80):
        s0, n = int(rng.integers(0, 8)), int(rng.integers(5, 10))
        seq = [(s0 + j) % 8 + 1 for j in range(n)]
        train.append(np.array(seq[:-2])); vp.append(np.array(seq[:-2])); vt.append(seq[-2])
    cfg = S.SASRecConfig(n_items=9, dim=16, blocks=1, heads=1, dropout=0.0, max_len=10)
    model, hist, secs, best = S.fit(train, (vp, vt), 9, cfg, lr=1e-2, batch=16, max_epochs=30, patience=30, mask_history=False, log=lambda s: None)
    r = S.ranks(model, vp, vt, mask_history=False)
    assert (r == 1).mean() > 0.9, r
    assert hist[-1]["loss"] < hist[0]["loss"] and {"epoch", "loss", "seconds", "events_per_s", "valid"} <= set(hist[0])
