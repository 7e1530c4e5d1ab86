"""Rebuild a training checkpoint from an exported model folder (manifest + graphs + weights.bin), so a
committed model can be re-exported in another form (e.g. in item shards, export_shards.py) without
its original checkpoint.

    python3 models/training/ckpt_from_export.py --model models/diginetica --out /tmp/diginetica.pt

Every parameter is read back from the graphs' initializers (names `model.<param>`, float16 ones
suffixed `__fp16`), int8 tables expanded exactly as the runtime expands them. The checkpoint's item
counts are the manifest's popular list (other items count 0): enough for the popular fallback, not
a record of training.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
from model import ModelConfig, build  # noqa: E402


def expanded_weights(folder, m):
    """weights.bin as the graphs read it (int8 row tables expanded to float16)."""
    data = open(os.path.join(folder, m["weights"]["file"]), "rb").read()
    for t in m["weights"].get("int8_rows") or []:
        off, N, d = t["offset"], t["rows"], t["cols"]
        q = np.frombuffer(data, np.int8, N * d, t["packed_offset"]).reshape(N, d)
        pad = (-(N * d)) % 4
        s = np.frombuffer(data, "<f4", N, t["packed_offset"] + N * d + pad)
        table = (q.astype(np.float32) * s[:, None]).astype(np.float16).tobytes()
        data = data[:off] + table + data[t["packed_offset"] + N * d + pad + 4 * N:]
    if m["weights"].get("expanded_bytes"):
        assert len(data) == m["weights"]["expanded_bytes"], (len(data), m["weights"]["expanded_bytes"])
    return data


def initializers(path, blob):
    """name -> float32 array of a graph's initializers (external ones read from `blob`)."""
    g = onnx.load(path, load_external_data=False)
    out = {}
    for init in g.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            ext = {e.key: e.value for e in init.external_data}
            off, n = int(ext["offset"]), int(ext["length"])
            dt = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT64: np.int64}[init.data_type]
            arr = np.frombuffer(blob[off:off + n], dt).reshape(tuple(init.dims))
        else:
            arr = numpy_helper.to_array(init)
        out[init.name] = arr
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="exported model folder")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    args = p.parse_args(argv)
    m = json.load(open(os.path.join(args.model, "manifest.json")))
    blob = expanded_weights(args.model, m)
    found = {}
    for g in ("step", "score", "similar"):
        if g in m["graphs"]:
            found.update(initializers(os.path.join(args.model, m["graphs"][g]["file"]), blob))
    cfg = ModelConfig(**m["training"]["config"])
    model = build(cfg)
    sd = {}
    for key, ref in model.state_dict().items():
        arr = found.get(f"model.{key}__fp16", found.get(f"model.{key}"))
        if arr is None:
            raise SystemExit(f"{key}: not in the exported graphs")
        t = torch.from_numpy(np.array(arr, dtype=np.float32))
        if tuple(t.shape) != tuple(ref.shape):
            raise SystemExit(f"{key}: shape {tuple(t.shape)} in the graphs, {tuple(ref.shape)} in the model")
        sd[key] = t
    model.load_state_dict(sd)
    ids = m["items"]["ids"]
    pop = dict(zip(m["popular"]["ids"], m["popular"]["counts"]))
    tr = m["training"]
    ck = {"config": m["training"]["config"], "state_dict": sd, "item_ids": ids, "item_counts": [int(pop.get(i, 0)) for i in ids],
          "args": tr["args"], "dataset": tr["dataset"], "train_seconds": tr.get("train_seconds", 0.0), "history": tr.get("history", []),
          "metrics": m.get("metrics", {}), **({"data_end": tr["data_end"]} if tr.get("data_end") else {})}
    torch.save(ck, args.out)
    print(json.dumps({"out": args.out, "params": {k: list(v.shape) for k, v in sd.items()}}))


if __name__ == "__main__":
    main()
