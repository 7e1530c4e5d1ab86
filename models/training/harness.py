"""Evaluation harness: protocols, our model (with and without memory) and baselines, all ranked
over every item (full ranking, ties against the model), with bootstrap intervals.

Split codes in `Events.split`: 0 = train, 1 = test, 2 = validation (model selection and early
stopping only: never a training target, never used to choose anything on test).

Protocols:
  session-next  every next-item position of every test session (diginetica, retailrocket,
                yoochoose); validation = the most recent VALID_FRACTION of the training sessions
                (the files are in time order), scored the same way
  time-split    per user, the last session (cut by the idle gap) is test; every event of it is a
                target, predicted from the whole history before it (movielens); validation = the
                second-to-last session of users with at least three sessions
  last-item     S3-Rec / ICLRec exactly (amazon): per user, test = the last item, validation = the
                second-to-last; the input is the prefix before the target (capped at the last
                `cap` items when asked, as those papers do with 50); the user's history items are
                scored out at ranking (`exclude_history`), as the papers do. The files have order but
                no time: one user = one continuous sequence.
"""
import numpy as np
import scipy.sparse as sp
import torch

import data as D
from metrics import summary, target_ranks

VALID_FRACTION = 0.05
TRAIN, TEST, VALID = 0, 1, 2

PROTOCOLS = {
    "diginetica": "session-next", "retailrocket": "session-next", "yoochoose-100k": "session-next",
    "movielens-latest-small": "time-split", "movielens-100k": "time-split",
    "amazon-beauty": "last-item", "amazon-sports": "last-item",
}


def load(name, idle_gap=1800.0):
    """The dataset's events with the protocol's train/test/validation split applied."""
    loader = D.LOADERS[name]
    ev = loader(idle_gap=idle_gap) if name.startswith("movielens") else loader()
    return apply_protocol(ev, PROTOCOLS[name])


def apply_protocol(ev, proto):
    """Set ev.split (0 train, 1 test, 2 validation) for a protocol; returns ev."""
    if len(ev) == 0:
        return ev
    first = np.r_[True, ev.user[1:] != ev.user[:-1]]
    last = np.r_[ev.user[1:] != ev.user[:-1], True]
    if proto == "time-split":
        # sessions in order per user: last one (if not also the first) is test, the one before it
        # validation when the user then still has a training session
        s_first = np.r_[True, ev.session[1:] != ev.session[:-1]]
        n_sess = np.cumsum(s_first)                                   # running session count
        user_start = np.maximum.accumulate(np.where(first, np.arange(len(ev)), 0))
        k = n_sess - n_sess[user_start] + 1                           # session number within user, 1-based
        total = np.zeros(len(ev), np.int64)
        ends = np.flatnonzero(last)
        starts = np.flatnonzero(first)
        for a, b in zip(starts, ends):
            total[a:b + 1] = k[b]
        split = np.zeros(len(ev), np.int8)
        split[(total >= 2) & (k == total)] = TEST
        split[(total >= 3) & (k == total - 1)] = VALID
        ev.split = split
    elif proto == "last-item":
        split = np.zeros(len(ev), np.int8)
        split[last] = TEST
        split[np.r_[last[1:], False] & ~last & ~first] = VALID          # second-to-last (users with >= 3 items)
        ev.split = split
        ev.session = np.cumsum(first) - 1                             # one continuous sequence per user
    elif proto == "session-next":
        train_sess = np.unique(ev.session[ev.split == TRAIN])
        n_valid = int(round(len(train_sess) * VALID_FRACTION))
        if n_valid:
            valid_sess = train_sess[-n_valid:]                        # sessions are numbered in file (time) order
            ev.split = ev.split.copy()
            ev.split[np.isin(ev.session, valid_sess) & (ev.split == TRAIN)] = VALID
    return ev


