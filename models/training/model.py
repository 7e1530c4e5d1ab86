"""User-interest models of the GRU4Rec family. Two designs share one serving contract:

- `SeqRec` (kind "seq", the design chosen on Amazon validation): one recurrent cell (GRU, or LSTM for comparison) over
  the user's whole history, never reset at session boundaries (the long-term memory), plus a ring
  of the last R item rows kept inside the state and read by attention at scoring time (the seeds'
  attention over memory). The session boundary and the time since the previous event are inputs of
  the cell and of the query, so the model learns how much a return after days changes the interest.
  State = [h (H) | c (H, LSTM only) | recent item rows (R, as floats, most recent first)].
- `GRURec` (kind "hrnn", the previous design, kept for comparison) below.

Both are trained with cross-entropy over all items (or sampled, for large catalogs) and exported by
export.py as the same three graphs.

GRURec: GRU with HRNN-style long-term user memory.

The whole per-user state is one flat float vector `state = [user | session]`:
- `session` (d): a GRU over the item embeddings of the current session (GRU4Rec).
- `user` (d): a second GRU that absorbs the finished session's final state at every
  session boundary (HRNN, Quadrana et al. 2017); it also initialises the next session.

memory_kind "gated" (issue 20) keeps the session path exactly the session-only model's (session GRU
from zeros at every session start) and lets the memory in only through terms that start at zero:
query = session query + g * tanh(long([user | session])), the gate g from the place in the session
and the gap at its start, and optionally a learned score on the logits of the last R items of all
sessions (`ring`). State = [user | session | events in session | log1p(session gap) | ring (R)].

The serving contract has two pure functions, exported as two ONNX graphs:
- step(state, item, new_session, gap) -> next_state      advance by one event
- score(state, new_session, gap, mask, k) -> top-k       rank all items from a state

`new_session` is 1.0 when the event (or the request) comes after the idle gap; `gap` is the
time since the user's previous event in hours. Both functions first apply the session
boundary, so training, export and serving agree on exactly one rule. Item row 0 is padding
and is never recommended.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    n_items: int            # rows in the embedding table, including padding row 0
    dim: int = 64           # embedding size = session state size = user state size
    dropout: float = 0.2    # on item embeddings and on the output state (training only)
    memory: bool = True     # False: the user memory is ignored (session-only baseline)
    memory_kind: str = "hrnn"  # "hrnn": user GRU folds each finished session; "carry": the session
                               # state carries over through a learned per-dimension retention gate;
                               # "gated": the session path is exactly the session-only model's and
                               # the user memory adds a term to its query through a gate that sees
                               # the place in the session and the gap (GRURec.query; issue 20)
    ring: int = 0           # hrnn "gated": R, the last R item rows of all sessions kept in the state
                            # (most recent first); each gets a learned per-slot score added to its
                            # logit (a learned repeat / novelty term, 0: none)
    long_term: bool = True  # hrnn "gated": False drops the gated long-term query term (the ring alone
                            # carries what earlier sessions held; an ablation)
    use_gap: bool = False   # the session boundary also sees log1p(hours since the previous event),
                            # so the memory can learn to fade over long absences
    kind: str = "hrnn"      # "hrnn": GRURec (previous design); "seq": SeqRec
    cell: str = "gru"       # SeqRec: "gru" or "lstm"
    attn: int = 0           # SeqRec: R, the recent items attended at scoring time (0: none)
    hidden: int = 0         # SeqRec: recurrent state size H (0: = dim)
    emb_dropout: float = None  # SeqRec: dropout on the input item embeddings alone (None: = dropout,
                               # today's behaviour); `dropout` then applies to h and the attended items
    heads: int = None       # SeqRec: attention heads over the recent items (None: one), each over
                            # dim / heads of the embedding with its own recency bias
    pos_emb: bool = None    # SeqRec: a learned embedding per recency slot added to the recent items'
                            # rows before attention (keys and values; None: only a bias per slot)
    norm_scale: float = None  # SeqRec: normalised scores (NISER / CORE): every item row is L2-normalised
                              # wherever it is read (GRU input, attention keys and values, output) and
                              # score = norm_scale * cos(query, row) + item_bias (None: plain dot product)
    trans_m: int = None     # SeqRec: an item-transition term added to the scores (transitions.py, set
                            # after training): each item's trans_m strongest successors in the training
                            # sessions, weighted by 1 / distance within trans_window events and
                            # normalised per item; score += trans_alpha * log1p(sum over the recent
                            # items j (most recent first) of trans_decay^j * w(item_j -> row) / trans_eps)
    trans_window: int = None
    trans_alpha: float = None
    trans_eps: float = None
    trans_decay: float = None

    # fields that older checkpoints do not have: left out of the dict while unset, so a model built
    # without them records exactly the configuration it recorded before
    # the item-transition term's fields (transitions.py): counted after training, not trained
    TERM = ("trans_m", "trans_window", "trans_alpha", "trans_eps", "trans_decay")
    OPTIONAL = ("emb_dropout", "heads", "pos_emb", "norm_scale") + TERM

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if not (k in self.OPTIONAL and v is None)}


def without_term(config, state_dict):
    """A checkpoint's (config dict, state_dict) without the item-transition term (transitions.py):
    the trained model alone, e.g. to warm-start from or to compare with."""
    return ({k: v for k, v in config.items() if k not in ModelConfig.TERM},
            {k: v for k, v in state_dict.items() if not k.startswith("trans_")})


class GRURec(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.emb = nn.Embedding(cfg.n_items, d)        # (N, d), shared by input and output
        self.session_gru = nn.GRUCell(d, d)
        self.user_gru = nn.GRUCell(d + (1 if cfg.use_gap else 0), d)
        self.init_session = nn.Linear(d, d)           # user -> first session state
        self.out = nn.Linear(2 * d, d)                # [session | user] -> query vector
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        if cfg.memory_kind == "gated":
            # long-term term of the query from [user | session]; zero at the start, so training
            # starts from the session-only model
            self.long = nn.Linear(2 * d, d)
            nn.init.zeros_(self.long.weight)
            nn.init.zeros_(self.long.bias)
            # per-dimension gate on it from the place features (see place_features), starting at 0.5
            self.gate = nn.Linear(self.N_PLACE, d)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
            if cfg.ring:
                # ring slot j's score: slot_w[j] (+ in_sess_w while the item is of this session)
                self.slot_w = nn.Parameter(torch.zeros(cfg.ring))
                self.in_sess_w = nn.Parameter(torch.zeros(1))
        if cfg.memory_kind == "carry":
            self.retain = nn.Parameter(torch.zeros(d))    # sigmoid(retain) of s is kept at a boundary
            self.fresh = nn.Parameter(torch.zeros(d))     # what replaces the forgotten part
            if cfg.use_gap:
                self.gap_w = nn.Parameter(torch.zeros(d))  # longer gaps retain less
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.emb.weight, std=0.05)
        pad = torch.zeros(cfg.n_items)
        pad[0] = float("-inf")
        self.register_buffer("pad_mask", pad, persistent=False)

    N_PLACE = 4                 # place features of the "gated" memory's gate (place_features)

    @property
    def gated(self) -> bool:
        # "gated" state layout; with memory=False (--no-memory) it is the session-only model plus a
        # ring cleared at every session start (the session-only baseline of the ring, no long-term term)
        return self.cfg.memory_kind == "gated"

    @property
    def state_size(self) -> int:
        # "gated" adds [events so far in this session | log1p(gap hours at the session start)] and the ring
        return 2 * self.cfg.dim + ((2 + self.cfg.ring) if self.gated else 0)

    def layout(self):
        d = self.cfg.dim
        out = [{"name": "user", "offset": 0, "size": d}, {"name": "session", "offset": d, "size": d}]
        if self.gated:
            out += [{"name": "session_events", "offset": 2 * d, "size": 1,
                     "note": "events so far in the current session"},
                    {"name": "session_gap", "offset": 2 * d + 1, "size": 1,
                     "note": "log1p(hours) between the previous session and this one"}]
            if self.cfg.ring:
                out.append({"name": "ring_items", "offset": 2 * d + 2, "size": self.cfg.ring,
                            "note": "embedding rows of the last R events of all sessions, most recent first, as float32; 0 = empty"})
        return out

    def split(self, state):
        d = self.cfg.dim
        return state[:, :d], state[:, d:2 * d]         # user (B, d), session (B, d)

    def extra(self, state):
        """"gated": (events in session (B, 1), log1p gap at the session start (B, 1), ring (B, R))."""
        d = self.cfg.dim
        return state[:, 2 * d:2 * d + 1], state[:, 2 * d + 1:2 * d + 2], state[:, 2 * d + 2:]

    @staticmethod
    def place_features(n, lg0):
        """Gate inputs: n (B, 1) events so far in the session, lg0 (B, 1) log1p(gap) at its start ->
        (B, 4) [first event | log1p(n) | lg0 | lg0 on the first event]."""
        first = (n < 0.5).to(n.dtype)
        return torch.cat([first, torch.log1p(n), lg0, first * lg0], dim=1)

    def boundary(self, state, new_session, gap=None):
        """Apply the session rule. state (B, S), new_session (B,) float 0/1, gap (B,) hours since
        the previous event (0 for none) -> (B, S)."""
        u, s = self.split(state)
        ns = new_session.unsqueeze(1)                  # (B, 1)
        lg = torch.log1p(torch.clamp(gap, min=0.0)).unsqueeze(1) if gap is not None else torch.zeros_like(ns)
        if self.gated:
            # user GRU as "hrnn"; the session restarts from zeros, as in the session-only model
            x = torch.cat([s, lg], dim=1) if self.cfg.use_gap else s
            n, lg0, ring = self.extra(state)
            if self.cfg.memory:
                u_next = ns * self.user_gru(x, u) + (1 - ns) * u
            else:                                      # session-only: no user, the ring holds this session only
                u_next, ring = torch.zeros_like(u), (1 - ns) * ring
            return torch.cat([u_next, (1 - ns) * s, (1 - ns) * n, ns * lg + (1 - ns) * lg0, ring], dim=1)
        if self.cfg.memory and self.cfg.memory_kind == "carry":
            u_next = ns * s + (1 - ns) * u                 # user = state at the last boundary
            a = self.retain - (F.softplus(self.gap_w) * lg if self.cfg.use_gap else 0.0)
            g = torch.sigmoid(a)
            s_init = g * s + (1 - g) * torch.tanh(self.fresh)
        elif self.cfg.memory:
            x = torch.cat([s, lg], dim=1) if self.cfg.use_gap else s
            u_next = ns * self.user_gru(x, u) + (1 - ns) * u
            s_init = torch.tanh(self.init_session(u_next))
        else:
            u_next = torch.zeros_like(u)
            s_init = torch.zeros_like(s)
        s_next = ns * s_init + (1 - ns) * s
        return torch.cat([u_next, s_next], dim=1)

    def advance(self, state, item, new_session, gap=None):
        """state (B, S), item (B,) int64, new_session (B,), gap (B,) hours -> next state (B, S)."""
        state = self.boundary(state, new_session, gap)
        u, s = self.split(state)
        x = self.drop(self.emb(item))                  # (B, d)
        if self.gated:
            n, lg0, ring = self.extra(state)           # one more event in the session; item enters the ring
            ring = torch.cat([item.to(state.dtype).unsqueeze(1), ring[:, :-1]], dim=1) if self.cfg.ring else ring
            return torch.cat([u, self.session_gru(x, s), n + 1, lg0, ring], dim=1)
        return torch.cat([u, self.session_gru(x, s)], dim=1)

    def query(self, state, new_session, gap=None):
        """The query vector that scores items: (B, S), (B,), (B,) -> (B, d)."""
        state = self.boundary(state, new_session, gap)
        u, s = self.split(state)
        if self.gated:
            return self.session_query(s) + (self.long_term(state) if self.cfg.memory and self.cfg.long_term else 0.0)
        if not self.cfg.memory:
            u = torch.zeros_like(u)
        return torch.tanh(self.out(self.drop(torch.cat([s, u], dim=1))))

    def session_query(self, s):
        """"gated": the session-only query from the session state (B, d) -> (B, d)."""
        return torch.tanh(self.out(self.drop(torch.cat([s, torch.zeros_like(s)], dim=1))))

    def long_term(self, state):
        """"gated": the gated long-term term of the query, from a state after the boundary rule:
        g * tanh(long([user | session])), g = sigmoid(gate(place features)) (B, d)."""
        u, s = self.split(state)
        n, lg0, _ = self.extra(state)
        g = torch.sigmoid(self.gate(self.place_features(n, lg0)))       # (B, d)
        return g * torch.tanh(self.long(self.drop(torch.cat([u, s], dim=1))))

    def ring_scores(self, state):
        """"gated" with a ring: the learned score of each item in the ring, added to its logit, from
        a state after the boundary rule -> (B, N) (0 for items not in the ring)."""
        n, _, ring = self.extra(state)
        R = self.cfg.ring
        in_sess = (torch.arange(R, dtype=state.dtype).unsqueeze(0) < n).to(state.dtype)   # (B, R)
        w = self.slot_w.unsqueeze(0) + self.in_sess_w * in_sess                          # (B, R)
        w = w * (ring > 0.5).to(state.dtype)                                              # empty slots: 0
        return torch.zeros(state.shape[0], self.cfg.n_items, dtype=state.dtype).scatter_add(1, ring.long(), w)

    def similar(self, item):
        """Cosine similarity of item rows to every item (the shared embedding): (B,) -> (B, N)."""
        e = F.normalize(self.emb.weight, dim=1)        # (N, d)
        return e[item] @ e.t() + self.pad_mask         # (B, N), padding row -inf

    def logits(self, state, new_session, gap=None):
        """Scores of every item for the next event. (B, S), (B,), (B,) -> (B, N)."""
        lg = F.linear(self.query(state, new_session, gap), self.emb.weight, self.item_bias) + self.pad_mask
        if self.gated and self.cfg.ring:
            lg = lg + self.ring_scores(self.boundary(state, new_session, gap))
        return lg

    def session_logits(self, state, new_session, gap=None):
        """"gated": scores from the session-only query alone (train.py --aux-session). -> (B, N)."""
        _, s = self.split(self.boundary(state, new_session, gap))
        return F.linear(self.session_query(s), self.emb.weight, self.item_bias) + self.pad_mask


class SeqRec(nn.Module):
    """One recurrent cell over the whole history + attention over the last R items (see top)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, H, R = cfg.dim, cfg.hidden or cfg.dim, cfg.attn
        self.H, self.R = H, R
        self.emb = nn.Embedding(cfg.n_items, d)                 # (N, d), shared by input and output
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn(d + 2, H, batch_first=True)             # input: [item | new_session | log1p(gap)]
        self.feat = nn.Linear(2, d)                            # request's [new_session | log1p(gap)] -> query
        self.nh = cfg.heads or 1
        if R:
            assert d % self.nh == 0, "dim must be a multiple of heads"
            self.att_q = nn.Linear(H, d)                        # h -> attention query over recent items
            # learned bias per recency slot (per head and slot with several heads)
            self.pos = nn.Parameter(torch.zeros(R) if self.nh == 1 else torch.zeros(self.nh, R))
            if cfg.pos_emb:
                self.pos_e = nn.Parameter(torch.zeros(R, d))    # per slot, added to its item's row
            self.out = nn.Linear(H + d, d)                      # [h | attended items] -> query
        else:
            self.out = nn.Linear(H, d)
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        self.drop = nn.Dropout(cfg.dropout)
        self.emb_drop = self.drop if cfg.emb_dropout is None else nn.Dropout(cfg.emb_dropout)
        nn.init.normal_(self.emb.weight, std=0.05)
        with torch.no_grad():
            self.emb.weight[0].zero_()
        pad = torch.zeros(cfg.n_items)
        pad[0] = float("-inf")
        self.register_buffer("pad_mask", pad, persistent=False)
        # --norm-scale: export.load stores the normalised rows in the table and sets this, so the
        # exported graphs read the table as it is (no normalisation of the table in any graph) and
        # only normalise and scale the query
        self.table_normed = False
        if cfg.trans_m:
            assert R, "the transition term reads the recent items: needs attn > 0"
            # successors of each item (N, trans_m): rows, and weights as uint8 codes times a scale per
            # item (weight = code * scale; 0 / 0 where an item has fewer), so the graph's constants
            # take 5 bytes a successor and nothing is cast at load (only the gathered ones, per query)
            self.register_buffer("trans_idx", torch.zeros(cfg.n_items, cfg.trans_m, dtype=torch.int32))
            self.register_buffer("trans_q", torch.zeros(cfg.n_items, cfg.trans_m, dtype=torch.uint8))
            self.register_buffer("trans_scale", torch.zeros(cfg.n_items))
            self.register_buffer("trans_slot", cfg.trans_decay ** torch.arange(R, dtype=torch.float32),
                                 persistent=False)                          # (R,) weight per recency slot

    # ---- item rows as the model reads them (normalised with cfg.norm_scale) ----
    @property
    def _norm(self) -> bool:
        return bool(self.cfg.norm_scale) and not self.table_normed

    def rows(self, idx):
        """Embedding rows of item indices idx (any shape) -> (..., d)."""
        e = self.emb(idx)
        return F.normalize(e, dim=-1) if self._norm else e

    def table(self):
        """The whole item table (N, d) as scored against (normalised rows with cfg.norm_scale)."""
        return F.normalize(self.emb.weight, dim=1) if self._norm else self.emb.weight

    def scale_query(self, q):
        """With cfg.norm_scale: norm_scale * q / |q|, so q . row = norm_scale * cos(q, row)."""
        return self.cfg.norm_scale * F.normalize(q, dim=-1) if self.cfg.norm_scale else q

    @property
    def n_rec(self) -> int:
        return self.H * (2 if self.cfg.cell == "lstm" else 1)

    @property
    def state_size(self) -> int:
        return self.n_rec + self.R

    def layout(self):
        out = [{"name": "h", "offset": 0, "size": self.H}]
        if self.cfg.cell == "lstm":
            out.append({"name": "c", "offset": self.H, "size": self.H})
        if self.R:
            out.append({"name": "recent_items", "offset": self.n_rec, "size": self.R,
                        "note": "embedding rows of the last R events, most recent first, as float32; 0 = empty"})
        return out

    @staticmethod
    def features(new_session, gap):
        """(…,) new_session 0/1, gap hours -> (…, 2)."""
        return torch.stack([new_session, torch.log1p(torch.clamp(gap, min=0.0))], dim=-1)

    # ---- one event at a time (serving, export, harness) ----
    def _cell(self, x, h, c):
        """Single step with the nn.GRU / nn.LSTM weights, written out so it exports to plain ops.
        x (B, d+2), h (B, H), c (B, H) or None -> h', c'."""
        w_ih, w_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0
        b_ih, b_hh = self.rnn.bias_ih_l0, self.rnn.bias_hh_l0
        gi = F.linear(x, w_ih, b_ih)
        gh = F.linear(h, w_hh, b_hh)
        if self.cfg.cell == "lstm":
            i, f, g, o = (gi + gh).chunk(4, dim=1)
            c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c2), c2
        ir, iz, inn = gi.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        n = torch.tanh(inn + r * hn)
        return (1 - z) * n + z * h, None

    def split(self, state):
        H = self.H
        h = state[:, :H]
        c = state[:, H:2 * H] if self.cfg.cell == "lstm" else None
        recent = state[:, self.n_rec:]
        return h, c, recent

    def advance(self, state, item, new_session, gap=None):
        """state (B, S), item (B,) int64, new_session (B,), gap (B,) hours -> next state (B, S)."""
        gap = torch.zeros_like(new_session) if gap is None else gap
        h, c, recent = self.split(state)
        x = torch.cat([self.emb_drop(self.rows(item)), self.features(new_session, gap)], dim=1)
        h2, c2 = self._cell(x, h, c)
        parts = [h2] + ([c2] if c2 is not None else [])
        if self.R:
            parts.append(torch.cat([item.to(state.dtype).unsqueeze(1), recent[:, :self.R - 1]], dim=1))
        return torch.cat(parts, dim=1)

    def _query(self, h, recent_rows, new_session, gap):
        """h (M, H), recent_rows (M, R) int64 (0 = empty), new_session (M,), gap (M,) -> (M, d)."""
        hq = self.drop(h)
        if self.R:
            keys = self.rows(recent_rows)                                   # (M, R, d)
            valid = (recent_rows > 0).to(h.dtype)                           # (M, R)
            if self.cfg.pos_emb:
                keys = keys + self.pos_e
            if self.nh == 1:
                a = (self.att_q(hq).unsqueeze(1) * keys).sum(-1) / math.sqrt(self.cfg.dim) + self.pos
                a = torch.softmax(a - (1 - valid) * 1e9, dim=1) * valid     # empty slots weigh 0
                ctx = (a.unsqueeze(-1) * keys).sum(1)                       # (M, d)
            else:                                                           # heads over slices of d
                M, R, d = keys.shape
                hd = d // self.nh
                kh = keys.reshape(M, R, self.nh, hd).permute(0, 2, 1, 3)    # (M, nh, R, hd)
                qh = self.att_q(hq).reshape(M, self.nh, 1, hd)
                a = (qh * kh).sum(-1) / math.sqrt(hd) + self.pos            # (M, nh, R)
                vm = valid.unsqueeze(1)
                a = torch.softmax(a - (1 - vm) * 1e9, dim=2) * vm
                ctx = (a.unsqueeze(-1) * kh).sum(2).reshape(M, d)           # (M, d)
            q = self.out(torch.cat([hq, self.drop(ctx)], dim=1))
        else:
            q = self.out(hq)
        return q + self.feat(self.features(new_session, gap))

    def query(self, state, new_session, gap=None):
        """The query as scored against the table's rows (scaled and normalised with cfg.norm_scale,
        so a sharded export's q . row + bias is the score)."""
        gap = torch.zeros_like(new_session) if gap is None else gap
        h, _, recent = self.split(state)
        return self.scale_query(self._query(h, recent.long(), new_session, gap))

    def logits(self, state, new_session, gap=None):
        """Scores of every item for the next event. (B, S), (B,), (B,) -> (B, N)."""
        lg = F.linear(self.query(state, new_session, gap), self.table(), self.item_bias) + self.pad_mask
        if self.cfg.trans_m:
            lg = lg + self.transition_scores(self.split(state)[2].long())
        return lg

    def transition_scores(self, recent):
        """The item-transition term (cfg.trans_m): recent (B, R) int64, most recent first, 0 = empty
        -> (B, N), 0 for every item that no recent item leads to."""
        RM = self.R * self.cfg.trans_m
        idx = self.trans_idx[recent].long().reshape(-1, RM)                          # (B, R * M)
        w = self.trans_q[recent].float() * (self.trans_scale[recent] * self.trans_slot).unsqueeze(2)
        w = w.reshape(-1, RM)                                                        # (B, R * M)
        zeros = torch.zeros(recent.shape[0], self.cfg.n_items, dtype=w.dtype)          # (B, N)
        sc = zeros.scatter_add(1, idx, w).gather(1, idx)          # (B, R * M): each successor's sum
        # log1p on the R * M sums only, written back to their rows (repeated rows get equal values)
        return zeros.scatter(1, idx, self.cfg.trans_alpha * torch.log1p(sc / self.cfg.trans_eps))

    def out_logits(self, q):
        """Scores of every item for the training path's queries q (M, d) (_query) -> (M, N), padding at -inf."""
        return F.linear(self.scale_query(q), self.table(), self.item_bias) + self.pad_mask

    def similar(self, item):
        e = F.normalize(self.emb.weight, dim=1)
        return e[item] @ e.t() + self.pad_mask

    # ---- whole sequences at once (training) ----
    def run(self, items, ns, gap, state):
        """items (B, T) int64 (0 = padding after a user's end), ns/gap (B, T), state (B, S) before
        the chunk -> per-position hidden h_t (B, T, H), recent rows after each event (B, T, R) and
        the state after the chunk (B, S)."""
        h0, c0, recent = self.split(state)
        x = torch.cat([self.emb_drop(self.rows(items)), self.features(ns, gap)], dim=2)
        if self.cfg.cell == "lstm":
            out, (hT, cT) = self.rnn(x, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
            parts = [hT[0], cT[0]]
        else:
            out, hT = self.rnn(x, h0.unsqueeze(0).contiguous())
            parts = [hT[0]]
        win = None
        if self.R:
            prev = recent.long().flip(1)                                       # oldest first
            P = torch.cat([prev, items], dim=1)                                # (B, R + T)
            win = P.unfold(1, self.R, 1)[:, 1:, :].flip(-1)                    # (B, T, R) most recent first
            parts.append(win[:, -1, :].to(state.dtype))
        return out, win, torch.cat(parts, dim=1)


def build(cfg: ModelConfig) -> nn.Module:
    """The model class a config names."""
    return SeqRec(cfg) if cfg.kind == "seq" else GRURec(cfg)
