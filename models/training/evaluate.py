"""Evaluate a trained model and the baselines on a dataset's protocol (see harness.py).

    python3 models/training/evaluate.py --dataset amazon-beauty --ckpt .data/beauty.pt --out m.json
    python3 models/training/evaluate.py --dataset amazon-beauty --sasrec      # baselines + SASRec

Every method ranks every item for the same targets. Three kinds of lines:

- protocol: the test split as the published tables score it: last-item (Amazon) masks the user's
  history items (S3-Rec / ICLRec), the session and time-split protocols mask nothing.
  HR@k = Recall@k (one target). Metrics at 5, 10, 20 plus MRR@20.
- served:   the same test ranking under the API's default rules (today: recently seen items are
  shown, `exclude_recent=false`; purchases, always left out, do not occur in these data).
- rules on validation: each ranking rule (none / current item / last 20 / whole history) on the
  validation split, to choose the API's default by measurement, not on test.

Baselines: MostPopular, S-POP, Item-kNN, SKNN, V-SKNN on the current session (session-next,
time-split); for user histories (last-item, time-split) the history-aware V-SKNN over the user's
last n items (harness.HistoryKNN) with n, k and the similarity chosen on validation; for last-item
optionally SASRec trained in the harness (`--sasrec`, sasrec.py). Baselines are fitted on the
training split to score validation, and on everything before the test to score the test
(training + validation; last-item: training only, the papers never train on the validation item,
unless the checkpoint was refitted on training + validation, train.py --refit).
--fp16 rounds the model's weights to float16 first, as an fp16 export stores them. Writes JSON.
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
import seen as SN  # noqa: E402
from metrics import summary  # noqa: E402

KS = (5, 10, 20)
SERVED_RULE = "none"                          # the API default (src/domain/recommend.ts): recent items are shown
VALID_RULES = ["none", "current", "recent20", "history"]
PLACES = [(0, 1), (1, 3), (3, 10), (10, 30), (30, 100), (100, 10**9)]   # target's place in its session
KNN_GRID = [(n, k, norm) for n in (1, 2, 3, 5, 10) for k in (50, 100, 300) for norm in ("dot", "cosine")]
DEFAULT_BASELINES = {
    "session-next": ["MostPopular", "S-POP", "Item-kNN", "SKNN", "V-SKNN"],
    "time-split": ["MostPopular", "Item-kNN", "V-SKNN", "History-V-SKNN"],
    "last-item": ["MostPopular", "Item-kNN", "History-V-SKNN"],
}


def with_misses(ranks, lost):
    """Targets whose item the model cannot represent count as misses (rank beyond any cut-off)."""
    return np.r_[ranks, np.full(lost, 10**9, dtype=np.int64)]


def line(label, m, hr):
    """One result line: HR (or Recall) and NDCG at 5/10/20, MRR@20."""
    r = "HR" if hr else "Recall"
    return (f"{label:44s} " + " ".join(f"{r}@{k}={m[f'Recall@{k}']:.4f}" for k in KS) + " "
            + " ".join(f"NDCG@{k}={m[f'NDCG@{k}']:.4f}" for k in KS) + f" MRR@20={m['MRR@20']:.4f}")


def tune_knn(knn, valid_seqs, index, lost, log):
    """Choose (n, k, norm) of the history-aware V-SKNN by validation NDCG@20 (history masked as the
    protocol's test); returns (best config, {config: metrics})."""
    ranks = {c: [] for c in KNN_GRID}
    for out in knn.grid_batches(valid_seqs, KNN_GRID, index):
        for c, (sc, tg, pre, _) in out.items():
            ranks[c].append(H.ranks_under(sc, tg, pre, "history"))
    table = {c: summary(with_misses(np.concatenate(r), lost), ks=(20,)) for c, r in ranks.items()}
    best = max(table, key=lambda c: table[c]["NDCG@20"])
    for c in KNN_GRID:
        log(f"  History-V-SKNN n={c[0] or 'all'} k={c[1]} {c[2]}: valid HR@20={table[c]['Recall@20']:.4f} "
            f"NDCG@20={table[c]['NDCG@20']:.4f}{'  <- chosen' if c == best else ''}")
    return best, table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(H.PROTOCOLS))
    p.add_argument("--ckpt", help="model checkpoint; omit to evaluate only the baselines")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--int8-table", action="store_true", help="the item table rounded to int8 rows, as export.py --int8-table stores it")
    p.add_argument("--baselines", help="comma list, or 'none' (default: by protocol, see the module doc)")
    p.add_argument("--sasrec", action="store_true", help="last-item: train and rank SASRec in the harness (sasrec.py)")
    p.add_argument("--sasrec-epochs", type=int, default=200, help="at most (early stopping on validation NDCG@20)")
    p.add_argument("--sasrec-patience", type=int, default=5, help="epochs without a better validation NDCG@20 before stopping")
    p.add_argument("--knn", help="History-V-SKNN n,k,norm (e.g. 3,100,cosine) instead of tuning on validation")
    p.add_argument("--tune-users", type=int, default=5000, help="validation users (a fixed random sample) that tune History-V-SKNN")
    p.add_argument("--cap", type=int, default=None, help="last-item: keep the last N input items before a target "
                   "(default: the checkpoint's, else 0 = whole history)")
    p.add_argument("--no-rules", action="store_true", help="skip the ranking-rule measurement on validation")
    p.add_argument("--max-users", type=int, default=0, help="evaluate only the first N test users (quick checks)")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda s: print(s, flush=True)  # noqa: E731

    model, ck = (None, None)
    if args.ckpt:
        from export import load as load_model
        model, ck = load_model(args.ckpt, args.fp16, int8=args.int8_table)
    idle_gap = ck["args"]["idle_gap"] if ck else 1800.0
    cap = args.cap if args.cap is not None else int((ck or {}).get("args", {}).get("cap", 0) or 0)
    ev = H.load(args.dataset, idle_gap)
    proto = H.PROTOCOLS[args.dataset]
    hr = proto == "last-item"
    proto_rule = "history" if proto == "last-item" else "none"
    # baselines see for the test what the model saw: training + validation where the model was
    # refitted on both (train.py --refit) or the protocol allows it; last-item: training only
    refit = bool((ck or {}).get("args", {}).get("refit"))
    fit_test = (H.TRAIN, H.VALID) if refit or proto != "last-item" else (H.TRAIN,)
    if ck:
        ids = ck["item_ids"]
    else:                                      # baselines alone: index every item they are fitted on
        seen = ev.take(np.isin(ev.split, fit_test))
        seen.split = np.zeros(len(seen), np.int8)
        ids = D.build_index(seen, 1)[0]
    rows = D.to_rows(ev, ids)
    n_rows = len(ids) + 1
    test_all, lost = H.sequences(ev, rows, proto, target=H.TEST)
    valid_all, vlost = H.sequences(ev, rows, proto, target=H.VALID)
    capped = (lambda s: H.sequences(ev, rows, proto, target=s, cap=cap)[0]) if cap and proto == "last-item" else None
    test_in = capped(H.TEST) if capped else test_all
    valid_in = capped(H.VALID) if capped else valid_all
    tsel = [j for j, s in enumerate(test_in) if s[2].any()]
    vsel = [j for j, s in enumerate(valid_in) if s[2].any()]
    if args.max_users:
        tsel, vsel, lost, vlost = tsel[:args.max_users], vsel[:args.max_users], 0, 0
    test_seqs, valid_seqs = [test_in[j] for j in tsel], [valid_in[j] for j in vsel]
    n_t = int(sum(s[2].sum() for s in test_seqs))
    n_v = int(sum(s[2].sum() for s in valid_seqs))
    log(f"{args.dataset} ({proto}{f', input capped at {cap}' if cap and hr else ''}): {n_t + lost} test targets "
        f"({lost} of items unknown to the model, counted as misses), {n_v + vlost} validation targets; "
        f"protocol ranking leaves out: {H.RULES[proto_rule]}; served: {H.RULES[SERVED_RULE]}")
    results, served, rules_valid, ranks, extra = {}, {}, {}, {}, {}

    def run(name, test_batches, valid_batches=None):
        """Rank one method's test targets under the protocol and served rules (and its validation
        targets under every rule); print and store."""
        t = time.time()
        rk = H.ranks_by_rule(test_batches, sorted({proto_rule, SERVED_RULE}))
        secs = time.time() - t
        r = with_misses(rk[proto_rule], lost)
        ranks[name] = r
        results[name] = {**summary(r, ks=KS, boot=args.boot), "targets": int(len(r)), "seconds": round(secs, 1)}
        served[name] = {**summary(with_misses(rk[SERVED_RULE], lost), ks=KS), "targets": int(len(r))}
        log(line(name, results[name], hr) + f"  ({secs:.0f}s)")
        log(line(f"served {name} (API default rules)", served[name], hr))
        if valid_batches is not None and not args.no_rules:
            rv = H.ranks_by_rule(valid_batches, VALID_RULES)
            rules_valid[name] = {rule: summary(with_misses(v, vlost), ks=(20,)) for rule, v in rv.items()}
            log(f"  validation by rule, {name}: " + "  ".join(
                f"{rule} R@20={m['Recall@20']:.4f} NDCG@20={m['NDCG@20']:.4f}" for rule, m in rules_valid[name].items()))

    if model is not None:
        kind = (ck.get("config") or {}).get("kind", "hrnn")
        label = {"seq": "SeqRec", "hrnn": "GRU"}.get(kind, kind)
        run(f"{label} (memory)", H.model_score_batches(model, test_seqs), H.model_score_batches(model, valid_seqs))
        if proto == "time-split":
            t = time.time()
            so = with_misses(H.model_ranks(model, test_seqs, reset_sessions=True), lost)
            ranks[f"{label} (session-only)"] = so
            results[f"{label} (session-only)"] = {**summary(so, ks=KS, boot=args.boot), "targets": int(len(so)),
                                                  "seconds": round(time.time() - t, 1)}
            log(line(f"{label} (session-only)", results[f"{label} (session-only)"], hr))
            # where memory should win: by the target's place in its session (0 = a returning
            # session's first event); the unknown-item misses (appended last) are left out of this split
            places = H.target_places(test_seqs)
            mem, so_known = ranks[f"{label} (memory)"][:len(places)], so[:len(places)]
            by_place = []
            for lo, hi in PLACES:
                sel = (places >= lo) & (places < hi)
                if sel.any():
                    by_place.append({"from": lo, "to": hi, "targets": int(sel.sum()),
                                     "memory": float(np.mean(mem[sel] <= 20)), "session_only": float(np.mean(so_known[sel] <= 20))})
                    log(f"  place {lo}..{hi - 1 if hi < 10**9 else 'end'}: {by_place[-1]['targets']} targets, Recall@20 memory "
                        f"{by_place[-1]['memory']:.4f}, session-only {by_place[-1]['session_only']:.4f}")
            extra["memory_by_place"] = by_place
            # The same pair when the shop leaves out what the user already had. exclude_recent=true:
            # a system with memory remembers the last 20 distinct items across sessions, one without
            # memory only the current session's. exclude_seen=true (shops where an item is had once:
            # films rated, books read): the seen-items filter of the state record (seen.py) holds
            # items of all sessions with memory, of the current session without.
            tab = SN.row_positions(ids)
            for rule, param in (("recent20", "exclude_recent"), ("seen", "exclude_seen")):
                mr = with_misses(H.model_ranks(model, test_seqs, rule=rule, seen_table=tab), lost)
                sr = with_misses(H.model_ranks(model, test_seqs, reset_sessions=True, rule=rule, seen_table=tab), lost)
                pair = {"memory": summary(mr, ks=(20,)), "session_only": summary(sr, ks=(20,)), "diff": H.paired_diff(mr, sr)}
                extra[f"memory_vs_session_only_{rule}"] = pair
                log(f"memory - session-only, {param}=true: " + "  ".join(
                    f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in pair["diff"].items()))

    names = DEFAULT_BASELINES[proto] if args.baselines is None else ([] if args.baselines == "none" else args.baselines.split(","))
    session_names = [n for n in names if n in H.BASELINES]
    if session_names:
        t = time.time()
        bl_test = H.Baselines(test_all, n_rows, fit=fit_test)
        bl_valid = H.Baselines(valid_all, n_rows, fit=(H.TRAIN,)) if not args.no_rules else None
        log(f"session baselines fitted in {time.time() - t:.0f}s")
        for name in session_names:
            vb = bl_valid.score_batches(valid_seqs, name) if bl_valid and name in ("V-SKNN", "Item-kNN") else None
            run(name, bl_test.score_batches(test_seqs, name), vb)
    if "History-V-SKNN" in names:
        knn_v = H.HistoryKNN(valid_all, n_rows, fit=(H.TRAIN,))
        if args.knn:
            n, k, norm = args.knn.split(",")
            cfg = (int(n), int(k), norm)
        else:
            t = time.time()
            log(f"History-V-SKNN: choosing n, k, similarity on validation NDCG@20 ({len(KNN_GRID)} settings, "
                f"{min(len(vsel), args.tune_users or len(vsel))} validation users)")
            tsub = vsel
            if args.tune_users and len(vsel) > args.tune_users:
                tsub = sorted(np.random.default_rng(0).choice(vsel, args.tune_users, replace=False).tolist())
            cfg, table = tune_knn(knn_v, [valid_all[j] for j in tsub], tsub, 0 if len(tsub) < len(vsel) else vlost, log)
            extra["knn_tuning"] = {f"n={c[0]} k={c[1]} {c[2]}": m for c, m in table.items()}
            log(f"  tuned in {time.time() - t:.0f}s")
        extra["knn_config"] = {"n": cfg[0], "k": cfg[1], "norm": cfg[2]}
        knn_t = H.HistoryKNN(test_all, n_rows, fit=fit_test)
        # neighbours are found from the uncapped sequences (same users, same order)
        run(f"History-V-SKNN (n={cfg[0] or 'all'}, k={cfg[1]}, {cfg[2]})",
            knn_t.score_batches([test_all[j] for j in tsel], *cfg, index=tsel),
            knn_v.score_batches([valid_all[j] for j in vsel], *cfg, index=vsel))
    if args.sasrec:
        if proto != "last-item":
            raise SystemExit("--sasrec: the SASRec baseline is for the last-item protocol (Amazon)")
        import sasrec as S
        train, valid = S.training_data(test_all, [valid_all[j] for j in vsel])
        cfg = S.SASRecConfig(n_items=n_rows)
        model_s, hist, secs, best = S.fit(train, valid, n_rows, cfg, max_epochs=args.sasrec_epochs,
                                          patience=args.sasrec_patience, log=log)
        extra["sasrec"] = {"config": cfg.__dict__, "history": hist, "train_seconds": secs, "best_epoch": best}
        log(f"SASRec: best epoch {best}, trained in {secs / 60:.1f} min "
            f"({sum(h['cpu_seconds'] for h in hist) / 60:.1f} min CPU, one torch thread)")
        run("SASRec (in harness)", S.score_batches(model_s, [test_all[j] for j in tsel]),
            S.score_batches(model_s, [valid_all[j] for j in vsel]))

    out = {"dataset": args.dataset, "protocol": proto, "protocol_rule": proto_rule, "served_rule": SERVED_RULE,
           "rules": H.RULES, "cap": cap, "fp16": args.fp16, "targets": n_t + lost, "lost_targets": lost,
           "validation_targets": n_v + vlost, "results": results, "served": served,
           "rules_validation": rules_valid, **extra}
    mem = [n for n in ranks if n.endswith("(memory)")]
    if mem and any(n.endswith("(session-only)") for n in ranks):
        so = [n for n in ranks if n.endswith("(session-only)")][0]
        out["memory_minus_session_only"] = H.paired_diff(ranks[mem[0]], ranks[so])
        d = out["memory_minus_session_only"]
        log("memory - session-only: " + "  ".join(f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in d.items()))
    # the model against the strongest baselines, target by target (paired bootstrap)
    for key, label, prefix in (("model_minus_history_knn", "History-V-SKNN", "History-V-SKNN"),
                               ("model_minus_sasrec", "SASRec", "SASRec (in harness)")):
        base = [n for n in ranks if n.startswith(prefix)]
        if mem and base and len(ranks[mem[0]]) == len(ranks[base[0]]):
            out[key] = d = H.paired_diff(ranks[mem[0]], ranks[base[0]])
            log(f"model - {label}: " + "  ".join(f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in d.items()))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
