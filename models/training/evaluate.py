"""Evaluate a trained model and the baselines on a dataset's test protocol (see harness.py).

    python3 models/training/evaluate.py --dataset diginetica --ckpt .data/dg.pt --out models/dg/metrics.json

Our model is evaluated twice: with persistent memory (the state carried across sessions, as the
worker does) and session-only (state reset at every session start). --fp16 rounds the weights to
float16 first, as an fp16 export stores them. Prints one line per method and writes JSON.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402
from metrics import summary  # noqa: E402
from export import load as load_model  # noqa: E402


def with_misses(ranks, lost):
    """Targets whose item the model cannot represent count as misses (rank beyond any cut-off)."""
    return np.r_[ranks, np.full(lost, 10**9, dtype=np.int64)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(H.PROTOCOLS))
    p.add_argument("--ckpt", help="model checkpoint; omit to evaluate only the baselines")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--baselines", default=",".join(H.BASELINES), help="comma list, or 'none'")
    p.add_argument("--max-users", type=int, default=0, help="evaluate only the first N test users (quick checks)")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--exclude-seen", action="store_true", help="remove items the user had before each target from its ranking (all methods)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    model, ck = load_model(args.ckpt, args.fp16) if args.ckpt else (None, None)
    idle_gap = ck["args"]["idle_gap"] if ck else 1800.0
    ev = H.load(args.dataset, idle_gap)
    ids = ck["item_ids"] if ck else D.build_index(ev, 1)[0]
    rows = D.to_rows(ev, ids)
    proto = H.PROTOCOLS[args.dataset]
    seqs, lost = H.sequences(ev, rows, proto)
    test_seqs = [s for s in seqs if s[2].any()]
    if args.max_users:
        test_seqs = test_seqs[:args.max_users]
    n_targets = int(sum(s[2].sum() for s in test_seqs))
    print(f"{args.dataset} ({proto}): {len(test_seqs)} test users/sessions, {n_targets} targets, "
          f"{lost} targets with items unknown to the model (counted as misses)", flush=True)
    results, ranks = {}, {}

    def report(name, r, seconds):
        r = with_misses(r, lost if not args.max_users else 0)
        ranks[name] = r
        results[name] = {**summary(r, boot=args.boot), "targets": int(len(r)), "seconds": round(seconds, 1)}
        m = results[name]
        print(f"{name:28s} Recall@20={m['Recall@20']:.4f} MRR@20={m['MRR@20']:.4f} NDCG@20={m['NDCG@20']:.4f} "
              f"Recall@10={m['Recall@10']:.4f} MRR@10={m['MRR@10']:.4f}  ({seconds:.0f}s)", flush=True)

    if model is not None:
        t = time.time()
        report("GRU (memory)", H.model_ranks(model, test_seqs, exclude_seen=args.exclude_seen), time.time() - t)
        if proto != "session-next":
            t = time.time()
            report("GRU (session-only)", H.model_ranks(model, test_seqs, reset_sessions=True, exclude_seen=args.exclude_seen), time.time() - t)
    names = [] if args.baselines == "none" else args.baselines.split(",")
    if names:
        t = time.time()
        bl = H.Baselines(seqs, len(ids) + 1)
        print(f"baselines fitted in {time.time() - t:.0f}s", flush=True)
        for name in names:
            t = time.time()
            report(name, bl.ranks(test_seqs, name, exclude_seen=args.exclude_seen), time.time() - t)
    out = {"dataset": args.dataset, "protocol": proto, "fp16": args.fp16, "exclude_seen": args.exclude_seen, "targets": n_targets + lost,
           "lost_targets": lost, "results": results}
    if "GRU (memory)" in ranks and "GRU (session-only)" in ranks:
        out["memory_minus_session_only"] = H.paired_diff(ranks["GRU (memory)"], ranks["GRU (session-only)"])
        d = out["memory_minus_session_only"]
        print("memory - session-only: " + "  ".join(f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in d.items()))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
