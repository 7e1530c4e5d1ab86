"""Export a checkpoint to the serving contract in models/<name>/ (see models/README.md).

    python3 models/training/export.py --ckpt /tmp/ml.pt --out models/ml-small --name ml-small

Writes step.onnx, score.onnx and similar.onnx (graphs only), weights.bin (every weight once, shared by both
graphs as ONNX external data, so the tied item embedding is stored a single time), manifest.json
and golden.json (a fixed event sequence, its states and top-k, computed by PyTorch).
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
import data as D  # noqa: E402
from model import ModelConfig, build  # noqa: E402

OPSET = 17


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, state, new_session, gap, mask):
        lg = self.model.logits(state, new_session, gap)
        return torch.where(mask > 0.5, torch.full_like(lg, float("-inf")), lg)


class _Similar(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, item, mask):
        sim = self.model.similar(item)
        return torch.where(mask > 0.5, torch.full_like(sim, float("-inf")), sim)


class _Step(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, state, item, new_session, gap):
        return self.model.advance(state, item, new_session, gap)


def quantize_rows(w):
    """Symmetric int8 per row: (N, d) float32 -> q (N, d) int8, scale (N,) float32, w ~ q * scale."""
    s = w.abs().amax(dim=1) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s)).float()
    q = torch.clamp(torch.round(w / s[:, None]), -127, 127).to(torch.int8)
    return q, s


def load(ckpt_path, half=False, int8=False):
    """Model in eval mode; half=True rounds every weight to float16 precision first, so that the
    golden vectors and metrics describe exactly what an fp16 export computes. int8=True (implies
    half) first rounds the item table to int8 rows (`quantize_rows`), as `--int8-table` stores it;
    the int8 rows and scales are kept on the model as `int8_table` for the export."""
    ck = torch.load(ckpt_path, map_location="cpu")
    model = build(ModelConfig(**ck["config"]))
    sd = dict(ck["state_dict"])
    normed = bool(ck["config"].get("norm_scale"))
    if normed:
        # --norm-scale: the exported table holds the normalised rows (rounded below like any table),
        # and the model reads them as they are: the graphs normalise and scale only the query, and
        # the serving runtime gathers and scores rows exactly as for any other model
        sd["emb.weight"] = torch.nn.functional.normalize(sd["emb.weight"].float(), dim=1)
    table = None
    if int8:
        half = True
        table = quantize_rows(sd["emb.weight"].float())
        sd["emb.weight"] = table[0].float() * table[1][:, None]
    if half:
        sd = {k: (v.half().float() if v.is_floating_point() else v) for k, v in sd.items()}
    model.load_state_dict(sd)
    model.table_normed = normed
    model.int8_table = table
    model.eval()
    return model, ck


def pack_int8_table(out_dir, model, graph="score.onnx"):
    """Store the item table of weights.bin as int8 rows + float32 scales (half the float16 bytes).
    The graphs still name the float16 table at its offset in the expanded file; the runtime expands
    the packed file back (src/model/int8-rows.ts) before onnxruntime reads it. Returns the
    manifest's `int8_rows` entries and the expanded size. `graph`: the graph whose table is packed
    (a sharded export's step.onnx)."""
    q, s = model.int8_table
    N, d = q.shape
    path = os.path.join(out_dir, "weights.bin")
    g = onnx.load(os.path.join(out_dir, graph), load_external_data=False)
    init = [i for i in g.graph.initializer if i.name.endswith("emb.weight__fp16")]
    assert len(init) == 1, f"no float16 item table in {graph}"
    ext = {e.key: e.value for e in init[0].external_data}
    off, length = int(ext["offset"]), int(ext["length"])
    assert length == N * d * 2, (length, N, d)
    data = open(path, "rb").read()
    # the stored float16 table is exactly what the runtime will rebuild from q and s
    want = (q.float() * s[:, None]).half().numpy()
    assert np.array_equal(np.frombuffer(data[off:off + length], np.float16).reshape(N, d), want)
    qb = q.numpy().tobytes()
    pad = (-len(qb)) % 4
    packed = data[:off] + qb + b"\0" * pad + s.numpy().astype("<f4").tobytes() + data[off + length:]
    with open(path, "wb") as f:
        f.write(packed)
    return [{"offset": off, "rows": N, "cols": d, "packed_offset": off}], len(data)


# The similar graph folds several float32 copies of the item table into its session (the
# normalized table, its transpose, the pre-packed MatMul weights): measured at 43k x 128 it alone
# took 123 MiB of wasm memory, more than a 128 MB Workers isolate has left. Above this many table
# floats it is left out (the API then answers similar items without the model).
SIMILAR_MAX_FLOATS = 2_000_000


def with_similar(model, choice="auto"):
    """Whether to export the similar graph: 'yes', 'no', or 'auto' (by SIMILAR_MAX_FLOATS)."""
    if choice != "auto":
        return choice == "yes"
    return model.cfg.n_items * model.cfg.dim <= SIMILAR_MAX_FLOATS


def export_graphs(model, out_dir, half=False, similar=True):
    """Export both graphs; with half=True large weights are stored as float16 (and cast back to
    float32 inside the graph, which onnxruntime folds at load), halving the artifact."""
    S, N = model.state_size, model.cfg.n_items
    state = torch.zeros(2, S)
    ns = torch.ones(2)
    gap = torch.tensor([0.0, 30.0])
    item = torch.tensor([1, 2])
    mask = torch.zeros(2, N)
    step_path, score_path = os.path.join(out_dir, "step.onnx"), os.path.join(out_dir, "score.onnx")
    # Wrappers must be in eval mode too: export restores the wrapper's mode recursively afterwards.
    torch.onnx.export(_Step(model).eval(), (state, item, ns, gap), step_path, opset_version=OPSET,
                      input_names=["state", "item", "new_session", "gap"], output_names=["next_state"],
                      dynamic_axes={"state": {0: "batch"}, "item": {0: "batch"}, "new_session": {0: "batch"},
                                    "gap": {0: "batch"}, "next_state": {0: "batch"}})
    torch.onnx.export(_Logits(model).eval(), (state, ns, gap, mask), score_path, opset_version=OPSET,
                      input_names=["state", "new_session", "gap", "mask"], output_names=["logits"],
                      dynamic_axes={"state": {0: "batch"}, "new_session": {0: "batch"}, "gap": {0: "batch"},
                                    "mask": {0: "batch"}, "logits": {0: "batch"}})
    similar_path = os.path.join(out_dir, "similar.onnx")
    if similar:
        torch.onnx.export(_Similar(model).eval(), (item, mask), similar_path, opset_version=OPSET,
                          input_names=["item", "mask"], output_names=["logits"],
                          dynamic_axes={"item": {0: "batch"}, "mask": {0: "batch"}, "logits": {0: "batch"}})
    for path, names in ((step_path, ["state", "item", "new_session", "gap"]), (score_path, ["state", "new_session", "gap", "mask"])):
        keep_inputs(path, names)
    graphs = [step_path, score_path] + ([similar_path] if similar else [])
    for path in graphs[1:]:
        append_topk(path)
    share_weights(graphs, os.path.join(out_dir, "weights.bin"), half=half)
    return graphs


def append_topk(path):
    """Append TopK with a runtime k to a graph whose output is `logits`, so one graph serves any k."""
    g = onnx.load(path)
    g.graph.input.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    g.graph.node.append(helper.make_node("TopK", ["logits", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1))
    del g.graph.output[:]
    g.graph.output.extend([
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "k"]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, ["batch", "k"]),
    ])
    onnx.save(g, path)


