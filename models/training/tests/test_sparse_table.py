"""--sparse-table (sparse_table.py): the lazy table update is Adam on the rows a step used, the dense
weights move exactly as under torch's Adam, clipping counts and scales sparse gradients, and a
sampled-softmax run trains with it."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import train as T  # noqa: E402
from model import ModelConfig, build  # noqa: E402
from sparse_table import TableAdam, clip_grads  # noqa: E402


def _loss(model, items):
    """A loss that uses the table sparsely (some rows, one twice) and a dense weight."""
    e = model.emb(items)
    return (model.out(e.mean(0, keepdim=True)) ** 2).sum() + (e ** 2).sum()


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(12, 4)
        self.out = torch.nn.Linear(4, 3)


def test_table_rows_follow_sparse_adam_and_dense_weights_follow_adam():
    torch.manual_seed(0)
    a, b = _Tiny(), _Tiny()
    b.load_state_dict(a.state_dict())
    opt = TableAdam(a, lr=0.01)
    b.emb.sparse = True
    ref_table = torch.optim.SparseAdam([b.emb.weight], lr=0.01)
    ref_dense = torch.optim.Adam(b.out.parameters(), lr=0.01)
    untouched = a.emb.weight[[0, 9, 11]].clone()
    for items in ([1, 2, 2, 5], [2, 3, 7], [1, 5, 8, 8]):
        for m, opts in ((a, [opt]), (b, [ref_table, ref_dense])):
            for o in opts:
                o.zero_grad()
            _loss(m, torch.tensor(items)).backward()
            for o in opts:
                o.step()
    assert torch.allclose(a.emb.weight, b.emb.weight, atol=1e-6)
    assert torch.allclose(a.out.weight, b.out.weight, atol=1e-6) and torch.allclose(a.out.bias, b.out.bias, atol=1e-6)
    assert torch.equal(a.emb.weight[[0, 9, 11]], untouched)          # rows no step used never move


def test_clipping_counts_repeated_rows_once_and_scales_sparse_gradients():
    torch.manual_seed(1)
    a, b = _Tiny(), _Tiny()
    b.load_state_dict(a.state_dict())
    a.emb.sparse = True
    items = torch.tensor([1, 2, 2, 5])
    (10 * _loss(a, items)).backward()
    (10 * _loss(b, items)).backward()
    want = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    got = clip_grads(a.parameters(), 0.5)
    assert abs(float(got) - float(want)) < 1e-3 * float(want)
    assert torch.allclose(a.emb.weight.grad.to_dense(), b.emb.weight.grad, atol=1e-6)
    assert torch.allclose(a.out.weight.grad, b.out.weight.grad, atol=1e-6)


def test_a_sampled_softmax_run_trains_with_the_sparse_table_and_records_the_option(tmp_path):
    common = ["--dataset", "movielens-latest-small", "--dim", "8", "--max-users", "40", "--epochs", "2",
              "--valid-users", "10", "--bptt", "10", "--prepared", "", "--loss", "ce-sampled", "--n-sample", "64"]
    T.main(common + ["--out", str(tmp_path / "a.pt"), "--sparse-table"])
    a = torch.load(tmp_path / "a.pt")
    assert a["args"]["sparse_table"] is True
    assert all(h["loss"] == h["loss"] and h["loss"] < 1e9 for h in a["history"])
    assert a["history"][-1]["loss"] < a["history"][0]["loss"]
    m = build(ModelConfig(**a["config"]))
    m.load_state_dict(a["state_dict"])                              # an ordinary checkpoint
