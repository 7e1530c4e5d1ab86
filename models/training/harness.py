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
                scored out at ranking (rule "history"), as the papers do. The files have order but
                no time: one user = one continuous sequence.
"""
import numpy as np
import scipy.sparse as sp
import torch

import data as D
from metrics import summary, target_ranks
from seen import SeenFilter

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


def _padded(chunk):
    """A chunk of sequences as padded tensors: item (B, L) int64, new_session, target flags, gap hours."""
    L, B = max(len(s[0]) for s in chunk), len(chunk)
    item = torch.zeros(B, L, dtype=torch.long)
    ns, gap = torch.ones(B, L), torch.zeros(B, L)
    tgt = torch.zeros(B, L, dtype=torch.bool)
    for j, sq in enumerate(chunk):
        r, n, t, tm = sq[0], sq[1], sq[2], sq[4]
        item[j, :len(r)] = torch.from_numpy(r)
        ns[j, :len(r)] = torch.from_numpy(n)
        tgt[j, :len(r)] = torch.from_numpy(t)
        gap[j, 1:len(tm)] = torch.from_numpy((np.diff(tm) / 3600.0).astype(np.float32))
    return item, ns, tgt, gap


@torch.no_grad()
def model_ranks(model, seqs, reset_sessions=False, batch=512, rule=None, seen_table=None):
    """Rank of every target from the state before it, in target order (sequence, then position: the
    order of `ranks_by_rule`, so that every method's ranks pair up target by target).
    reset_sessions: forget everything at each session start (session-only use of the same model).
    rule: a RULES name applied as `ranks_under` does (a target the rule leaves out is a miss) to the
    items the system remembers: with reset_sessions only those of the current session, since a
    system without memory has no others; "history" without reset is the S3-Rec / ICLRec masking.
    rule="seen": the items the user's seen-items filter holds are left out (seen.py, as the API's
    `exclude_seen=true`), the filter fed with every event the system remembers; seen_table is
    seen.row_positions(item ids)."""
    model.eval()
    out, keys = [], []
    for a in range(0, len(seqs), batch):
        order = [j for j in range(len(seqs[a:a + batch])) if seqs[a + j][2].any()]
        chunk = [seqs[a + j] for j in order]
        if not chunk:
            continue
        item, ns, tgt, gap = _padded(chunk)
        state = torch.zeros(len(chunk), model.state_size)
        start = np.zeros(len(chunk), np.int64)          # first event the system remembers, per row
        last_t = max(int(np.flatnonzero(s[2]).max()) for s in chunk)
        filters = [SeenFilter() for _ in chunk] if rule == "seen" else None
        for t in range(last_t + 1):
            if reset_sessions:
                state = state * (1 - ns[:, t:t + 1])
                start = np.where(ns[:, t].numpy() > 0.5, t, start)
                if filters:
                    filters = [SeenFilter() if ns[b, t] > 0.5 else f for b, f in enumerate(filters)]
            if tgt[:, t].any():
                idx = tgt[:, t].nonzero().squeeze(1)
                lg = model.logits(state[idx], ns[idx, t], gap[idx, t]).numpy()
                targets = item[idx, t].numpy()
                if filters:
                    masks = np.stack([filters[b].members(seen_table) for b in idx.tolist()])
                    out.append(ranks_masked(lg, targets, masks))
                elif rule is not None:
                    out.append(ranks_under(lg, targets, [item[b, start[b]:t].numpy() for b in idx.tolist()], rule))
                else:
                    out.append(target_ranks(lg, targets))
                keys.append(np.array([key(a + order[b], t) for b in idx.tolist()], np.int64))
            state = model.advance(state, item[:, t], ns[:, t], gap[:, t])
            if filters:
                for b in (item[:, t] > 0).nonzero().squeeze(1).tolist():
                    filters[b].add(seen_table[item[b, t]])
    if not out:
        return np.zeros(0, np.int64)
    return np.concatenate(out).astype(np.int64)[np.argsort(np.concatenate(keys), kind="stable")]


def target_places(seqs):
    """Each target's place in its session (0 = the session's first event), in target order (as
    model_ranks and ranks_by_rule)."""
    out = []
    for s in seqs:
        start = np.maximum.accumulate(np.where(s[1] > 0.5, np.arange(len(s[1])), 0))
        out.extend((np.flatnonzero(s[2]) - start[s[2]]).tolist())
    return np.array(out, dtype=np.int64)


def ranks_masked(scores, targets, masks):
    """1-based ranks of `targets` in `scores` (B, N) with the rows of `masks` (B, N) bool left out;
    a target left out (or row 0) is a miss (rank 10**9), as in ranks_under."""
    sc = np.array(scores, dtype=np.float64, copy=True)
    sc[masks] = -np.inf
    sc[:, 0] = -np.inf
    t = np.asarray(targets)
    gone = masks[np.arange(len(t)), t] | (t == 0)
    return np.where(gone, 10**9, target_ranks(sc, t)).astype(np.int64)


class Baselines:
    """MostPopular, S-POP, item-kNN, SKNN and V-SKNN fitted on the training sessions."""

    def __init__(self, seqs, n_rows, sample=1000, k=100, fit=(0,)):
        """seqs: from `sequences` (with times). Training sessions are numbered by start time,
        so a larger session id is a more recent session. fit: the splits fitted on (TRAIN to
        score validation targets; TRAIN and VALID, everything before the test, to score test)."""
        self.n = n_rows
        self.sample, self.k = sample, k
        counts = np.zeros(n_rows)
        sessions = []                                   # (start time, order, items)
        for r, _, t, s, tm, spl in seqs:
            m = np.isin(spl, fit)
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
        C = (C - sp.diags(C.diagonal())).tocsr()          # no self-similarity
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
        # k nearest; among equal similarities the most recent sessions (cand ascends with time):
        # on diginetica this is what reaches the reference V-SKNN (1,500 test sessions: .5135 / .1809
        # vs .5062 / .1790 with the oldest first)
        newest_first = np.arange(len(cand))[::-1]
        top = newest_first[np.argsort(-sims[newest_first], kind="stable")][:self.k]
        top = top[sims[top] > 0]
        scores = np.asarray(Xn[top].T @ sims[top]).ravel()
        return scores + self.counts * 1e-12

    def score_batches(self, seqs, method, batch=256):
        """(scores (b, N), targets, prefixes, keys) batches for one baseline over every target of `seqs`;
        the method's context is the current session's prefix, `prefixes` (for the ranking rules)
        the user's whole earlier input."""
        rows, tg, pre, ks = [], [], [], []
        for j, (r, _, t, s, *_) in enumerate(seqs):
            for p in np.flatnonzero(t):
                rows.append(self.score(method, r[:p][s[:p] == s[p]])); tg.append(r[p]); pre.append(r[:p])
                ks.append(key(j, p))
                if len(rows) >= batch:
                    yield np.stack(rows), np.array(tg), pre, np.array(ks, np.int64)
                    rows, tg, pre, ks = [], [], [], []
        if rows:
            yield np.stack(rows), np.array(tg), pre, np.array(ks, np.int64)

    def score(self, method, prefix):
        """Scores of every row after a session prefix."""
        if method == "MostPopular":
            return self.pop()
        if method == "S-POP":
            return self.spop(prefix)
        if method == "Item-kNN":
            return self.iknn(prefix)
        if method == "SKNN":
            return self.sknn(prefix)
        if method == "V-SKNN":
            return self.sknn(prefix, vsknn=True)
        raise ValueError(method)

    def ranks(self, seqs, method, batch=256, rule="none"):
        """Ranks of all targets for one baseline under a ranking rule (see RULES)."""
        return ranks_by_rule(self.score_batches(seqs, method, batch), [rule])[rule]


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


