"""--sparse-table: the item table updated only where a step used it (issue 18: catalogs of 1M items).

With a dense table every sampled-softmax call builds a gradient the size of the whole table (256 MB
at 1M x 64) and Adam then walks every row, though a step touches a few thousand of them. Here the
table's embedding yields sparse gradients (the rows the step used: its input items, targets and
sampled negatives), `TableAdam` moves those rows only (lazy Adam, as torch.optim.SparseAdam: a
row's moments advance when it is used) and every other weight as torch.optim.Adam / AdamW would.
`clip_grads` is clip_grad_norm_ for a mix of sparse and dense gradients (torch 1.13's leaves a
sparse gradient unscaled and counts its repeated rows apart).
"""
import math

import torch


def clip_grads(params, max_norm):
    """Scale all gradients so their joint 2-norm is at most max_norm; returns the norm before.
    Dense-only gradients go through torch.nn.utils.clip_grad_norm_ unchanged."""
    params = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    total = math.sqrt(sum(float((p.grad._values() if p.grad.is_sparse else p.grad).pow(2).sum()) for p in params))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            if p.grad.is_sparse:
                p.grad = p.grad * coef
            else:
                p.grad.mul_(coef)
    return torch.tensor(total)


class TableAdam(torch.optim.Optimizer):
    """Adam (AdamW with weight_decay) over a model whose item table `model.emb` gives sparse
    gradients: two groups, the dense weights and the table; the table's rows are updated where the
    step's gradient has them (a lazy Adam step), with the step count of the table as a whole."""

    def __init__(self, model, lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        model.emb.sparse = True
        table = model.emb.weight
        dense = [p for p in model.parameters() if p is not table]
        super().__init__([{"params": dense}, {"params": [table]}], dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay or 0.0))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                c1, c2 = 1 - b1 ** st["step"], 1 - b2 ** st["step"]
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    rows, val = grad._indices()[0], grad._values()
                    m = st["m"][rows].mul_(b1).add_(val, alpha=1 - b1)
                    v = st["v"][rows].mul_(b2).addcmul_(val, val, value=1 - b2)
                    st["m"][rows], st["v"][rows] = m, v
                    w = p[rows]
                    if wd:
                        w.mul_(1 - lr * wd)
                    p[rows] = w.addcdiv_(m, (v.sqrt() / math.sqrt(c2)).add_(eps), value=-lr / c1)
                else:
                    if wd:
                        p.mul_(1 - lr * wd)
                    st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                    st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    p.addcdiv_(st["m"], (st["v"].sqrt() / math.sqrt(c2)).add_(eps), value=-lr / c1)