def keep_inputs(path, names):
    """torch drops inputs a model does not use (gap, for a model without the gap feature); the
    contract has them all, so put any missing one back (unused inputs are legal in ONNX)."""
    g = onnx.load(path)
    have = {i.name: i for i in g.graph.input}
    if all(n in have for n in names):
        return
    spec = {"state": (TensorProto.FLOAT, ["batch", "S"]), "item": (TensorProto.INT64, ["batch"]),
            "new_session": (TensorProto.FLOAT, ["batch"]), "gap": (TensorProto.FLOAT, ["batch"]),
            "mask": (TensorProto.FLOAT, ["batch", "N"])}
    inputs = [have[n] if n in have else helper.make_tensor_value_info(n, *spec[n]) for n in names]
    del g.graph.input[:]
    g.graph.input.extend(inputs)
    onnx.save(g, path)


def to_half(g, min_bytes):
    """Store large float initializers as float16 followed by a Cast to float32. Where every use of
    a weight is the table input of a Gather (the step graph's embedding lookup), the rows are
    gathered from the float16 table and only they are cast, so onnxruntime does not fold a float32
    copy of the whole table into that session (a 43k x 128 table is 22 MB in float32)."""
    casts = []
    uses = {}
    for n in g.graph.node:
        for j, name in enumerate(n.input):
            uses.setdefault(name, []).append((n, j))
    for init in g.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.nbytes < min_bytes:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name + "__fp16")
        init.CopyFrom(half)
        users = uses.get(name, [])
        if users and all(n.op_type == "Gather" and j == 0 for n, j in users):
            for n, _ in users:
                out = n.output[0]
                n.input[0] = name + "__fp16"
                n.output[0] = out + "__fp16"
                casts.append(helper.make_node("Cast", [out + "__fp16"], [out], to=TensorProto.FLOAT, name=out + "__cast"))
            continue
        casts.append(helper.make_node("Cast", [name + "__fp16"], [name], to=TensorProto.FLOAT, name=name + "__cast"))
    # Casts of initializers go first; casts of gathered rows right after their Gather.
    head = [c for c in casts if c.input[0].endswith("__fp16") and any(c.input[0] == i.name for i in g.graph.initializer)]
    after = {c.input[0]: c for c in casts if c not in head}
    nodes = []
    for n in g.graph.node:
        nodes.append(n)
        if n.output and n.output[0] in after:
            nodes.append(after[n.output[0]])
    del g.graph.node[:]
    g.graph.node.extend(head + nodes)


