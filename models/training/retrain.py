"""Retrain from the event log, warm-started from the live model version.

    python3 models/training/retrain.py --events events.ndjson --base models/ml-small \\
        [--catalog catalog.ndjson] --out .data/retrain/run.pt [--mode replay] [--epochs 3]

`npm run retrain` drives this (export -> here -> export.py -> parity -> upload). Steps:

1. Read the log (NDJSON, `data.event_log`), cut sessions by the base model's idle gap.
2. Hold out, per user, the last session that starts in the most recent `--recent-days` (the
   "recent" test) and the last session before that (the "older" test); everything else trains.
3. Item index: the base model's items keep their rows; new items (in the catalog or the log, not
   in the base model) are appended, initialised from their category's items (warmstart.grow).
4. Train by `--mode`:
     full      from scratch on every training event (the base only lends its item index)
     finetune  warm start, only the events after the base model's training data (the new period)
     replay    warm start, the new period plus a sample of older users' histories (`--replay`)
   The default (replay) was chosen by the study in models/INCREMENTAL.md.
   A base with the item-transition term (transitions.py) gets it again with the same settings,
   counted from the log's training events, on both the base (grown) and the retrained model: a warm
   start leaves it out, as it is counted, not trained.
5. Evaluate the base model and the new one on both tests (Recall@20, MRR@20 over all items) and
   save a checkpoint that export.py reads, with the report in it (`ck["retrain"]`).

Progress goes to stderr; the last line of stdout is the report as JSON.
"""
import argparse
import json
import math
import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402
import train as T  # noqa: E402
import transitions as TR  # noqa: E402
import warmstart as W  # noqa: E402
from metrics import summary  # noqa: E402
from model import ModelConfig, build  # noqa: E402

MODES = ("full", "finetune", "replay")
DEFAULT_MODE = "replay"


def log(msg):
    print(f"[retrain] {msg}", file=sys.stderr, flush=True)


def user_bounds(ev):
    starts = np.flatnonzero(np.r_[True, ev.user[1:] != ev.user[:-1]])
    return zip(starts, np.r_[starts[1:], len(ev)])


def holdout(ev, cut_time):
    """Per user: the last session starting at or after cut_time is 'recent' test (2); the last
    session starting before it is 'older' test (1), when the user has something before it."""
    split = np.zeros(len(ev), np.int8)
    for a, b in user_bounds(ev):
        s, tm = ev.session[a:b], ev.time[a:b]
        firsts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        if len(firsts) < 2:
            continue
        start_t = tm[firsts]
        recent = firsts[start_t >= cut_time]
        older = firsts[(start_t < cut_time) & (firsts > 0)]
        if len(recent) and recent[-1] > 0:
            split[a + recent[-1]:a + (firsts[firsts > recent[-1]][0] if (firsts > recent[-1]).any() else b - a)] = 2
        if len(older):
            o = older[-1]
            nxt = firsts[firsts > o]
            end = nxt[0] if len(nxt) else b - a
            if not split[a + o:a + end].any():
                split[a + o:a + end] = 1
    return split


def train_sequences(ev, rows, mask):
    """Per user, the masked events with a known item: (rows, new_session, gap hours) for train.py."""
    out = []
    for a, b in user_bounds(ev):
        m = mask[a:b] & (rows[a:b] > 0)
        if m.sum() < 2:
            continue
        r, s, tm = rows[a:b][m], ev.session[a:b][m], ev.time[a:b][m]
        ns = np.r_[1.0, (s[1:] != s[:-1]).astype(np.float32)].astype(np.float32)
        gap = np.r_[0.0, np.diff(tm) / 3600.0].astype(np.float32)
        out.append((r, ns, gap))
    return out


def eval_sequences(ev, rows, target, upto=None):
    """Harness sequences: each user's whole history (before `upto` when given) as input, the
    `target` events as targets. Targets whose item the model lacks count as misses (lost)."""
    seqs, lost = [], 0
    for a, b in user_bounds(ev):
        t = target[a:b]
        if not t.any():
            continue
        keep = rows[a:b] > 0
        if upto is not None:
            keep &= ev.time[a:b] < upto
        lost += int((t & ~(rows[a:b] > 0)).sum())
        k = keep | False
        r, s, tt, tm = rows[a:b][k], ev.session[a:b][k], t[k], ev.time[a:b][k]
        if not tt.any():
            continue
        ns = np.r_[1.0, (s[1:] != s[:-1]).astype(np.float32)].astype(np.float32)
        seqs.append((r, ns, tt, s, tm))
    return seqs, lost


def evaluate(model, seqs, lost):
    """Recall/MRR/NDCG at 10 and 20 (full ranking) with the number of targets."""
    if not seqs and not lost:
        return {"targets": 0}
    ranks = np.r_[H.model_ranks(model, seqs) if seqs else np.zeros(0, np.int64), np.full(lost, 10**9)]
    return {"targets": int(len(ranks)), **{k: round(v, 5) for k, v in summary(ranks).items()}}


