"""Compare trained designs on validation data only (the numbers that choose a design).

    python3 models/training/compare.py .data/runs/b-*.pt [--markdown]

One row per checkpoint: design (kind, cell, attention slots), recipe, best epoch, validation
metrics at the best epoch, training time. Test data is not read.
"""
import argparse
import os
import sys

import torch


def design(cfg):
    if cfg.get("kind") == "seq":
        cell = cfg.get("cell", "gru").upper()
        return f"{cell} + attention over last {cfg['attn']}" if cfg.get("attn") else f"{cell} (GRU4Rec, CE)" if cell == "GRU" else cell
    return "HRNN (user GRU + session GRU)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+")
    args = p.parse_args(argv)
    print("| checkpoint | design | loss | lr | batch | dropout | best epoch / run | valid Recall@20 | valid NDCG@20 | valid MRR@20 | train min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.ckpts:
        ck = torch.load(path, map_location="cpu")
        a, h = ck["args"], [x for x in ck["history"] if not x.get("refit")]
        v = ck["metrics"].get("validation", {})
        loss = a["loss"] + (f" {a['n_sample']}{' logq' if a.get('logq') else ''}" if a["loss"] in ("ce-sampled", "bpr-max") else "")
        print(f"| {os.path.basename(path)} | {design(ck['config'])} | {loss} | {a['lr']} | {a['batch']} | {a['dropout']} | "
              f"{ck.get('best_epoch', '?')} / {len(h)} | {v.get('Recall@20', float('nan')):.4f} | {v.get('NDCG@20', float('nan')):.4f} | "
              f"{v.get('MRR@20', float('nan')):.4f} | {ck['train_seconds'] / 60:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