def share_weights(graph_paths, weights_path, min_bytes=1024, half=False):
    """Move large initializers of all graphs into one file, each distinct tensor stored once."""
    blobs, offsets, size = [], {}, 0
    graphs = [onnx.load(p) for p in graph_paths]
    for g in graphs:
        if half:
            to_half(g, min_bytes)
        for init in g.graph.initializer:
            raw = numpy_helper.to_array(init).tobytes()
            if len(raw) < min_bytes:
                continue
            key = hashlib.sha256(raw).hexdigest()
            if key not in offsets:
                pad = (-size) % 64          # 64-byte alignment, as ONNX external data recommends
                blobs.append(b"\0" * pad)
                size += pad
                offsets[key] = (size, len(raw))
                blobs.append(raw)
                size += len(raw)
            off, n = offsets[key]
            init.ClearField("raw_data")
            for f in ("float_data", "int64_data", "int32_data", "double_data"):
                init.ClearField(f)
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", os.path.basename(weights_path)), ("offset", str(off)), ("length", str(n))):
                e = init.external_data.add()
                e.key, e.value = k, v
    with open(weights_path, "wb") as f:
        for b in blobs:
            f.write(b)
    for g, p in zip(graphs, graph_paths):
        onnx.save(g, p)


def source_events(ck):
    """The events a checkpoint was trained on: a named dataset, or an event-log export (any name)."""
    if ck.get("events_path"):
        return D.event_log(ck["events_path"], ck["args"]["idle_gap"])
    if ck["dataset"] not in D.LOADERS:
        raise SystemExit(f"dataset {ck['dataset']!r} is neither a known data set nor an event log (no events_path in the checkpoint)")
    return D.LOADERS[ck["dataset"]](idle_gap=ck["args"]["idle_gap"]) if ck["dataset"].startswith("movielens") \
        else D.LOADERS[ck["dataset"]]()


