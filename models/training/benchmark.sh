#!/bin/sh
# Train, evaluate (model + baselines), export and report one benchmark model in one command:
#
#   sh models/training/benchmark.sh <dataset> <model-name> [train.py options...]
#   sh models/training/benchmark.sh diginetica diginetica --loss ce-sampled --dim 100 --epochs 8 --batch 128 --lr 3e-3 --min-count 1
#   TRANS="--alpha 2 --eps 0.01" sh models/training/benchmark.sh ...   # with the item-transition term
#
# Writes models/<model-name>/ (fp16 export unless FP16=0; INT8=1 stores the item table as int8 rows; manifest with metrics, golden vectors, REPORT.md);
# checkpoints and raw metrics go to .data/. The served/committed models were built this way; the
# exact options of each are in its manifest (training.args) and REPORT.md.
set -e
cd "$(dirname "$0")/../.."
DATASET=$1; NAME=$2; shift 2
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
mkdir -p .data
HALF="--fp16"; [ "${FP16:-1}" = 0 ] && HALF=""
# INT8=1: the item table stored as int8 rows + a float32 scale each (export.py --int8-table), for
# catalogs whose float16 table would make weights.bin large; metrics are of exactly those weights.
[ "${INT8:-0}" = 1 ] && [ -n "$HALF" ] && HALF="--fp16 --int8-table"
if [ "${SKIP_TRAIN:-0}" = 1 ]; then
  echo "SKIP_TRAIN=1: using the existing .data/$NAME.pt"
else
  $PY models/training/train.py --dataset "$DATASET" --out ".data/$NAME.pt" "$@" | tee ".data/$NAME.train.log"
fi
CK=".data/$NAME.pt"
# TRANS="transitions.py options": the item-transition term added to the trained model (its
# settings, chosen on validation, are in models/README.md), written to .data/$NAME.trans.pt
if [ -n "${TRANS+x}" ]; then
  $PY models/training/transitions.py --ckpt "$CK" --out ".data/$NAME.trans.pt" $TRANS
  CK=".data/$NAME.trans.pt"
fi
$PY models/training/evaluate.py --dataset "$DATASET" --ckpt "$CK" $HALF --out ".data/$NAME.metrics.json" | tee ".data/$NAME.eval.log"
FP32=""
if [ -n "$HALF" ]; then
  $PY models/training/evaluate.py --dataset "$DATASET" --ckpt "$CK" --baselines none --out ".data/$NAME.metrics-fp32.json"
  FP32="--metrics-fp32 .data/$NAME.metrics-fp32.json"
fi
rm -rf "models/$NAME"
# export_shards.py chooses (--shards auto): the whole model in one isolate when it fits there with
# its similar graph (then this is export.py), else item shards (issue 18), which also serve similar items.
$PY models/training/export_shards.py --ckpt "$CK" --out "models/$NAME" --name "$NAME" $HALF --metrics ".data/$NAME.metrics.json"
npx tsx scripts/parity.ts "models/$NAME"
npx tsx scripts/eval.ts --dataset "$DATASET" --model "models/$NAME" | tee ".data/$NAME.runtime.log"
LINE=$(tail -n 1 ".data/$NAME.runtime.log")
SERVED=$(grep '^served' ".data/$NAME.runtime.log" | tail -n 1)
MORE=$(grep '^exclude_seen' ".data/$NAME.runtime.log" || true)
$PY models/training/report.py --model "models/$NAME" --metrics ".data/$NAME.metrics.json" \
  $FP32 --runtime-line "$LINE" --runtime-served "$SERVED" ${MORE:+--runtime-more "$MORE"} ${NOTES:+--notes "$NOTES"}
echo "$LINE"