# ---------------------------------------------------------------------------------------------
# Ranking rules (the papers' masking and what the API serves), rankings from raw scores, the
# history-aware V-SKNN for user histories. Everything below takes embedding rows (0 = not indexed).

RING = 20        # the API's recent-item ring: the user's last 20 distinct items (src/domain/advance.ts)


RULES = {
    "history": "every item the user had before (the S3-Rec / ICLRec protocol's masking)",
    "recent20": "the user's last 20 distinct items (the API's default `exclude_recent`)",
    "current": "only the item being viewed (the user's last item)",
    "none": "nothing left out (repeats can be recommended)",
}


def excluded(rule, prefix):
    """Rows a ranking rule leaves out after `prefix` (the user's earlier rows, oldest first).
    Purchases, which the API never shows, do not occur in these data sets."""
    if rule == "none" or len(prefix) == 0:
        return prefix[:0]
    if rule == "history":
        return prefix
    if rule == "current":
        return prefix[-1:]
    if rule == "recent20":
        _, first = np.unique(prefix[::-1], return_index=True)   # most recent occurrence of each item
        return prefix[::-1][np.sort(first)][:RING]
    raise ValueError(rule)


def ranks_under(scores, targets, prefixes, rule):
    """1-based ranks of `targets` in `scores` (B, N) once `rule` removed its items (ties against the
    model; row 0 never ranks). A target the rule leaves out, or row 0, can never be shown: it
    counts as a miss (rank 10**9)."""
    sc = np.array(scores, dtype=np.float64, copy=True)
    sc[:, 0] = -np.inf
    gone = np.zeros(len(targets), bool)
    for j, p in enumerate(prefixes):
        ex = excluded(rule, p)
        if len(ex):
            sc[j, ex] = -np.inf
            gone[j] = targets[j] in set(ex.tolist())
    r = target_ranks(sc, targets)
    return np.where(gone | (np.asarray(targets) == 0), 10**9, r).astype(np.int64)


