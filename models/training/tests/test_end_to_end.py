"""A tiny end-to-end run on a slice of real data (seconds): prepare, train, export, parity with
the serving runtime (onnxruntime-web through scripts/parity.ts)."""
import json
import os
import shutil
import subprocess
import sys

import onnx
import pytest

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
import data as D  # noqa: E402
import export  # noqa: E402
import train  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.isdir(D.DATA_ROOT), reason="../shared/data not present")


@pytest.mark.parametrize("cell,half,similar,hidden", [("gru", False, "auto", 0), ("lstm", True, "no", 24)])
def test_tiny_train_export_and_parity(tmp_path, cell, half, similar, hidden):
    """The float16 case also stores its item table as int8 rows (--int8-table), expanded by the runtime."""
    ckpt = str(tmp_path / "tiny.pt")
    train.main(["--dataset", "movielens-latest-small", "--out", ckpt, "--max-users", "25", "--epochs", "1",
                "--dim", "16", "--batch", "8", "--bptt", "5", "--min-count", "2", "--kind", "seq", "--cell", cell,
                "--attn", "4", "--hidden", str(hidden), "--prepared", str(tmp_path / "prepared")])
    # data prep wrote the item index next to the prepared events
    items = json.loads((tmp_path / "prepared" / "movielens-latest-small" / "items.json").read_text())
    assert (tmp_path / "prepared" / "movielens-latest-small" / "events.npz").exists()
    out = tmp_path / "tiny"
    export.main(["--ckpt", ckpt, "--out", str(out), "--name", "tiny", "--similar", similar] + (["--fp16", "--int8-table"] if half else []))
    m = json.loads((out / "manifest.json").read_text())
    assert m["items"]["ids"] == items["ids"]
    rec = (hidden or 16) * (2 if cell == "lstm" else 1)   # a recurrent state wider than the item rows
    assert m["state"]["size"] == rec + 4          # recurrent state + the last 4 item rows
    assert m["state"]["layout"][-1] == {"name": "recent_items", "offset": rec, "size": 4,
                                        "note": m["state"]["layout"][-1]["note"]}
    assert len(m["items"]["ids"]) == m["items"]["rows"] - 1
    graphs = ("step.onnx", "score.onnx") + (("similar.onnx",) if similar == "auto" else ())
    if half:   # weights.bin holds int8 rows + scales; the graphs read the expanded float16 table
        assert m["weights"]["int8_rows"][0]["rows"] == m["items"]["rows"] and m["weights"]["int8_rows"][0]["cols"] == 16
        assert m["weights"]["expanded_bytes"] - os.path.getsize(out / "weights.bin") == m["items"]["rows"] * 16 - 4 * m["items"]["rows"] - \
            (-(m["items"]["rows"] * 16) % 4)
    for g in graphs if not half else ():
        onnx.checker.check_model(str(out / g))  # resolves weights.bin beside it
    # without the similar graph nothing names it: not the manifest, not the golden vectors
    assert ("similar" in m["graphs"]) == (similar == "auto") == (out / "similar.onnx").exists()
    assert ("similar" in json.loads((out / "golden.json").read_text())) == (similar == "auto")
    # the tied embedding is stored once: weights.bin is about one table, not two
    table = m["items"]["rows"] * (16 + 4 if half else 16 * 4)    # int8 rows + a float32 scale each, or float32
    assert table <= os.path.getsize(out / "weights.bin") < 1.5 * table + 64 * 1024
    if half:  # the step graph gathers rows from the float16 table and casts only those rows
        step = onnx.load(str(out / "step.onnx"), load_external_data=False)
        gathers = [n for n in step.graph.node if n.op_type == "Gather" and n.input[0].endswith("emb.weight__fp16")]
        assert gathers and not any(n.op_type == "Cast" and n.input[0].endswith("emb.weight__fp16") for n in step.graph.node)
    assert os.path.getsize(out / "score.onnx") < 64 * 1024
    tsx = os.path.join(ROOT, "node_modules", ".bin", "tsx")
    assert os.path.exists(tsx) and shutil.which("node"), "run `npm install` first: parity runs the TypeScript runtime"
    r = subprocess.run([tsx, "scripts/parity.ts", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True