def golden(model, ck, n_events=12, k=10):
    """A real user's first events (across >= 2 sessions when possible), states and top-k."""
    ev = source_events(ck)
    ids = ck["item_ids"]
    rows = D.to_rows(ev, ids)
    gap = ck["args"]["idle_gap"]
    # the first user with >= n_events indexed events, preferring one whose events span two sessions
    kept = np.flatnonzero(rows > 0)
    users, starts, counts = np.unique(ev.user[kept], return_index=True, return_counts=True)
    pick, fallback = None, None
    for u, a, c in zip(users, starts, counts):
        if c < n_events:
            continue
        sel = kept[a:a + n_events]
        if fallback is None:
            fallback = sel
        if len(np.unique(ev.session[sel])) >= 2:
            pick = sel
            break
    if pick is None:
        pick = fallback if fallback is not None else kept[:n_events]
    times = ev.time[pick]
    ns = [1.0] + [1.0 if times[i] - times[i - 1] > gap else 0.0 for i in range(1, len(pick))]
    gaps = [0.0] + [float(times[i] - times[i - 1]) / 3600.0 for i in range(1, len(pick))]
    state = torch.zeros(1, model.state_size)
    states = []
    with torch.no_grad():
        for j, i in enumerate(pick):
            state = model.advance(state, torch.tensor([int(rows[i])]), torch.tensor([ns[j]]), torch.tensor([gaps[j]]))
            states.append(state[0].tolist())
        out = {}
        for name, flag, hours, exclude in (("same_session", 0.0, 0.05, False), ("new_session", 1.0, 72.0, False),
                                           ("same_session_excluding_seen", 0.0, 0.05, True)):
            lg = model.logits(state, torch.tensor([flag]), torch.tensor([hours]))[0]
            if exclude:
                lg[torch.tensor([int(rows[i]) for i in pick])] = float("-inf")
            sc, ix = torch.topk(lg, k)
            out[name] = {"new_session": flag, "gap_hours": hours, "exclude_seen": exclude,
                         "item_ids": [ids[r - 1] for r in ix.tolist()], "scores": sc.tolist()}
        seed = int(rows[pick[0]])
        sim = model.similar(torch.tensor([seed]))[0]
        sim[seed] = float("-inf")
        sc, ix = torch.topk(sim, k)
        similar = {"item_id": ids[seed - 1], "exclude_self": True,
                   "item_ids": [ids[r - 1] for r in ix.tolist()], "scores": sc.tolist()}
    return {
        "events": [{"item_id": str(ev.item[i]), "timestamp": int(times[j] * 1000)} for j, i in enumerate(pick)],
        "new_session": ns,
        "gap_hours": gaps,
        "states": states,
        "k": k,
        "topk": out,
        "similar": similar,
        "tolerance": 1e-4,
    }


# The outputs of both ranking graphs (score, similar): TopK with a runtime k.
TOPK_OUTPUTS = [
    {"name": "scores", "dtype": "float32", "shape": ["batch", "k"]},
    {"name": "indices", "dtype": "int64", "shape": ["batch", "k"]},
]


