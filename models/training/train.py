"""Train a user-interest model (model.py).

    python3 models/training/train.py --dataset amazon-beauty --kind seq --attn 20 --out .data/beauty.pt

kind "seq" (SeqRec): users are bucketed by history length and run as padded batches through the
recurrent cell, BPTT truncated every --bptt events with the state carried (detached); the loss at
every event but a user's first is cross-entropy over all items (or over in-batch targets plus
popularity-sampled negatives, --loss ce-sampled) of that item given the state before it.
kind "hrnn" (GRURec, the previous design): GRU4Rec-style parallel lanes.

Only training events are targets (split 0 of harness.py); after every epoch the validation split
(split 2) is ranked exactly as the test will be (harness.model_ranks, history masked under the
last-item protocol), progress is printed, and training stops when the validation metric has not
improved for --patience epochs; the best epoch's weights are kept. Test data is never looked at.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402
from metrics import summary  # noqa: E402
from prepare import prepare  # noqa: E402
from model import ModelConfig, build  # noqa: E402
from sparse_table import TableAdam, clip_grads  # noqa: E402


def training_sequences(seqs, include_valid=False):
    """From harness sequences, each user's training events (split 0; and validation with
    include_valid): (rows, new_session, gap_hours)."""
    out = []
    for sq in seqs:
        r, s, tm = sq[0], sq[3], sq[4]
        m = H.training_part(sq, include_valid)
        if not m.any():
            continue
        r, s, tm = r[m], s[m], tm[m]
        ns = np.r_[1.0, (s[1:] != s[:-1]).astype(np.float32)].astype(np.float32)
        gap = np.r_[0.0, np.diff(tm) / 3600.0].astype(np.float32)
        out.append((r, ns, gap))
    return out


def lanes(seqs, n_lanes, rng):
    """Pack shuffled user sequences into n_lanes streams: item, new_session, gap, reset, valid."""
    order = rng.permutation(len(seqs))
    buckets = [[] for _ in range(n_lanes)]
    lengths = np.zeros(n_lanes, np.int64)
    for i in order:  # greedy: shortest lane next
        j = int(np.argmin(lengths))
        buckets[j].append(seqs[i])
        lengths[j] += len(seqs[i][0])
    T = int(lengths.max())
    item = np.zeros((n_lanes, T), np.int64)
    ns = np.ones((n_lanes, T), np.float32)
    gap = np.zeros((n_lanes, T), np.float32)
    reset = np.zeros((n_lanes, T), np.float32)
    valid = np.zeros((n_lanes, T), np.float32)
    for j, b in enumerate(buckets):
        p = 0
        for r, n, g in b:
            item[j, p:p + len(r)] = r
            ns[j, p:p + len(r)] = n
            gap[j, p:p + len(r)] = g
            reset[j, p] = 1.0
            valid[j, p:p + len(r)] = 1.0
            p += len(r)
    return item, ns, gap, reset, valid


class NegativeSampler:
    """Popularity-sampled negatives (count ** alpha), drawn in blocks to keep sampling cheap."""

    def __init__(self, counts, alpha, rng, block=64):
        p = np.asarray(counts, dtype=np.float64) ** alpha
        self.p = np.r_[0.0, p / p.sum()]            # row 0 (padding) never sampled
        self.logq = torch.from_numpy(np.log(np.maximum(self.p, 1e-30))).float()
        self.rng, self.block, self.cache = rng, block, []

    def draw(self, n):
        if not self.cache:
            rows = self.rng.choice(len(self.p), size=(self.block, n), p=self.p)
            self.cache = [torch.from_numpy(r) for r in rows]
        return self.cache.pop()


def sampled_ce(model, state, ns, gap, target, valid, negatives, logq, bpreg=None):
    """Cross-entropy over the batch's own targets plus shared popularity-sampled negatives.

    Candidates that equal a row's target (other than its own column) are masked out. With logq
    correction the sampled columns are debiased by their sampling probability.
    """
    v = valid > 0
    return sampled_loss(model, model.query(state[v], ns[v], gap[v]), target[v], negatives, logq, bpreg)


def sampled_loss(model, q, tgt, negatives, logq, bpreg=None):
    """Cross-entropy of q (M, d) over the rows' own targets plus shared sampled negatives; with
    `bpreg` set, BPR-max instead (below)."""
    cand = torch.cat([tgt, negatives])
    rows = model.emb(cand) if model.emb.sparse else model.emb.weight[cand]   # --sparse-table: a sparse gradient
    if getattr(model.cfg, "norm_scale", None):    # --norm-scale: scale * cos, before the log-q correction
        rows = F.normalize(rows, dim=1)
        q = model.scale_query(q)
    logits = q @ rows.t() + model.item_bias[cand]
    if logq is not None:
        logits = logits - torch.cat([torch.zeros(len(tgt)), logq[negatives]]).unsqueeze(0)
    same = tgt.unsqueeze(1) == cand.unsqueeze(0)
    same[torch.arange(len(tgt)), torch.arange(len(tgt))] = False
    logits = logits.masked_fill(same, float("-inf"))
    if bpreg is not None:
        return bpr_max(logits, bpreg)
    return F.cross_entropy(logits, torch.arange(len(tgt)), reduction="sum")


def bpr_max(logits, bpreg):
    """BPR-max (Hidasi & Karatzoglou 2018, the official GRU4Rec's loss for diginetica): for each row
    the target is column i of logits (M, C) and every other finite column is a negative; with s_j the
    softmax over the negatives, loss = -log sum_j s_j sigmoid(r_i - r_j) + bpreg sum_j s_j r_j^2.
    Summed over rows."""
    M = logits.shape[0]
    pos = logits[torch.arange(M), torch.arange(M)].unsqueeze(1)                   # (M, 1)
    neg = logits.clone()
    neg[torch.arange(M), torch.arange(M)] = float("-inf")
    s = torch.softmax(neg, dim=1)                                                   # (M, C), 0 where -inf
    finite = torch.isfinite(neg)
    negf = neg.masked_fill(~finite, 0.0)
    hit = (s * torch.sigmoid(pos - negf) * finite).sum(1)
    reg = (s * negf ** 2).sum(1)
    return (-torch.log(hit + 1e-24) + bpreg * reg).sum()


def seq_batches(seqs, batch, rng):
    """Users bucketed by length (shuffled within equal lengths), batches in random order."""
    lens = np.array([len(s[0]) for s in seqs])
    order = np.lexsort((rng.random(len(seqs)), lens))
    groups = [order[i:i + batch] for i in range(0, len(order), batch)]
    return [groups[i] for i in rng.permutation(len(groups))]


def train_epoch_seq(model, opt, seqs, args, rng, sampler=None, lr_step=None):
    model.train()
    total, count = 0.0, 0.0
    for g in seq_batches(seqs, args.batch, rng):
        L = max(len(seqs[i][0]) for i in g)
        B = len(g)
        item = torch.zeros(B, L, dtype=torch.long)
        ns = torch.zeros(B, L)
        gap = torch.zeros(B, L)
        valid = torch.zeros(B, L, dtype=torch.bool)
        for j, i in enumerate(g):
            r, n, gp = seqs[i]
            item[j, :len(r)] = torch.from_numpy(r)
            ns[j, :len(r)] = torch.from_numpy(n)
            gap[j, :len(r)] = torch.from_numpy(gp)
            valid[j, :len(r)] = True
        state = torch.zeros(B, model.state_size)
        for c0 in range(0, L - 1, args.bptt):
            c1 = min(c0 + args.bptt, L - 1)
            out, win, nxt = model.run(item[:, c0:c1], ns[:, c0:c1], gap[:, c0:c1], state)
            m = valid[:, c0 + 1:c1 + 1]
            n = int(m.sum())
            if n:
                tgt = item[:, c0 + 1:c1 + 1][m]
                q = model._query(out[m], win[m] if win is not None else None, ns[:, c0 + 1:c1 + 1][m], gap[:, c0 + 1:c1 + 1][m])
                if sampler is None:
                    logits = model.out_logits(q)
                    if getattr(args, "mask_history", False):
                        logits = history_masked(logits, item, m, c0 + 1, tgt)
                    ls = getattr(args, "label_smoothing", None)
                    if ls:
                        loss = smoothed_ce(logits, tgt, ls)
                    else:
                        loss = F.cross_entropy(logits, tgt, reduction="sum")
                else:
                    loss = sampled_loss(model, q, tgt, sampler.draw(args.n_sample), sampler.logq if args.logq else None,
                                        args.bpreg if args.loss == "bpr-max" else None)
                opt.zero_grad()
                (loss / n).backward()
                clip_grads(model.parameters(), 5.0)
                if lr_step is not None:
                    lr_step()
                opt.step()
                total += float(loss)
                count += n
            state = nxt.detach()
    return total / max(count, 1)


def smoothed_ce(logits, tgt, ls):
    """--label-smoothing: cross-entropy with label smoothing ls spread uniformly over the items a row
    can score (its finite logits: not the padding row, not what --mask-history left out), summed over
    rows. With every item finite this is F.cross_entropy(..., label_smoothing=ls) over those items;
    torch's own would count the -inf logits and give an infinite loss."""
    logp = F.log_softmax(logits, dim=1)
    finite = torch.isfinite(logits)
    nll = -logp.gather(1, tgt.unsqueeze(1)).squeeze(1)
    smooth = -logp.masked_fill(~finite, 0.0).sum(1) / finite.sum(1)
    return ((1 - ls) * nll + ls * smooth).sum()


def history_masked(logits, item, m, t0, tgt):
    """--mask-history: the full-softmax logits (M, N) of the targets m (B, T) marks at positions
    t0..t0+T-1 of item (B, L), with every item the user had before its target at -inf (the
    last-item protocol's masking, so training does not spend itself on pushing the history down);
    a target that repeats an earlier item keeps its own logit."""
    B, L = item.shape
    T = m.shape[1]
    pos = (torch.arange(T) + t0).unsqueeze(0).expand(B, T)[m]                  # (M,) target positions
    rows = torch.arange(B).unsqueeze(1).expand(B, T)[m]                        # (M,) users
    prior = item[rows] * (torch.arange(L).unsqueeze(0) < pos.unsqueeze(1))     # (M, L), 0 = none
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prior, True)
    mask[torch.arange(len(tgt)), tgt] = False
    mask[:, 0] = False                                                         # padding: -inf already
    return logits.masked_fill(mask, float("-inf"))


