"""Retraining from the event log: train.py reads what the log export writes, export.py takes any
data set name, warm start rebuilds an exported model exactly and grows its item table (known
items keep their rows, new items start from their category), retrain.py runs end to end."""
import json
import os
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
import export  # noqa: E402
import retrain  # noqa: E402
import train  # noqa: E402
import warmstart as W  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def event_log(path, users=12, per_user=30, items=40, seed=0):
    """An event-log export (NDJSON as GET /v1/events/export writes it): three sessions a user, two days apart."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        n = 0
        for u in range(users):
            t = 1_700_000_000_000 + u * 3_600_000
            for k in range(per_user):
                t += 2 * 86_400_000 if k in (per_user // 3, 2 * per_user // 3) else 60_000
                n += 1
                f.write(json.dumps({"seq": n, "user_id": f"shopper-{u}", "item_id": f"sku-{int(rng.integers(1, items))}",
                                    "type": "view", "timestamp": t, "in_model": True}) + "\n")


def test_train_reads_an_event_log_and_export_takes_its_name(tmp_path):
    log = str(tmp_path / "shop.ndjson")
    event_log(log)
    ckpt = str(tmp_path / "shop.pt")
    train.main(["--ndjson", log, "--out", ckpt, "--epochs", "1", "--dim", "8", "--batch", "4", "--bptt", "5",
                "--min-count", "1", "--attn", "3", "--prepared", str(tmp_path / "prepared")])
    ck = torch.load(ckpt)
    assert ck["dataset"] == "shop" and ck["events_path"] == os.path.abspath(log)
    out = tmp_path / "model"
    export.main(["--ckpt", ckpt, "--out", str(out), "--name", "shop"])   # used to fail with KeyError: 'shop'
    m = json.loads((out / "manifest.json").read_text())
    g = json.loads((out / "golden.json").read_text())
    assert m["training"]["dataset"] == "shop"
    assert all(e["item_id"] in set(m["items"]["ids"]) for e in g["events"])


def test_warm_start_rebuilds_the_exported_model_and_grows_its_items(tmp_path):
    cfg = ModelConfig(n_items=41, dim=8, kind="seq", attn=3)
    torch.manual_seed(0)
    model = build(cfg)
    ids = [f"sku-{i}" for i in range(1, 41)]
    log = str(tmp_path / "log.ndjson")
    event_log(log)
    torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "item_ids": ids, "item_counts": [1] * 40,
                "dataset": "shop", "events_path": log, "args": {"idle_gap": 1800.0}, "history": [],
                "train_seconds": 0.0, "metrics": {}}, tmp_path / "m.pt")
    export.main(["--ckpt", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m"), "--name", "shop"])
    back, back_ids, _ = W.from_folder(str(tmp_path / "m"))
    assert back_ids == ids and back.warm_report["fresh"] == []
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k

    cats = {f"sku-{i}": ["Shoes", "Running" if i <= 5 else "Trail"] for i in range(1, 41)}
    cats["new-a"] = ["Shoes", "Running"]
    cats["new-b"] = ["Hats"]
    grown, all_ids, rep = W.grow(back, ids, ["new-a", "new-b", "sku-3"], cats)
    assert all_ids == ids + ["new-a", "new-b"]                       # known ids keep their rows
    assert rep == {"known": 40, "new": 2, "from_category": 1, "from_all": 1}
    e, e0 = grown.emb.weight.detach(), back.emb.weight.detach()
    assert torch.equal(e[:41], e0)
    assert torch.allclose(e[41], e0[1:6].mean(0))                    # new-a: mean of Shoes > Running
    assert torch.allclose(e[42], e0[1:].mean(0))                     # new-b: no known item in Hats
    for k, v in back.state_dict().items():
        if k not in ("emb.weight", "item_bias"):
            assert torch.equal(v, grown.state_dict()[k]), k


def test_retrain_runs_end_to_end_and_reports_both_tests(tmp_path, capsys):
    log = str(tmp_path / "log.ndjson")
    event_log(log, users=16)
    cfg = ModelConfig(n_items=31, dim=8, kind="seq", attn=3)
    model = build(cfg)
    torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "item_ids": [f"sku-{i}" for i in range(1, 31)],
                "item_counts": [1] * 30, "dataset": "shop", "args": {"idle_gap": 1800.0}}, tmp_path / "base.pt")
    cat = tmp_path / "catalog.ndjson"
    cat.write_text("".join(json.dumps({"id": f"sku-{i}", "category_path": ["A"]}) + "\n" for i in range(1, 45)))
    retrain.main(["--events", log, "--base", str(tmp_path / "base.pt"), "--catalog", str(cat), "--out", str(tmp_path / "r.pt"),
                  "--epochs", "1", "--recent-days", "1"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["mode"] == retrain.DEFAULT_MODE
    assert report["items"]["known"] == 30 and report["items"]["new"] == 14   # log items and catalog-only ones
    assert report["retrained"]["recent"]["targets"] > 0 and report["retrained"]["older"]["targets"] > 0
    ck = torch.load(tmp_path / "r.pt")
    assert ck["item_ids"][:30] == [f"sku-{i}" for i in range(1, 31)]


def test_retrain_counts_the_item_transition_term_again_on_the_log_with_the_base_settings(tmp_path, capsys):
    log = str(tmp_path / "log.ndjson")
    event_log(log, users=16)
    cfg = ModelConfig(n_items=31, dim=8, kind="seq", attn=3, trans_m=4, trans_window=2, trans_alpha=1.5,
                      trans_eps=0.05, trans_decay=0.5)
    model = build(cfg)
    torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "item_ids": [f"sku-{i}" for i in range(1, 31)],
                "item_counts": [1] * 30, "dataset": "shop", "args": {"idle_gap": 1800.0}}, tmp_path / "base.pt")
    retrain.main(["--events", log, "--base", str(tmp_path / "base.pt"), "--out", str(tmp_path / "r.pt"),
                  "--epochs", "1", "--recent-days", "1"])
    ck = torch.load(tmp_path / "r.pt")
    assert {k: v for k, v in ck["config"].items() if k.startswith("trans_")} == \
        {"trans_m": 4, "trans_window": 2, "trans_alpha": 1.5, "trans_eps": 0.05, "trans_decay": 0.5}
    n = len(ck["item_ids"]) + 1
    idx, q = ck["state_dict"]["trans_idx"], ck["state_dict"]["trans_q"]
    assert idx.shape == (n, 4) and q.shape == (n, 4)
    # counted from the log's training events: items the base never had (rows past 30) lead to
    # successors, and are successors; the base checkpoint's (zero) counts are gone
    assert (q[31:] > 0).any() and ((idx > 30) & (q > 0)).any()
    m = build(ModelConfig(**ck["config"]))
    m.load_state_dict(ck["state_dict"])
