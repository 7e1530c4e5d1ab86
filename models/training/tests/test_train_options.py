"""train.py's later options (--warmup, --wd, --emb-dropout, --label-smoothing, --mask-history):
what each does by hand, and that leaving them out keeps the configuration and arguments a model
recorded before they existed."""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import train as T  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def test_history_masking_leaves_out_earlier_items_but_never_the_target():
    item = torch.tensor([[3, 5, 3, 7, 0], [2, 4, 6, 8, 9]])
    m = torch.tensor([[True, True, True, False], [True, True, True, True]])     # targets at positions 1..4
    tgt = item[:, 1:5][m]
    out = T.history_masked(torch.zeros(len(tgt), 10), item, m, 1, tgt)
    gone = [sorted(torch.nonzero(torch.isinf(r)).flatten().tolist()) for r in out]
    # user 0: 5 after [3]; 3 (a repeat: keeps its logit) after [3, 5]; 7 after [3, 5, 3]
    assert gone[:3] == [[3], [5], [3, 5]]
    assert gone[3:] == [[2], [2, 4], [2, 4, 6], [2, 4, 6, 8]]


def test_warmup_rises_linearly_then_decays_by_cosine_to_zero():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = T.LrSchedule(opt, 2.0, warmup_epochs=1, epochs=3, steps_per_epoch=10, cosine=True)
    f = [s.factor(i) for i in range(30)]
    assert [round(x, 6) for x in f[:10]] == [round(0.1 * (i + 1), 6) for i in range(10)]
    assert abs(f[20] - 0.5 * (1 + math.cos(math.pi * 10 / 20))) < 1e-9
    assert f[29] < 0.01 and all(a >= b for a, b in zip(f[9:], f[10:]))
    s()
    assert abs(opt.param_groups[0]["lr"] - 0.2) < 1e-9      # base 2.0 x the first step's 0.1
    flat = T.LrSchedule(opt, 1.0, warmup_epochs=0.5, epochs=3, steps_per_epoch=10, cosine=False)
    assert [flat.factor(i) for i in (4, 5, 29)] == [1.0, 1.0, 1.0]


def test_embedding_dropout_is_its_own_and_unset_keeps_the_recorded_config():
    old = ModelConfig(n_items=20, dim=8, dropout=0.5, kind="seq", attn=4)
    assert "emb_dropout" not in old.to_dict()
    m0 = build(old)
    assert m0.emb_drop is m0.drop                            # today's model: one dropout
    new = ModelConfig(n_items=20, dim=8, dropout=0.5, kind="seq", attn=4, emb_dropout=0.2)
    assert new.to_dict()["emb_dropout"] == 0.2
    m = build(new)
    assert m.emb_drop.p == 0.2 and m.drop.p == 0.5
    assert ModelConfig(**new.to_dict()) == new
    # the same weights: identical in eval mode whatever the dropout
    a = build(old)
    m.load_state_dict(a.state_dict())
    a.eval(), m.eval()
    st = torch.zeros(2, a.state_size)
    it, ns = torch.tensor([3, 4]), torch.ones(2)
    assert torch.equal(a.advance(st, it, ns), m.advance(st, it, ns))


def test_training_with_every_new_option_runs_and_unset_options_are_not_recorded(tmp_path):
    common = ["--dataset", "amazon-beauty", "--kind", "seq", "--attn", "4", "--dim", "8", "--max-users", "60",
              "--epochs", "2", "--valid-users", "20", "--min-count", "1", "--bptt", "50", "--prepared", "",
              "--loss", "ce-full"]
    T.main(common + ["--out", str(tmp_path / "a.pt")])
    a = torch.load(tmp_path / "a.pt")
    assert not set(T.NEW_OPTIONS) & set(a["args"]) and "emb_dropout" not in a["config"]
    T.main(common + ["--out", str(tmp_path / "b.pt"), "--warmup", "0.5", "--cosine", "--wd", "0.01",
                     "--emb-dropout", "0.3", "--label-smoothing", "0.1", "--mask-history"])
    b = torch.load(tmp_path / "b.pt")
    assert b["args"]["warmup"] == 0.5 and b["args"]["mask_history"] is True and b["config"]["emb_dropout"] == 0.3
    assert all(math.isfinite(h["loss"]) for h in b["history"])


