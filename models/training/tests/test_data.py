"""Data adapters read the real formats into one internal form."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import data as D  # noqa: E402

SAMPLES = os.path.join(D.DATA_ROOT, "samples")
needs_data = pytest.mark.skipif(not os.path.isdir(D.DATA_ROOT), reason="../shared/data not present")


@needs_data
def test_raw_diginetica_sample_parses_into_sessions():
    ev = D.diginetica_raw(os.path.join(SAMPLES, "sample_train-item-views.csv"))
    assert len(ev) == 12391 - 0  # every row of the fixture is an event
    assert (np.diff(ev.user) >= 0).all()
    same = ev.user[1:] == ev.user[:-1]
    assert (ev.time[1:][same] >= ev.time[:-1][same]).all()


@needs_data
def test_raw_yoochoose_sample_parses_iso_times():
    ev = D.yoochoose_raw(os.path.join(SAMPLES, "sample_yoochoose.dat"))
    assert len(ev) > 1000
    assert ev.time.min() > 1.38e9  # 2014


def test_idle_gap_cuts_sessions(tmp_path):
    p = tmp_path / "events.ndjson"
    rows = [("u1", "a", 0), ("u1", "b", 60_000), ("u1", "c", 60_000 + 31 * 60_000), ("u2", "a", 0)]
    p.write_text("\n".join(json.dumps({"user_id": u, "item_id": i, "timestamp": t}) for u, i, t in rows))
    ev = D.event_log(str(p), idle_gap=1800)
    assert ev.session.tolist() == [0, 0, 1, 2]
    assert ev.item.tolist() == ["a", "b", "c", "a"]


def test_index_orders_by_count_and_skips_rare_items():
    ev = D._finish(["u"] * 6, ["x", "y", "y", "z", "z", "z"], [0, 1, 2, 3, 4, 5])
    ids, counts = D.build_index(ev, min_count=2)
    assert ids == ["z", "y"] and counts == [3, 2]
    assert D.to_rows(ev, ids).tolist() == [0, 2, 2, 1, 1, 1]


@needs_data
def test_movielens_latest_small_matches_its_published_size():
    ev = D.movielens_latest_small()
    assert len(ev) == 100836
    assert len(np.unique(ev.user)) == 610
