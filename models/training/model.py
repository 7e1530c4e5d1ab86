"""GRU user-interest model (GRU4Rec family) with HRNN-style long-term user memory.

The whole per-user state is one flat float vector `state = [user | session]`:
- `session` (d): a GRU over the item embeddings of the current session (GRU4Rec).
- `user` (d): a second GRU that absorbs the finished session's final state at every
  session boundary (HRNN, Quadrana et al. 2017); it also initialises the next session.

The serving contract has two pure functions, exported as two ONNX graphs:
- step(state, item, new_session, gap) -> next_state      advance by one event
- score(state, new_session, gap, mask, k) -> top-k       rank all items from a state

`new_session` is 1.0 when the event (or the request) comes after the idle gap; `gap` is the
time since the user's previous event in hours. Both functions first apply the session
boundary, so training, export and serving agree on exactly one rule. Item row 0 is padding
and is never recommended.
"""
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
                               # state carries over through a learned per-dimension retention gate
    use_gap: bool = False   # the session boundary also sees log1p(hours since the previous event),
                            # so the memory can learn to fade over long absences

    def to_dict(self):
        return asdict(self)


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

    @property
    def state_size(self) -> int:
        return 2 * self.cfg.dim

    def split(self, state):
        d = self.cfg.dim
        return state[:, :d], state[:, d:]              # user (B, d), session (B, d)

    def boundary(self, state, new_session, gap=None):
        """Apply the session rule. state (B, S), new_session (B,) float 0/1, gap (B,) hours since
        the previous event (0 for none) -> (B, S)."""
        u, s = self.split(state)
        ns = new_session.unsqueeze(1)                  # (B, 1)
        lg = torch.log1p(torch.clamp(gap, min=0.0)).unsqueeze(1) if gap is not None else torch.zeros_like(ns)
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
        return torch.cat([u, self.session_gru(x, s)], dim=1)

    def query(self, state, new_session, gap=None):
        """The query vector that scores items: (B, S), (B,), (B,) -> (B, d)."""
        state = self.boundary(state, new_session, gap)
        u, s = self.split(state)
        if not self.cfg.memory:
            u = torch.zeros_like(u)
        return torch.tanh(self.out(self.drop(torch.cat([s, u], dim=1))))

    def similar(self, item):
        """Cosine similarity of item rows to every item (the shared embedding): (B,) -> (B, N)."""
        e = F.normalize(self.emb.weight, dim=1)        # (N, d)
        return e[item] @ e.t() + self.pad_mask         # (B, N), padding row -inf

    def logits(self, state, new_session, gap=None):
        """Scores of every item for the next event. (B, S), (B,), (B,) -> (B, N)."""
        return F.linear(self.query(state, new_session, gap), self.emb.weight, self.item_bias) + self.pad_mask
