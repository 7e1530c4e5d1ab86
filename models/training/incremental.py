"""Incremental learning study: full retrain vs warm-start fine-tune vs fine-tune with replay.

    python3 models/training/incremental.py                # -> models/incremental.json + models/incremental.png

MovieLens latest-small, written out in the event-log format (NDJSON, what `npm run export-events`
produces) and read back with `data.event_log`, is cut by time: the oldest 80% of events are the
"old" period, the newest 20% the "new" one. Per user, the last session in each period (when the
user had events before it) is held out as that period's test; everything else trains.

  base      trained on the old period only (the live model before the retrain)
  full      from scratch on old + new training events (what retraining from the whole log costs)
  finetune  the base, warm-started (known items keep their rows, new items from the mean of known
            rows), trained on the new period only
  replay    the same plus the old-period histories of a random `--replay` fraction of old users

Quality on the new period (Recall@20, MRR@20 of the new test, each target ranked from the user's
whole history before it), forgetting on the old one (the old test, ranked from the old history
only, compared with the base) and training time. Every model is trained with train.py's epoch,
one torch thread. Several seeds: mean and spread.
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
import retrain as R  # noqa: E402
import warmstart as W  # noqa: E402
from model import ModelConfig, build  # noqa: E402

# The model of the study: the bundled demo model's design when the study was run (GRURec, hrnn memory, gap).
MODEL = dict(dim=64, dropout=0.2, memory=True, memory_kind="hrnn", use_gap=True)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def write_event_log(path):
    """MovieLens latest-small ratings as the project's event-log NDJSON (every rating a view)."""
    import csv
    src = os.path.join(D.DATA_ROOT, "movielens-latest-small", "ratings.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(src) as f, open(path, "w") as out:
        for n, r in enumerate(csv.DictReader(f)):
            out.write(json.dumps({"seq": n + 1, "user_id": r["userId"], "item_id": r["movieId"], "type": "view",
                                  "timestamp": int(r["timestamp"]) * 1000, "in_model": True}) + "\n")


def period_tests(ev, cut):
    """split: 0 train, 1 old test, 2 new test (last session per user in each period)."""
    split = np.zeros(len(ev), np.int8)
    for a, b in R.user_bounds(ev):
        s, tm = ev.session[a:b], ev.time[a:b]
        firsts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[firsts[1:], b - a]
        old = [(f, e) for f, e in zip(firsts, ends) if tm[f] < cut and f > 0]
        new = [(f, e) for f, e in zip(firsts, ends) if tm[f] >= cut and f > 0]
        for sel, code in ((old, 1), (new, 2)):
            if sel:
                f, e = sel[-1]
                # an old session running past the cut is cut there (its tail belongs to the new period)
                idx = np.arange(f, e)
                if code == 1:
                    idx = idx[tm[idx] < cut]
                split[a + idx] = code
    return split


def run(args, seed, ev, cut, log, partial=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    split = period_tests(ev, cut)
    train = split == 0
    old_train, new_train = train & (ev.time < cut), train & (ev.time >= cut)
    old_items, old_counts = np.unique(ev.item[old_train].astype(str), return_counts=True)
    base_ids = [i for c, i in sorted(zip(-old_counts, old_items.tolist())) if -c >= args.min_count]
    new_items, new_counts = np.unique(ev.item[new_train].astype(str), return_counts=True)
    known = set(base_ids)
    new_ids = [i for c, i in sorted(zip(-new_counts, new_items.tolist())) if -c >= args.min_count and i not in known]
    base_rows = D.to_rows(ev, base_ids)
    cfg = ModelConfig(n_items=len(base_ids) + 1, **MODEL)
    base = build(cfg)
    base_hist, base_secs = R.fit(base, R.train_sequences(ev, base_rows, old_train), args.epochs, args.lr_full, seed=seed, what=f"seed {seed} base")

    grown_probe, ids, _ = W.grow(base, base_ids, new_ids, {})
    rows = D.to_rows(ev, ids)
    new_seqs, new_lost = R.eval_sequences(ev, rows, split == 2)
    old_seqs, old_lost = R.eval_sequences(ev, rows, split == 1, upto=cut)
    res = {"seed": seed, "cut": cut, "items": {"base": len(base_ids), "new": len(new_ids)},
           "events": {"old_train": int(old_train.sum()), "new_train": int(new_train.sum()),
                      "old_test": int((split == 1).sum()), "new_test": int((split == 2).sum())}}
    cpu = lambda h: round(sum(x["cpu_seconds"] for x in h), 1)  # noqa: E731
    res["base"] = {"new": R.evaluate(grown_probe, new_seqs, new_lost), "old": R.evaluate(grown_probe, old_seqs, old_lost),
                   "seconds": round(base_secs, 1), "cpu_seconds": cpu(base_hist), "train_events": int(old_train.sum())}
    log(f"seed {seed} base: {res['base']}")
    for mode in ("full", "finetune", "replay"):
        grown, _, _ = W.grow(base, base_ids, new_ids, {})
        model, hist, secs, n = R.build(mode, grown, base_ids, ev, rows, train, new_train, old_train,
                                       argparse.Namespace(seed=seed, full_epochs=args.epochs, full_lr=args.lr_full,
                                                          epochs=args.ft_epochs, lr=args.lr_ft, replay=args.replay,
                                                          batch=32, bptt=10), rng)
        res[mode] = {"new": R.evaluate(model, new_seqs, new_lost), "old": R.evaluate(model, old_seqs, old_lost),
                     "seconds": round(secs, 1), "cpu_seconds": cpu(hist), "train_events": n}
        log(f"seed {seed} {mode}: {res[mode]}")
        if partial:
            partial(res)
    return res


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = ["base", "full", "finetune", "replay"]
    labels = ["base (old only)", "full retrain", "fine-tune (new only)", "fine-tune + replay"]

    def stat(mode, part, key):
        v = np.array([r[mode][part][key] if part else r[mode][key] for r in results])
        return v.mean(), v.std()

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (part, key, title) in zip(axes, (("new", "Recall@20", "new period: Recall@20 (quality)"),
                                             ("old", "Recall@20", "old period: Recall@20 (forgetting)"),
                                             (None, "cpu_seconds", "training CPU time (s, one thread)"))):
        m = [stat(x, part, key) for x in modes]
        ax.bar(range(len(modes)), [a for a, _ in m], yerr=[b for _, b in m], color=["#999", "#4477aa", "#ee6677", "#228833"], capsize=4)
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, (a, _) in enumerate(m):
            ax.text(i, a, f"{a:.3f}" if key != "cpu_seconds" else f"{a:.0f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"Incremental learning on MovieLens latest-small (event-log format), {len(results)} seed(s)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=6, help="epochs of the base model and of the full retrain")
    p.add_argument("--ft-epochs", type=int, default=3, help="epochs of both fine-tunes")
    p.add_argument("--lr-full", type=float, default=5e-3)
    p.add_argument("--lr-ft", type=float, default=2e-3)
    p.add_argument("--replay", type=float, default=0.3, help="fraction of old users replayed")
    p.add_argument("--min-count", type=int, default=3)
    p.add_argument("--seeds", default="1")
    p.add_argument("--users", type=float, default=1.0, help="use a random fraction of the users (all their events)")
    p.add_argument("--out", default=os.path.join(ROOT, "models", "incremental.json"))
    p.add_argument("--plot", default=os.path.join(ROOT, "models", "incremental.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda m: print(m, flush=True)  # noqa: E731
    path = os.path.join(ROOT, ".data", "incremental", "movielens-latest-small.ndjson")
    if not os.path.exists(path):
        write_event_log(path)
    ev = D.event_log(path, 1800.0)
    if args.users < 1.0:
        users = np.unique(ev.user)
        keep = np.random.default_rng(0).choice(users, size=int(round(len(users) * args.users)), replace=False)
        ev = ev.take(np.isin(ev.user, keep))
    cut = float(np.quantile(ev.time, 1 - args.new_fraction))
    log(f"{len(ev)} events, {len(np.unique(ev.user))} users; new period from {time.strftime('%Y-%m-%d', time.gmtime(cut))}")
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        def save(res, done=list(results)):
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "users": int(len(np.unique(ev.user))), "events": int(len(ev)),
                           "results": done + [res]}, f, indent=1)
        res = run(args, seed, ev, cut, log, partial=save)
        results.append(res)
        save(res, results[:-1])
        plot(results, args.plot)
    log(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
