"""Sharded exports (export_shards.py) and reading a model back from its export (ckpt_from_export.py)."""
import json
import os
import sys

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import ckpt_from_export  # noqa: E402
import export_shards  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def test_shards_are_chosen_only_for_tables_too_large_for_one_isolate():
    assert export_shards.shards_needed(4_724, 64) == 0          # ml-small
    assert export_shards.shards_needed(31_000, 64) == 0         # the similar graph's limit
    assert export_shards.shards_needed(100_000, 64) == 1         # out of the worker, in one shard
    one_m = export_shards.shards_needed(1_000_000, 64)
    # each shard's rows fit the per-shard memory (the int8 scan: the weights file the shard keeps,
    # 2 bytes a float16 value and its bias and norm, a byte a value of codes, 32 bytes a row more)
    per_row = 2 * 66 + 64 + 32
    assert export_shards.shard_row_bytes(64) == per_row
    assert 1_000_000 / one_m * per_row <= export_shards.SHARD_BYTES < 1_000_000 / (one_m - 1) * per_row
    assert one_m == 3
    # above the scan's dim, onnxruntime's rank graph: about 9 bytes a float16 table value, 2 more kept
    assert export_shards.shard_row_bytes(640) == 640 * 11 + 40


def test_row_ranges_cover_every_row_once_from_the_padding_row():
    for n, s in ((10, 3), (1_000_001, 23), (7, 7)):
        b = export_shards.bounds(n, s)
        assert b[0][0] == 0 and b[-1][1] == n
        assert all(b[i][1] == b[i + 1][0] and b[i][0] < b[i][1] for i in range(len(b) - 1))
        assert all(lo % 8 == 0 for lo, _ in b)
    assert len(export_shards.bounds(1_000_001, 3)) == 3


def _checkpoint(tmp_path, n=300, d=16, kind="seq", **extra):
    torch.manual_seed(3)
    cfg = ModelConfig(n_items=n + 1, dim=d, kind="seq", attn=4, **extra) if kind == "seq" else ModelConfig(n_items=n + 1, dim=d, kind="hrnn", **extra)
    ids = [f"i{k}" for k in range(1, n + 1)]
    ev = tmp_path / "events.ndjson"
    ev.write_text("".join(json.dumps({"user_id": f"u{u}", "item_id": ids[(u * 13 + j) % n], "timestamp": 1_700_000_000_000 + j * 60_000})
                          + "\n" for u in range(3) for j in range(14)))
    ck = {"config": cfg.to_dict(), "state_dict": build(cfg).state_dict(), "item_ids": ids, "item_counts": list(range(n, 0, -1)),
          "args": {"idle_gap": 1800.0}, "dataset": "synthetic", "events_path": str(ev), "train_seconds": 0.0, "history": [], "metrics": {}}
    path = tmp_path / "ck.pt"
    torch.save(ck, path)
    return path, ck


def test_a_sharded_export_names_every_file_and_covers_the_table(tmp_path):
    path, ck = _checkpoint(tmp_path)
    out = tmp_path / "sharded"
    export_shards.main(["--ckpt", str(path), "--out", str(out), "--name", "t", "--shards", "3", "--fp16"])
    m = json.load(open(out / "manifest.json"))
    assert "score" not in m["graphs"] and [o["name"] for o in m["graphs"]["step"]["outputs"]] == ["next_state", "query"]
    assert [s["rows"] for s in m["shards"]] == [[0, 104], [104, 208], [208, 301]]       # from multiples of 8
    for s in m["shards"]:
        assert "score" not in s and "similar" not in s                 # one rank graph does both
        g = onnx.load(str(out / s["rank"]["file"]), load_external_data=False)
        assert [i.name for i in g.graph.input] == ["q", "mask", "similar", "k"] and [o.name for o in g.graph.output] == ["scores", "indices"]
        onnx.checker.check_model(str(out / s["rank"]["file"]))
        assert os.path.getsize(out / s["weights"]["file"]) == s["weights"]["bytes"]
    assert "similar" in json.load(open(out / "golden.json"))


