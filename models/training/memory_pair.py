"""Paired comparison of a memory model against a separately trained session-only model (issue 20):
the same targets ranked by both (full ranking, nothing left out), paired bootstrap of the
difference, and Recall@20 by the target's place in its session.

    python3 models/training/memory_pair.py --memory .data/mem.pt --session-only .data/so.pt --split test

--split valid ranks the validation targets (for choosing a variant); --split test is for the chosen
variant once. The same-model comparison of evaluate.py (the memory model with its state reset at
every session start) is printed too. Writes JSON with --out.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402
from evaluate import PLACES, with_misses  # noqa: E402
from export import load as load_model  # noqa: E402
from metrics import summary  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memory", required=True, help="checkpoint of the memory model")
    p.add_argument("--session-only", required=True, help="checkpoint of the session-only model (train.py --no-memory)")
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--ablate", choices=["ring", "long"], help='"gated" memory model with one part switched off: '
                   "ring: the ring items' learned scores set to 0; long: the gated long-term query term set to 0")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    mem, ck = load_model(args.memory)
    so, ck_so = load_model(args.session_only)
    if args.ablate:                                   # a diagnostic, on validation: what each part adds
        with torch.no_grad():
            for name, w in mem.named_parameters():
                if (args.ablate == "ring" and name in ("slot_w", "in_sess_w")) or (args.ablate == "long" and name.startswith("long.")):
                    w.zero_()
    assert ck["item_ids"] == ck_so["item_ids"], "the two checkpoints index different items"
    assert ck["args"]["idle_gap"] == ck_so["args"]["idle_gap"]
    ds = ck["dataset"]
    ev = H.load(ds, ck["args"]["idle_gap"])
    proto = H.PROTOCOLS[ds]
    rows = D.to_rows(ev, ck["item_ids"])
    target = H.TEST if args.split == "test" else H.VALID
    seqs, lost = H.sequences(ev, rows, proto, target=target)
    seqs = [s for s in seqs if s[2].any()]
    places = H.target_places(seqs)
    r_mem = with_misses(H.model_ranks(mem, seqs), lost)              # (targets,) unknown items last, as misses
    r_so = with_misses(H.model_ranks(so, seqs), lost)
    r_reset = with_misses(H.model_ranks(mem, seqs, reset_sessions=True), lost)
    out = {"split": args.split, "targets": int(len(r_mem)), "lost_targets": int(lost),
           "memory": summary(r_mem, ks=(20,)), "session_only": summary(r_so, ks=(20,)),
           "memory_reset": summary(r_reset, ks=(20,)),
           "memory_minus_session_only": H.paired_diff(r_mem, r_so, boot=args.boot),
           "memory_minus_reset": H.paired_diff(r_mem, r_reset, boot=args.boot)}
    print(f"{ds} {args.split}: {len(r_mem)} targets ({lost} of unknown items, misses for both)")
    for name in ("memory", "session_only", "memory_reset"):
        m = out[name]
        print(f"  {name:14s} Recall@20={m['Recall@20']:.4f} NDCG@20={m['NDCG@20']:.4f} MRR@20={m['MRR@20']:.4f}")
    for name in ("memory_minus_session_only", "memory_minus_reset"):
        print(f"  {name}: " + "  ".join(f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"
                                        for k, v in out[name].items()))
    by_place = []
    n = len(places)                                                   # known-item targets come first
    for lo, hi in PLACES:
        sel = (places >= lo) & (places < hi)
        if sel.any():
            d = H.paired_diff(r_mem[:n][sel], r_so[:n][sel], boot=args.boot)["Recall@20"]
            row = {"from": lo, "to": hi, "targets": int(sel.sum()), "memory": float(np.mean(r_mem[:n][sel] <= 20)),
                   "session_only": float(np.mean(r_so[:n][sel] <= 20)), "memory_reset": float(np.mean(r_reset[:n][sel] <= 20)),
                   "diff": d["diff"], "ci": d["ci"]}
            by_place.append(row)
            print(f"  place {lo}..{hi - 1 if hi < 10**9 else 'end'}: {row['targets']} targets, Recall@20 memory {row['memory']:.4f}, "
                  f"session-only {row['session_only']:.4f} ({row['diff']:+.4f} [{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}]), "
                  f"memory reset {row['memory_reset']:.4f}")
    out["by_place"] = by_place
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