def test_heads_and_recency_embeddings_attend_as_written_and_unset_keep_the_one_head_model():
    torch.manual_seed(0)
    d, R, nh = 8, 4, 2
    old = ModelConfig(n_items=30, dim=d, dropout=0.0, kind="seq", attn=R)
    assert not {"heads", "pos_emb"} & set(old.to_dict())
    cfg = ModelConfig(n_items=30, dim=d, dropout=0.0, kind="seq", attn=R, heads=nh, pos_emb=True)
    assert ModelConfig(**cfg.to_dict()) == cfg and cfg.to_dict()["heads"] == nh
    m = build(cfg).eval()
    with torch.no_grad():
        m.pos.normal_()
        m.pos_e.normal_()
    h = torch.randn(3, d)
    rows = torch.tensor([[3, 7, 0, 0], [5, 5, 9, 1], [2, 0, 0, 0]])       # 0 = empty slot
    ns, gap = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 2.0, 5.0])
    with torch.no_grad():
        q = m._query(h, rows, ns, gap)
        # by hand: per head, softmax over the filled slots of <q_head, (e + p)_head> / sqrt(d / nh) + bias
        keys = m.emb(rows) + m.pos_e                                        # (3, R, d)
        qa = m.att_q(h)
        hd = d // nh
        ctx = torch.zeros(3, d)
        for b in range(3):
            filled = [j for j in range(R) if rows[b, j] > 0]
            for k in range(nh):
                sl = slice(k * hd, (k + 1) * hd)
                a = torch.stack([(qa[b, sl] * keys[b, j, sl]).sum() / math.sqrt(hd) + m.pos[k, j] for j in filled])
                w = torch.softmax(a, 0)
                ctx[b, sl] = sum(w[i] * keys[b, j, sl] for i, j in enumerate(filled))
        want = m.out(torch.cat([h, ctx], 1)) + m.feat(m.features(ns, gap))
    assert torch.allclose(q, want, atol=1e-5)
    # one head and no recency embedding: the same weights give today's single-head query
    one = build(old).eval()
    sd = {k: v for k, v in m.state_dict().items() if k not in ("pos", "pos_e")}
    one.load_state_dict({**sd, "pos": m.pos[0].clone()})
    with torch.no_grad():
        keys0 = one.emb(rows)
        a = (one.att_q(h).unsqueeze(1) * keys0).sum(-1) / math.sqrt(d) + one.pos
        a = torch.softmax(a - (rows == 0) * 1e9, 1) * (rows > 0)
        want0 = one.out(torch.cat([h, (a.unsqueeze(-1) * keys0).sum(1)], 1)) + one.feat(one.features(ns, gap))
        assert torch.allclose(one._query(h, rows, ns, gap), want0, atol=1e-6)
    # the step / score paths the export traces agree with the training path (the ring as state)
    items = torch.randint(1, 30, (2, 6))
    nsq, gq = torch.zeros(2, 6), torch.zeros(2, 6)
    with torch.no_grad():
        out, win, after = m.run(items, nsq, gq, torch.zeros(2, m.state_size))
        s = torch.zeros(2, m.state_size)
        for t in range(6):
            s = m.advance(s, items[:, t], nsq[:, t], gq[:, t])
        assert torch.allclose(m.query(s, nsq[:, 0], gq[:, 0]), m._query(out[:, -1], win[:, -1], nsq[:, 0], gq[:, 0]), atol=1e-5)


def test_label_smoothing_spreads_over_the_items_a_row_can_score():
    torch.manual_seed(0)
    logits = torch.randn(4, 9)
    logits[:, 0] = float("-inf")                                            # padding row
    tgt = torch.tensor([1, 4, 8, 2])
    # every real item finite: torch's own label smoothing over those items
    want = torch.nn.functional.cross_entropy(logits[:, 1:], tgt - 1, reduction="sum", label_smoothing=0.2)
    assert torch.allclose(T.smoothed_ce(logits, tgt, 0.2), want, atol=1e-5)
    # items left out (-inf): finite, and the same as smoothing over the remaining items alone
    masked = logits.clone()
    masked[:, 5:7] = float("-inf")
    tgt2 = torch.tensor([1, 4, 8, 2])
    got = T.smoothed_ce(masked, tgt2, 0.2)
    keep = [1, 2, 3, 4, 7, 8]
    want2 = torch.nn.functional.cross_entropy(masked[:, keep], torch.tensor([keep.index(int(t)) for t in tgt2]),
                                              reduction="sum", label_smoothing=0.2)
    assert torch.isfinite(got) and torch.allclose(got, want2, atol=1e-5)
    assert torch.allclose(T.smoothed_ce(logits, tgt, 0.0), torch.nn.functional.cross_entropy(logits, tgt, reduction="sum"))
