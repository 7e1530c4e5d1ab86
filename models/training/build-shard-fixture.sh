#!/bin/sh
# Rebuild the sharded-model fixtures: one small synthetic model (2,000 items, dim 32) exported twice,
# whole (single/) and in 3 item shards (sharded/), so the worker test can check that the merged
# top-k of the shards is the single-isolate top-k (test/worker/shards.test.ts):
#   test/fixtures/shard-model       a GRURec (its step graph takes the event's item row)
#   test/fixtures/shard-model-seq   a SeqRec, attention over its last 8 items, normalised scores (its
#                                   step graph also takes the rows of the items its state records)
# `sh build-shard-fixture.sh [hrnn|seq]` rebuilds one of them (default: both). About 20 s each.
set -e
cd "$(dirname "$0")/../.."
which=${1:-all}
tmp=$(mktemp -d)
PY=/usr/bin/python3
$PY models/training/synthetic.py --items 2000 --users 4000 --seed 7 --out "$tmp" >/dev/null
build() { # $1: fixture folder, then train.py's model options
  out=$1; shift
  OMP_NUM_THREADS=1 $PY models/training/train.py --ndjson "$tmp/events.ndjson" --name synthetic-2k --out "$tmp/ck.pt" \
    "$@" --dim 32 --epochs 2 --min-count 1 --threads 1 --seed 1 | tail -1
  rm -rf "$out" && mkdir -p "$out"
  $PY models/training/export.py --ckpt "$tmp/ck.pt" --out "$out/single" --name syn2k --fp16 --similar yes | tail -1
  $PY models/training/export_shards.py --ckpt "$tmp/ck.pt" --out "$out/sharded" --name syn2k --fp16 --shards 3 | tail -1
  cp "$tmp/catalog.ndjson" "$out/catalog.ndjson"
}
if [ "$which" = all ] || [ "$which" = hrnn ]; then build test/fixtures/shard-model --kind hrnn --gap; fi
if [ "$which" = all ] || [ "$which" = seq ]; then
  build test/fixtures/shard-model-seq --kind seq --attn 8 --norm-scale 16 --loss ce-sampled --n-sample 512 --logq --batch 64 --bptt 20
fi
rm -rf "$tmp"
