"""--norm-scale (normalised scores, NISER / CORE): score = S * cos(query, row) + item bias, the item
rows L2-normalised wherever they are read; export stores the normalised rows as the table, so the
graphs the runtime runs give the torch model's scores."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
import export  # noqa: E402
import train as T  # noqa: E402
from model import ModelConfig, build  # noqa: E402

S = 12.0


def _model(n=30, d=8, R=4, scale=S):
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=n, dim=d, dropout=0.0, kind="seq", attn=R, norm_scale=scale)).eval()
    with torch.no_grad():                       # rows of very different lengths, a bias that matters
        m.emb.weight[1:] *= torch.rand(n - 1, 1) * 40 + 0.5
        m.item_bias.normal_()
        m.pos.normal_()
    return m


def test_unset_is_not_recorded_and_set_round_trips():
    old = ModelConfig(n_items=30, dim=8, kind="seq", attn=4)
    assert "norm_scale" not in old.to_dict()
    cfg = ModelConfig(n_items=30, dim=8, kind="seq", attn=4, norm_scale=S)
    assert cfg.to_dict()["norm_scale"] == S and ModelConfig(**cfg.to_dict()) == cfg


def test_scores_are_scale_times_cosine_plus_bias_and_rows_are_read_normalised():
    m = _model()
    items = torch.randint(1, 30, (2, 6))
    items[1, 4:] = 0                                                       # padding after a user's end
    ns, gap = torch.zeros(2, 6), torch.zeros(2, 6)
    with torch.no_grad():
        s = torch.zeros(2, m.state_size)
        for t in range(6):
            s = m.advance(s, items[:, t], ns[:, t], gap[:, t])
        lg = m.logits(s, ns[:, 0], gap[:, 0])
        q = m.query(s, ns[:, 0], gap[:, 0])
        raw = m._query(s[:, :m.H], s[:, m.H:].long(), ns[:, 0], gap[:, 0])
        want = S * F.cosine_similarity(raw.unsqueeze(1), m.emb.weight.unsqueeze(0), dim=2) + m.item_bias
        assert torch.allclose(lg[:, 1:], want[:, 1:], atol=1e-4) and torch.isinf(lg[:, 0]).all()
        assert torch.allclose(q.norm(dim=1), torch.full((2,), S))
        # the training path (run + out_logits) is the step / score path
        out, win, _ = m.run(items[:1, :6], ns[:1], gap[:1], torch.zeros(1, m.state_size))
        assert torch.allclose(m.out_logits(m._query(out[:, -1], win[:, -1], ns[:1, 0], gap[:1, 0]))[:, 1:], lg[:1, 1:], atol=1e-4)
        # the GRU reads the normalised row: scaling a row does not change the state
        s1 = m.advance(torch.zeros(1, m.state_size), torch.tensor([3]), torch.ones(1), torch.zeros(1))
        m.emb.weight[3] *= 7.0
        s2 = m.advance(torch.zeros(1, m.state_size), torch.tensor([3]), torch.ones(1), torch.zeros(1))
        assert torch.allclose(s1, s2, atol=1e-6)


def test_sampled_logits_are_scaled_before_the_logq_correction():
    m = _model()
    q = torch.randn(3, 8)
    tgt, neg = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 2])
    logq = torch.log(torch.rand(30))
    got = T.sampled_loss(m, q, tgt, neg, logq)
    cand = torch.cat([tgt, neg])
    lg = S * F.normalize(q, dim=1) @ F.normalize(m.emb.weight[cand], dim=1).t() + m.item_bias[cand]
    lg = lg - torch.cat([torch.zeros(3), logq[neg]])
    lg[1, 5] = float("-inf")                                               # negative 2 is row 1's target
    assert torch.allclose(got, F.cross_entropy(lg, torch.arange(3), reduction="sum"), atol=1e-4)


def _checkpoint(tmp_path, m, n):
    ids = [f"i{k}" for k in range(1, n)]
    ev = tmp_path / "events.ndjson"
    ev.write_text("".join(json.dumps({"user_id": f"u{u}", "item_id": ids[(u * 7 + j) % (n - 1)],
                                      "timestamp": 1_700_000_000_000 + j * 60_000 + (j // 7) * 7_200_000}) + "\n"
                          for u in range(3) for j in range(14)))
    ck = {"config": m.cfg.to_dict(), "state_dict": m.state_dict(), "item_ids": ids, "item_counts": list(range(n - 1, 0, -1)),
          "args": {"idle_gap": 1800.0}, "dataset": "synthetic", "events_path": str(ev), "train_seconds": 0.0,
          "history": [], "metrics": {}}
    path = tmp_path / "ck.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("half", [False, True])
def test_export_stores_normalised_rows_and_its_graphs_give_the_torch_scores(tmp_path, half):
    n = 40
    m = _model(n=n, d=16)
    path = _checkpoint(tmp_path, m, n)
    out = tmp_path / "m"
    export.main(["--ckpt", str(path), "--out", str(out), "--name", "norm"] + (["--fp16", "--int8-table"] if half else []))
    # the exported model: normalised rows in its table, read as they are, the same scores
    em, _ = export.load(str(path), half=half, int8=half)
    assert em.table_normed
    norms = em.emb.weight[1:].norm(dim=1)
    assert torch.allclose(norms, torch.ones(n - 1), atol=2e-2 if half else 1e-5)
    state = torch.zeros(2, m.state_size)
    ns, gap = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5])
    with torch.no_grad():
        for it in ([3, 9], [11, 9], [25, 1]):
            state = m.advance(state, torch.tensor(it), ns, gap)
            assert torch.allclose(em.advance(state, torch.tensor(it), ns, gap), m.advance(state, torch.tensor(it), ns, gap),
                                  atol=5e-2 if half else 1e-5)
        a, b = em.logits(state, ns, gap)[:, 1:], m.logits(state, ns, gap)[:, 1:]
        assert torch.allclose(a, b, atol=0.3 if half else 1e-4)
    if not half:
        # the table the graphs read is the normalised one
        g = onnx.load(str(out / "score.onnx"))
        table = [numpy_helper.to_array(i) for i in g.graph.initializer if i.name.endswith("emb.weight")]
        assert len(table) == 1 and np.allclose(table[0], F.normalize(m.emb.weight, dim=1).detach().numpy(), atol=1e-6)
        # the golden vectors (what parity holds the runtime to) are the training model's states and
        # top-k: replayed through m, which normalises on the fly
        gold = json.loads((out / "golden.json").read_text())
        ids = [f"i{k}" for k in range(1, n)]
        st = torch.zeros(1, m.state_size)
        with torch.no_grad():
            for e, f, h, want in zip(gold["events"], gold["new_session"], gold["gap_hours"], gold["states"]):
                st = m.advance(st, torch.tensor([ids.index(e["item_id"]) + 1]), torch.tensor([f]), torch.tensor([h]))
                assert np.allclose(st[0].numpy(), want, atol=1e-5)
            for g in gold["topk"].values():
                lg = m.logits(st, torch.tensor([g["new_session"]]), torch.tensor([g["gap_hours"]]))[0]
                if g["exclude_seen"]:
                    lg[torch.tensor([ids.index(e["item_id"]) + 1 for e in gold["events"]])] = float("-inf")
                sc, ix = torch.topk(lg, gold["k"])
                assert [ids[r - 1] for r in ix.tolist()] == g["item_ids"]
                assert np.allclose(sc.numpy(), g["scores"], atol=1e-4)
    tsx = os.path.join(ROOT, "node_modules", ".bin", "tsx")
    # The runtime is part of what this test checks: without it the test fails (CI installs it first).
    assert os.path.exists(tsx) and shutil.which("node"), "run `npm install` first: parity runs the TypeScript runtime"
    r = subprocess.run([tsx, "scripts/parity.ts", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True


def test_training_with_norm_scale_records_it_and_without_it_records_nothing(tmp_path):
    common = ["--dataset", "amazon-beauty", "--kind", "seq", "--attn", "4", "--dim", "8", "--max-users", "60",
              "--epochs", "1", "--valid-users", "20", "--min-count", "1", "--bptt", "50", "--prepared", "",
              "--loss", "ce-sampled", "--n-sample", "32", "--logq"]
    T.main(common + ["--out", str(tmp_path / "a.pt")])
    a = torch.load(tmp_path / "a.pt")
    assert "norm_scale" not in a["args"] and "norm_scale" not in a["config"]
    for loss in (["--loss", "ce-sampled"], ["--loss", "ce-full"]):
        T.main(common + loss + ["--out", str(tmp_path / "b.pt"), "--norm-scale", "14"])
        b = torch.load(tmp_path / "b.pt")
        assert b["args"]["norm_scale"] == 14.0 and b["config"]["norm_scale"] == 14.0
        assert all(np.isfinite(h["loss"]) for h in b["history"])
