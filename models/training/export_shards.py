"""Export a checkpoint as a sharded model: the item table split across Durable Objects (issue 18).

    python3 models/training/export_shards.py --ckpt ck.pt --out models/big --name big --fp16 [--shards N]

`--shards auto` (the default) chooses: a model that fits one isolate is exported by export.py as
before (the worker serves it alone); a larger one gets enough shards for each to fit its own
isolate (`shards_needed`). The worker needs no setting: a manifest with `shards` is served by them.

One isolate cannot hold a large item table several times over (a whole model's score graph folds
about 5 float16 copies of it, its similar graph 8). A sharded export writes:
  step.onnx + weights.bin       the coordinator's graph (the worker's isolate): the step, plus the
                                output `query` (B, d), the vector that scores items for the input
                                state at the given moment (the score graph's query). Its input
                                is the event's item as its table row, `item_vector` (B, d), which
                                the worker reads from the item's shard (`table` below), and for a
                                SeqRec (`vector_step` "ring") also `item` (the row index its state
                                records) and `recent_vectors` (B, R, d), the rows of the recent
                                items its query attends over: the worker holds no table, only the
                                recurrent weights. The "gated" GRURec's step graph takes the item's
                                row index, holds the table once (rows are gathered) and also
                                outputs `item_vector` (B, d), the item's normalised embedding (the
                                seed of similar items).
  rank.s<i>.onnx                shard i: q (B, d), mask (B, n_i) bool, similar (1,), k -> top-k of
                                q . E_i + b_i (similar = 0) or of the cosine of the unit vector q
                                with E_i's rows (similar = 1), one copy of the table for both
                                (`rank_graph`; exports before it had score.s<i>.onnx and
                                similar.s<i>.onnx, a table each, which the runtime still serves)
  weights.s<i>.bin              shard i's rows of the table, of the item bias and of the row norms
                                (`table`: where each lies; the worker's int8 scan serves the shard
                                from them alone, src/model/int8-scan.ts, with the rank graph's
                                exact answers)
  manifest.json                 as export.py's, without graphs.score / graphs.similar, with
                                `shards`: [{rows: [lo, hi), rank, weights, table}] (global
                                rows lo..hi-1, lo a multiple of 8; shard 0 starts at the padding row
                                0; `table`: {offset, dtype, bias, norm}, byte offsets of the shard's
                                rows (row-major), item bias and row norms in its weights file)
Scores are the single-isolate score graph's ops on the same floats (a Gemm with the bias), so the
merged top-k of the shards is the single-isolate top-k; cosines divide q . e by the same stored row
norms where the single graph multiplies q by the divided rows, equal to float rounding
(test/worker/shards.test.ts checks both on a model both serve).
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
import export as E  # noqa: E402


class _CoreStep(torch.nn.Module):
    """step -> (next_state (B, S), query (B, d), item_vector (B, d))."""

    def __init__(self, model, half=False):
        super().__init__()
        self.model = model
        self.half = half

    def forward(self, state, item, new_session, gap):
        nxt = self.model.advance(state, item, new_session, gap)
        q = self.model.query(state, new_session, gap)
        e = self.model.emb(item)
        n = e.norm(dim=1, keepdim=True).clamp_min(1e-12)     # F.normalize's denominator
        if self.half:
            # export folds the table's row norms into a float16 constant (the similar graphs divide
            # by it): round the seed's norm the same way, so its vector is that row of the table
            n = n.half().float()
        return nxt, q, e / n


class _Given(torch.nn.Module):
    """Stands in for the item embedding while a vector step is traced: an event's item (B,) gets the
    rows given as `rows`, a state's recent items (B, R) get `ring` (B, R, d)."""

    def __init__(self):
        super().__init__()
        self.rows = None
        self.ring = None

    def forward(self, item):
        return self.rows if item.dim() == 1 else self.ring