def sequences(ev, rows, proto, target=TEST, cap=0):
    """Per user: (rows, new_session, is_target, session, time, split) as numpy arrays.

    `target` picks which split holds the targets (TEST or VALID). Events of unindexed items are
    dropped from the input; targets among them count as misses (returned as `lost`). With
    target=VALID the test events are dropped from the input. cap > 0 keeps only the last `cap`
    events before each target as the input (last-item protocol: one target per user)."""
    keep = rows > 0
    starts = np.flatnonzero(np.r_[True, ev.user[1:] != ev.user[:-1]])
    ends = np.r_[starts[1:], len(ev)]
    seqs, lost = [], 0
    for a, b in zip(starts, ends):
        split = ev.split[a:b]
        k = keep[a:b].copy()
        if target == VALID:
            k &= split != TEST
        sess = ev.session[a:b]
        is_target = split == target
        if proto == "session-next":
            is_target = is_target & np.r_[False, sess[1:] == sess[:-1]]   # not a session's first event
        lost += int((is_target & ~k).sum())
        r, s, t, tm, spl = rows[a:b][k], sess[k], is_target[k], ev.time[a:b][k], split[k]
        if cap and proto == "last-item" and t.any():
            p = int(np.flatnonzero(t)[0])
            lo = max(0, p - cap)
            r, s, t, tm, spl = r[lo:p + 1], s[lo:p + 1], t[lo:p + 1], tm[lo:p + 1], spl[lo:p + 1]
        if len(r) == 0:
            continue
        ns = np.r_[1.0, (s[1:] != s[:-1]).astype(np.float32)].astype(np.float32)
        seqs.append((r, ns, t, s, tm, spl))
    return seqs, lost


def training_part(seq, include_valid=False):
    """The events of one user that training may see: split TRAIN (and VALID when asked)."""
    r, ns, t, s, tm, spl = seq
    m = (spl == TRAIN) | ((spl == VALID) if include_valid else False)
    return m


@torch.no_grad()
def model_ranks(model, seqs, reset_sessions=False, batch=512, exclude_seen=False, exclude_history=False):
    """Rank of every target from the state before it. reset_sessions: forget everything at each
    session start (session-only use of the same model). exclude_seen: items the user had before
    the target, other than the target itself, are removed from the ranking. exclude_history: every
    item of the input before the target is removed, the target too if it repeats one (exactly as
    S3-Rec / ICLRec score their full ranking)."""
    model.eval()
    out = []
    for a in range(0, len(seqs), batch):
        chunk = [s for s in seqs[a:a + batch] if s[2].any()]
        if not chunk:
            continue
        L = max(len(s[0]) for s in chunk)
        B = len(chunk)
        item = torch.zeros(B, L, dtype=torch.long)
        ns = torch.ones(B, L)
        tgt = torch.zeros(B, L, dtype=torch.bool)
        gap = torch.zeros(B, L)
        for j, sq in enumerate(chunk):
            r, n, t, tm = sq[0], sq[1], sq[2], sq[4]
            item[j, :len(r)] = torch.from_numpy(r)
            ns[j, :len(r)] = torch.from_numpy(n)
            tgt[j, :len(r)] = torch.from_numpy(t)
            gap[j, 1:len(tm)] = torch.from_numpy((np.diff(tm) / 3600.0).astype(np.float32))
        state = torch.zeros(B, model.state_size)
        last_t = torch.tensor([int(np.flatnonzero(s[2]).max()) for s in chunk])
        for t in range(int(last_t.max()) + 1):
            if reset_sessions:
                state = state * (1 - ns[:, t:t + 1])
            if tgt[:, t].any():
                idx = tgt[:, t].nonzero().squeeze(1)
                lg = model.logits(state[idx], ns[idx, t], gap[idx, t]).numpy()
                if exclude_seen or exclude_history:
                    for j, b in enumerate(idx.tolist()):
                        seen = item[b, :t].numpy()
                        if exclude_seen:
                            seen = seen[seen != item[b, t].item()]
                        lg[j, seen[seen > 0]] = -np.inf
                out.extend(target_ranks(lg, item[idx, t].numpy()).tolist())
            state = model.advance(state, item[:, t], ns[:, t], gap[:, t])
    return np.array(out, dtype=np.int64)


