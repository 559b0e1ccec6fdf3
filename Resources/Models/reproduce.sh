#!/usr/bin/env bash
# Reproduce the shipped IFSS-Net weights (Resources/Models/ifssnet.pt) and their held-out scores.
# Usage: bash Resources/Models/reproduce.sh [DATA_DIR]   (2 CPU cores: about 1.5 h; a GPU: minutes)
# Every number in Resources/Models/README.md comes from these commands.
set -euo pipefail
DATA=${1:-.data}
N_TRAIN=${N_TRAIN:-40}          # phantom subjects 1..N_TRAIN (training)
TEST_SEEDS=${TEST_SEEDS:-"1000 1001 1002 1003 1004"}   # held out: never trained on
EPOCHS=${EPOCHS:-8}
STEPS=${STEPS:-75}
MODE=${MODE:-full}
OUT=${OUT:-Resources/Models/ifssnet.pt}

mkdir -p "$DATA/train" "$DATA/test"
# Training phantoms: most at the demo's scale (400 x 128 x 128, 1.1 mm), a quarter at 700 x 256 x 256
# (0.55 mm: finer slices and speckle that the working grid downsamples), so the network sees both.
for s in $(seq 1 "$N_TRAIN"); do
  shape="400 128 128"; [ $((s % 4)) -eq 0 ] && shape="700 256 256"
  [ -f "$DATA/train/s$s/reference.seg.nrrd" ] || ifssnet phantom "$DATA/train/s$s" --seed "$s" --shape $shape
done
for s in $TEST_SEEDS; do
  [ -f "$DATA/test/s$s/reference.seg.nrrd" ] || ifssnet phantom "$DATA/test/s$s" --seed "$s" --shape 400 128 128
done

ifssnet train "$DATA"/train/s* --mode "$MODE" --out "$OUT" --size 128 --width-mult 0.5 \
  --epochs "$EPOCHS" --steps "$STEPS" --run-length 24 --lr 1e-3 --seed 0 --checkpoint-every 25 \
  --log "${OUT%.pt}.log.jsonl"

# Held-out scores, both protocols, every method, mean +- sd over the test cases.
for protocol in 3-seeds paper; do
  ifssnet compare-set "$DATA"/test/s* --methods ifssnet,fbs,gfs,ws --protocol "$protocol" \
    --csv "${OUT%.pt}.heldout-$protocol.csv"
done
