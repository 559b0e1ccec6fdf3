#!/usr/bin/env bash
# Reproduce the shipped IFSS-Net weights (Resources/Models/ifssnet.pt) and their held-out scores.
# Usage, from the repository root: bash Resources/Models/reproduce.sh [WORK_DIR]
# About 1.5 h on 2 CPU cores with one thread (OMP_NUM_THREADS=1 is faster than 2 when anything else runs).
# The weights were made in two stages with the code of two commits; this script runs each stage with the
# code of its own commit (git archive), so the data, the sampling and the schedule are the same.
# Stage 1 ran --epochs 6 --steps 150 and was stopped at step 250 while its learning rate was still 1e-3:
# --epochs 2 --steps 125 is the same 250 steps. Stage 2 ran --epochs 5 --steps 100 and was stopped at
# step 350, 50 steps after its drop to 1e-4: --epochs 14 --steps 25 is the same schedule.
set -euo pipefail
W=${1:-.repro}
mkdir -p "$W"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
snapshot() { rm -rf "$W/code-$1"; mkdir -p "$W/code-$1"; git archive "$1" ifssnet | tar -x -C "$W/code-$1"; }
snapshot 9fe2bcf; snapshot 30eec51; snapshot HEAD

# Training data: phantom subjects 1-40, 400 x 128 x 128, phantom code of commit 9fe2bcf.
for s in $(seq 1 40); do
  [ -f "$W/train/s$s/reference.seg.nrrd" ] || PYTHONPATH="$W/code-9fe2bcf" python -m ifssnet.cli phantom "$W/train/s$s" --seed "$s" --shape 400 128 128
done
PYTHONPATH="$W/code-9fe2bcf" python -m ifssnet.cli train "$W"/train/s* --mode full --out "$W/stage1.pt" \
  --size 128 --width-mult 0.5 --epochs 2 --steps 125 --run-length 16 --lr 1e-3 --seed 0 --checkpoint-every 25
PYTHONPATH="$W/code-30eec51" python -m ifssnet.cli train "$W"/train/s* --mode full --from "$W/stage1.pt" \
  --out "$W/ifssnet.pt" --epochs 14 --steps 25 --run-length 20 --lr 1e-3 --lr-final 1e-4 --seed 1 --checkpoint-every 25

# Held-out scores: subjects 1000-1004 with the current phantom, every method, both protocols.
for s in 1000 1001 1002 1003 1004; do
  [ -f "$W/test/s$s/reference.seg.nrrd" ] || PYTHONPATH="$W/code-HEAD" python -m ifssnet.cli phantom "$W/test/s$s" --seed "$s" --shape 400 128 128
done
for protocol in 3-seeds paper; do
  PYTHONPATH="$W/code-HEAD" python -m ifssnet.cli compare-set "$W"/test/s* --methods ifssnet,fbs,gfs,ws \
    --model "$W/ifssnet.pt" --protocol "$protocol" --csv "$W/heldout-$protocol.csv"
done