class LrSchedule:
    """--warmup: the learning rate per optimiser step: linear warm-up over the first `warmup`
    epochs' steps, then (with --cosine) cosine decay to 0 at --epochs, per step."""

    def __init__(self, opt, base, warmup_epochs, epochs, steps_per_epoch, cosine):
        self.opt, self.base, self.cosine = opt, base, cosine
        self.warm = max(1, int(round(warmup_epochs * steps_per_epoch)))
        self.total = max(1, epochs * steps_per_epoch)
        self.step_no = 0

    def factor(self, i):
        f = min(1.0, (i + 1) / self.warm)
        if self.cosine and i >= self.warm:
            f *= 0.5 * (1 + math.cos(math.pi * min(1.0, (i - self.warm) / max(1, self.total - self.warm))))
        return f

    def __call__(self):
        for g in self.opt.param_groups:
            g["lr"] = self.base * self.factor(self.step_no)
        self.step_no += 1


def seq_steps(seqs, batch, bptt):
    """Optimiser steps in one train_epoch_seq epoch (one per batch and BPTT chunk with targets)."""
    return sum(-(-(max(len(seqs[i][0]) for i in g) - 1) // bptt) for g in seq_batches(seqs, batch, np.random.default_rng(0)))


def validate(model, valid_seqs, proto):
    """Validation metrics, ranked exactly as the test (history masked under last-item)."""
    if not valid_seqs:
        return {}
    ranks = H.model_ranks(model, valid_seqs, rule="history" if proto == "last-item" else None)
    return summary(ranks)


def train_epoch(model, opt, seqs, args, rng, sampler=None):
    model.train()
    item, ns, gap, reset, valid = (torch.from_numpy(a) for a in lanes(seqs, args.batch, rng))
    B, T = item.shape
    state = torch.zeros(B, model.state_size)
    total, count = 0.0, 0.0
    aux = getattr(args, "aux_session", 0.0) if getattr(model, "gated", False) else 0.0
    for c in range(0, T, args.bptt):
        state = state.detach()
        loss = 0.0
        n = valid[:, c:c + args.bptt].sum()
        if n == 0:
            break
        for t in range(c, min(c + args.bptt, T)):
            state = state * (1 - reset[:, t:t + 1])
            v = valid[:, t] > 0
            if v.any():
                if sampler is None:
                    logits = model.logits(state, ns[:, t], gap[:, t])
                    loss = loss + F.cross_entropy(logits[v], item[v, t], reduction="sum")
                    if aux:                              # the session-only query's own loss (--aux-session)
                        lo = model.session_logits(state, ns[:, t], gap[:, t])
                        loss = loss + aux * F.cross_entropy(lo[v], item[v, t], reduction="sum")
                else:
                    loss = loss + sampled_ce(model, state, ns[:, t], gap[:, t], item[:, t], valid[:, t],
                                             sampler.draw(args.n_sample), sampler.logq if args.logq else None,
                                             args.bpreg if args.loss == "bpr-max" else None)
            state = model.advance(state, item[:, t], ns[:, t], gap[:, t])
        opt.zero_grad()
        (loss / n).backward()
        clip_grads(model.parameters(), 5.0)
        opt.step()
        total += float(loss)
        count += float(n)
    return total / max(count, 1)


# options added after models were committed: left out of the checkpoint's args while unset, so a
# model trained without them records (and its REPORT.md rebuilds with) exactly the options it had
NEW_OPTIONS = ("warmup", "wd", "emb_dropout", "heads", "pos_emb", "label_smoothing", "mask_history", "sparse_table",
               "norm_scale")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="movielens-latest-small", choices=sorted(D.LOADERS))
    p.add_argument("--ndjson", help="train on an event-log export (NDJSON, what prepare.py --ndjson reads) instead of --dataset")
    p.add_argument("--name", help="dataset name recorded for --ndjson (default: the file's name)")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--kind", default="seq", choices=["seq", "hrnn"], help="seq: SeqRec (served design); hrnn: GRURec")
    p.add_argument("--cell", default="gru", choices=["gru", "lstm"], help="seq: recurrent cell")
    p.add_argument("--attn", type=int, default=20, help="seq: recent items attended at scoring (0: none)")
    p.add_argument("--hidden", type=int, default=0, help="seq: recurrent state size (0: = dim)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--no-memory", action="store_true", help="hrnn: session-only variant")
    p.add_argument("--memory-kind", default="hrnn", choices=["hrnn", "carry", "gated"],
                   help="hrnn: user GRU; carry: retention gate; gated: session-only query + a gated long-term term (model.py)")
    p.add_argument("--ring", type=int, default=0, help="hrnn gated: last R items of all sessions in the state, "
                   "each with a learned score on its logit (0: none)")
    p.add_argument("--no-long-term", action="store_true", help="hrnn gated: without the gated long-term query "
                   "term (the ring alone carries earlier sessions; an ablation)")
    p.add_argument("--aux-session", type=float, default=0.0, help="hrnn gated: weight of an extra loss on the "
                   "session-only query's logits, so the session path alone stays a session-only model (0: none)")
    p.add_argument("--gap", action="store_true", help="hrnn: the session boundary sees the time since the last event")
    p.add_argument("--epochs", type=int, default=30, help="most epochs (early stopping on validation)")
    p.add_argument("--patience", type=int, default=3, help="stop after this many epochs without a better validation metric")
    p.add_argument("--valid-metric", default="NDCG@20")
    p.add_argument("--valid-users", type=int, default=0, help="rank validation targets of at most N users (0: all)")
    p.add_argument("--refit", action="store_true",
                   help="after choosing the epoch count on validation, train again from scratch on training + "
                        "validation events for that many epochs (the validation split is never a test target)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay over --epochs")
    p.add_argument("--warmup", type=float, default=None, help="seq: linear lr warm-up over this many epochs, "
                   "then the rate (with --cosine: cosine decay to 0 at --epochs) set per step (default: none, "
                   "the rate set per epoch)")
    p.add_argument("--wd", type=float, default=None, help="decoupled weight decay (AdamW) on all weights (default: Adam, none)")
    p.add_argument("--sparse-table", action="store_true", help="with --loss ce-sampled or bpr-max: update only the "
                   "table rows a step used (sparse gradients, lazy Adam: sparse_table.py), for catalogs of a "
                   "million items where a dense step walks the whole table")
    p.add_argument("--emb-dropout", type=float, default=None, help="seq: dropout on the input item embeddings "
                   "alone (default: --dropout); --dropout then applies to the state and the attended items")
    p.add_argument("--heads", type=int, default=None, help="seq: attention heads over the recent items (default: one)")
    p.add_argument("--pos-emb", action="store_true", help="seq: a learned embedding per recency slot added to the "
                   "recent items' rows before attention (default: a bias per slot only)")
    p.add_argument("--norm-scale", type=float, default=None, help="seq: normalised scores (NISER / CORE): item rows "
                   "L2-normalised everywhere they are read (input, attention, output) and score = S * cos(query, row) "
                   "+ item bias (default: the plain dot product)")
    p.add_argument("--label-smoothing", type=float, default=None, help="seq, ce-full: label smoothing of the "
                   "cross-entropy over all items (default: none)")
    p.add_argument("--mask-history", action="store_true", help="seq, ce-full: leave every item the user had "
                   "before out of each target's softmax (the last-item protocol's masking)")
    p.add_argument("--batch", type=int, default=64, help="users per batch (seq) / parallel lanes (hrnn)")
    p.add_argument("--bptt", type=int, default=20)
    p.add_argument("--min-count", type=int, default=3, help="items seen fewer times are not indexed")
    p.add_argument("--idle-gap", type=float, default=1800.0, help="seconds; a new session starts after it")
    p.add_argument("--max-users", type=int, default=0, help="use only the first N users (tiny runs)")
    p.add_argument("--holdout", default="protocol", choices=["protocol", "none"],
                   help="protocol: hold out the dataset's test split (harness.py); none: train on everything")
    p.add_argument("--loss", default="ce-full", choices=["ce-full", "ce-sampled", "bpr-max"],
                   help="full softmax; softmax over in-batch targets + popularity-sampled negatives; "
                        "or BPR-max over the same candidates")
    p.add_argument("--n-sample", type=int, default=2048, help="negatives per step (ce-sampled, bpr-max)")
    p.add_argument("--bpreg", type=float, default=1.0, help="bpr-max: weight of the score regulariser")
    p.add_argument("--sample-alpha", type=float, default=0.75, help="negatives ~ count ** alpha")
    p.add_argument("--logq", action="store_true", help="correct sampled logits by log sampling probability")
    p.add_argument("--prepared", default=os.path.join(os.path.dirname(__file__), "..", "..", ".data", "prepared"),
                   help="where data prep writes events.npz + items.json per dataset ('' to skip)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    if args.ndjson:
        args.dataset = args.name or os.path.splitext(os.path.basename(args.ndjson))[0]
    ev, ids, counts, rows = prepare(None if args.ndjson else args.dataset, args.idle_gap, args.min_count,
                                    os.path.join(args.prepared, args.dataset) if args.prepared else None,
                                    ndjson=args.ndjson, max_users=args.max_users, holdout=args.holdout == "protocol")
    proto = "time-split" if args.ndjson else H.PROTOCOLS[args.dataset]
    seqs, _ = H.sequences(ev, rows, proto)
    train_seqs = training_sequences(seqs)
    n_train = sum(len(s[0]) for s in train_seqs)
    valid_seqs = [s for s in H.sequences(ev, rows, proto, target=H.VALID)[0] if s[2].any()]
    if args.valid_users and len(valid_seqs) > args.valid_users:
        pick = np.random.default_rng(0).choice(len(valid_seqs), args.valid_users, replace=False)
        valid_seqs = [valid_seqs[i] for i in sorted(pick)]
    n_valid = int(sum(s[2].sum() for s in valid_seqs))
    print(f"{args.dataset} ({proto}): {len(ev)} events, {len(seqs)} users, {len(ids)} items indexed, "
          f"{n_train} training events, {n_valid} validation targets", flush=True)

    cfg = ModelConfig(n_items=len(ids) + 1, dim=args.dim, dropout=args.dropout, memory=not args.no_memory,
                      memory_kind=args.memory_kind, use_gap=args.gap, kind=args.kind, cell=args.cell,
                      attn=args.attn if args.kind == "seq" else 0, hidden=args.hidden,
                      ring=args.ring if args.memory_kind == "gated" else 0, long_term=not args.no_long_term,
                      emb_dropout=args.emb_dropout, heads=args.heads, pos_emb=args.pos_emb or None,
                      norm_scale=args.norm_scale or None)
    model = build(cfg)
    if (args.warmup is not None or args.label_smoothing or args.mask_history or args.emb_dropout is not None
            or args.heads or args.pos_emb or args.norm_scale) and args.kind != "seq":
        p.error("--warmup, --emb-dropout, --heads, --pos-emb, --norm-scale, --label-smoothing and --mask-history are for --kind seq")
    if (args.label_smoothing or args.mask_history) and args.loss != "ce-full":
        p.error("--label-smoothing and --mask-history are for --loss ce-full")
    if args.sparse_table and args.loss == "ce-full":
        p.error("--sparse-table is for --loss ce-sampled or bpr-max (a full softmax uses every row)")

    def optimiser(model, seqs):
        # Adam (today's) or, with --wd, AdamW; the per-epoch cosine scheduler or --warmup's per-step one
        if args.sparse_table:
            opt = TableAdam(model, lr=args.lr, weight_decay=args.wd or 0.0)
        elif args.wd is not None:
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        if args.warmup is not None:
            return opt, None, LrSchedule(opt, args.lr, args.warmup, args.epochs, seq_steps(seqs, args.batch, args.bptt), args.cosine)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.epochs, 1)) if args.cosine else None
        return opt, sched, None

    opt, sched, lr_step = optimiser(model, train_seqs)
    history = []
    sampler = NegativeSampler(counts, args.sample_alpha, rng) if args.loss in ("ce-sampled", "bpr-max") else None
    best, best_state, best_epoch, waited = -1.0, None, 0, 0
    epoch_fn = (lambda *a: train_epoch_seq(*a, lr_step=lr_step)) if args.kind == "seq" else train_epoch
    def save(state_dict, train_seconds):
        """Checkpoint = state_dict + config + item index + history (written at every better epoch,
        so a run stopped by hand keeps its best epoch)."""
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        torch.save({
            "state_dict": state_dict,
            "config": cfg.to_dict(),
            "item_ids": ids,
            "item_counts": counts,
            "dataset": args.dataset,
            **({"events_path": os.path.abspath(args.ndjson)} if args.ndjson else {}),
            "args": {k: v for k, v in vars(args).items() if not (k in NEW_OPTIONS and v in (None, False))},
            "history": history,
            "best_epoch": best_epoch,
            "train_seconds": train_seconds,
            "metrics": {"validation_targets": n_valid, "validation": history[best_epoch - 1]["valid"] if best_epoch else {}},
        }, args.out + ".tmp")
        os.replace(args.out + ".tmp", args.out)

    for epoch in range(args.epochs):
        te = time.time()
        loss = epoch_fn(model, opt, train_seqs, args, rng, sampler)
        if sched:
            sched.step()
        dt = time.time() - te
        tv = time.time()
        val = validate(model, valid_seqs, proto)
        vt = time.time() - tv
        score = val.get(args.valid_metric, -loss)
        improved = score > best
        if improved:
            best, best_epoch, waited = score, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
        history.append({"epoch": epoch + 1, "loss": loss, "seconds": round(dt, 2), "valid_seconds": round(vt, 2),
                        "events_per_s": n_train / dt, "valid": val})
        if improved:
            save(best_state, time.time() - t0)
        per_epoch = (time.time() - t0) / (epoch + 1)
        left = args.epochs - epoch - 1                # at most; early stopping may end sooner
        vtxt = " ".join(f"{k}={val[k]:.4f}" for k in ("Recall@20", "NDCG@20", "MRR@20") if k in val)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}  {dt:.1f}s  {n_train / dt:.0f} events/s  "
              f"valid {vtxt}{' (best)' if improved else ''}  ETA <= {left * per_epoch / 60:.1f} min", flush=True)
        if waited >= args.patience:
            print(f"early stop: no better validation {args.valid_metric} for {args.patience} epochs", flush=True)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if args.refit and best_epoch:
        torch.manual_seed(args.seed)
        model = build(cfg)
        refit_seqs = training_sequences(seqs, include_valid=True)
        opt, sched, lr_step = optimiser(model, refit_seqs)
        n_refit = sum(len(s[0]) for s in refit_seqs)
        print(f"refit: {best_epoch} epochs on {n_refit} training + validation events", flush=True)
        for epoch in range(best_epoch):
            te = time.time()
            loss = epoch_fn(model, opt, refit_seqs, args, rng, sampler)
            if sched:
                sched.step()
            dt = time.time() - te
            history.append({"epoch": epoch + 1, "refit": True, "loss": loss, "seconds": round(dt, 2), "events_per_s": n_refit / dt})
            print(f"refit epoch {epoch + 1}/{best_epoch}: loss {loss:.4f}  {dt:.1f}s  {n_refit / dt:.0f} events/s", flush=True)
    train_seconds = time.time() - t0
    print(f"best epoch {best_epoch}: validation {args.valid_metric}={best:.4f}; {train_seconds:.0f}s in all", flush=True)

    save(model.state_dict(), train_seconds)
    print(f"saved {args.out} ({train_seconds:.0f}s)")


if __name__ == "__main__":
    main()
