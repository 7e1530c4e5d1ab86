#!/bin/sh
# Rebuild the bundled demo model models/ml-small from MovieLens latest-small (a few minutes on
# 2 cores): train with the hyper-parameters below, evaluate against the baselines, export
# (float32), check parity with the runtime, replay through it, write REPORT.md.
set -e
cd "$(dirname "$0")/../.."
FP16=0 sh models/training/benchmark.sh movielens-latest-small ml-small \
  --epochs 8 --batch 32 --bptt 10 --lr 5e-3 --dim 64 --min-count 3 --idle-gap 1800 --gap --seed 1
