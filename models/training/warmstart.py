"""Warm start: a model to continue training from, built from an exported model folder (what the
registry serves) or a checkpoint, with its item table grown to a new item index.

    model, ids, manifest = from_folder("models/ml-small")          # weights back from the ONNX files
    model2, ids2, report = grow(model, ids, new_ids, category_of)  # known items keep their rows

An exported folder holds every trained parameter as an ONNX initializer named after its PyTorch
parameter (`model.<name>`, `<name>__fp16` when stored as float16), so the network is rebuilt from
`manifest.training.config` and those tensors; parameters the graphs do not carry (none for the
current model) keep their fresh initialisation and are listed in the report.

New items get rows initialised from the items of their category (the mean of those rows and item
biases, walking up the category path until a level has known items), else from the mean of all
known rows. That puts a new arrival where its neighbours are, so it can be recommended before it
has much training signal.
"""
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
from model import ModelConfig, build, without_term  # noqa: E402


def folder_tensors(folder):
    """Every initializer named `model.*` in the folder's graphs, as float32 numpy arrays."""
    out = {}
    for g in ("step", "score", "similar"):
        path = os.path.join(folder, f"{g}.onnx")
        if not os.path.exists(path):
            continue
        m = onnx.load(path, load_external_data=True)
        for init in m.graph.initializer:
            name = init.name
            if name.endswith("__fp16"):
                name = name[: -len("__fp16")]
            if not name.startswith("model."):
                continue
            out.setdefault(name[len("model."):], numpy_helper.to_array(init).astype(np.float32))
    return out


def from_folder(folder):
    """(model in eval mode, item ids (row i+1), manifest) rebuilt from an exported model folder."""
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    cfg = dict(manifest["training"]["config"])
    cfg["n_items"] = manifest["items"]["rows"]
    # the item-transition term is counted after training, not trained: a warm start leaves it out
    # (retrain.py counts it again on the log)
    known = set(ModelConfig.__dataclass_fields__) - set(ModelConfig.TERM)
    model = build(ModelConfig(**{k: v for k, v in cfg.items() if k in known}))
    tensors = folder_tensors(folder)
    sd = model.state_dict()
    loaded, missing = [], []
    for name, value in sd.items():
        t = tensors.get(name)
        if t is not None and tuple(t.shape) == tuple(value.shape):
            sd[name] = torch.from_numpy(t)
            loaded.append(name)
        else:
            missing.append(name)
    model.load_state_dict(sd)
    model.eval()
    model.warm_report = {"loaded": loaded, "fresh": missing}
    return model, list(manifest["items"]["ids"]), manifest


def from_checkpoint(path):
    """(model, item ids, checkpoint dict) from a train.py checkpoint."""
    ck = torch.load(path, map_location="cpu")
    cfg, sd = without_term(ck["config"], ck["state_dict"])       # as from_folder: no item-transition term
    model = build(ModelConfig(**cfg))
    model.load_state_dict(sd)
    model.eval()
    return model, list(ck["item_ids"]), ck


def _category_rows(ids, category_of):
    """category prefix (tuple) -> list of rows of known items under it."""
    by = {}
    for n, i in enumerate(ids):
        path = tuple(category_of.get(i) or ())
        for d in range(1, len(path) + 1):
            by.setdefault(path[:d], []).append(n + 1)
    return by


def grow(model, ids, new_ids, category_of=None, cfg_overrides=None):
    """A copy of `model` whose item table holds `ids` (same rows) followed by `new_ids`.

    category_of: item id -> category path (list of str), for the new items and the known ones.
    Returns (model, ids + new_ids, report) where report says how each new row was initialised.
    """
    category_of = category_of or {}
    new_ids = [i for i in new_ids if i not in set(ids)]
    all_ids = list(ids) + new_ids
    cfg = dict(model.cfg.to_dict())
    cfg.update(cfg_overrides or {})
    cfg["n_items"] = len(all_ids) + 1
    grown = build(ModelConfig(**cfg))
    sd_old, sd = model.state_dict(), grown.state_dict()
    for k, v in sd_old.items():
        if k in ("emb.weight", "item_bias") or k not in sd or sd[k].shape != v.shape:
            continue
        sd[k] = v.clone()
    old_n = len(ids) + 1
    emb, bias = sd_old["emb.weight"], sd_old["item_bias"]
    sd["emb.weight"][:old_n] = emb
    sd["item_bias"][:old_n] = bias
    by_cat = _category_rows(ids, category_of)
    mean_all = (emb[1:].mean(0), bias[1:].mean())
    report = {"known": len(ids), "new": len(new_ids), "from_category": 0, "from_all": 0}
    for j, i in enumerate(new_ids):
        path = tuple(category_of.get(i) or ())
        rows = None
        for d in range(len(path), 0, -1):
            rows = by_cat.get(path[:d])
            if rows:
                break
        if rows:
            r = torch.tensor(rows)
            e, b = emb[r].mean(0), bias[r].mean()
            report["from_category"] += 1
        else:
            e, b = mean_all
            report["from_all"] += 1
        sd["emb.weight"][old_n + j] = e
        sd["item_bias"][old_n + j] = b
    grown.load_state_dict(sd)
    return grown, all_ids, report
