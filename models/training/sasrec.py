"""SASRec (Kang & McAuley 2018) as the S3-Rec / ICLRec repositories run it as their baseline, for
the Amazon `last-item` protocol of the harness:

- item embedding + learned position embedding (positions of a left-padded window of `max_len`,
  the last item always at the last position), LayerNorm, dropout;
- `blocks` post-LN Transformer blocks (causal self-attention with `heads` heads, then a GELU
  feed-forward of 4 x dim), residual + LayerNorm around each, dropout `dropout` everywhere;
- the score of item i after position t is <h_t, e_i> (output tied to the item embedding);
- trained on every position of each user's training sequence (the items before the validation
  item, the last `max_len` of them) with cross-entropy over ALL items; Adam; early stopping on
  validation NDCG@20 (the second-to-last item, history items masked), the best epoch kept.

    python3 models/training/sasrec.py --dataset amazon-beauty            # train, print test metrics

It trains on one torch thread (`--threads`). Everything here takes embedding rows (1..N-1, 0 =
padding) so the harness can rank it beside the other methods on the same targets.
"""
import argparse
import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from metrics import summary, target_ranks  # noqa: E402


@dataclass
class SASRecConfig:
    n_items: int              # embedding rows including padding row 0
    dim: int = 64             # hidden size (S3-Rec / ICLRec: 64)
    blocks: int = 2           # Transformer blocks (2)
    heads: int = 1            # attention heads (SASRec paper: 1)
    dropout: float = 0.5      # hidden and attention dropout (S3-Rec / ICLRec Beauty: 0.5)
    max_len: int = 50         # input window (50)


class Block(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(d, eps=1e-12)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)
        self.drop2 = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, mask):
        a, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
        x = self.ln1(x + self.drop1(a))
        return self.ln2(x + self.drop2(self.ff2(F.gelu(self.ff1(x)))))


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.emb = nn.Embedding(cfg.n_items, d, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.dropout) for _ in range(cfg.blocks))
        self.apply(self._init)

    @staticmethod
    def _init(m):
        # as the S3-Rec / ICLRec code: normal(0, 0.02) weights, zero biases, unit LayerNorm
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.data.normal_(0.0, 0.02)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.data.zero_()
        if isinstance(m, nn.MultiheadAttention):
            m.in_proj_weight.data.normal_(0.0, 0.02)
            m.in_proj_bias.data.zero_()

    def forward(self, seq):
        """seq (B, L) int64, left-padded with 0, L <= max_len -> hidden states (B, L, d)."""
        B, L = seq.shape
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len).unsqueeze(0)
        x = self.drop(self.ln(self.emb(seq) + self.pos(pos)))
        # causal + key padding as one additive mask; finite (as the S3-Rec code's -10000) so that a
        # padded position that sees nothing gets uniform attention instead of NaN
        blocked = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1).unsqueeze(0) | (seq == 0).unsqueeze(1)
        mask = torch.zeros(B, L, L).masked_fill(blocked, -1e4).repeat_interleave(self.cfg.heads, dim=0)
        for b in self.blocks:
            x = b(x, mask)
        return x

    def scores(self, seq):
        """Scores of every item after the last position: (B, L) -> (B, N); padding row -inf."""
        h = self.forward(seq)[:, -1]
        s = h @ self.emb.weight.t()
        s[:, 0] = float("-inf")
        return s


def left_pad(seqs, max_len):
    """List of int arrays -> (B, L) int64 tensor of their last max_len items, left-padded,
    L = the longest kept length (at least 1)."""
    L = max(1, min(max_len, max(len(s) for s in seqs)))
    out = np.zeros((len(seqs), L), np.int64)
    for j, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[j, L - len(s):] = s
    return torch.from_numpy(out)


def train_epoch(model, opt, train, batch, rng):
    """One pass over the users in random order; every non-padding position predicts the next item."""
    model.train()
    L = model.cfg.max_len
    # batches of users of similar length (random within a length), in random batch order: the
    # transformer then runs over ~the real positions instead of max_len per user
    order = rng.permutation(len(train))
    order = order[np.argsort([min(len(train[i]), L + 1) for i in order], kind="stable")]
    chunks = [order[a:a + batch] for a in range(0, len(order), batch)]
    total, n = 0.0, 0
    for c in rng.permutation(len(chunks)):
        idx = chunks[c]
        seqs = [train[i] for i in idx]
        inp = left_pad([s[:-1][-L:] for s in seqs], L)
        tgt = left_pad([s[1:][-L:] for s in seqs], L)
        h = model(inp)
        m = tgt > 0
        logits = h[m] @ model.emb.weight.t()
        logits[:, 0] = float("-inf")
        loss = F.cross_entropy(logits, tgt[m], reduction="sum")
        opt.zero_grad()
        (loss / m.sum()).backward()
        opt.step()
        total += float(loss)
        n += int(m.sum())
    return total / max(n, 1)


def history_masked(scores, prefixes, targets, keep_target=False):
    """Remove each user's history items from the ranking in place (-inf), as S3-Rec / ICLRec do.
    keep_target: leave the target itself rankable when it repeats a history item."""
    for j, p in enumerate(prefixes):
        h = np.asarray(p)
        if keep_target:
            h = h[h != targets[j]]
        scores[j, h] = -np.inf
    return scores


