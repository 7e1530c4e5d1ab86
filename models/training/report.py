"""Write models/<name>/REPORT.md from the manifest and evaluate.py's metrics JSON files, and
models/<name>/training.png (loss and validation metric per epoch, from the checkpoint's history
as the manifest carries it: training.history = [{epoch, loss, seconds, events_per_s, valid}],
training.train_seconds).

    python3 models/training/report.py --model models/diginetica --metrics a.json [--metrics-fp32 b.json]
"""
import argparse
import json
import os

PUBLISHED = {
    "diginetica": [
        ("GRU4Rec (as reported by SR-GNN)", 0.2945, 0.0833, "SR-GNN, AAAI 2019"),
        ("NARM", 0.4970, 0.1617, "SR-GNN, AAAI 2019"),
        ("STAMP", 0.4564, 0.1432, "SR-GNN, AAAI 2019"),
        ("SR-GNN", 0.5073, 0.1759, "SR-GNN, AAAI 2019"),
        ("GCE-GNN", 0.5422, 0.1904, "GCE-GNN, SIGIR 2020"),
        ("Item-KNN", 0.3575, 0.1157, "SR-GNN, AAAI 2019"),
        ("S-POP", 0.2106, 0.1368, "SR-GNN, AAAI 2019"),
        ("MostPop (reference run on these files)", 0.0093, 0.0021, "DATASETS.md"),
        ("ItemKNN (reference run on these files)", 0.3504, 0.1098, "DATASETS.md"),
        ("V-SKNN (reference run on these files)", 0.5139, 0.1806, "DATASETS.md"),
    ],
    "retailrocket": [
        ("MostPop (reference run on these files)", 0.0238, 0.0049, "DATASETS.md"),
        ("ItemKNN (reference run on these files)", 0.2751, 0.1046, "DATASETS.md"),
        ("V-SKNN (reference run on these files)", 0.5654, 0.2835, "DATASETS.md"),
    ],
}


# train.py options that say where things go or how many threads run, not what is trained
NOT_CONFIG = {"dataset", "out", "prepared", "threads", "max_users", "holdout"}



def model_result(results):
    """Our model's row of evaluate.py's results (named "<design> (memory)": GRU, SeqRec, ...)."""
    return next((v for k, v in results.items() if k.endswith(" (memory)")), None)

def rebuild_command(man, a):
    """The one command that retrains, evaluates, exports and reports this model: every train.py
    option the checkpoint recorded (flags when true), so the rebuild is the same configuration."""
    opts = []
    for k, v in a.items():
        if k in NOT_CONFIG or v is None or v is False:
            continue
        if k in ("n_sample", "sample_alpha", "logq") and a.get("loss") not in ("ce-sampled", "bpr-max"):
            continue
        if k == "bpreg" and a.get("loss") != "bpr-max":
            continue
        opts.append(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}"))
    fp = ("INT8=1 " if man["weights"].get("int8_rows") else "") if man["weights"].get("dtype") == "float16" else "FP16=0 "
    t = man.get("transitions")
    if t:                                                        # transitions.py's options
        fp = (f'TRANS="--window {t["window"]} --m {t["successors"]} --alpha {t["alpha"]:g} --eps {t["eps"]:g} '
              f'--decay {t["decay"]:g}" ') + fp
    return f"{fp}sh models/training/benchmark.sh {man['training']['dataset']} {man['name']} " + " ".join(opts)


PLOT = "training.png"


