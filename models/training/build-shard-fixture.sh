#!/bin/sh
# Rebuild test/fixtures/shard-model: one small synthetic model (2,000 items, dim 32) exported twice,
# whole (single/) and in 3 item shards (sharded/), so the worker test can check that the merged
# top-k of the shards is the single-isolate top-k (test/worker/shards.test.ts). About 20 s.
set -e
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
PY=/usr/bin/python3
$PY models/training/synthetic.py --items 2000 --users 4000 --seed 7 --out "$tmp" >/dev/null
OMP_NUM_THREADS=1 $PY models/training/train.py --ndjson "$tmp/events.ndjson" --name synthetic-2k --out "$tmp/ck.pt" \
  --kind hrnn --gap --dim 32 --epochs 2 --min-count 1 --threads 1 --seed 1 | tail -1
out=test/fixtures/shard-model
rm -rf "$out" && mkdir -p "$out"
$PY models/training/export.py --ckpt "$tmp/ck.pt" --out "$out/single" --name syn2k --fp16 --similar yes | tail -1
$PY models/training/export_shards.py --ckpt "$tmp/ck.pt" --out "$out/sharded" --name syn2k --fp16 --shards 3 | tail -1
cp "$tmp/catalog.ndjson" "$out/catalog.ndjson"
rm -rf "$tmp"
