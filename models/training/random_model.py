"""A randomly initialised model of any size, exported as the worker serves it: for memory and speed
benchmarks (scripts/bench-model.ts, scripts/bench-scale.ts), where the weights' values do not matter.

    python3 models/training/random_model.py --items 100000 --dim 64 --out /tmp/m [--kind seq] \
        [--shards 4] [export flags: --fp16 --int8-table --similar yes|no]

Golden vectors come from a small made-up event log over the first items. With --shards the export is
export_shards.py's (item shards), else export.py's.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import export  # noqa: E402
import export_shards  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--kind", default="hrnn", choices=["hrnn", "seq"], help="seq: SeqRec with attention over 20 recent items")
    p.add_argument("--shards", default="0", help="export in this many item shards; auto: as export_shards.py chooses; 0: one isolate (export.py)")
    p.add_argument("--out", required=True)
    args, flags = p.parse_known_args(argv)
    n, out = args.items, args.out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=n + 1, dim=args.dim, **({"kind": "seq", "attn": 20} if args.kind == "seq" else {}))
    ids = [f"i{k}" for k in range(1, n + 1)]
    ev = os.path.join(out, "events.ndjson")
    with open(ev, "w") as f:
        for u in range(4):
            for j in range(16):
                f.write(json.dumps({"user_id": f"u{u}", "item_id": ids[(u * 16 + j) % n],
                                    "timestamp": 1700000000000 + j * 60000 + (j // 8) * 7200000}) + "\n")
    ck = {"config": cfg.to_dict(), "state_dict": build(cfg).state_dict(), "item_ids": ids, "item_counts": list(range(n, 0, -1)),
          "args": {"idle_gap": 1800.0}, "dataset": "synthetic", "events_path": ev, "train_seconds": 0.0, "history": [], "metrics": {}}
    ckpt = os.path.join(out, "ckpt.pt")
    torch.save(ck, ckpt)
    name = f"synthetic-{n}x{args.dim}"
    if args.shards != "0":
        export_shards.main(["--ckpt", ckpt, "--out", out, "--name", name, "--shards", args.shards, *flags])
    else:
        export.main(["--ckpt", ckpt, "--out", out, "--name", name, *flags])
    os.remove(ckpt)
    os.remove(ev)


if __name__ == "__main__":
    main()