def fit(model, seqs, epochs, lr, batch=32, bptt=10, seed=1, what="train"):
    """Train in place with train.py's epoch for the model's kind (full softmax); returns (history, seconds)."""
    if not seqs or epochs <= 0:
        return [], 0.0
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    args = SimpleNamespace(batch=max(1, min(batch, len(seqs))), bptt=bptt, n_sample=2048, logq=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    n = sum(len(s[0]) for s in seqs)
    hist, t0 = [], time.time()
    for e in range(epochs):
        te, ce = time.time(), time.process_time()
        epoch_fn = T.train_epoch_seq if getattr(model.cfg, "kind", "hrnn") == "seq" else T.train_epoch
        loss = epoch_fn(model, opt, seqs, args, rng, None)
        sched.step()
        dt = time.time() - te
        hist.append({"epoch": e + 1, "loss": loss, "seconds": dt, "cpu_seconds": time.process_time() - ce,
                     "events_per_s": n / max(dt, 1e-9)})
        log(f"{what}: epoch {e + 1}/{epochs} loss {loss:.4f} ({dt:.1f}s, {n} events)")
    return hist, time.time() - t0


def replay_sample(ev, rows, mask_old, fraction, rng):
    """A random `fraction` of the users with older training events: their older events."""
    users = np.unique(ev.user[mask_old & (rows > 0)])
    pick = set(rng.choice(users, size=max(1, int(round(len(users) * fraction))), replace=False).tolist()) if len(users) else set()
    return mask_old & np.isin(ev.user, list(pick))


def build(mode, base, base_ids, ev, rows_all_ids, train_mask, new_mask, old_mask, args, rng, cfg_overrides=None):
    """The model trained by `mode` on the given masks; returns (model, history, seconds, events)."""
    if mode == "full":
        cfg = dict(base.cfg.to_dict())
        cfg.update(cfg_overrides or {})
        cfg["n_items"] = base.cfg.n_items
        torch.manual_seed(args.seed)
        model = build(ModelConfig(**cfg))
        mask = train_mask
        epochs, lr = args.full_epochs, args.full_lr
    else:
        model = base
        mask = new_mask if mode == "finetune" else (new_mask | replay_sample(ev, rows_all_ids, old_mask, args.replay, rng))
        epochs, lr = args.epochs, args.lr
    seqs = train_sequences(ev, rows_all_ids, mask)
    hist, secs = fit(model, seqs, epochs, lr, args.batch, args.bptt, args.seed, what=mode)
    return model, hist, secs, int(sum(len(s[0]) for s in seqs))


def base_term(cfg):
    """The base model's item-transition settings (transitions.py; model config `trans_*`), or None."""
    if not cfg.get("trans_m"):
        return None
    return {k: cfg[f"trans_{k}"] for k in ("m", "window", "alpha", "eps", "decay")}


def with_term(model, term, ev, rows, mask):
    """`model` with the item-transition term of settings `term`, counted again from the log's events
    under `mask` (a warm start leaves the term out: it is counted, not trained)."""
    seqs = []
    for a, b in user_bounds(ev):
        m = mask[a:b] & (rows[a:b] > 0)
        n = int(m.sum())
        if n >= 2:        # harness.sequences' shape, every event a training one
            seqs.append((rows[a:b][m], None, None, ev.session[a:b][m], None, np.full(n, H.TRAIN)))
    idx, wt = TR.top_successors(TR.successors(seqs, model.cfg.n_items, term["window"]), term["m"])
    ck = {"config": model.cfg.to_dict(), "state_dict": model.state_dict()}
    return TR.with_transitions(ck, idx, wt, term["window"], term["alpha"], term["eps"], term["decay"])


def read_catalog(path):
    """Catalog NDJSON (the admin export or the /v1/items/batch upload format): id -> category path."""
    out = {}
    if not path:
        return out
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r.get("deleted"):
                    continue
                out[str(r["id"])] = list(r.get("category_path") or [])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", required=True, help="event log export (NDJSON)")
    p.add_argument("--base", required=True, help="the live model's folder (manifest.json + graphs + weights.bin), or a .pt checkpoint")
    p.add_argument("--catalog", help="catalog NDJSON {id, category_path} (new items are initialised from their category)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--name", default="retrained", help="dataset name recorded in the checkpoint")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE)
    p.add_argument("--since", type=float, help="start of the new period (seconds since epoch); default: where the base model's training data ended (manifest training.data_end); a base that never saw this log (the bundled demo model): all of it is new")
    p.add_argument("--recent-days", type=float, default=7.0, help="the recent test holds sessions starting in the last N days of the log")
    p.add_argument("--epochs", type=int, default=2, help="fine-tune epochs (finetune, replay; the study in models/INCREMENTAL.md used 2)")
    p.add_argument("--lr", type=float, default=2e-3, help="fine-tune learning rate")
    p.add_argument("--full-epochs", type=int, default=8)
    p.add_argument("--full-lr", type=float, default=5e-3)
    p.add_argument("--replay", type=float, default=0.3, help="fraction of older users replayed (replay)")
    p.add_argument("--min-count", type=int, default=1, help="a new item needs this many events unless the catalog lists it")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bptt", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    log(f"base model from {args.base}")
    if args.base.endswith(".pt"):
        base, base_ids, ck = W.from_checkpoint(args.base)
        idle_gap, base_end = ck["args"]["idle_gap"], ck.get("data_end")
        term = base_term(ck["config"])
    else:
        base, base_ids, manifest = W.from_folder(args.base)
        idle_gap = manifest["session"]["idle_gap_seconds"]
        term = base_term(manifest["training"]["config"])
        base_end = (manifest.get("training") or {}).get("data_end")
        if base.warm_report["fresh"]:
            log(f"parameters not in the export, freshly initialised: {base.warm_report['fresh']}")
    log(f"base: {len(base_ids)} items, state {base.state_size}, idle gap {idle_gap:.0f}s")

    ev = D.event_log(args.events, idle_gap)
    if len(ev) == 0:
        raise SystemExit("the event log is empty: nothing to train on")
    log(f"events: {len(ev)} from {len(np.unique(ev.user))} users, {len(np.unique(ev.item))} items")

    catalog = read_catalog(args.catalog)
    known = set(base_ids)
    ids_in_log, counts_in_log = np.unique(ev.item.astype(str), return_counts=True)
    count_of = dict(zip(ids_in_log.tolist(), counts_in_log.tolist()))
    new_ids = sorted({i for i in catalog if i not in known} |
                     {i for i, c in count_of.items() if i not in known and (i in catalog or c >= args.min_count)},
                     key=lambda i: (-count_of.get(i, 0), i))
    grown, ids, grow_report = W.grow(base, base_ids, new_ids, catalog)
    log(f"item index: {grow_report['known']} known items keep their rows, {grow_report['new']} new "
        f"({grow_report['from_category']} initialised from their category, {grow_report['from_all']} from all items)")
    rows = D.to_rows(ev, ids)

    t_max = float(ev.time.max())
    recent_cut = t_max - args.recent_days * 86400
    split = holdout(ev, recent_cut)
    if args.since is not None:
        new_from = args.since
    elif base_end is not None:
        new_from = float(base_end)
    else:
        new_from = float(ev.time.min())
        log("the base model was not trained on this log: every event is new")
    train_mask = split == 0
    new_mask = train_mask & (ev.time >= new_from)
    old_mask = train_mask & (ev.time < new_from)
    log(f"split: {int(train_mask.sum())} training events ({int(new_mask.sum())} new, {int(old_mask.sum())} older), "
        f"held out {int((split == 2).sum())} recent and {int((split == 1).sum())} older test events")

    if term:
        # both models scored with the term as they would be served, counted from the training events
        log(f"item-transition term {term}: counted again from the {int(train_mask.sum())} training events")
        grown = with_term(grown, term, ev, rows, train_mask)
    recent_seqs, recent_lost = eval_sequences(ev, rows, split == 2)
    older_seqs, older_lost = eval_sequences(ev, rows, split == 1)
    before = {"recent": evaluate(grown, recent_seqs, recent_lost), "older": evaluate(grown, older_seqs, older_lost)}
    log(f"base model: recent {before['recent']}  older {before['older']}")

    mode = args.mode
    if mode != "full" and not new_mask.any():
        log("no events after the base model's data: fine-tuning on every training event instead")
        new_mask = train_mask
    model, hist, secs, n_train = build(mode, grown, base_ids, ev, rows, train_mask, new_mask, old_mask, args, rng)
    if term:
        model = with_term(model, term, ev, rows, train_mask)
    after = {"recent": evaluate(model, recent_seqs, recent_lost), "older": evaluate(model, older_seqs, older_lost)}
    log(f"{mode}: recent {after['recent']}  older {after['older']}  ({secs:.0f}s)")

    counts = [count_of.get(i, 0) for i in ids]
    report = {
        "mode": mode, "events": int(len(ev)), "users": int(len(np.unique(ev.user))), "train_events": n_train,
        "items": {"known": grow_report["known"], "new": grow_report["new"], "from_category": grow_report["from_category"],
                  "from_all": grow_report["from_all"]},
        "new_period_from": new_from, "recent_from": recent_cut,
        "base": before, "retrained": after, "train_seconds": round(secs, 1), "total_seconds": round(time.time() - t_start, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cfg = model.cfg.to_dict()
    torch.save({
        "state_dict": model.state_dict(), "config": cfg, "item_ids": ids, "item_counts": counts,
        "dataset": args.name, "events_path": os.path.abspath(args.events),
        "args": {**vars(args), "idle_gap": idle_gap}, "history": hist, "train_seconds": secs,
        "data_end": t_max,
        "metrics": {"protocol": "retrain holdout: per user the last recent session and the last older session",
                    "recent": after["recent"], "older": after["older"], "base": before},
        "retrain": report,
    }, args.out)
    log(f"saved {args.out}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