class HistoryKNN:
    """History-aware V-SKNN for user histories (Amazon, MovieLens): the neighbours of a user are the
    training histories that share the user's last `n` items (0: all), weighted by position (linear
    decay: the last item weighs 1, the n-th last 1/n); the `k` most similar neighbours vote for their
    items with their similarity. `norm="cosine"` divides a neighbour's similarity by the square root
    of its length (long histories match by chance), `"dot"` leaves it as V-SKNN does. A tiny
    popularity term breaks ties. n, k and norm are chosen on validation targets only."""

    def __init__(self, seqs, n_rows, fit=(0,)):
        """seqs: from `sequences`; user j's neighbour row holds its events of the `fit` splits."""
        hist = [sq[0][np.isin(sq[5], fit)] for sq in seqs]
        lens = np.array([len(h) for h in hist], np.int64)
        r = np.repeat(np.arange(len(hist)), lens)
        c = np.concatenate(hist) if hist else np.zeros(0, np.int64)
        X = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(hist), n_rows))
        X.sum_duplicates()
        X.data[:] = 1.0                                   # binary
        X = X.tocsr()
        self.X, self.n_rows = X, n_rows
        self.len = np.asarray(X.sum(axis=1)).ravel()
        self.counts = np.asarray(X.sum(axis=0)).ravel()
        self.counts[0] = 0
        self.tie = self.counts * 1e-9 / max(self.counts.max(), 1)

    def context(self, prefixes, n):
        """(B, N) sparse weights of each prefix's last n items, linear decay."""
        r, c, v = [], [], []
        for j, p in enumerate(prefixes):
            last = p[-n:] if n else p
            w = {}
            for i, it in enumerate(last.tolist()):
                if it > 0:
                    w[it] = (i + 1) / len(last)               # a repeated item keeps its latest weight
            r += [j] * len(w); c += list(w); v += list(w.values())
        return sp.csr_matrix((np.array(v, np.float32), (r, c)), shape=(len(prefixes), self.n_rows))

    def sims(self, prefixes, users, n):
        """(B, U) similarity of each prefix to every neighbour; a user is not their own neighbour."""
        S = (self.context(prefixes, n) @ self.X.T).toarray()
        if users is not None:
            S[np.arange(len(S)), users] = 0.0
        return S

    def from_sims(self, S, k, norm="dot"):
        """Scores (B, N) from the similarities: the k nearest neighbours vote."""
        if norm == "cosine":
            S = S / np.sqrt(np.maximum(self.len, 1))[None, :]
        k = min(k, S.shape[1])
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(S, top, axis=1)
        K = sp.csr_matrix((vals.ravel(), (np.repeat(np.arange(len(S)), k), top.ravel())), shape=S.shape)
        K.eliminate_zeros()
        return (K @ self.X).toarray().astype(np.float64) + self.tie[None, :]

    def scores(self, prefixes, users=None, n=5, k=100, norm="dot"):
        return self.from_sims(self.sims(prefixes, users, n), k, norm)

    def score_batches(self, seqs, n=5, k=100, norm="dot", index=None, batch=500):
        """(scores, targets, prefixes, keys) batches over every target of `seqs`; the context is the
        user's whole earlier input. index[j]: the neighbour row of seqs[j] (its position in the
        list the model was built from; default j), left out of its own neighbours."""
        for grid_batch in self.grid_batches(seqs, [(n, k, norm)], index, batch):
            yield grid_batch[(n, k, norm)]

    def grid_batches(self, seqs, configs, index=None, batch=500):
        """As score_batches for several (n, k, norm) at once: yields {config: (scores, targets,
        prefixes, keys)} per batch (similarities computed once per n)."""
        users, tg, pre, ks = [], [], [], []
        for j, sq in enumerate(seqs):
            for p in np.flatnonzero(sq[2]):
                users.append(j if index is None else index[j])
                tg.append(int(sq[0][p])); pre.append(sq[0][:p]); ks.append(key(j, p))
        for a in range(0, len(tg), batch):
            u, t, pr = np.array(users[a:a + batch]), np.array(tg[a:a + batch]), pre[a:a + batch]
            kk = np.array(ks[a:a + batch], np.int64)
            out = {}
            for n in sorted({c[0] for c in configs}):
                S = self.sims(pr, u, n)
                for c in configs:
                    if c[0] == n:
                        out[c] = (self.from_sims(S, c[1], c[2]), t, pr, kk)
            yield out


