#!/bin/sh
# Rebuild the bundled demo model models/ml-small from MovieLens latest-small (about 2 minutes on
# 2 cores): train with the hyper-parameters below, export, and check parity with the runtime.
set -e
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
mkdir -p .data
$PY models/training/train.py --dataset movielens-latest-small --out .data/ml-small.pt \
  --epochs 6 --batch 32 --bptt 10 --lr 5e-3 --dim 64 --min-count 3 --idle-gap 1800 --seed 1
$PY models/training/export.py --ckpt .data/ml-small.pt --out models/ml-small --name ml-small
npx tsx scripts/parity.ts models/ml-small
