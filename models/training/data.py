"""Data adapters: every source -> one internal event table (user, session, item, time).

Internal form (numpy, sorted by user then time):
  user    int64   user (or anonymous session) number, 0..U-1
  session int64   global session number; a new one starts at an idle gap or a new user
  item    str     the raw item id as the shop knows it (catalog id)
  time    float64 seconds since the epoch (or the event's position where a source has no time)
  split   int8    0 = train, 1 = test (sources that come pre-split)

`build_index` then maps raw item ids to embedding rows (row 0 is padding).
"""
import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime

import numpy as np

DATA_ROOT = os.environ.get("GRU_DATA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


@dataclass
class Events:
    user: np.ndarray
    session: np.ndarray
    item: np.ndarray      # object array of str
    time: np.ndarray
    split: np.ndarray

    def __len__(self):
        return len(self.item)

    def take(self, mask):
        return Events(self.user[mask], self.session[mask], self.item[mask], self.time[mask], self.split[mask])


def _finish(users, items, times, splits=None, idle_gap=1800.0, sessions=None):
    """Sort by (user, time, input order), number sessions by idle gap (or given ids)."""
    users = np.asarray(users)
    _, user_idx = np.unique(users, return_inverse=True)
    times = np.asarray(times, dtype=np.float64)
    order = np.lexsort((np.arange(len(times)), times, user_idx))
    user_idx, times = user_idx[order], times[order]
    items = np.asarray(items, dtype=object)[order]
    splits = np.zeros(len(order), np.int8) if splits is None else np.asarray(splits, np.int8)[order]
    new = np.ones(len(order), bool)
    if len(order) > 1:
        same_user = user_idx[1:] == user_idx[:-1]
        if sessions is not None:
            s = np.asarray(sessions)[order]
            cont = s[1:] == s[:-1]
        else:
            cont = (times[1:] - times[:-1]) <= idle_gap
        new[1:] = ~(same_user & cont)
    session = np.cumsum(new) - 1
    return Events(user_idx.astype(np.int64), session.astype(np.int64), items, times, splits)


def movielens_latest_small(root=DATA_ROOT, idle_gap=1800.0):
    path = os.path.join(root, "movielens-latest-small", "ratings.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return _finish([r["userId"] for r in rows], [r["movieId"] for r in rows],
                   [float(r["timestamp"]) for r in rows], idle_gap=idle_gap)


def movielens_latest_small_titles(root=DATA_ROOT):
    with open(os.path.join(root, "movielens-latest-small", "movies.csv")) as f:
        return {r["movieId"]: {"title": r["title"], "genres": r["genres"]} for r in csv.DictReader(f)}


def movielens_100k(root=DATA_ROOT, idle_gap=1800.0):
    u, i, t = [], [], []
    with open(os.path.join(root, "movielens-100k", "u.data")) as f:
        for line in f:
            a = line.split("\t")
            u.append(a[0]); i.append(a[1]); t.append(float(a[3]))
    return _finish(u, i, t, idle_gap=idle_gap)


def session_lines(path, split):
    """SR-GNN style text: one session per line, items space separated, in time order."""
    u, i, t, s = [], [], [], []
    with open(path) as f:
        for n, line in enumerate(f):
            for pos, item in enumerate(line.split()):
                u.append(f"{split}:{n:09d}"); i.append(item); t.append(float(pos)); s.append(n)
    return u, i, t


def session_benchmark(name, root=DATA_ROOT):
    """diginetica / retailrocket: each session is its own anonymous user; pre-split.
    User ids are zero-padded line numbers, so their order is the files' (time) order."""
    d = os.path.join(root, name)
    u, i, t = session_lines(os.path.join(d, "train_sessions.txt"), 0)
    sp = [0] * len(u)
    if name == "retailrocket":
        with open(os.path.join(d, "test_sessions.tsv")) as f:
            next(f)
            for n, line in enumerate(f):
                sid, ts, items = line.rstrip("\n").split("\t")
                for pos, item in enumerate(items.split()):
                    u.append(f"1:{n:09d}"); i.append(item); t.append(float(pos)); sp.append(1)
    else:
        u2, i2, t2 = session_lines(os.path.join(d, "test_sessions.txt"), 1)
        u += u2; i += i2; t += t2; sp += [1] * len(u2)
    return _finish(u, i, t, splits=sp, idle_gap=float("inf"))


def amazon(name, root=DATA_ROOT):
    """S3-Rec 5-core files: `user item item ...`; order only, so time = position."""
    fname = {"amazon-beauty": "Beauty.txt", "amazon-sports": "Sports_and_Outdoors.txt"}[name]
    u, i, t = [], [], []
    with open(os.path.join(root, name, fname)) as f:
        for line in f:
            a = line.split()
            for pos, item in enumerate(a[1:]):
                u.append(a[0]); i.append(item); t.append(float(pos))
    return _finish(u, i, t, idle_gap=float("inf"))


def yoochoose_tsv(root=DATA_ROOT):
    d = os.path.join(root, "yoochoose-100k")
    u, i, t, sp = [], [], [], []
    for split, fname in ((0, "yoochoose-clicks-100k_train_full.txt"), (1, "yoochoose-clicks-100k_test.txt")):
        with open(os.path.join(d, fname)) as f:
            next(f)
            for line in f:
                sid, item, ts = line.split("\t")
                u.append(sid); i.append(item); t.append(float(ts)); sp.append(split)
    return _finish(u, i, t, splits=sp, idle_gap=float("inf"))


def diginetica_raw(path):
    """Raw CIKM Cup 2016 `train-item-views.csv` (`;` separated; session, user, item, timeframe, date)."""
    u, i, t = [], [], []
    with open(path) as f:
        for r in csv.DictReader(f, delimiter=";"):
            day = datetime.strptime(r["eventdate"], "%Y-%m-%d").timestamp()
            u.append(r["session_id"]); i.append(r["item_id"]); t.append(day + float(r["timeframe"]) / 1000.0)
    return _finish(u, i, t, idle_gap=float("inf"))


def yoochoose_raw(path):
    """Raw RecSys 2015 `yoochoose-clicks.dat` (`,` separated; session, ISO time, item, category)."""
    u, i, t = [], [], []
    with open(path) as f:
        for line in f:
            sid, ts, item, _cat = line.rstrip("\n").split(",")
            u.append(sid); i.append(item)
            t.append(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
    return _finish(u, i, t, idle_gap=float("inf"))


def event_log(path, idle_gap=1800.0):
    """The project's own export: NDJSON of accepted events {user_id, item_id, timestamp(ms)}."""
    u, i, t = [], [], []
    with open(path) as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                u.append(e["user_id"]); i.append(e["item_id"]); t.append(float(e["timestamp"]) / 1000.0)
    return _finish(u, i, t, idle_gap=idle_gap)


LOADERS = {
    "movielens-latest-small": movielens_latest_small,
    "movielens-100k": movielens_100k,
    "diginetica": lambda: session_benchmark("diginetica"),
    "retailrocket": lambda: session_benchmark("retailrocket"),
    "amazon-beauty": lambda: amazon("amazon-beauty"),
    "amazon-sports": lambda: amazon("amazon-sports"),
    "yoochoose-100k": yoochoose_tsv,
}


def build_index(ev: Events, min_count=1):
    """Item index from everything but the test split (training and validation events: the validation
    split is carved out of the published training data, so its items are known items): raw id ->
    row (1..N-1), sorted by count desc then id."""
    train_items = ev.item[ev.split != 1]
    ids, counts = np.unique(train_items.astype(str), return_counts=True)
    keep = counts >= min_count
    ids, counts = ids[keep], counts[keep]
    order = np.lexsort((ids, -counts))
    ids, counts = ids[order].tolist(), counts[order].tolist()
    return ids, counts


def to_rows(ev: Events, ids):
    """Raw ids -> embedding rows; 0 where the item is not in the index."""
    row = {k: n + 1 for n, k in enumerate(ids)}
    return np.fromiter((row.get(str(x), 0) for x in ev.item), dtype=np.int64, count=len(ev))