@torch.no_grad()
def model_score_batches(model, seqs, batch=512):
    """As `model_ranks` (same state walk, same targets), but yields the raw scores so any ranking
    rule can be applied: (logits (b, N) numpy, targets (b,), prefixes [b arrays of the earlier input
    rows], keys (b,)) per target time step; `key` names a target by (sequence, position)."""
    model.eval()
    for a in range(0, len(seqs), batch):
        order = [j for j in range(len(seqs[a:a + batch])) if seqs[a + j][2].any()]
        chunk = [seqs[a + j] for j in order]
        if not chunk:
            continue
        item, ns, tgt, gap = _padded(chunk)
        state = torch.zeros(len(chunk), model.state_size)
        last_t = max(int(np.flatnonzero(s[2]).max()) for s in chunk)
        for t in range(last_t + 1):
            if tgt[:, t].any():
                idx = tgt[:, t].nonzero().squeeze(1)
                lg = model.logits(state[idx], ns[idx, t], gap[idx, t]).numpy()
                yield (lg, item[idx, t].numpy(), [chunk[b][0][:t] for b in idx.tolist()],
                       np.array([key(a + order[b], t) for b in idx.tolist()], np.int64))
            state = model.advance(state, item[:, t], ns[:, t], gap[:, t])


def key(j, p):
    """A target's identity: sequence j of `sequences`' list, position p in it."""
    return (int(j) << 24) | int(p)


def ranks_by_rule(score_batches, rules):
    """{rule: ranks} over every target of an iterator of (scores, targets, prefixes, keys)
    batches, in key order, so that every method's ranks line up target by target."""
    out, keys = {r: [] for r in rules}, []
    for sc, tg, pre, ks in score_batches:
        keys.append(ks)
        for r in rules:
            out[r].append(ranks_under(sc, tg, pre, r))
    order = np.argsort(np.concatenate(keys), kind="stable") if keys else np.zeros(0, np.int64)
    return {r: (np.concatenate(v)[order] if v else np.zeros(0, np.int64)) for r, v in out.items()}
