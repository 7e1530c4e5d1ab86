"""GRU user-interest model (GRU4Rec family) with HRNN-style long-term user memory.

The whole per-user state is one flat float vector `state = [user | session]`:
- `session` (d): a GRU over the item embeddings of the current session (GRU4Rec).
- `user` (d): a second GRU that absorbs the finished session's final state at every
  session boundary (HRNN, Quadrana et al. 2017); it also initialises the next session.

The serving contract has two pure functions, exported as two ONNX graphs:
- step(state, item, new_session) -> next_state      advance by one event
- score(state, new_session, mask, k) -> top-k        rank all items from a state

`new_session` is 1.0 when the event (or the request) comes after the idle gap. Both
functions first apply the session boundary, so training, export and serving agree on
exactly one rule. Item row 0 is padding and is never recommended.
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

    def to_dict(self):
        return asdict(self)


class GRURec(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.emb = nn.Embedding(cfg.n_items, d)        # (N, d), shared by input and output
        self.session_gru = nn.GRUCell(d, d)
        self.user_gru = nn.GRUCell(d, d)
        self.init_session = nn.Linear(d, d)           # user -> first session state
        self.out = nn.Linear(2 * d, d)                # [session | user] -> query vector
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        if cfg.memory_kind == "carry":
            self.retain = nn.Parameter(torch.zeros(d))    # sigmoid(retain) of s is kept at a boundary
            self.fresh = nn.Parameter(torch.zeros(d))     # what replaces the forgotten part
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

    def boundary(self, state, new_session):
        """Apply the session rule. state (B, S), new_session (B,) float 0/1 -> (B, S)."""
        u, s = self.split(state)
        ns = new_session.unsqueeze(1)                  # (B, 1)
        if self.cfg.memory and self.cfg.memory_kind == "carry":
            u_next = ns * s + (1 - ns) * u                 # user = state at the last boundary
            g = torch.sigmoid(self.retain)
            s_init = g * s + (1 - g) * torch.tanh(self.fresh)
        elif self.cfg.memory:
            u_next = ns * self.user_gru(s, u) + (1 - ns) * u
            s_init = torch.tanh(self.init_session(u_next))
        else:
            u_next = torch.zeros_like(u)
            s_init = torch.zeros_like(s)
        s_next = ns * s_init + (1 - ns) * s
        return torch.cat([u_next, s_next], dim=1)

    def advance(self, state, item, new_session):
        """state (B, S), item (B,) int64, new_session (B,) -> next state (B, S)."""
        state = self.boundary(state, new_session)
        u, s = self.split(state)
        x = self.drop(self.emb(item))                  # (B, d)
        return torch.cat([u, self.session_gru(x, s)], dim=1)

    def query(self, state, new_session):
        """The query vector that scores items: (B, S), (B,) -> (B, d)."""
        state = self.boundary(state, new_session)
        u, s = self.split(state)
        if not self.cfg.memory:
            u = torch.zeros_like(u)
        return torch.tanh(self.out(self.drop(torch.cat([s, u], dim=1))))

    def logits(self, state, new_session):
        """Scores of every item for the next event. (B, S), (B,) -> (B, N)."""
        return F.linear(self.query(state, new_session), self.emb.weight, self.item_bias) + self.pad_mask


class StepGraph(nn.Module):
    """ONNX graph `step`: (state, item, new_session) -> next_state."""

    def __init__(self, model: GRURec):
        super().__init__()
        self.model = model

    def forward(self, state, item, new_session):
        return self.model.advance(state, item, new_session)


class ScoreGraph(nn.Module):
    """ONNX graph `score`: (state, new_session, mask, k) -> (scores, indices).

    mask (B, N) float: 1.0 excludes the item (scores -inf). k: int64 tensor of shape (1,).
    """

    def __init__(self, model: GRURec):
        super().__init__()
        self.model = model

    def forward(self, state, new_session, mask, k):
        logits = self.model.logits(state, new_session)
        logits = torch.where(mask > 0.5, torch.full_like(logits, float("-inf")), logits)
        scores, indices = torch.topk(logits, k, dim=1)
        return scores, indices