class _VecStep(torch.nn.Module):
    """step -> (next_state (B, S), query (B, d)), the event's item given as its row of the table,
    `item_vector` (B, d), which the worker reads from the item's shard: the worker holds no table."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.given = _Given()

    def run(self, state, item, item_vector, ring, new_session, gap):
        m = self.model
        table = m.emb
        self.given.rows, self.given.ring = item_vector, ring
        m.emb = self.given                         # advance() and query() read rows through m.emb
        try:
            return m.advance(state, item, new_session, gap), m.query(state, new_session, gap)
        finally:
            m.emb = table

    def forward(self, state, item_vector, new_session, gap):
        return self.run(state, torch.zeros(state.shape[0], dtype=torch.long), item_vector, None, new_session, gap)


class _RingVecStep(_VecStep):
    """A SeqRec's vector step: its state records the row indices of its last R items (the ring
    advance() shifts the event's `item` into), and its query attends over their rows, given as
    `recent_vectors` (B, R, d) in ring order (zeros for empty slots), which the worker reads from
    their shards like the event's `item_vector`."""

    def forward(self, state, item, item_vector, recent_vectors, new_session, gap):
        return self.run(state, item, item_vector, recent_vectors, new_session, gap)


def vector_step(model):
    """Whether the worker's step graph takes item rows instead of holding the table: "plain" (the
    event's item as its row: a GRURec whose state records no item rows, a SeqRec without attention),
    "ring" (a SeqRec: also its recent items' rows, `_RingVecStep`), or None (the "gated" GRURec,
    whose state ring is not read back as rows: its step graph holds the table)."""
    return vector_step_config(model.cfg.to_dict())


def vector_step_config(cfg):
    """vector_step from a checkpoint's config dict (before the model is built)."""
    if cfg.get("kind", "hrnn") == "seq":
        return "ring" if cfg.get("attn", 0) else "plain"
    return "plain" if cfg.get("memory_kind", "hrnn") != "gated" else None


