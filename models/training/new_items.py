"""New catalog items before a retrain: the warm row (warmstart.grow) against a retrain that saw them.

    /usr/bin/python3 models/training/new_items.py                  # -> .data/new-items/new-items.json
    /usr/bin/python3 models/training/new_items.py --epochs 4 --select latest   # a shorter run
    /usr/bin/python3 models/training/new_items.py --reuse          # score the saved models again

Results: models/ml-small/NEW-ITEMS.md. Every trained model is saved next to --out (named by
selection, epochs, T_max and seed); --reuse loads it instead of training again.

MovieLens latest-small with the project's time-split protocol (harness.py: per user the last
session is test, the one before it validation; training here uses training + validation events,
as the served model's refit did). A set of "new arrivals" is chosen among the indexed items
(data.build_index: count >= min_count outside the test split):

  latest   the --n-new items whose first rating (outside the test split) is the most recent: the
           items that entered the catalog last
  random   a random --n-new items among those with --pop-min..--pop-max training events (mid
           popularity), drawn with --seed: more test targets than `latest`, less like real arrivals

Models, all with the ml-small configuration (models/ml-small/manifest.json `training`: the config,
Adam, lr, cosine decay, lanes, BPTT, min_count, idle gap; epochs = the refit's epoch count unless
--epochs says otherwise) and the same seed:

  A  trained with every event of the new arrivals removed (they do not exist yet)
  B  trained on every training event (the retrain that has seen the new arrivals' events)

A is then scored on the test split in several ways (the index of known items is the same in A and
B; the new items are appended after them, as warmstart.grow does):

  no row         the new items are not in the model: a target that is a new item is never found
                 (today's behaviour before warm rows); their events do not advance the state
  warm           warmstart.grow: row and bias = mean over the known items of the new item's category,
                 walking up the path; category path ["Films", first genre listed in movies.csv]
                 (the "Films" level = every known item). As served: the new items are scored with the
                 warm row, their events do not advance the state (the step graph has no row for them)
  warm, genres   the same with the path = the genres as listed (["Action", "Adventure", ...]): the
                 deepest level is the items with the same genre list
  warm, fed      warm (first genre), and the new items' events also advance the state with the warm
                 row as input (what the grown model does before any training)
  mean of all    every new item gets the mean of all known rows and biases (no category)
  random         rows drawn as the model initialises them (N(0, 0.05)), bias 0

Metrics (full ranking over every row, ties counted against the model, harness.py / metrics.py):
targets that are new-arrival items (HR@20 = Recall@20 with one target, NDCG@20, MRR@20, HR@100,
mean and median rank, and the mean rank with ties split evenly: warm rows of one category are
equal, so they tie), all targets and the other targets (HR@20, NDCG@20), and how often the top 20
of a test ranking holds a new item at all. Paired bootstrap differences on the new-item targets and
on all targets. One torch thread (and one BLAS thread) by default.
"""
import argparse
import json
import os
import sys
import time
from types import SimpleNamespace

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # numpy's BLAS: one thread too,
    os.environ.setdefault(_v, "1")                                           # unless the caller says otherwise

import numpy as np  # noqa: E402
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
import harness as H  # noqa: E402
import train as T  # noqa: E402
import warmstart as W  # noqa: E402
from metrics import summary, target_ranks  # noqa: E402
from model import ModelConfig, build  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATASET = "movielens-latest-small"
MISS = 10**9
TOP = 20


def log(msg):
    print(msg, flush=True)


def served_setup(folder):
    """The ml-small training setup: model config, training args, refit epoch count."""
    with open(os.path.join(folder, "manifest.json")) as f:
        tr = json.load(f)["training"]
    cfg = {k: v for k, v in tr["config"].items() if k != "n_items"}
    refit = sum(1 for h in tr.get("history", []) if h.get("refit"))
    return cfg, tr["args"], refit


def choose_new(ev, ids, counts, how, n, pop_min, pop_max, seed):
    """The new arrivals (item ids) among the indexed items."""
    known = ev.split != H.TEST
    items = ev.item[known].astype(str)
    if how == "latest":
        first = {}
        for it, t in zip(items, ev.time[known]):
            if t < first.get(it, np.inf):
                first[it] = t
        order = sorted(ids, key=lambda i: (-first[i], i))
        return order[:n], {i: first[i] for i in order[:n]}
    if how == "random":
        pool = sorted(i for i, c in zip(ids, counts) if pop_min <= c <= pop_max)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        return [pool[j] for j in sorted(pick)], {}
    raise ValueError(how)


