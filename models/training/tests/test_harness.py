"""Harness protocols and baselines on tiny hand-made data."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import data as D  # noqa: E402
import harness as H  # noqa: E402


def tiny():
    # train sessions (users 0..2), one test session (user 3): items a b c d
    users = ["0", "0", "0", "1", "1", "2", "2", "3", "3", "3"]
    items = ["a", "b", "c", "a", "b", "c", "d", "a", "b", "c"]
    split = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    ev = D._finish(users, items, list(range(10)), splits=split, idle_gap=float("inf"))
    ids, _ = D.build_index(ev)
    return ev, ids, D.to_rows(ev, ids)


def test_session_next_targets_every_position_but_the_first():
    ev, ids, rows = tiny()
    seqs, lost = H.sequences(ev, rows, "session-next")
    assert lost == 0
    test = [s for s in seqs if s[2].any()]
    assert len(test) == 1 and test[0][2].tolist() == [False, True, True]


def test_baselines_rank_by_hand():
    ev, ids, rows = tiny()
    seqs, _ = H.sequences(ev, rows, "session-next")
    bl = H.Baselines(seqs, len(ids) + 1)
    row = {k: i + 1 for i, k in enumerate(ids)}
    # counts in training: a2 b2 c2 d1; MostPopular ranks ties against the target
    r = bl.ranks([s for s in seqs if s[2].any()], "MostPopular")
    assert r.tolist() == [3, 3]           # b and c tie with a and each other at count 2
    # item-kNN after "a": b co-occurs with a in 2 sessions, c in 1 -> b ranked first
    sc = bl.iknn(np.array([row["a"]]))
    assert sc[row["b"]] > sc[row["c"]] > sc[row["d"]]
    # V-SKNN after "a b": neighbours are sessions 0 (a b c, sim 1.5) and 1 (a b, sim 1.5);
    # session 2 (c d) shares nothing -> c scores 1.5, d nothing beyond the popularity tie-break
    sc = bl.sknn(np.array([row["a"], row["b"]]), vsknn=True)
    assert abs(sc[row["c"]] - 1.5) < 1e-6 and sc[row["d"]] < 1e-6


def test_paired_difference_of_identical_ranks_is_zero():
    r = np.array([1, 5, 30, 2])
    d = H.paired_diff(r, r, boot=50)
    assert d["Recall@20"]["diff"] == 0 and d["Recall@20"]["ci"] == [0.0, 0.0]


def test_vsknn_prefers_the_most_recent_neighbours_on_equal_similarity():
    # sessions (oldest first): "a x", "a y"; after "a" both are equally similar; with k=1 the more
    # recent one ("a y") votes
    ev = D._finish(["0", "0", "1", "1", "2", "2"], ["a", "x", "a", "y", "a", "x"], list(range(6)),
                   splits=[0, 0, 0, 0, 1, 1], idle_gap=float("inf"))
    ids, _ = D.build_index(ev)
    rows = D.to_rows(ev, ids)
    seqs, _ = H.sequences(ev, rows, "session-next")
    bl = H.Baselines(seqs, len(ids) + 1, k=1)
    row = {k: i + 1 for i, k in enumerate(ids)}
    sc = bl.sknn(np.array([row["a"]]), vsknn=True)
    assert sc[row["y"]] > 0.5 and sc[row["x"]] < 1e-6
