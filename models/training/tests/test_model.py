"""SeqRec: the one-event path (serving, export) and the whole-sequence path (training) agree."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from model import ModelConfig, build  # noqa: E402


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_stepping_one_event_at_a_time_equals_running_the_sequence(cell):
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=50, dim=8, kind="seq", cell=cell, attn=4, dropout=0.0)).eval()
    items = torch.randint(1, 50, (3, 7))
    ns = torch.zeros(3, 7)
    ns[:, 0] = 1
    gap = torch.rand(3, 7) * 50
    with torch.no_grad():
        out, win, after = m.run(items[:, :4], ns[:, :4], gap[:, :4], torch.zeros(3, m.state_size))
        out2, win2, after2 = m.run(items[:, 4:], ns[:, 4:], gap[:, 4:], after)   # state carried across chunks
        s = torch.zeros(3, m.state_size)
        for t in range(7):
            s = m.advance(s, items[:, t], ns[:, t], gap[:, t])
            h = out[:, t] if t < 4 else out2[:, t - 4]
            assert torch.allclose(s[:, :m.H], h, atol=1e-6)
        assert torch.allclose(s, after2, atol=1e-6)
        # the ring in the state holds the last 4 items, most recent first
        assert s[:, m.n_rec:].long().tolist() == items[:, 3:].flip(1).tolist()
        # the query the training loss uses is the one the score graph uses
        q_train = m._query(out2[:, -1], win2[:, -1], ns[:, 0], gap[:, 0])
        q_serve = m.query(after2, ns[:, 0], gap[:, 0])
        assert torch.allclose(q_train, q_serve, atol=1e-6)


def test_empty_ring_slots_get_no_attention():
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=20, dim=8, kind="seq", attn=5, dropout=0.0)).eval()
    s = m.advance(torch.zeros(1, m.state_size), torch.tensor([3]), torch.ones(1), torch.zeros(1))
    with torch.no_grad():
        m.emb.weight[0] = 100.0                       # padding row: must not leak into the query
        q1 = m.query(s, torch.zeros(1), torch.zeros(1))
        m.emb.weight[0] = -100.0
        q2 = m.query(s, torch.zeros(1), torch.zeros(1))
    assert torch.allclose(q1, q2)
