"""A synthetic shop of any size, for scale tests and benchmarks (issue 18): an event log the trainer
reads (`train.py --ndjson`) and a catalog the worker imports (`PUT /v1/items`).

    python3 models/training/synthetic.py --items 1000000 --users 200000 --out .data/synthetic-1m

Items: ids `s<n>`, Zipf popularity (exponent --zipf), a two-level category path (20 departments x
20 leaf categories), a log-normal price, about 2% unavailable. Users: each has 1-3 favourite leaf
categories; a session draws most items from them (popularity-weighted inside the category), the
rest from the whole catalog; returning users come back after hours to weeks, so the long-term
memory has something to learn. Writes
  events.ndjson   {user_id, item_id, timestamp (ms)}, one event a line, in time order per user
  catalog.ndjson  {item_id, title, category_path, price, currency, available}, one item a line
  meta.json       the arguments and counts
Deterministic for a --seed.
"""
import argparse
import json
import os
import time

import numpy as np

DEPARTMENTS, LEAVES = 20, 20


def zipf_weights(n, s):
    """Popularity weights of ranks 1..n, w ~ 1 / rank ** s, normalised."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--sessions", type=float, default=3.0, help="mean sessions per user (geometric)")
    p.add_argument("--session-len", type=float, default=6.0, help="mean events per session (geometric)")
    p.add_argument("--zipf", type=float, default=1.0, help="popularity exponent")
    p.add_argument("--in-favourite", type=float, default=0.8, help="share of events from the user's favourite categories")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="folder")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    N = args.items
    os.makedirs(args.out, exist_ok=True)

    # Items: a random popularity rank each, a leaf category, a price.
    rank = rng.permutation(N)                              # rank[i]: item i's popularity rank
    pop = zipf_weights(N, args.zipf)[rank]                 # (N,) item i's weight
    leaf = rng.integers(0, DEPARTMENTS * LEAVES, N)        # (N,) leaf category index
    price = np.round(np.exp(rng.normal(3.0, 0.8, N)), 2)   # (N,) around 20, long tail
    available = rng.random(N) > 0.02
    ids = np.array([f"s{i}" for i in range(N)])

    # Per leaf: its items and their popularity CDF, for drawing inside a category.
    order = np.argsort(leaf, kind="stable")
    bounds = np.searchsorted(leaf[order], np.arange(DEPARTMENTS * LEAVES + 1))
    cdfs = []
    for c in range(DEPARTMENTS * LEAVES):
        members = order[bounds[c]:bounds[c + 1]]
        w = pop[members]
        cdfs.append((members, np.cumsum(w) / w.sum() if len(members) else w))
    global_cdf = np.cumsum(pop)
    global_cdf /= global_cdf[-1]

    def draw_global(n):
        return np.minimum(np.searchsorted(global_cdf, rng.random(n)), N - 1)

    def draw_leaf(c, n):
        members, cdf = cdfs[c]
        if not len(members):
            return draw_global(n)
        return members[np.minimum(np.searchsorted(cdf, rng.random(n)), len(members) - 1)]

    start = 1_700_000_000_000                              # ms
    span_days = 120
    n_events = 0
    with open(os.path.join(args.out, "events.ndjson"), "w") as f:
        for u in range(args.users):
            fav = draw_global(rng.integers(1, 4))
            fav_leaves = np.unique(leaf[fav])
            t = start + int(rng.random() * span_days * 0.5 * 86_400_000)
            lines = []
            for _ in range(rng.geometric(1.0 / args.sessions)):
                L = rng.geometric(1.0 / args.session_len)
                from_fav = rng.random(L) < args.in_favourite
                c = rng.choice(fav_leaves)                 # a session mostly stays in one favourite
                items = np.where(from_fav, draw_leaf(c, L), draw_global(L))
                for it in items:
                    lines.append(f'{{"user_id":"u{u}","item_id":"{ids[it]}","timestamp":{t}}}\n')
                    t += int(rng.exponential(90_000)) + 5_000          # seconds to minutes apart
                t += int(rng.exponential(5 * 86_400_000)) + 3_600_000  # back after hours to weeks
            f.writelines(lines)
            n_events += len(lines)
    with open(os.path.join(args.out, "catalog.ndjson"), "w") as f:
        for i in range(N):
            d, l = divmod(int(leaf[i]), LEAVES)
            f.write(json.dumps({"item_id": str(ids[i]), "title": f"Item {i}", "category_path": [f"Dept {d}", f"Cat {d}-{l}"],
                                "price": float(price[i]), "currency": "EUR", "available": bool(available[i])}) + "\n")
    meta = {"args": vars(args), "items": N, "users": args.users, "events": n_events, "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
