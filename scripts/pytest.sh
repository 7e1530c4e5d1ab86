#!/bin/sh
# Python side of `npm test`: Debian's python3 (torch, onnx, numpy, pytest) runs the training tests.
# torch 1.13's ONNX exporter warns "shape inference of prim::Constant type is missing" for the
# constants it folds; the exported graphs are checked against golden vectors instead, so that one
# warning is not printed.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" -m pytest -q -W "ignore:The shape inference of prim:UserWarning" models/training/tests "$@"
