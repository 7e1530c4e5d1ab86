"""Write models/<name>/REPORT.md from the manifest and evaluate.py's metrics JSON files.

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


def rebuild_command(man, a):
    """The one command that retrains, evaluates, exports and reports this model."""
    opts = []
    for k in ("epochs", "batch", "bptt", "lr", "dim", "dropout", "loss", "n_sample", "sample_alpha",
              "min_count", "idle_gap", "memory_kind", "seed"):
        if k in a and not (k in ("n_sample", "sample_alpha") and a.get("loss") != "ce-sampled"):
            opts.append(f"--{k.replace('_', '-')} {a[k]}")
    if a.get("gap"):
        opts.append("--gap")
    fp = "" if man["weights"].get("dtype") == "float16" else "FP16=0 "
    return f"{fp}sh models/training/benchmark.sh {man['training']['dataset']} {man['name']} " + " ".join(opts)


def ci(m, k):
    c = m.get(k + "_ci")
    return f"{m[k]:.4f} [{c[0]:.4f}, {c[1]:.4f}]" if c else f"{m[k]:.4f}"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True, help="evaluate.py JSON of the exported (served) weights")
    p.add_argument("--metrics-fp32", help="the same evaluation before fp16 rounding")
    p.add_argument("--runtime-line", help="last line of `npm run eval` for this model")
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
    lines += ["## Results in the harness", "", "| method | Recall@20 | MRR@20 | NDCG@20 | Recall@10 | MRR@10 | NDCG@10 |", "|---|---|---|---|---|---|---|"]
    for name, m in met["results"].items():
        lines.append(f"| {name} | {ci(m, 'Recall@20')} | {ci(m, 'MRR@20')} | {ci(m, 'NDCG@20')} | {m['Recall@10']:.4f} | {m['MRR@10']:.4f} | {m['NDCG@10']:.4f} |")
    if "memory_minus_session_only" in met:
        lines += ["", "## What memory buys (same model, same targets, paired bootstrap)", "", "| metric | memory - session-only | 95% interval |", "|---|---|---|"]
        for k, v in met["memory_minus_session_only"].items():
            lines.append(f"| {k} | {v['diff']:+.4f} | [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] |")
    if met["dataset"] in PUBLISHED:
        ours = met["results"].get("GRU (memory)")
        lines += ["", "## Against published figures (same preprocessed split, Recall@20 / MRR@20)", "", "| method | Recall@20 | MRR@20 | source |", "|---|---|---|---|"]
        for name, r, m, src in PUBLISHED[met["dataset"]]:
            lines.append(f"| {name} | {r:.4f} | {m:.4f} | {src} |")
        if ours:
            lines.append(f"| **this model** | **{ours['Recall@20']:.4f}** | **{ours['MRR@20']:.4f}** | this report |")
    if args.metrics_fp32:
        f32 = json.load(open(args.metrics_fp32))["results"].get("GRU (memory)")
        f16 = met["results"].get("GRU (memory)")
        if f32 and f16:
            lines += ["", "## fp16 weights", "", "| weights | Recall@20 | MRR@20 | NDCG@20 |", "|---|---|---|---|",
                      f"| float32 (checkpoint) | {f32['Recall@20']:.4f} | {f32['MRR@20']:.4f} | {f32['NDCG@20']:.4f} |",
                      f"| float16 (exported) | {f16['Recall@20']:.4f} | {f16['MRR@20']:.4f} | {f16['NDCG@20']:.4f} |"]
    hist = tr.get("history", [])
    eps = sum(h["events_per_s"] for h in hist) / max(len(hist), 1)
    sizes = {f: os.path.getsize(os.path.join(args.model, f)) for f in sorted(os.listdir(args.model)) if not f.endswith(".md")}
    cfg = tr["config"]
    lines += ["", "## Training", "",
              f"- model: GRU, dim {cfg['dim']}, memory `{(cfg.get('memory_kind', 'hrnn') + (' + time-gap input' if cfg.get('use_gap') else '')) if cfg['memory'] else 'none'}`, dropout {cfg['dropout']}, tied input/output embeddings",
              f"- loss `{a.get('loss', 'ce-full')}`" + (f" ({a.get('n_sample')} popularity-sampled negatives, alpha {a.get('sample_alpha')}, plus in-batch targets)" if a.get("loss") == "ce-sampled" else "")
              + f"; Adam lr {a['lr']} with cosine decay, {a['epochs']} epochs, {a['batch']} parallel lanes, BPTT {a['bptt']}",
              f"- wall time {tr['train_seconds'] / 60:.1f} min on this machine ({os.cpu_count()} cores, torch CPU, 1 thread), {eps:.0f} training events/s on average",
              "- per epoch: " + ", ".join(f"{h['epoch']}: loss {h['loss']:.3f}" for h in hist),
              "- rebuild: `" + rebuild_command(man, a) + "`",
              "", "## Artifacts", "", "| file | bytes |", "|---|---|"] + [f"| {f} | {n:,} |" for f, n in sizes.items()]
    lines += ["", f"Weights stored as {man['weights'].get('dtype', 'float32')}; the item embedding is stored once and shared by both graphs."]
    if args.runtime_line:
        lines += ["", "## Through the serving runtime", "", "`npm run eval -- --dataset " + met["dataset"] + "` (onnxruntime-web, the worker's code) prints:", "", "```", args.runtime_line, "```"]
    if args.notes:
        lines += ["", open(args.notes).read().strip()]
    with open(os.path.join(args.model, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