def rank_graph(path, emb, bias):
    """Shard graph `rank`: q (B, d), mask (B, n) bool, similar (1,), k (1,) -> top-k of
        similar = 0: q . E + b, the score graph's Gemm (the same floats as the single-isolate graph)
        similar = 1: (q . E) / max(|E|, 1e-12), cosines with a unit vector q (the similar graphs'
                     row norms, stored as they store them: float16 in a --fp16 export)
    never a row whose mask is true. One session over one copy of the table (the two graphs of
    earlier exports each held theirs, the similar graph several): about 9 bytes a table value in
    onnxruntime's memory against 26 (scripts/bench-model.ts --shard)."""
    n, d = emb.shape
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, dtype=np.float32), name))
    nodes = [
        c("one", [1.0]), helper.make_node("Sub", ["one", "similar"], ["keep_bias"]),
        helper.make_node("Mul", ["bias", "keep_bias"], ["gemm_c"]),
        helper.make_node("Gemm", ["q", "emb", "gemm_c"], ["dot"], transB=1),              # (B, n)
        c("eps", [1e-12]), helper.make_node("Max", ["norm", "eps"], ["norm_eps"]),
        helper.make_node("Div", ["dot", "norm_eps"], ["cos"]),
        c("half", [0.5]), helper.make_node("Greater", ["similar", "half"], ["is_similar"]),
        helper.make_node("Where", ["is_similar", "cos", "dot"], ["ranked"]),
        c("ninf", [float("-inf")]), helper.make_node("Where", ["mask", "ninf", "ranked"], ["logits"]),
    ]
    norm = emb.norm(dim=1)                                  # F.normalize's denominator, as the similar graphs fold it
    graph = helper.make_graph(
        nodes, "rank",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["batch", d]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", n]),
         helper.make_tensor_value_info("similar", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(emb.numpy().astype(np.float32), "emb"), numpy_helper.from_array(bias.numpy().astype(np.float32), "bias"),
         numpy_helper.from_array(norm.numpy().astype(np.float32), "norm")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", E.OPSET)]), path)
    E.append_topk(path)


def bounds(n_rows, shards):
    """Contiguous row ranges [lo, hi) of (nearly) equal size covering 0..n_rows-1, each starting at a
    multiple of 8 (a shard's part of the worker's bit mask is then a plain copy, row-mask.ts)."""
    step = -(-(-(-n_rows // shards)) // 8) * 8
    return [(i * step, min(n_rows, (i + 1) * step)) for i in range(shards) if i * step < n_rows]


def table_layout(graph_path, n, d, half):
    """Where the rank graph keeps its (n, d) table, its (n,) item bias and its (n,) row norms in the
    shard's weights file: the manifest's `table` entry, byte offsets (checked: initializers of the
    expected shapes and sizes, stored outside the graph, as float16 or float32 values). The int8
    scan (src/model/int8-scan.ts) reads all three; the worker reads rows from the table."""
    g = onnx.load(graph_path, load_external_data=False)
    size, sfx = (2, "__fp16") if half else (4, "")
    found = {}
    for init in g.graph.initializer:
        for key, name, dims in (("offset", "emb", [n, d]), ("bias", "bias", [n]), ("norm", "norm", [n])):
            if init.name == name + sfx:
                ext = {e.key: e.value for e in init.external_data}
                want = dims[0] * (dims[1] if len(dims) > 1 else 1) * size
                if list(init.dims) != dims or int(ext.get("length", -1)) != want:
                    raise SystemExit(f"{graph_path}: {init.name} is {list(init.dims)}, {ext.get('length')} bytes; expected {dims}, {want} bytes")
                found[key] = int(ext["offset"])
    missing = [k for k in ("offset", "bias", "norm") if k not in found]
    if missing:
        raise SystemExit(f"{graph_path}: no initializer for {missing} (names emb, bias, norm{' + __fp16' if half else ''})")
    return {"offset": found["offset"], "dtype": "float16" if half else "float32", "bias": found["bias"], "norm": found["norm"]}


def export_sharded(model, out_dir, shards, half=False):
    """Write the coordinator's step graph and each shard's graphs and weights; returns the
    manifest's `shards` list and the step graph's inputs and outputs. With `vector_step(model)` the
    step graph takes the event's item as its table row (the worker reads it from the shard, whose
    `table` entry says where its rows are in its weights file) and holds no table."""
    S, N, d = model.state_size, model.cfg.n_items, model.cfg.dim
    state, ns, gap, item = torch.zeros(2, S), torch.ones(2), torch.tensor([0.0, 30.0]), torch.tensor([1, 2])
    step_path = os.path.join(out_dir, "step.onnx")
    by_vector = vector_step(model)
    dyn = lambda names: {n: {0: "batch"} for n in names}  # noqa: E731
    if by_vector == "ring":
        ins, outs = ["state", "item", "item_vector", "recent_vectors", "new_session", "gap"], ["next_state", "query"]
        recent = torch.zeros(2, model.R, dtype=torch.long)                  # any ring length R >= 1
        recent[:, 0] = torch.tensor([1, 2])
        ring = model.emb(recent).detach()
        torch.onnx.export(_RingVecStep(model).eval(), (state, item, model.emb(item).detach(), ring, ns, gap), step_path,
                          opset_version=E.OPSET, input_names=ins, output_names=outs, dynamic_axes=dyn(ins + outs))
    elif by_vector:
        ins, outs = ["state", "item_vector", "new_session", "gap"], ["next_state", "query"]
        torch.onnx.export(_VecStep(model).eval(), (state, model.emb(item).detach(), ns, gap), step_path, opset_version=E.OPSET,
                          input_names=ins, output_names=outs, dynamic_axes=dyn(ins + outs))
    else:
        ins, outs = ["state", "item", "new_session", "gap"], ["next_state", "query", "item_vector"]
        torch.onnx.export(_CoreStep(model, half).eval(), (state, item, ns, gap), step_path, opset_version=E.OPSET,
                          input_names=ins, output_names=outs, dynamic_axes=dyn(ins + outs))
    E.keep_inputs(step_path, ins)
    E.share_weights([step_path], os.path.join(out_dir, "weights.bin"), half=half)
    table, bias = model.emb.weight.detach(), model.item_bias.detach()
    out = []
    for i, (lo, hi) in enumerate(bounds(N, shards)):
        n = hi - lo
        rp, wp = (os.path.join(out_dir, f) for f in (f"rank.s{i}.onnx", f"weights.s{i}.bin"))
        rank_graph(rp, table[lo:hi], bias[lo:hi])
        E.share_weights([rp], wp, half=half, min_bytes=1)  # every initializer in the file: table_layout locates them
        out.append({"rows": [lo, hi], "rank": {"file": os.path.basename(rp)},
                    "weights": {"file": os.path.basename(wp), "bytes": os.path.getsize(wp), "sha256": E.sha256(wp)},
                    "table": table_layout(rp, n, d, half)})
    shape = {"state": ["batch", S], "item_vector": ["batch", d], "recent_vectors": ["batch", getattr(model, "R", 0), d]}
    inputs = [{"name": n, "dtype": "int64" if n == "item" else "float32", "shape": shape.get(n, ["batch"])} for n in ins]
    outputs = [{"name": n, "dtype": "float32", "shape": ["batch", S if n == "next_state" else d]} for n in outs]
    return out, inputs, outputs


# What an item shard's rows may take, bytes. A shard is served by the int8 scan
# (src/model/int8-scan.ts: no onnxruntime in its isolate) while the dim is at most SCAN_MAX_DIM: per
# row it keeps its weights file (the table, 2 bytes a value in a float16 export, and its bias and
# norm), int8 codes (the dim rounded up to 16 bytes), six float32 of the kernel's and two in JS.
# Above it, the rank graph in onnxruntime holds about 9 bytes a table value (the float16 rows, their
# float32 cast and the Gemm's prepacked copy) beside the weights file, with ORT's base (about 18 MiB)
# on top; float32 exports 8 + 4, estimated alike. Measured (scripts/bench-model.ts --shard): see
# models/README.md ("Sharded item tables"); 80 MiB keeps a shard under 110 MiB at its peak.
SHARD_BYTES = 80 * 2 ** 20
SCAN_MAX_DIM = 512
# A whole model fits one isolate while its table is at most this many floats (export.py's similar
# graph limit, measured: above it the similar graph alone outgrows an isolate).
SINGLE_MAX_FLOATS = E.SIMILAR_MAX_FLOATS


def shard_row_bytes(dim, half=True):
    """Memory per table row in an item shard's isolate, bytes (see SHARD_BYTES)."""
    if dim <= SCAN_MAX_DIM:
        return (2 if half else 4) * (dim + 2) + -(-dim // 16) * 16 + 6 * 4 + 2 * 4
    return (11 if half else 12) * dim + 40


def shards_needed(n_items, dim, half=True):
    """0 when one isolate serves the whole model, else the shards whose rows fit SHARD_BYTES each."""
    if n_items * dim <= SINGLE_MAX_FLOATS:
        return 0
    return -(-n_items * shard_row_bytes(dim, half) // SHARD_BYTES)


def append_transitions(weights_path, model):
    """The item-transition term (transitions.py) of a sharded model is the worker's to add: its
    constants are appended to the worker's weights file, which no graph reads past its own
    initializers (successor rows int32, weight codes uint8, one float32 scale per item, little-endian,
    each at a multiple of 8). Returns the manifest's `transitions` entry with their byte offsets."""
    parts = [("idx", model.trans_idx.numpy().astype("<i4")), ("q", model.trans_q.numpy().astype("u1")),
             ("scale", model.trans_scale.detach().numpy().astype("<f4"))]
    offsets = {}
    with open(weights_path, "ab") as f:
        for name, a in parts:
            f.write(b"\0" * (-f.tell() % 8))
            offsets[name] = f.tell()
            f.write(a.tobytes())
    return {**E.transitions_entry(model, scale_bytes=4), "offsets": offsets}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--shards", default="auto",
                   help="how many Durable Objects share the item table; auto (default): none while the "
                        "model fits one isolate (then this is export.py), else enough for each to fit its own")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--int8-table", action="store_true",
                   help="with --fp16: the worker's copy of the table (step.onnx) stored as int8 rows + scales (half its bytes)")
    p.add_argument("--popular", type=int, default=200)
    args, rest = p.parse_known_args(argv)
    if args.shards == "auto":
        ck = torch.load(args.ckpt, map_location="cpu")
        cfg = ck["config"]
        args.shards = shards_needed(cfg["n_items"], cfg["dim"], half=args.fp16)
        print(f"{cfg['n_items']:,} items x {cfg['dim']}: {args.shards or 'no'} item shards", file=sys.stderr)
    args.shards = int(args.shards)
    if args.shards and args.int8_table and vector_step_config(torch.load(args.ckpt, map_location="cpu")["config"]):
        # the worker's copy of the table is what --int8-table packs, and a worker whose step graph
        # takes item vectors has none: its shards keep float16 rows (nothing rounded to int8)
        print("--int8-table: the worker holds no table (its step graph takes item vectors); the shards keep float16 rows", file=sys.stderr)
        args.int8_table = False
    if args.shards == 0:
        return E.main(["--ckpt", args.ckpt, "--out", args.out, "--name", args.name, "--popular", str(args.popular)]
                      + (["--fp16"] if args.fp16 else []) + (["--int8-table"] if args.int8_table else []) + rest)
    # export.py writes the manifest, golden vectors and popular list; the graphs are replaced below.
    E.main(["--ckpt", args.ckpt, "--out", args.out, "--name", args.name, "--popular", str(args.popular)]
           + (["--fp16"] if args.fp16 else []) + (["--int8-table"] if args.int8_table else []) + rest + ["--similar", "no"])
    for old in os.listdir(args.out):
        if old.startswith(("score.", "similar.", "rank.", "weights.s")):
            os.remove(os.path.join(args.out, old))
    if args.int8_table and not args.fp16:
        raise SystemExit("--int8-table needs --fp16")
    model, ck = E.load(args.ckpt, half=args.fp16, int8=args.int8_table)
    shards, inputs, outputs = export_sharded(model, args.out, args.shards, half=args.fp16)
    int8_rows, expanded = E.pack_int8_table(args.out, model, graph="step.onnx") if args.int8_table else (None, None)
    mpath = os.path.join(args.out, "manifest.json")
    m = json.load(open(mpath))
    if getattr(model.cfg, "trans_m", None):
        # appended past expanded_bytes, the constants would not survive the int8 expansion; a SeqRec
        # (the only model with the term) has no table in its worker, so nothing is packed
        assert not int8_rows, "the transition term with an int8-packed worker table"
        m["transitions"] = append_transitions(os.path.join(args.out, "weights.bin"), model)
    wsum = E.sha256(os.path.join(args.out, "weights.bin"))
    m["version"] = f"{args.name}-{m['created_at'][:10].replace('-', '')}-{wsum[:8]}"
    m["graphs"] = {"step": {**m["graphs"]["step"], "inputs": inputs, "outputs": outputs}}
    m["weights"] = {"file": "weights.bin", "bytes": os.path.getsize(os.path.join(args.out, "weights.bin")), "sha256": wsum,
                    "dtype": "float16" if args.fp16 else "float32",
                    **({"int8_rows": int8_rows, "expanded_bytes": expanded} if int8_rows else {})}
    m["shards"] = shards
    with open(mpath, "w") as f:
        json.dump(m, f, indent=1)
    gold = E.golden(model, ck)                       # with similar items (export.py left them out)
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(gold, f)
    sizes = {n: os.path.getsize(os.path.join(args.out, n)) for n in sorted(os.listdir(args.out))}
    print(json.dumps({"version": m["version"], "shards": len(shards), "sizes": sizes}))


if __name__ == "__main__":
    main()