def train_model(cfg, seqs, args, targs, seed, what, cache=None):
    """A fresh model trained like ml-small's refit: Adam, cosine decay over T_max, lanes, BPTT.
    cache: a checkpoint path; an existing one is loaded instead of training (--reuse)."""
    if cache and args.reuse and os.path.exists(cache):
        ck = torch.load(cache, map_location="cpu")
        model = build(cfg)
        model.load_state_dict(ck["state_dict"])
        model.eval()
        log(f"  {what}: loaded {cache} (trained in {ck['train']['seconds']}s)")
        return model, ck["train"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=targs["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.tmax) if targs.get("cosine") else None
    ns = SimpleNamespace(batch=targs["batch"], bptt=targs["bptt"], n_sample=2048, logq=False, loss="ce-full", bpreg=1.0)
    epoch_fn = T.train_epoch_seq if cfg.kind == "seq" else T.train_epoch
    n = sum(len(s[0]) for s in seqs)
    t0, c0 = time.time(), time.process_time()
    hist = []
    for e in range(args.epochs):
        te = time.time()
        loss = epoch_fn(model, opt, seqs, ns, rng, None)
        if sched:
            sched.step()
        dt = time.time() - te
        hist.append({"epoch": e + 1, "loss": round(loss, 4), "seconds": round(dt, 1)})
        log(f"  {what}: epoch {e + 1}/{args.epochs} loss {loss:.4f} {dt:.1f}s ({n} events, "
            f"{(time.time() - t0) / 60:.1f} min so far)")
    model.eval()
    train = {"seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1), "events": n, "history": hist}
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "train": train}, cache)
    return model, train


def ckpt(args, name):
    """Checkpoint path of one model of the study (next to --out), named by its training budget and seed."""
    return os.path.join(os.path.dirname(os.path.abspath(args.out)), f"{name}-e{args.epochs}-t{args.tmax}-s{args.seed}.pt")


def user_bounds(ev):
    starts = np.flatnonzero(np.r_[True, ev.user[1:] != ev.user[:-1]])
    return list(zip(starts, np.r_[starts[1:], len(ev)]))


def eval_sequences(ev, rows, feed):
    """Per user with a test target: event index, row, fed, target, new_session, gap (hours).

    Kept: events with a row that are fed (advance the state) or are test targets. new_session and
    gap of an event are taken against the last fed event before it (the state the server holds):
    without unfed events this is exactly harness.sequences + harness._padded."""
    out = []
    test = ev.split == H.TEST
    for a, b in user_bounds(ev):
        tg = test[a:b] & (rows[a:b] > 0)
        if not tg.any():
            continue
        keep = np.flatnonzero((rows[a:b] > 0) & (feed[a:b] | tg)) + a
        ns = np.ones(len(keep), np.float32)
        gap = np.zeros(len(keep), np.float32)
        last = -1
        for j, e in enumerate(keep):
            if last >= 0:
                ns[j] = float(ev.session[e] != ev.session[last])
                gap[j] = (ev.time[e] - ev.time[last]) / 3600.0
            if feed[e]:
                last = e
        out.append((keep, rows[keep], feed[keep], test[keep], ns, gap))
    return out


@torch.no_grad()
def event_ranks(model, ev, rows, feed, new_rows=(), batch=256):
    """Rank of every test event (array over ev, -1 elsewhere): full ranking from the state before
    it (harness.model_ranks' rule); a target without a row is a miss (MISS). Also the rank with ties
    split evenly (-1 for a miss), and per test event how many of `new_rows` the top 20 of that ranking
    holds (exposure of the new items)."""
    model.eval()
    out = np.full(len(ev), -1, np.int64)
    mid = np.full(len(ev), -1.0)
    shown = np.full(len(ev), -1, np.int64)
    is_new_row = np.zeros(model.cfg.n_items, bool)
    is_new_row[np.asarray(new_rows, np.int64)] = True
    test = ev.split == H.TEST
    out[test & (rows == 0)] = MISS
    seqs = eval_sequences(ev, rows, feed)
    for a in range(0, len(seqs), batch):
        chunk = seqs[a:a + batch]
        B, L = len(chunk), max(len(s[0]) for s in chunk)
        item = torch.zeros(B, L, dtype=torch.long)
        fed = torch.zeros(B, L, dtype=torch.bool)
        tgt = torch.zeros(B, L, dtype=torch.bool)
        ns, gap = torch.ones(B, L), torch.zeros(B, L)
        idx = np.full((B, L), -1, np.int64)
        for j, (k, r, f, t, n, g) in enumerate(chunk):
            m = len(k)
            item[j, :m] = torch.from_numpy(r)
            fed[j, :m] = torch.from_numpy(f)
            tgt[j, :m] = torch.from_numpy(t)
            ns[j, :m] = torch.from_numpy(n)
            gap[j, :m] = torch.from_numpy(g)
            idx[j, :m] = k
        state = torch.zeros(B, model.state_size)
        for t in range(L):
            if tgt[:, t].any():
                sel = tgt[:, t].nonzero().squeeze(1)
                lg = model.logits(state[sel], ns[sel, t], gap[sel, t]).numpy()
                tg = item[sel, t].numpy()
                out[idx[sel.numpy(), t]] = target_ranks(lg, tg)
                s = lg[np.arange(len(tg)), tg][:, None]       # ties split evenly (warm rows of one category tie)
                mid[idx[sel.numpy(), t]] = 1 + (lg > s).sum(1) + ((lg == s).sum(1) - 1) / 2
                top = np.argpartition(-lg, TOP - 1, axis=1)[:, :TOP]
                shown[idx[sel.numpy(), t]] = is_new_row[top].sum(1)
            if fed[:, t].any():
                nxt = model.advance(state, item[:, t], ns[:, t], gap[:, t])
                state = torch.where(fed[:, t:t + 1], nxt, state)
    return out, mid, shown


def metrics(ranks, mid=None):
    r = np.asarray(ranks)
    m = summary(r, ks=(20, 100))
    found = r[r < MISS]
    return {"targets": int(len(r)), "HR@20": round(m["Recall@20"], 4), "NDCG@20": round(m["NDCG@20"], 4),
            "MRR@20": round(m["MRR@20"], 4), "HR@100": round(m["Recall@100"], 4), "found": int(len(found)),
            "mean_rank": round(float(found.mean()), 1) if len(found) == len(r) and len(r) else None,
            "median_rank": float(np.median(found)) if len(found) == len(r) and len(r) else None,
            "mean_rank_ties_split": round(float(np.mean(mid)), 1) if mid is not None and len(found) == len(r) and len(r) else None}


def with_rows(model, ids, new_ids, category_of, how, seed):
    """A grown copy of `model` with rows for the new items, initialised by `how`."""
    grown, all_ids, rep = W.grow(model, ids, new_ids, category_of if how == "category" else {})
    if how == "random":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            n0 = len(ids) + 1
            grown.emb.weight[n0:] = torch.randn(len(all_ids) + 1 - n0, grown.cfg.dim, generator=g) * 0.05
            grown.item_bias[n0:] = 0.0
    grown.eval()
    return grown, all_ids, rep


def run_selection(how, ev, ids, counts, cfg, targs, args, model_B, genres, seed):
    new_ids, first = choose_new(ev, ids, counts, how, args.n_new, args.pop_min, args.pop_max, seed)
    new_set = set(new_ids)
    is_new_ev = np.fromiter((str(x) in new_set for x in ev.item), bool, len(ev))
    test = ev.split == H.TEST
    new_t, old_t = test & is_new_ev, test & ~is_new_ev
    count_of = dict(zip(ids, counts))
    info = {"select": how, "n_new": len(new_ids), "train_events_removed": int((is_new_ev & ~test).sum()),
            "new_targets": int(new_t.sum()), "new_items_with_targets": int(len(np.unique(ev.item[new_t].astype(str)))),
            "train_count_of_new": {"min": int(min(count_of[i] for i in new_ids)), "median": float(np.median([count_of[i] for i in new_ids])),
                                   "max": int(max(count_of[i] for i in new_ids))}}
    if first:
        info["first_rating_from"] = time.strftime("%Y-%m-%d", time.gmtime(min(first.values())))
    log(f"[{how}] {len(new_ids)} new arrivals: {info}")

    ids_A = [i for i in ids if i not in new_set]
    rows_A = D.to_rows(ev, ids_A)
    seqs, _ = H.sequences(ev, rows_A, "time-split")
    train_A = T.training_sequences(seqs, include_valid=True)
    model_A, tA = train_model(ModelConfig(n_items=len(ids_A) + 1, **cfg), train_A, args, targs, seed, f"A[{how}] (new items removed)",
                              ckpt(args, f"A-{how}-n{args.n_new}" + (f"-pop{args.pop_min}-{args.pop_max}" if how == "random" else "")))
    log(f"[{how}] model A trained in {tA['seconds']}s")

    first_genre = {i: ["Films", genres.get(i, ["(none)"])[0]] for i in genres}
    genre_path = {i: genres[i] for i in genres}
    reports = {}
    serve_feed = rows_A > 0                      # the server advances the state on known items only
    ranks, mids, shown = {}, {}, {}
    ranks["A, no row"], mids["A, no row"], shown["A, no row"] = event_ranks(model_A, ev, rows_A, serve_feed)
    for label, init, cat, fed_new in (("A + warm row (Films > first genre)", "category", first_genre, False),
                                      ("A + warm row (genre list path)", "category", genre_path, False),
                                      ("A + mean of all known rows", "all", {}, False),
                                      ("A + random row", "random", {}, False),
                                      ("A + warm row (first genre), new events fed", "category", first_genre, True)):
        grown, all_ids, rep = with_rows(model_A, ids_A, new_ids, cat, init, seed)
        rows_G = D.to_rows(ev, all_ids)
        ranks[label], mids[label], shown[label] = event_ranks(grown, ev, rows_G, (rows_G > 0) if fed_new else serve_feed,
                                                              new_rows=np.arange(len(ids_A) + 1, len(all_ids) + 1))
        reports[label] = {k: rep[k] for k in ("from_category", "from_all")}
    rows_B = D.to_rows(ev, ids)
    row_B = {k: n + 1 for n, k in enumerate(ids)}
    ranks["B, retrain on all events"], mids["B, retrain on all events"], shown["B, retrain on all events"] = event_ranks(
        model_B, ev, rows_B, rows_B > 0, new_rows=[row_B[i] for i in new_ids])
    table = {}
    for label, r in ranks.items():
        sh = shown[label][test]
        sh = sh[sh >= 0]                              # the rankings made (a target without a row has none)
        table[label] = {"new": metrics(r[new_t], mids[label][new_t]), "all": metrics(r[test]), "other": metrics(r[old_t]),
                        "top20_new_per_ranking": round(float(sh.mean()), 4), "rankings_with_a_new_item": round(float((sh > 0).mean()), 4)}
        nm, am, om = table[label]["new"], table[label]["all"], table[label]["other"]
        log(f"[{how}] {label:46s} new: HR@20 {nm['HR@20']:.4f} NDCG@20 {nm['NDCG@20']:.4f} mean rank {nm['mean_rank']} "
            f"(ties split {nm['mean_rank_ties_split']}) median {nm['median_rank']} HR@100 {nm['HR@100']:.4f} | all: HR@20 {am['HR@20']:.4f} NDCG@20 {am['NDCG@20']:.4f} | "
            f"other HR@20 {om['HR@20']:.4f} | new items in top 20: {table[label]['top20_new_per_ranking']:.3f} per ranking, "
            f"{table[label]['rankings_with_a_new_item']:.1%} of rankings")
    warm = ranks["A + warm row (Films > first genre)"][new_t]
    pairs = {f"warm - {k}": H.paired_diff(warm, ranks[k][new_t], k=20, seed=seed)
             for k in ("A, no row", "A + random row", "A + mean of all known rows", "A + warm row (genre list path)",
                       "B, retrain on all events")}
    pairs["warm - no row (all targets)"] = H.paired_diff(ranks["A + warm row (Films > first genre)"][test], ranks["A, no row"][test], k=20, seed=seed)
    pairs["B - warm (all targets)"] = H.paired_diff(ranks["B, retrain on all events"][test], ranks["A + warm row (Films > first genre)"][test], k=20, seed=seed)
    for k, v in pairs.items():
        log(f"[{how}] paired {k}: " + ", ".join(f"{m} {d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" for m, d in v.items()))
    return {"info": info, "new_ids": new_ids, "train_A": tA, "init": reports, "table": table, "paired": pairs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--served", default=os.path.join(ROOT, "models", "ml-small"), help="the model folder whose training setup is copied")
    p.add_argument("--select", default="latest,random", help="comma list of new-arrival choices: latest, random")
    p.add_argument("--n-new", type=int, default=300)
    p.add_argument("--pop-min", type=int, default=10, help="random: least training events of a candidate")
    p.add_argument("--pop-max", type=int, default=50, help="random: most training events of a candidate")
    p.add_argument("--epochs", type=int, default=0, help="epochs of every model (0: the served model's refit epochs)")
    p.add_argument("--tmax", type=int, default=0, help="cosine T_max (0: as the served refit, the served --epochs, when --epochs is the refit's count; else --epochs)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="load a model from its checkpoint next to --out when one exists instead of training it")
    p.add_argument("--out", default=os.path.join(ROOT, ".data", "new-items", "new-items.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    cfg, targs, refit = served_setup(args.served)
    args.epochs = args.epochs or refit or targs["epochs"]
    args.tmax = args.tmax or (targs["epochs"] if args.epochs == refit else args.epochs)
    log(f"ml-small setup: config {cfg}; lr {targs['lr']}, cosine {targs.get('cosine')}, lanes {targs['batch']}, "
        f"bptt {targs['bptt']}, min_count {targs['min_count']}, idle gap {targs['idle_gap']}; "
        f"{args.epochs} epochs (served refit: {refit}), T_max {args.tmax}, seed {args.seed}, {args.threads} thread(s)")

    ev = H.load(DATASET, targs["idle_gap"])
    ids, counts = D.build_index(ev, targs["min_count"])
    log(f"{DATASET}: {len(ev)} events, {len(np.unique(ev.user))} users, {len(ids)} items indexed, "
        f"{int((ev.split == H.TEST).sum())} test targets")
    titles = D.movielens_latest_small_titles()
    genres = {i: (titles[i]["genres"].split("|") if i in titles else ["(none)"]) for i in ids}

    # B: the retrain on every training event (shared by every selection)
    rows_B = D.to_rows(ev, ids)
    seqs_B, _ = H.sequences(ev, rows_B, "time-split")
    model_B, tB = train_model(ModelConfig(n_items=len(ids) + 1, **cfg), T.training_sequences(seqs_B, include_valid=True),
                              args, targs, args.seed, "B (all events)", ckpt(args, "B"))
    log(f"model B trained in {tB['seconds']}s")
    B_ranks, _, _ = event_ranks(model_B, ev, rows_B, rows_B > 0)
    ref = H.model_ranks(model_B, seqs_B)                 # same walk as the harness: must agree (up to
    mine = B_ranks[(ev.split == H.TEST) & (rows_B > 0)]  # float rounding of other batch shapes)
    same = float((ref == mine).mean())
    assert len(ref) == len(mine) and same > 0.99 and np.abs(ref - mine).max() <= 5, "event_ranks disagrees with harness.model_ranks"
    log(f"B, all test targets: {metrics(B_ranks[ev.split == H.TEST])} (harness.model_ranks: same rank for "
        f"{same:.2%} of the targets, at most {int(np.abs(ref - mine).max())} apart)")

    result = {"args": vars(args), "setup": {"config": cfg, "train_args": {k: targs[k] for k in ("lr", "cosine", "batch", "bptt", "min_count", "idle_gap")}},
              "dataset": DATASET, "events": int(len(ev)), "items": len(ids), "test_targets": int((ev.split == H.TEST).sum()),
              "train_B": tB, "selections": {}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for how in [s.strip() for s in args.select.split(",") if s.strip()]:
        result["selections"][how] = run_selection(how, ev, ids, counts, cfg, targs, args, model_B, genres, args.seed)
        result["wall_seconds"] = round(time.time() - t_start, 1)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    log(f"wrote {args.out}; {(time.time() - t_start) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
