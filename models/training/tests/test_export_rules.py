"""Export choices that depend on the model's size."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from export import SIMILAR_MAX_FLOATS, with_similar  # noqa: E402
from model import ModelConfig, build  # noqa: E402


def test_the_similar_graph_is_left_out_only_for_tables_too_large_for_an_isolate():
    small = build(ModelConfig(n_items=12_093, dim=64, kind="seq", attn=20))     # amazon-beauty
    large = build(ModelConfig(n_items=43_098, dim=128, kind="seq", attn=20))    # diginetica
    assert 12_093 * 64 <= SIMILAR_MAX_FLOATS < 43_098 * 128
    assert with_similar(small) and not with_similar(large)
    assert with_similar(large, "yes") and not with_similar(small, "no")
