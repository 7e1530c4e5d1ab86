"""Data prep: a dataset in its own format -> the internal event table with the protocol's split,
plus the item index, written side by side:

    python3 models/training/prepare.py --dataset diginetica            # -> .data/prepared/diginetica/
    python3 models/training/prepare.py --ndjson export.ndjson --name shop   # the project's event log

events.npz holds user, session, item (embedding row; 0 = not indexed), time, split; items.json
holds the item index (`ids[i]` is row i + 1) with training counts. train.py calls `prepare`.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def prepare(dataset, idle_gap=1800.0, min_count=1, out_dir=None, ndjson=None, max_users=0, holdout=True):
    """Load, split by the dataset's protocol, index items; write events.npz and items.json."""
    if ndjson:
        ev = D.event_log(ndjson, idle_gap)
        H.apply_protocol(ev, "time-split")
    else:
        ev = H.load(dataset, idle_gap)
    if max_users:
        ev = ev.take(ev.user < max_users)
    if not holdout:
        ev.split[:] = 0
    ids, counts = D.build_index(ev, min_count)
    rows = D.to_rows(ev, ids)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        np.savez_compressed(os.path.join(out_dir, "events.npz"), user=ev.user, session=ev.session, item=rows,
                            time=ev.time, split=ev.split)
        with open(os.path.join(out_dir, "items.json"), "w") as f:
            json.dump({"dataset": dataset, "min_count": min_count, "idle_gap_seconds": idle_gap,
                       "ids": ids, "counts": counts}, f)
    return ev, ids, counts, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(H.PROTOCOLS))
    p.add_argument("--ndjson", help="an event log export (NDJSON of accepted events)")
    p.add_argument("--name", help="folder name for --ndjson")
    p.add_argument("--idle-gap", type=float, default=1800.0)
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--out", help="default .data/prepared/<dataset or name>")
    args = p.parse_args(argv)
    name = args.dataset or args.name or "events"
    out = args.out or os.path.join(ROOT, ".data", "prepared", name)
    ev, ids, counts, rows = prepare(args.dataset, args.idle_gap, args.min_count, out, ndjson=args.ndjson)
    print(json.dumps({"out": out, "events": len(ev), "users": int(len(np.unique(ev.user))),
                      "items": len(ids), "test_events": int(ev.split.sum())}))


if __name__ == "__main__":
    main()
