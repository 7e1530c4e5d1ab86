#!/bin/sh
# Rebuild the bundled demo model models/ml-small from MovieLens latest-small (a few minutes on
# 2 cores): GRU + attention over the last 20 items (the design chosen in models/README.md), epoch
# count chosen on the validation sessions, then refitted on training + validation; evaluate against
# the baselines, export (float32), check parity with the runtime, replay through it, write REPORT.md.
set -e
cd "$(dirname "$0")/../.."
FP16=0 sh models/training/benchmark.sh movielens-latest-small ml-small \
  --kind seq --attn 20 --dim 64 --dropout 0.1 --lr 5e-3 --batch 16 --bptt 50 --min-count 3 --idle-gap 1800 \
  --epochs 20 --patience 3 --refit --loss ce-full --seed 1
