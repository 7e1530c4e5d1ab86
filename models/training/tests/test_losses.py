"""The sampled losses of train.py on hand-computed cases."""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from train import bpr_max  # noqa: E402


def test_bpr_max_matches_its_formula_on_a_hand_computed_case():
    # Row 0: target 2.0, negatives 1.0 and 0.0. Row 1: target 0.5, one negative 3.0, one masked out.
    logits = torch.tensor([[2.0, 1.0, 0.0], [3.0, 0.5, float("-inf")]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    s0 = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    l0 = -math.log(s0[0] * sig(1.0) + s0[1] * sig(2.0)) + 0.5 * (s0[0] * 1.0 + s0[1] * 0.0)
    l1 = -math.log(sig(0.5 - 3.0)) + 0.5 * 9.0
    assert abs(float(bpr_max(logits, 0.5)) - (l0 + l1)) < 1e-5


def test_bpr_max_falls_as_the_target_outscores_the_negatives_and_has_finite_gradients():
    low = torch.tensor([[0.0, 1.0, 1.0]], requires_grad=True)
    high = torch.tensor([[3.0, 1.0, float("-inf")]], requires_grad=True)
    assert float(bpr_max(high, 0.0)) < float(bpr_max(low, 0.0))
    bpr_max(high, 1.0).backward()
    assert torch.isfinite(high.grad).all()