@pytest.mark.parametrize("kind, inputs", [
    ("hrnn", ["state", "item_vector", "new_session", "gap"]),
    # a SeqRec's state records its recent items: the worker also gives their rows (and the event's
    # row index, which the state's ring records)
    ("seq", ["state", "item", "item_vector", "recent_vectors", "new_session", "gap"]),
])
def test_a_model_is_exported_with_no_table_in_the_worker_and_each_shard_says_where_its_rows_are(tmp_path, kind, inputs):
    path, ck = _checkpoint(tmp_path, kind=kind)
    out = tmp_path / "sharded"
    export_shards.main(["--ckpt", str(path), "--out", str(out), "--name", "t", "--shards", "3", "--fp16", "--int8-table"])
    m = json.load(open(out / "manifest.json"))
    step = m["graphs"]["step"]
    assert [t["name"] for t in step["inputs"]] == inputs
    assert [t["name"] for t in step["outputs"]] == ["next_state", "query"]
    if kind == "seq":
        assert step["inputs"][3]["shape"] == ["batch", 4, 16]                        # attn 4, dim 16
    g = onnx.load(str(out / "step.onnx"), load_external_data=False)
    assert [i.name for i in g.graph.input] == inputs
    assert not any(list(i.dims) == [301, 16] for i in g.graph.initializer)          # no table in the worker's graph
    assert "int8_rows" not in m["weights"]                                           # so none to pack
    table = ck["state_dict"]["emb.weight"].numpy().astype(np.float16)
    for s in m["shards"]:
        lo, hi = s["rows"]
        assert s["table"]["dtype"] == "float16"
        raw = open(out / s["weights"]["file"], "rb").read()
        rows = np.frombuffer(raw, dtype=np.float16, count=(hi - lo) * 16, offset=s["table"]["offset"]).reshape(hi - lo, 16)
        np.testing.assert_array_equal(rows, table[lo:hi])
        # the item bias and the row norms the int8 scan reads (the rank graph's, as it stores them)
        bias = np.frombuffer(raw, dtype=np.float16, count=hi - lo, offset=s["table"]["bias"])
        np.testing.assert_array_equal(bias, ck["state_dict"]["item_bias"].numpy().astype(np.float16)[lo:hi])
        norm = np.frombuffer(raw, dtype=np.float16, count=hi - lo, offset=s["table"]["norm"])
        np.testing.assert_allclose(norm, ck["state_dict"]["emb.weight"].norm(dim=1).numpy()[lo:hi], rtol=1e-3)   # to float16 rounding


def test_the_gated_grurec_keeps_the_table_in_its_step_graph(tmp_path):
    # its state's ring is not read back as rows by a query the worker could feed: it gathers them
    path, _ = _checkpoint(tmp_path, kind="hrnn", memory_kind="gated", ring=4)
    out = tmp_path / "sharded"
    export_shards.main(["--ckpt", str(path), "--out", str(out), "--name", "t", "--shards", "3", "--fp16"])
    step = json.load(open(out / "manifest.json"))["graphs"]["step"]
    assert [t["name"] for t in step["inputs"]] == ["state", "item", "new_session", "gap"]
    assert [t["name"] for t in step["outputs"]] == ["next_state", "query", "item_vector"]
    # its shards still say where their rows, bias and norms are: the int8 scan serves them
    assert all(set(s["table"]) == {"offset", "dtype", "bias", "norm"} for s in json.load(open(out / "manifest.json"))["shards"])


def test_a_checkpoint_read_back_from_an_export_has_the_exported_weights(tmp_path):
    path, ck = _checkpoint(tmp_path)
    out = tmp_path / "single"
    export_shards.main(["--ckpt", str(path), "--out", str(out), "--name", "t"])     # fits: export.py's model
    assert (out / "score.onnx").exists()
    back = tmp_path / "back.pt"
    ckpt_from_export.main(["--model", str(out), "--out", str(back)])
    got = torch.load(back)["state_dict"]
    for k, v in ck["state_dict"].items():
        np.testing.assert_array_equal(got[k].numpy(), v.numpy(), err_msg=k)