@torch.no_grad()
def ranks(model, prefixes, targets, mask_history=True, keep_target=False, batch=512):
    """1-based full-ranking rank of each target after its prefix (ties against the model)."""
    model.eval()
    out = []
    for a in range(0, len(prefixes), batch):
        pre, tg = prefixes[a:a + batch], np.asarray(targets[a:a + batch])
        sc = model.scores(left_pad([np.asarray(p) for p in pre], model.cfg.max_len)).numpy()
        if mask_history:
            history_masked(sc, pre, tg, keep_target)
        out.append(target_ranks(sc, tg))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def fit(train, valid, n_items, cfg=None, lr=1e-3, batch=256, max_epochs=200, patience=10, seed=1,
        mask_history=True, log=print):
    """Train on `train` (per user: rows of the training sequence, in order), stop early on NDCG@20
    of `valid` ((prefixes, targets)); returns (best model, history list, seconds).

    history: per epoch {epoch, loss, seconds (with validation), train_seconds, cpu_seconds (this
    process's CPU time: the machine is shared), events_per_s, valid: {metric: value}}."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = cfg or SASRecConfig(n_items=n_items)
    model = SASRec(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    train = [np.asarray(s, np.int64) for s in train if len(s) >= 2]
    n_events = sum(min(len(s) - 1, cfg.max_len) for s in train)
    best, best_state, best_epoch, history = -1.0, None, 0, []
    t0 = time.time()
    for epoch in range(1, max_epochs + 1):
        te, ce = time.time(), time.process_time()
        loss = train_epoch(model, opt, train, batch, rng)
        dt, cpu = time.time() - te, time.process_time() - ce
        v = summary(ranks(model, valid[0], valid[1], mask_history), ks=(5, 10, 20))
        history.append({"epoch": epoch, "loss": loss, "seconds": round(time.time() - te, 2),
                        "train_seconds": round(dt, 2), "cpu_seconds": round(cpu, 2),
                        "events_per_s": n_events / dt, "valid": v})
        improved = v["NDCG@20"] > best
        if improved:
            best, best_epoch, best_state = v["NDCG@20"], epoch, copy.deepcopy(model.state_dict())
        eta = (time.time() - t0) / epoch * (min(max_epochs, best_epoch + patience) - epoch)
        log(f"sasrec epoch {epoch}: loss {loss:.4f}  {dt:.1f}s ({cpu:.1f}s CPU)  {n_events / dt:.0f} events/s  "
            f"valid HR@20 {v['Recall@20']:.4f} NDCG@20 {v['NDCG@20']:.4f}{' *' if improved else ''}  "
            f"ETA <= {eta / 60:.1f} min")
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return model, history, time.time() - t0, best_epoch


@torch.no_grad()
def score_batches(model, seqs, batch=512):
    """(scores, targets, prefixes, keys) batches over every target of harness `sequences` (the
    input is each target's prefix, its last max_len items), for harness.ranks_by_rule."""
    import harness as H
    model.eval()
    tg, pre, ks = [], [], []
    for j, sq in enumerate(seqs):
        for p in np.flatnonzero(sq[2]):
            tg.append(int(sq[0][p])); pre.append(sq[0][:p]); ks.append(H.key(j, p))
    for a in range(0, len(tg), batch):
        pr = pre[a:a + batch]
        yield (model.scores(left_pad(pr, model.cfg.max_len)).numpy(), np.array(tg[a:a + batch]), pr,
               np.array(ks[a:a + batch], np.int64))


def training_data(seqs, valid_seqs, fit=(0,)):
    """From harness sequences: per user the training rows (splits `fit`), and the validation
    (prefixes, targets)."""
    train = [sq[0][np.isin(sq[5], fit)] for sq in seqs]
    vp, vt = [], []
    for sq in valid_seqs:
        for p in np.flatnonzero(sq[2]):
            vp.append(sq[0][:p]); vt.append(int(sq[0][p]))
    return train, (vp, vt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon-beauty", choices=["amazon-beauty", "amazon-sports"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=200, help="at most; early stopping on validation NDCG@20")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the model's test ranks and history as .npz / .json here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import data as D
    import harness as H
    ev = H.load(args.dataset)
    ids, _ = D.build_index(ev, 1)
    rows = D.to_rows(ev, ids)
    seqs, _ = H.sequences(ev, rows, "last-item", target=H.TEST)
    valid_seqs = [s for s in H.sequences(ev, rows, "last-item", target=H.VALID)[0] if s[2].any()]
    train, valid = training_data(seqs, valid_seqs)
    cfg = SASRecConfig(n_items=len(ids) + 1, dim=args.dim, blocks=args.blocks, heads=args.heads,
                       dropout=args.dropout, max_len=args.max_len)
    model, hist, secs, best = fit(train, valid, len(ids) + 1, cfg, args.lr, args.batch, args.epochs,
                                  args.patience, args.seed)
    test_seqs = [s for s in seqs if s[2].any()]
    r = H.ranks_by_rule(score_batches(model, test_seqs), ["history"])["history"]
    m = summary(r, ks=(5, 10, 20))
    print(f"SASRec {args.dataset}: best epoch {best}, {secs / 60:.1f} min; test " +
          " ".join(f"{k}={v:.4f}" for k, v in m.items()))
    if args.out:
        import json
        np.save(args.out + ".ranks.npy", r)
        with open(args.out + ".json", "w") as f:
            json.dump({"config": asdict(cfg), "args": vars(args), "history": hist, "train_seconds": secs,
                       "best_epoch": best, "test": m}, f, indent=1)


if __name__ == "__main__":
    main()