def plot_history(hist, path, title):
    """Loss (left axis) and the validation metrics (right panel) per epoch as a PNG; returns the
    validation metric names drawn. Uses matplotlib's Agg backend (no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    refit = [h for h in hist if h.get("refit")]
    hist = [h for h in hist if not h.get("refit")]
    ep = [h["epoch"] for h in hist]
    names = [k for k in ("Recall@20", "NDCG@20", "MRR@20") if any(k in (h.get("valid") or {}) for h in hist)]
    fig, axes = plt.subplots(1, 2 if names else 1, figsize=(9 if names else 5, 3.4), squeeze=False)
    ax = axes[0][0]
    ax.plot(ep, [h["loss"] for h in hist], "o-", color="tab:blue", label="training")
    if refit:
        ax.plot([h["epoch"] for h in refit], [h["loss"] for h in refit], "s--", color="tab:gray",
                label="refit (training + validation)")
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch"); ax.set_ylabel("training loss"); ax.set_title("loss"); ax.grid(alpha=0.3)
    if names:
        ax = axes[0][1]
        for k in names:
            pts = [(h["epoch"], h["valid"][k]) for h in hist if k in (h.get("valid") or {})]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=k)
        ax.set_xlabel("epoch"); ax.set_title("validation"); ax.grid(alpha=0.3); ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return names


def timing_lines(tr):
    """True timings from the checkpoint: total wall time and per-epoch seconds and events/s."""
    hist = tr.get("history", [])
    if not hist:
        return [f"- wall time {tr.get('train_seconds', 0) / 60:.1f} min (no per-epoch history recorded)"]
    secs = sum(h["seconds"] for h in hist)
    eps = sum(h["events_per_s"] * h["seconds"] for h in hist) / max(secs, 1e-9)
    return [f"- wall time {tr['train_seconds'] / 60:.1f} min in all (data preparation and validation included), "
            f"{secs / 60:.1f} min in {len(hist)} epochs, {eps:.0f} training events/s on average "
            f"({min(h['events_per_s'] for h in hist):.0f} to {max(h['events_per_s'] for h in hist):.0f}; "
            f"this machine: {os.cpu_count()} cores shared with other work, torch CPU, 1 thread)"]


def epochs_text(hist, a):
    """How many epochs ran: with validation (at most --epochs), then any refit."""
    refit = sum(1 for h in hist if h.get("refit"))
    txt = f"{len(hist) - refit} epochs with validation (at most {a['epochs']})"
    return txt + (f", then the best epoch count again from scratch on training + validation events (refit, {refit} epochs)"
                  if refit else "")


def ci(m, k):
    c = m.get(k + "_ci")
    return f"{m[k]:.4f} [{c[0]:.4f}, {c[1]:.4f}]" if c else f"{m[k]:.4f}"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True, help="evaluate.py JSON of the exported (served) weights")
    p.add_argument("--metrics-fp32", help="the same evaluation before fp16 rounding")
    p.add_argument("--runtime-line", help="last line of `npm run eval` for this model")
    p.add_argument("--runtime-served", help="the `served` line of `npm run eval` for this model")
    p.add_argument("--runtime-more", help="further lines of `npm run eval` to show (time-split: the exclude_seen replay)")
    p.add_argument("--notes", help="a markdown file appended as the discussion")
    args = p.parse_args(argv)
    man = json.load(open(os.path.join(args.model, "manifest.json")))
    met = json.load(open(args.metrics))
    tr = man["training"]
    a = tr["args"]
    lines = [f"# {man['name']}: report", "",
             f"Model version `{man['version']}`, trained on `{tr['dataset']}`; protocol **{met['protocol']}** "
             f"({met['targets']} targets, full ranking over {man['items']['rows'] - 1} items, ties counted against the model; "
             f"95% bootstrap intervals in brackets).", ""]
    R = "HR" if met["protocol"] == "last-item" else "Recall"
    rules = met.get("rules", {})
    lines += ["## Results in the harness (test, the protocol's ranking)", "",
              f"Left out of each ranking: {rules.get(met.get('protocol_rule', 'none'), 'nothing')}. {R}@k = Recall@k (one target).", "",
              f"| method | {R}@20 | NDCG@20 | MRR@20 | {R}@10 | NDCG@10 | {R}@5 | NDCG@5 |", "|---|---|---|---|---|---|---|---|"]
    for name, m in met["results"].items():
        lines.append(f"| {name} | {ci(m, 'Recall@20')} | {ci(m, 'NDCG@20')} | {ci(m, 'MRR@20')} | {m['Recall@10']:.4f} | {m['NDCG@10']:.4f} | "
                     f"{m.get('Recall@5', float('nan')):.4f} | {m.get('NDCG@5', float('nan')):.4f} |")
    if met.get("served"):
        lines += ["", "## Served (test, the API's default rules)", "",
                  f"The same rankings as the API serves them by default; what the rule leaves out: {rules.get(met.get('served_rule'), met.get('served_rule'))}.", "",
                  f"| method | {R}@20 | NDCG@20 | MRR@20 |", "|---|---|---|---|"]
        for name, m in met["served"].items():
            lines.append(f"| {name} | {m['Recall@20']:.4f} | {m['NDCG@20']:.4f} | {m['MRR@20']:.4f} |")
    if met.get("rules_validation"):
        rv = met["rules_validation"]
        names = list(next(iter(rv.values())))
        lines += ["", "## Which items to leave out: each rule on validation data (Recall@20 / NDCG@20)", "",
                  "| method | " + " | ".join(f"{r}: {rules.get(r, r)}" for r in names) + " |", "|---|" + "---|" * len(names)]
        for name, by in rv.items():
            lines.append(f"| {name} | " + " | ".join(f"{by[r]['Recall@20']:.4f} / {by[r]['NDCG@20']:.4f}" for r in names) + " |")
        if any(h.get("refit") for h in tr.get("history", [])):
            lines += ["", "This model was refitted on training + validation events, so its validation figures are "
                      "not held out: compare the rules with each other in its row, not with other methods or the test."]
    if met.get("knn_config"):
        c = met["knn_config"]
        lines += ["", f"History-V-SKNN settings chosen on validation NDCG@20: last n={c['n'] or 'all'} items, k={c['k']} neighbours, {c['norm']} similarity."]
    if met.get("sasrec"):
        sr = met["sasrec"]
        lines += ["", f"SASRec (in harness, sasrec.py): {sr['config']}; best epoch {sr['best_epoch']} of {len(sr['history'])}, "
                  f"{sr['train_seconds'] / 60:.1f} min wall, {sum(h.get('cpu_seconds', 0) for h in sr['history']) / 60:.1f} min CPU (one torch thread)."]
    for key, title in (("model_minus_history_knn", "model - History-V-SKNN"),):
        if key in met:
            lines += ["", f"Paired difference {title} (same targets, 95% bootstrap): " + ", ".join(
                f"{k} {v['diff']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in met[key].items())]
    if "memory_minus_session_only" in met:
        lines += ["", "## What memory buys (same model, same targets, paired bootstrap)", "", "| metric | memory - session-only | 95% interval |", "|---|---|---|"]
        for k, v in met["memory_minus_session_only"].items():
            lines.append(f"| {k} | {v['diff']:+.4f} | [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] |")
    if met.get("memory_by_place"):
        lines += ["", "By the target's place in its session (0: the first event of a returning session; targets of "
                  "items unknown to the model left out), Recall@20:", "",
                  "| place | targets | memory | session-only |", "|---|---|---|---|"]
        for b in met["memory_by_place"]:
            place = f"{b['from']}" if b["to"] == b["from"] + 1 else f"{b['from']}-{b['to'] - 1}" if b["to"] < 10**9 else f"{b['from']}+"
            lines.append(f"| {place} | {b['targets']} | {b['memory']:.4f} | {b['session_only']:.4f} |")
    for key, text in (
        ("memory_vs_session_only_recent20",
         "With the user's recent items left out (`exclude_recent=true`, for shops where an item is not "
         "wanted twice): the system with memory leaves out the last 20 distinct items of every session, "
         "one without memory only the current session's."),
        ("memory_vs_session_only_seen",
         "With the items the user already had left out (`exclude_seen=true`, for shops where an item is had "
         "once: films rated, books read): the system with memory asks the seen-items filter of the state "
         "record (at least the last 300 distinct items of all sessions, models/training/seen.py), one without "
         "memory the same filter over the current session only."),
    ):
        if key not in met:
            continue
        r = met[key]
        lines += ["", text, "", "| | memory | session-only | difference | 95% interval |", "|---|---|---|---|---|"]
        for k, v in r["diff"].items():
            lines.append(f"| {k} | {r['memory'][k]:.4f} | {r['session_only'][k]:.4f} | {v['diff']:+.4f} | "
                         f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] |")
    if met["dataset"] in PUBLISHED:
        ours = model_result(met["results"])
        lines += ["", "## Against published figures (same preprocessed split, Recall@20 / MRR@20)", "", "| method | Recall@20 | MRR@20 | source |", "|---|---|---|---|"]
        for name, r, m, src in PUBLISHED[met["dataset"]]:
            lines.append(f"| {name} | {r:.4f} | {m:.4f} | {src} |")
        if ours:
            lines.append(f"| **this model** | **{ours['Recall@20']:.4f}** | **{ours['MRR@20']:.4f}** | this report |")
    if args.metrics_fp32:
        f32 = model_result(json.load(open(args.metrics_fp32))["results"])
        f16 = model_result(met["results"])
        if f32 and f16:
            low = "float16, item table int8 rows (exported)" if man["weights"].get("int8_rows") else "float16 (exported)"
            lines += ["", "## Reduced-precision weights", "", "| weights | Recall@20 | MRR@20 | NDCG@20 |", "|---|---|---|---|",
                      f"| float32 (checkpoint) | {f32['Recall@20']:.4f} | {f32['MRR@20']:.4f} | {f32['NDCG@20']:.4f} |",
                      f"| {low} | {f16['Recall@20']:.4f} | {f16['MRR@20']:.4f} | {f16['NDCG@20']:.4f} |"]
    hist = tr.get("history", [])
    sizes = {f: os.path.getsize(os.path.join(args.model, f)) for f in sorted(os.listdir(args.model))
             if not f.endswith(".md") and f != PLOT}
    cfg = tr["config"]
    valid_cols = [k for k in ("Recall@20", "NDCG@20", "MRR@20") if any(k in (h.get("valid") or {}) for h in hist)]
    epoch_rows = ["", "| epoch | loss | seconds | events/s | " + " | ".join(f"valid {k}" for k in valid_cols) + " |",
                  "|---|---|---|---|" + "---|" * len(valid_cols)]
    for h in hist:
        v = h.get("valid") or {}
        epoch_rows.append(f"| {'refit ' if h.get('refit') else ''}{h['epoch']} | {h['loss']:.4f} | {h['seconds']:.1f} | {h['events_per_s']:.0f} | "
                          + " | ".join(f"{v[k]:.4f}" if k in v else "" for k in valid_cols) + " |")
    if hist:
        plot_history(hist, os.path.join(args.model, PLOT), f"{man['name']} ({tr['dataset']})")
    lines += ["", "## Training", "",
              "- model config: `" + json.dumps({k: v for k, v in cfg.items() if k != "n_items"}) + f"` ({cfg['n_items'] - 1} items)",
              f"- loss `{a.get('loss', 'ce-full')}`" + (f" ({a.get('n_sample')} popularity-sampled negatives, alpha {a.get('sample_alpha')}, plus in-batch targets"
                                                     + (", log-q corrected" if a.get("logq") else "") + (f", bpreg {a.get('bpreg')}" if a.get("loss") == "bpr-max" else "") + ")"
                                                     if a.get("loss") in ("ce-sampled", "bpr-max") else "")
              + f"; Adam lr {a['lr']}{' with cosine decay' if a.get('cosine') else ''}, {epochs_text(hist, a)}, {a['batch']} {'users per batch' if cfg.get('kind') == 'seq' else 'parallel lanes'}, BPTT {a.get('bptt')}",
              ] + timing_lines(tr) + ([f"", f"![loss and validation metric per epoch]({PLOT})"] if hist else []) + (epoch_rows if hist else []) + ["",
              "- rebuild: `" + rebuild_command(man, a) + "`",
              "", "## Artifacts", "", "| file | bytes |", "|---|---|"] + [f"| {f} | {n:,} |" for f, n in sizes.items()]
    w = man["weights"]
    stored = (f"float16, the item table as int8 rows with a float32 scale each ({w['bytes']:,} bytes; "
              f"{w['expanded_bytes']:,} once the runtime expands the table to float16)") if w.get("int8_rows") else w.get("dtype", "float32")
    lines += ["", f"Weights stored as {stored}; the item embedding is stored once and shared by both graphs."]
    if args.runtime_line:
        lines += ["", "## Through the serving runtime", "", "`npm run eval -- --dataset " + met["dataset"] + "` (onnxruntime-web, the worker's code) prints:", "", "```"]
        lines += ([args.runtime_served] if args.runtime_served else []) + (args.runtime_more.splitlines() if args.runtime_more else [])
        lines += [args.runtime_line, "```"]
    if args.notes:
        lines += ["", open(args.notes).read().strip()]
    with open(os.path.join(args.model, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
