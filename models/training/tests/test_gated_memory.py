"""GRURec memory_kind "gated" (issue 20): starts as the session-only model, keeps its counters and
ring right, and leaves the older designs' state as it was."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from model import ModelConfig, build  # noqa: E402


def walk(m, items, ns, gap):
    s = torch.zeros(items.shape[0], m.state_size)
    for t in range(items.shape[1]):
        s = m.advance(s, items[:, t], ns[:, t], gap[:, t])
    return s


def test_gated_starts_as_the_session_only_model():
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=40, dim=8, memory_kind="gated", use_gap=True, ring=5, dropout=0.0)).eval()
    so = build(ModelConfig(n_items=40, dim=8, memory=False, use_gap=True, dropout=0.0)).eval()
    so.load_state_dict({k: v for k, v in m.state_dict().items() if k in so.state_dict()})
    items = torch.randint(1, 40, (2, 9))
    ns = torch.zeros(2, 9)
    ns[:, [0, 4]] = 1                                   # two sessions
    gap = torch.where(ns > 0, torch.tensor(30.0), torch.tensor(0.1))
    with torch.no_grad():
        s, s0 = walk(m, items, ns, gap), walk(so, items, ns, gap)
        for new in (0.0, 1.0):
            a = m.logits(s, torch.full((2,), new), torch.full((2,), 5.0))
            b = so.logits(s0, torch.full((2,), new), torch.full((2,), 5.0))
            assert torch.allclose(a[:, 1:], b[:, 1:], atol=1e-6)


def test_gated_state_counts_events_and_keeps_the_ring():
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=40, dim=8, memory_kind="gated", use_gap=True, ring=5, dropout=0.0)).eval()
    assert sum(p["size"] for p in m.layout()) == m.state_size == 2 * 8 + 2 + 5
    items = torch.tensor([[3, 4, 5, 6, 7, 8]])
    ns = torch.tensor([[1.0, 0, 0, 1, 0, 0]])
    gap = torch.tensor([[0.0, 0.1, 0.1, 47.0, 0.1, 0.1]])
    with torch.no_grad():
        s = walk(m, items, ns, gap)
        n, lg0, ring = m.extra(s)
        assert n.item() == 3 and abs(lg0.item() - torch.log1p(torch.tensor(47.0)).item()) < 1e-6
        assert ring.long().tolist() == [[8, 7, 6, 5, 4]]
        m.slot_w.copy_(torch.arange(5.0))
        m.in_sess_w.fill_(10.0)
        # same session: slots 0..2 are this session's items; a new session: none is
        d_same = m.logits(s, torch.zeros(1), torch.zeros(1)) - m.session_logits(s, torch.zeros(1), torch.zeros(1))
        d_new = m.logits(s, torch.ones(1), torch.ones(1)) - m.session_logits(s, torch.ones(1), torch.ones(1))
    assert d_same[0, [8, 7, 6, 5, 4]].tolist() == [10.0, 11.0, 12.0, 3.0, 4.0]
    assert d_new[0, [8, 7, 6, 5, 4]].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert d_same[0, 9:].abs().max().item() == 0.0


def test_older_designs_keep_their_state():
    for kind in ("hrnn", "carry"):
        m = build(ModelConfig(n_items=10, dim=4, memory_kind=kind, use_gap=True))
        assert m.state_size == 8
        assert [p["name"] for p in m.layout()] == ["user", "session"]


def test_session_only_gated_clears_its_ring_at_a_session_start():
    torch.manual_seed(0)
    m = build(ModelConfig(n_items=40, dim=8, memory=False, memory_kind="gated", ring=5, dropout=0.0)).eval()
    items = torch.tensor([[3, 4, 5, 6, 7]])
    ns = torch.tensor([[1.0, 0, 0, 1, 0]])
    with torch.no_grad():
        s = walk(m, items, ns, torch.zeros(1, 5))
        u, _ = m.split(s)
        assert u.abs().max().item() == 0.0
        assert m.extra(s)[2].long().tolist() == [[7, 6, 0, 0, 0]]
        after = m.boundary(s, torch.ones(1), torch.zeros(1))
        assert m.extra(after)[2].abs().max().item() == 0.0
