#!/usr/bin/env bash
# Reproduce the shipped IFSS-Net weights (Resources/Models/ifssnet.pt) and their held-out scores.
# Usage, from the repository root: bash Resources/Models/reproduce.sh [WORK_DIR]
# About 1.8 h on 2 CPU cores with one thread (OMP_NUM_THREADS=1 is faster than 2 when anything else runs).
# The weights were made in three stages with the code of three commits; this script runs each stage with the
# code of its own commit (git archive), so the data, the sampling and the schedule are the same.
# Stage 1 ran --epochs 6 --steps 150 and was stopped at step 250 while its learning rate was still 1e-3:
# --epochs 2 --steps 125 is the same 250 steps. Stage 2 ran --epochs 5 --steps 100 and was stopped at
# step 350, 50 steps after its drop to 1e-4: --epochs 14 --steps 25 is the same schedule. Stage 3
# (session 2) ran --epochs 5 --steps 80 and was stopped at its step 80, still at its first learning
# rate: --epochs 1 --steps 80 is the same 80 steps. Its --mask-jitter deformed the first window's mask
# input only; later code deforms any window's, so stage 3 needs its own commit's code too.
set -euo pipefail
W=${1:-.repro}
mkdir -p "$W"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
snapshot() { rm -rf "$W/code-$1"; mkdir -p "$W/code-$1"; git archive "$1" ifssnet | tar -x -C "$W/code-$1"; }
# at COMMIT ARGS...: `ifssnet ARGS...` with that commit's code. The snapshot goes first on sys.path: with
# PYTHONPATH alone, `python -m` would put the working directory (this checkout's ifssnet/) before it.
at() { python -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from ifssnet.cli import main; sys.exit(main())' "$W/code-$1" "${@:2}"; }
snapshot 9fe2bcf; snapshot 30eec51; snapshot 2297dcb; snapshot 938d179; snapshot 0b06b06; snapshot 4786731
snapshot HEAD

# Training data: phantom subjects 1-40, 400 x 128 x 128, phantom code of commit 9fe2bcf.
for s in $(seq 1 40); do
  [ -f "$W/train/s$s/reference.seg.nrrd" ] || at 9fe2bcf phantom "$W/train/s$s" --seed "$s" --shape 400 128 128
done
at 9fe2bcf train "$W"/train/s* --mode full --out "$W/stage1.pt" \
  --size 128 --width-mult 0.5 --epochs 2 --steps 125 --run-length 16 --lr 1e-3 --seed 0 --checkpoint-every 25
at 30eec51 train "$W"/train/s* --mode full --from "$W/stage1.pt" \
  --out "$W/stage2.pt" --epochs 14 --steps 25 --run-length 20 --lr 1e-3 --lr-final 1e-4 --seed 1 --checkpoint-every 25
at 2297dcb train "$W"/train/s* --mode full --from "$W/stage2.pt" \
  --out "$W/ifssnet.pt" --epochs 1 --steps 80 --run-length 24 --lr 3e-4 --seed 3 --mask-jitter 0.5 --bce-weight 1 \
  --checkpoint-every 20

# Held-out scores: subjects 1000-1004 with the current phantom, every method, both protocols.
for s in 1000 1001 1002 1003 1004; do
  [ -f "$W/test/s$s/reference.seg.nrrd" ] || at HEAD phantom "$W/test/s$s" --seed "$s" --shape 400 128 128
done
for protocol in 3-seeds paper; do
  at HEAD compare-set "$W"/test/s* --methods ifssnet,fbs,gfs,ws \
    --model "$W/ifssnet.pt" --protocol "$protocol" --csv "$W/heldout-$protocol.csv"
done

# PG-Net (pgnet.pt, the learned baseline of issue 5): the same training subjects, code of commit 938d179,
# about 25 min on one thread; then its held-out scores under both protocols.
at 938d179 train "$W"/train/s* --arch pgnet --out "$W/pgnet.pt" \
  --epochs 5 --steps 250 --run-length 32 --lr 1e-3 --size 128 --seed 0 --bce-weight 1 --checkpoint-every 50
for protocol in 3-seeds paper; do
  IFSSNET_PGNET_MODEL="$W/pgnet.pt" at HEAD compare-set "$W"/test/s* \
    --methods pgnet --protocol "$protocol" --csv "$W/heldout-pgnet-$protocol.csv"
done

# 3-D U-Net (unet3d.pt, issue 5): same subjects, code of commit 0b06b06, 280 steps (about 45 min on one
# thread; the shipped run stopped at step 100 and resumed exactly), optimiser state left out of the file.
at 0b06b06 train "$W"/train/s* --arch unet3d --out "$W/unet3d.pt" --epochs 4 --steps 70 --run-length 32 \
  --lr 1e-3 --size 128 --seed 0 --checkpoint-every 20
for protocol in 3-seeds paper; do
  IFSSNET_UNET3D_MODEL="$W/unet3d.pt" at HEAD compare-set "$W"/test/s* --methods unet3d --protocol "$protocol" \
    --csv "$W/heldout-unet3d-$protocol.csv"
done

# IFSS-Net-WS (ifssnet-ws.pt): few-shot mode (3.5 % annotated slices, decremental over the subjects, which
# join in that order), the settings of stage 1 above (250 steps at lr 1e-3, runs of 16), code of commit
# 4786731; about 30 min on one thread. Then its held-out scores.
at 4786731 train "$W"/train/s* --mode fewshot --out "$W/ifssnet-ws.pt" --size 128 --width-mult 0.5 \
  --epochs 2 --steps 125 --run-length 16 --lr 1e-3 --lr-final 1e-3 --seed 0 --checkpoint-every 25
for protocol in 3-seeds paper; do
  at HEAD compare-set "$W"/test/s* --methods ifssnet --model "$W/ifssnet-ws.pt" --protocol "$protocol" \
    --csv "$W/heldout-ifssnet-ws-$protocol.csv"
done
