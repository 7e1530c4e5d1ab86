"""The item-transition term (transitions.py, model.py `trans_*`): the counts, the score it adds, and
the exported score graph that the runtime runs (parity through the TypeScript runtime)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
import export  # noqa: E402
import export_shards  # noqa: E402
import transitions as TR  # noqa: E402
from model import ModelConfig, build, without_term  # noqa: E402
from test_norm_scores import _checkpoint  # noqa: E402  (a checkpoint file of a model, with events)


def _seq(rows, sessions, split=None):
    """One harness sequence (rows, new_session, is_target, session, time, split), all training events."""
    r, s = np.array(rows, np.int64), np.array(sessions, np.int64)
    n = len(r)
    return (r, np.r_[1.0, (s[1:] != s[:-1])].astype(np.float32), np.zeros(n, bool), s,
            np.arange(n, dtype=np.float64), np.zeros(n, np.int64) if split is None else np.array(split))


def test_successors_count_one_over_distance_within_a_session_and_the_training_split_only():
    seqs = [_seq([1, 2, 3, 4], [0, 0, 0, 1]),            # 4 starts another session
            _seq([1, 2, 5], [7, 7, 7], split=[0, 0, 2])]  # 5 is a validation event (VALID = 2)
    W = TR.successors(seqs, 6, window=2).toarray()
    want = np.zeros((6, 6))
    want[1, 2] = 2.0          # 1 -> 2 at distance 1 in both users
    want[2, 3] = 1.0
    want[1, 3] = 0.5          # distance 2
    assert np.allclose(W, want)
    Wv = TR.successors(seqs, 6, window=2, include_valid=True).toarray()
    assert Wv[2, 5] == 1.0 and Wv[1, 5] == 0.5 and Wv[3, 4] == 0.0


def test_top_successors_normalise_each_row_then_keep_the_largest():
    W = np.zeros((5, 5))
    W[1, [2, 3, 4]] = [1.0, 3.0, 1.0]     # a tie between 2 and 4: the smaller column first
    W[2, 4] = 2.0
    import scipy.sparse as sp
    idx, w = TR.top_successors(sp.csr_matrix(W), 2)
    assert idx.dtype == np.int32 and w.dtype == np.float32
    assert idx[1].tolist() == [3, 2] and np.allclose(w[1], [0.6, 0.2])
    assert idx[2].tolist() == [4, 0] and np.allclose(w[2], [1.0, 0.0])
    assert idx[0].tolist() == [0, 0] and not w[0].any()


def test_weights_are_stored_as_uint8_codes_times_a_scale_per_item():
    wt = np.array([[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0], [0.9, 0.001, 0.05, 0.049]], np.float32)
    q, scale = TR.quantize(wt)
    assert q.dtype == np.uint8 and q[0, 0] == 255 and q[2, 0] == 255 and not q[1].any() and scale[1] == 0
    assert np.abs(q * scale[:, None] - wt).max() <= scale.max() / 2 + 1e-7


def _model(n=40, d=16, R=4, m=3, alpha=1.5, eps=0.05, decay=0.5):
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=n, dim=d, dropout=0.0, kind="seq", attn=R, norm_scale=8.0,
                      trans_m=m, trans_window=2, trans_alpha=alpha, trans_eps=eps, trans_decay=decay)
    model = build(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.item_bias.normal_(generator=g)
        model.trans_idx.copy_(torch.randint(1, n, (n, m), generator=g, dtype=torch.int32))
        model.trans_q.copy_(torch.randint(0, 256, (n, m), generator=g, dtype=torch.uint8))
        model.trans_scale.copy_(torch.rand(n, generator=g) / 255)
        model.trans_idx[0] = 0
        model.trans_q[0] = 0
    return model


def _without_term(m, weights_of=None):
    """The same model without the transition term (its weights from `weights_of`, default m)."""
    src = weights_of if weights_of is not None else m
    cfg, sd = without_term(m.cfg.to_dict(), src.state_dict())
    base = build(ModelConfig(**cfg)).eval()
    base.load_state_dict(sd)
    base.table_normed = src.table_normed
    return base


def _exported(tmp_path, main, args):
    """(model, checkpoint path, export folder) of _model() exported by `main` with `args`."""
    m = _model()
    path = _checkpoint(tmp_path, m, m.cfg.n_items)
    out = tmp_path / "out"
    main(["--ckpt", str(path), "--out", str(out), "--name", "trans"] + args)
    return m, path, out


def test_the_term_adds_alpha_log1p_of_the_decayed_successor_weights_of_the_recent_items():
    m = _model()
    state = torch.zeros(2, m.state_size)
    with torch.no_grad():
        for it in ([3, 9], [11, 9], [25, 0]):       # user 1 has two recent items, user 0 three
            state = m.advance(state, torch.tensor(it), torch.zeros(2), torch.zeros(2))
        state[1, m.n_rec:] = torch.tensor([9.0, 9.0, 0.0, 0.0])
        got = m.logits(state, torch.zeros(2), torch.zeros(2))
        plain = _without_term(m).logits(state, torch.zeros(2), torch.zeros(2))
    for b in range(2):
        sc = np.zeros(m.cfg.n_items)
        for j, r in enumerate(state[b, m.n_rec:].long().tolist()):
            for c, q in zip(m.trans_idx[r].tolist(), m.trans_q[r].tolist()):
                sc[c] += 0.5 ** j * q * float(m.trans_scale[r])
        want = plain[b].numpy() + 1.5 * np.log1p(sc / 0.05)
        assert np.allclose(got[b, 1:].numpy(), want[1:], atol=1e-4)
        assert (sc[1:] == 0).any() and np.allclose(got[b, 1:][sc[1:] == 0], plain[b, 1:][sc[1:] == 0])


@pytest.mark.parametrize("half", [False, True])
def test_the_exported_score_graph_holds_the_term_and_the_runtime_serves_it(tmp_path, half):
    m, path, out = _exported(tmp_path, export.main, ["--fp16", "--int8-table"] if half else [])
    n = m.cfg.n_items
    # the golden top-k (what parity holds the runtime to) carries the term: without it the lists differ
    gold = json.loads((out / "golden.json").read_text())
    em, _ = export.load(str(path), half=half, int8=half)
    base = _without_term(m, weights_of=em)
    ids = [f"i{k}" for k in range(1, n)]
    st = torch.zeros(1, m.state_size)
    with torch.no_grad():
        for e, f, h in zip(gold["events"], gold["new_session"], gold["gap_hours"]):
            st = em.advance(st, torch.tensor([ids.index(e["item_id"]) + 1]), torch.tensor([f]), torch.tensor([h]))
        differ = 0
        for g in gold["topk"].values():
            if g["exclude_seen"]:
                continue
            lg = base.logits(st, torch.tensor([g["new_session"]]), torch.tensor([g["gap_hours"]]))[0]
            differ += [ids[r - 1] for r in torch.topk(lg, gold["k"])[1].tolist()] != g["item_ids"]
        assert differ > 0
    _parity(out)


def _parity(out):
    tsx = os.path.join(ROOT, "node_modules", ".bin", "tsx")
    assert os.path.exists(tsx) and shutil.which("node"), "run `npm install` first: parity runs the TypeScript runtime"
    r = subprocess.run([tsx, "scripts/parity.ts", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True


@pytest.mark.parametrize("half", [False, True])
def test_a_sharded_export_leaves_the_term_to_its_worker_and_serves_the_same_top_k(tmp_path, half):
    m, path, out = _exported(tmp_path, export_shards.main, ["--shards", "2"] + (["--fp16"] if half else []))
    n = m.cfg.n_items
    man = json.loads((out / "manifest.json").read_text())
    t = man["transitions"]
    assert (t["successors"], t["alpha"], t["eps"], t["decay"]) == (3, 1.5, 0.05, 0.5)
    # the constants past the step graph's, in the worker's weights file
    raw = (out / "weights.bin").read_bytes()
    em, _ = export.load(str(path), half=half)
    o = t["offsets"]
    assert np.array_equal(np.frombuffer(raw, "<i4", n * 3, o["idx"]).reshape(n, 3), em.trans_idx.numpy())
    assert np.array_equal(np.frombuffer(raw, "u1", n * 3, o["q"]).reshape(n, 3), em.trans_q.numpy())
    assert np.array_equal(np.frombuffer(raw, "<f4", n, o["scale"]), em.trans_scale.numpy())
    assert t["bytes"] == n * 3 * 5 + n * 4 and len(raw) >= o["scale"] + n * 4
    # the runtime's worker and shards against the golden top-k, which carry the term (test above)
    _parity(out)
