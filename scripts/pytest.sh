#!/bin/sh
# Python side of `npm test`: Debian's python3 (torch, onnx, numpy, pytest) runs the training tests.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" -m pytest -q models/training/tests
