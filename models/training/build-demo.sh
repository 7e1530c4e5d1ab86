#!/bin/sh
# Rebuild the bundled demo model models/ml-small from MovieLens latest-small (about 15 minutes on
# 2 shared cores): the design that MovieLens' validation sessions chose (models/README.md: on these
# rating sessions the HRNN and GRU + attention are within noise, the HRNN ahead), epoch count
# chosen on validation, then refitted on training + validation; evaluate against the baselines,
# export (float32), check parity with the runtime, replay through it, write REPORT.md.
set -e
cd "$(dirname "$0")/../.."
FP16=0 sh models/training/benchmark.sh movielens-latest-small ml-small \
  --kind hrnn --gap --dim 64 --dropout 0.2 --lr 5e-3 --batch 32 --bptt 10 --loss ce-full --cosine \
  --min-count 3 --idle-gap 1800 --epochs 12 --patience 3 --refit --seed 1
