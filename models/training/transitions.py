"""Add an item-transition term to a trained SeqRec checkpoint (model.py `trans_*`).

GCE-GNN's gain on diginetica comes from global item transitions: what follows an item in everybody's
sessions. A recurrent model learns them only through its embeddings, which blur rare items. This
step counts them exactly and stores them in the model:

- w(a -> b) = sum over the training sessions of 1 / distance, for b within `--window` events after a
  in the same session, normalised so that each a's weights sum to 1; the `--m` largest are kept.
- score(row) += alpha * log1p(sum over the recent items j (most recent first) of decay^j *
  w(item_j -> row) / eps), from the state's recent items: inside the score graph of a single-isolate
  export (so the runtime, golden vectors and `npm run eval` see it unchanged), by the worker of a
  sharded one (export_shards.py appends the constants; src/model/transitions.ts).

The counts come from the checkpoint's own training data: the training split, plus validation for a
`--refit` checkpoint. `--validate` builds them from the training split alone and prints train.py's
validation figures for each `--grid` point (alpha,eps,decay), so the three are chosen on validation
only. The output is a checkpoint like any other (state_dict + config), exported by export.py.

    python3 models/training/transitions.py --ckpt run.valid.pt --validate --grid 1.2,0.05,0.8 1,0.03,0.8
    python3 models/training/transitions.py --ckpt run.pt --out run.trans.pt      # the defaults: chosen on
                                                                                # diginetica's validation
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402
import train as T  # noqa: E402
from model import ModelConfig, build, without_term  # noqa: E402
from prepare import prepare  # noqa: E402


def successors(seqs, n_items, window, include_valid=False):
    """W (n_items, n_items) csr: W[a, b] = sum of 1 / d over the training events b that follow a by
    d <= window events in the same session."""
    src, dst, w = [], [], []
    for sq in seqs:
        m = H.training_part(sq, include_valid)
        r, s = sq[0][m], sq[3][m]
        for d in range(1, window + 1):
            same = s[d:] == s[:-d]
            src.append(r[:-d][same])
            dst.append(r[d:][same])
            w.append(np.full(int(same.sum()), 1.0 / d))
    W = sp.csr_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n_items, n_items))
    W.sum_duplicates()
    return W


def top_successors(W, m):
    """Each row normalised to sum 1, then its m largest entries: idx (N, m) int32, w (N, m) float32
    (0 / 0.0 past a row's entries; ties broken by the smaller column)."""
    N = W.shape[0]
    W = W.tocsr()
    W.sort_indices()
    total = np.asarray(W.sum(1)).ravel()
    row = np.repeat(np.arange(N), np.diff(W.indptr))
    order = np.lexsort((W.indices, -W.data, row))                 # per row: weight desc, column asc
    rank = np.arange(len(order)) - W.indptr[row[order]]          # place of each entry in its row
    keep, rk = order[rank < m], rank[rank < m]
    idx = np.zeros((N, m), np.int32)
    wt = np.zeros((N, m), np.float32)
    idx[row[keep], rk] = W.indices[keep]
    wt[row[keep], rk] = W.data[keep] / total[row[keep]]
    return idx, wt


def quantize(wt):
    """Weights (N, m) float32 >= 0 -> uint8 codes (N, m) and a float32 scale per row (its largest
    weight / 255, so that weight ~ code * scale; 0 for a row without successors)."""
    scale = (wt.max(1) / 255.0).astype(np.float32)
    q = np.rint(wt / np.where(scale > 0, scale, 1.0)[:, None]).astype(np.uint8)
    return q, scale


def with_transitions(ck, idx, wt, window, alpha, eps, decay):
    """A model from checkpoint dict ck with the transition term set (float32, eval mode)."""
    cfg, sd = without_term(ck["config"], ck["state_dict"])
    cfg.update(trans_m=int(idx.shape[1]), trans_window=window, trans_alpha=alpha, trans_eps=eps, trans_decay=decay)
    model = build(ModelConfig(**cfg))
    q, scale = quantize(wt)
    sd.update(trans_idx=torch.from_numpy(idx), trans_q=torch.from_numpy(q), trans_scale=torch.from_numpy(scale))
    model.load_state_dict(sd)
    return model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a SeqRec checkpoint from train.py (kind seq, attn > 0)")
    p.add_argument("--out", help="the checkpoint with the transition term")
    p.add_argument("--window", type=int, default=20, help="events after an item that count as its successors")
    p.add_argument("--m", type=int, default=20, help="successors kept per item")
    p.add_argument("--alpha", type=float, default=1.2, help="weight of the term in the score")
    p.add_argument("--eps", type=float, default=0.05, help="weight at which log1p turns from linear to log")
    p.add_argument("--decay", type=float, default=0.8, help="weight of recency slot j is decay^j")
    p.add_argument("--validate", action="store_true",
                   help="counts from the training split only; print validation figures per --grid point")
    p.add_argument("--grid", nargs="*", default=[], help="alpha,eps,decay points for --validate")
    p.add_argument("--prepared", default=os.path.join(os.path.dirname(__file__), "../../.data/prepared"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    ck = torch.load(args.ckpt, map_location="cpu")
    a = ck["args"]
    assert ck["config"].get("kind") == "seq" and ck["config"].get("attn"), "needs a SeqRec checkpoint with attn > 0"
    assert not a.get("ndjson"), "counts are rebuilt from a named dataset"
    ev, ids, _, rows = prepare(a["dataset"], a["idle_gap"], a["min_count"],
                               os.path.join(args.prepared, a["dataset"]), holdout=a["holdout"] == "protocol")
    assert list(ids) == list(ck["item_ids"]), "the prepared item index differs from the checkpoint's"
    proto = H.PROTOCOLS[a["dataset"]]
    seqs, _ = H.sequences(ev, rows, proto)
    refit = bool(a.get("refit")) and not args.validate
    t0 = time.time()
    W = successors(seqs, len(ids) + 1, args.window, include_valid=refit)
    idx, wt = top_successors(W, args.m)
    print(f"{a['dataset']}: {W.nnz} transitions (window {args.window}, {'train + valid' if refit else 'train'}), "
          f"{args.m} kept per item: {(wt > 0).sum()} ({time.time() - t0:.0f}s)", flush=True)

    if args.validate:
        valid = [s for s in H.sequences(ev, rows, proto, target=H.VALID)[0] if s[2].any()]
        if a["valid_users"] and len(valid) > a["valid_users"]:       # train.py's validation users
            pick = np.random.default_rng(0).choice(len(valid), a["valid_users"], replace=False)
            valid = [valid[i] for i in sorted(pick)]
        cfg, sd = without_term(ck["config"], ck["state_dict"])
        base = build(ModelConfig(**cfg))
        base.load_state_dict(sd)
        points = [None] + [tuple(float(x) for x in g.split(",")) for g in args.grid]
        for pt in points:
            model = base.eval() if pt is None else with_transitions(ck, idx, wt, args.window, *pt)
            with torch.no_grad():
                r = T.validate(model, valid, proto)
            name = "without the term" if pt is None else "alpha=%g eps=%g decay=%g" % pt
            print(f"validation {name}: " + " ".join(f"{k}={r[k]:.4f}" for k in ("Recall@20", "NDCG@20", "MRR@20")),
                  flush=True)
    if args.out:
        model = with_transitions(ck, idx, wt, args.window, args.alpha, args.eps, args.decay)
        out = dict(ck, config=model.cfg.to_dict(), state_dict=model.state_dict())
        torch.save(out, args.out)
        print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