def transitions_entry(model, scale_bytes):
    """The manifest's `transitions` (transitions.py's term): its settings and `bytes`, what its
    constants take in a weights file (successor rows int32, weight codes uint8, one scale per item of
    `scale_bytes`: 2 where an fp16 export stores it as float16), which src/model/memory.ts counts."""
    c = model.cfg
    scale = model.trans_scale.numel() * scale_bytes
    return {"successors": c.trans_m, "window": c.trans_window, "alpha": c.trans_alpha, "eps": c.trans_eps,
            "decay": c.trans_decay,
            "bytes": model.trans_idx.numel() * 4 + model.trans_q.numel() + scale}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True, help="model folder, e.g. models/ml-small")
    p.add_argument("--name", required=True)
    p.add_argument("--popular", type=int, default=200, help="how many popular items the manifest lists")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--int8-table", action="store_true",
                   help="with --fp16: store the item table as int8 rows with a float32 scale each (half its bytes)")
    p.add_argument("--metrics", help="metrics JSON from evaluate.py to record in the manifest")
    p.add_argument("--similar", choices=["auto", "yes", "no"], default="auto",
                   help=f"export the similar graph (auto: when items x dim <= {SIMILAR_MAX_FLOATS:,})")
    args = p.parse_args(argv)

    if args.int8_table and not args.fp16:
        raise SystemExit("--int8-table needs --fp16 (the runtime expands the int8 rows to the float16 table)")
    model, ck = load(args.ckpt, half=args.fp16, int8=args.int8_table)
    os.makedirs(args.out, exist_ok=True)
    for old in ("similar.onnx",):                 # a re-export must not leave a graph the manifest omits
        if os.path.exists(os.path.join(args.out, old)):
            os.remove(os.path.join(args.out, old))
    sim = with_similar(model, args.similar)
    export_graphs(model, args.out, half=args.fp16, similar=sim)
    int8_rows, expanded = pack_int8_table(args.out, model) if args.int8_table else (None, None)
    model.eval()
    S, N, d = model.state_size, model.cfg.n_items, model.cfg.dim
    wsum = sha256(os.path.join(args.out, "weights.bin"))
    gold = golden(model, ck)
    if not sim:
        gold.pop("similar", None)
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(gold, f)
    ids, counts = ck["item_ids"], ck["item_counts"]
    top = sorted(range(len(ids)), key=lambda i: -counts[i])[:args.popular]  # a grown index is not in count order
    now = dt.datetime.now(dt.timezone.utc)
    manifest = {
        "format": 1,
        "name": args.name,
        "version": f"{args.name}-{now:%Y%m%d}-{wsum[:8]}",
        "created_at": now.isoformat(timespec="seconds"),
        "opset": OPSET,
        "graphs": {
            "step": {
                "file": "step.onnx",
                "inputs": [
                    {"name": "state", "dtype": "float32", "shape": ["batch", S]},
                    {"name": "item", "dtype": "int64", "shape": ["batch"]},
                    {"name": "new_session", "dtype": "float32", "shape": ["batch"]},
                    {"name": "gap", "dtype": "float32", "shape": ["batch"]},
                ],
                "outputs": [{"name": "next_state", "dtype": "float32", "shape": ["batch", S]}],
            },
            "score": {
                "file": "score.onnx",
                "inputs": [
                    {"name": "state", "dtype": "float32", "shape": ["batch", S]},
                    {"name": "new_session", "dtype": "float32", "shape": ["batch"]},
                    {"name": "gap", "dtype": "float32", "shape": ["batch"]},
                    {"name": "mask", "dtype": "float32", "shape": ["batch", N]},
                    {"name": "k", "dtype": "int64", "shape": [1]},
                ],
                "outputs": TOPK_OUTPUTS,
            },
            **({"similar": {
                "file": "similar.onnx",
                "inputs": [
                    {"name": "item", "dtype": "int64", "shape": ["batch"]},
                    {"name": "mask", "dtype": "float32", "shape": ["batch", N]},
                    {"name": "k", "dtype": "int64", "shape": [1]},
                ],
                "outputs": TOPK_OUTPUTS,
            }} if sim else {}),
        },
        "weights": {"file": "weights.bin", "bytes": os.path.getsize(os.path.join(args.out, "weights.bin")),
                    "sha256": wsum, "dtype": "float16" if args.fp16 else "float32",
                    **({"int8_rows": int8_rows, "expanded_bytes": expanded} if int8_rows else {})},
        **({"transitions": transitions_entry(model, 2 if args.fp16 else 4)} if getattr(model.cfg, "trans_m", None) else {}),
        "state": {
            "size": S,
            "dtype": "float32",
            "initial": "zeros",
            "layout": model.layout() if hasattr(model, "layout") else
            [{"name": "user", "offset": 0, "size": d}, {"name": "session", "offset": d, "size": d}],
        },
        "items": {"rows": N, "padding_row": 0, "ids": ids},
        "popular": {"ids": [ids[i] for i in top], "counts": [counts[i] for i in top], "source": "training event counts"},
        "session": {"idle_gap_seconds": ck["args"]["idle_gap"],
                    "rule": "new_session = 1 for a user's first event, or when more than idle_gap_seconds "
                            "passed since the previous event; else 0"},
        "training": {"dataset": ck["dataset"], "config": ck["config"], "args": ck["args"],
                     "train_seconds": round(ck["train_seconds"], 1), "history": ck["history"],
                     **({"data_end": ck["data_end"]} if ck.get("data_end") else {}),
                     **({"retrain": ck["retrain"]} if ck.get("retrain") else {})},
        "metrics": json.load(open(args.metrics)) if args.metrics else ck["metrics"],
        "golden": "golden.json",
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    if ck["dataset"] == "movielens-latest-small":
        titles = D.movielens_latest_small_titles()
        with open(os.path.join(args.out, "titles.json"), "w") as f:
            json.dump({i: titles[i]["title"] for i in ids if i in titles}, f, ensure_ascii=False, indent=0)
    sizes = {n: os.path.getsize(os.path.join(args.out, n)) for n in sorted(os.listdir(args.out))}
    print(json.dumps({"version": manifest["version"], "sizes": sizes}))


if __name__ == "__main__":
    main()