class Baselines:
    """MostPopular, S-POP, item-kNN, SKNN and V-SKNN fitted on the training sessions."""

    def __init__(self, seqs, n_rows, sample=1000, k=100):
        """seqs: from `sequences` (with times). Training sessions are numbered by start time,
        so a larger session id is a more recent session."""
        self.n = n_rows
        self.sample, self.k = sample, k
        counts = np.zeros(n_rows)
        sessions = []                                   # (start time, order, items)
        for r, _, t, s, tm, spl in seqs:
            m = spl == TRAIN
            rr, ss, tt = r[m], s[m], tm[m]
            np.add.at(counts, rr, 1)
            for g in np.unique(ss):
                sel = ss == g
                sessions.append((float(tt[sel].min()), len(sessions), np.unique(rr[sel])))
        sessions.sort(key=lambda x: (x[0], x[1]))
        rows = np.concatenate([np.full(len(x[2]), i) for i, x in enumerate(sessions)]) if sessions else np.zeros(0, int)
        cols = np.concatenate([x[2] for x in sessions]) if sessions else np.zeros(0, int)
        counts[0] = 0
        self.counts = counts
        X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sessions), n_rows))
        self.X = X
        self.Xc = X.tocsc()
        self.sess_len = np.asarray(X.sum(axis=1)).ravel()
        cnt = np.asarray(X.sum(axis=0)).ravel()
        C = (X.T @ X).tocsr()
        C.setdiag(0)
        C.eliminate_zeros()
        inv = 1.0 / np.sqrt(np.maximum(cnt, 1))
        self.sim = (sp.diags(inv) @ C @ sp.diags(inv)).tocsr()

    def pop(self):
        return self.counts.astype(np.float64)

    def spop(self, prefix):
        sc = self.counts / (self.counts.max() + 1)
        np.add.at(sc, prefix, 1.0)
        return sc

    def iknn(self, prefix):
        if len(prefix) == 0:
            return self.pop() * 1e-9
        return self.sim.getrow(prefix[-1]).toarray().ravel() + self.counts * 1e-12

    def _neighbours(self, prefix):
        items = np.unique(prefix)
        cand = np.unique(np.concatenate([self.Xc.indices[self.Xc.indptr[i]:self.Xc.indptr[i + 1]] for i in items]))
        return cand[-self.sample:]  # most recent sessions (session ids grow with time)

    def sknn(self, prefix, vsknn=False):
        if len(prefix) == 0:
            return self.pop() * 1e-9
        cand = self._neighbours(prefix)
        if len(cand) == 0:
            return self.pop() * 1e-9
        w = np.zeros(self.n)
        if vsknn:
            L = len(prefix)
            for p, i in enumerate(prefix):          # linear decay: the last item weighs 1
                w[i] = (p + 1) / L
        else:
            w[np.unique(prefix)] = 1.0
        Xn = self.X[cand]
        sims = Xn @ w
        if not vsknn:
            sims = sims / np.sqrt(len(np.unique(prefix)) * self.sess_len[cand])
        top = np.argsort(-sims, kind="stable")[:self.k]
        top = top[sims[top] > 0]
        scores = np.asarray(Xn[top].T @ sims[top]).ravel()
        return scores + self.counts * 1e-12

    def ranks(self, seqs, method, batch=256, exclude_seen=False):
        """Ranks of all targets for one baseline; the context is the current session's prefix."""
        out, rows, tg = [], [], []

        def flush():
            if rows:
                sc = np.stack(rows)
                sc[:, 0] = -np.inf
                out.extend(target_ranks(sc, np.array(tg)).tolist())
                rows.clear(); tg.clear()

        for r, _, t, s, *_ in seqs:
            for p in np.flatnonzero(t):
                prefix = r[:p][s[:p] == s[p]]
                if method == "MostPopular":
                    sc = self.pop()
                elif method == "S-POP":
                    sc = self.spop(prefix)
                elif method == "Item-kNN":
                    sc = self.iknn(prefix)
                elif method == "SKNN":
                    sc = self.sknn(prefix)
                elif method == "V-SKNN":
                    sc = self.sknn(prefix, vsknn=True)
                else:
                    raise ValueError(method)
                if exclude_seen:
                    sc = sc.copy()
                    seen = r[:p]
                    sc[seen[seen != r[p]]] = -np.inf
                rows.append(sc); tg.append(r[p])
                if len(rows) >= batch:
                    flush()
        flush()
        return np.array(out, dtype=np.int64)


BASELINES = ["MostPopular", "S-POP", "Item-kNN", "SKNN", "V-SKNN"]


def paired_diff(ranks_a, ranks_b, k=20, boot=1000, seed=0):
    """Mean difference a - b of Recall@k and MRR@k over the same targets, with a 95% bootstrap CI."""
    ra, rb = np.asarray(ranks_a), np.asarray(ranks_b)
    ha, hb = (ra <= k).astype(float), (rb <= k).astype(float)
    ma, mb = np.where(ra <= k, 1.0 / ra, 0.0), np.where(rb <= k, 1.0 / rb, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ra), (boot, len(ra)))
    out = {}
    for name, x in ((f"Recall@{k}", ha - hb), (f"MRR@{k}", ma - mb)):
        bs = x[idx].mean(axis=1)
        out[name] = {"diff": float(x.mean()), "ci": [float(np.percentile(bs, 2.5)), float(np.percentile(bs, 97.5))]}
    return out
