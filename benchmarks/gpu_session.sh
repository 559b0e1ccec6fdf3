#!/usr/bin/env bash
# One prepared call for a lent GPU machine (the device tool), sized to fit its 15 minutes of device time
# with room to rerun: the CUDA tests, issue 7's full-size benchmark, a time-limited training run, and
# the new weights against the shipped ones on the validation phantoms. Nothing here runs in CI.
#
#   here, once:   bash benchmarks/gpu_session.sh --prepare       # packs SimpleITK, slicerio, pynrrd into .whl/
#   device tool:  run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=590)
#   CPU dry run:  DEVICE=cpu SMALL=1 OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#   few-shot too: run(command="CHECKS=0 TRAIN_MIN=3 FEWSHOT_MIN=3 bash benchmarks/gpu_session.sh", ...)
#
# The machine has Python 3.12 with torch, numpy, scipy and tqdm, and no network; SimpleITK's wheel is
# too large to travel beside the repository (53 MB; 64 MiB in all), so --prepare packs it with xz (28 MB).
# Settings (environment): OUT (default runs/gpu), DEVICE (cuda), IMAGE_MIN (minutes of --mode image
# pretraining of the encoder, 1), TRAIN_MIN (minutes of full training from it, with --image-aux, 3),
# BATCH (runs per step, 8; on a GPU lowered to what its memory fits, FIT_BATCH=0 to keep it), RUN_LENGTH (slices per run, 100), FROM (a model to start from; default none: a new
# network of the shipped configuration, because the shipped weights' deep path is dead and hardly learns again),
# MASK_SEES_IMAGE (1, the default since session 9's weights: the new network's mask stream takes (image, mask)
# into its first layer, --mask-sees-image; 0: the paper's streams), VAL_EVERY (training steps between
# validations on phantoms 502-505, 200; the best network by Dice is the ifssnet-gpu.pt that comes back, and it is
# compared with the shipped one on phantoms 500 and 501, which did not take part in the choice), END_WEIGHT (the
# full training's --end-weight, 0: off), BURN_IN (its --burn-in, 0: off). Together (END_WEIGHT=16 BURN_IN=32) they
# made session 18's candidate from the shipped weights in 100 CPU steps of runs of 8 (model card, "Burn-in with the
# leak loss"); a long run from a new network with them was not measured, and from a new network BURN_IN=32 cost
# full supervision 0.20 held-out Dice at 300 CPU steps (session 25, model card "Runs that go out and come back"):
# keep it 0 unless FROM names a network that already propagates. TVERSKY_BETA (--tversky-beta, 0.5: the
# Dice loss; above 0.5 counters masks that come out too small), VAL_PROTOCOL (--val-protocol, both: the best
# network by the mean over 3-seeds and paper, since session 18's candidate won one and lost the other).
# FEWSHOT_MIN (0: off): minutes of a third stage, a few-shot network (--mode fewshot, 3.5 % of the slices
# annotated, decremental) trained with --cycle $FEWSHOT_CYCLE from a new network (never from the image stage,
# which sees every slice's label), chosen by validation as stage 2 is, and compared on 500 and 501 (model card,
# "Runs that go out and come back": at 300 CPU steps it lifted few-shot from 0.129 to 0.437 held-out Dice, 0.17
# behind full supervision; but on runs of 16 its masks grew faster than on runs of 8, session 28, so keep
# VAL_EVERY small for this stage). FEWSHOT_CYCLE (4): its --cycle weight; 4 rather than 1 slowed that growth at
# both run lengths (session 29), and 8 or 16 did no better than 4 on runs of 16 (session 30). The stage leaves out
# --fill-gap: on top of --cycle 4 it added 0.010 held-out Dice on runs of 8 (session 31). FEWSHOT_ARGS (empty):
# more options for that stage, e.g. "--decay-ratio 1 --paint-group 1 --fill-gap 40" (every sweep painted on
# single slices, the gaps filled; model card, "Painting every sweep on single slices"), where the machine has
# ITK: --fill-gap is Fill between slices, ITK's, which does not travel (1.5 GB). FEWSHOT_LABELS (empty): a
# carried folder of filled few-shot labels for training phantoms 1-40 at 400 x 128 x 128, made here; that stage
# then trains on them (without --fill-gap, which they already hold) and logs their Dice against this machine's
# references on their own slices (about 0.9 to 1; far lower means the phantoms differ here and there):
#   python benchmarks/fill_gap_labels.py .data/train/s* --fill-gap 40 --decay-ratio 1 --paint-group 1 --write .fglabels
#   run(command="CHECKS=0 TRAIN_MIN=3 FEWSHOT_MIN=3 FEWSHOT_CYCLE=0 FEWSHOT_LABELS=.fglabels bash benchmarks/gpu_session.sh",
#       carry=[".whl", ".fglabels"], timeout_s=590)
# Sessions 34-35 (runs of 8, 600 CPU steps, single painted slices, --fill-gap 40): the few-shot runs that score
# nearest full supervision were without --cycle and with "--burn-in 32 --empty-past-ends --end-weight 16" (held out
# 0.622, 0.012 below full supervision with burn-in; the leak past the ends halved): FEWSHOT_CYCLE=0
# FEWSHOT_ARGS="--burn-in 32 --empty-past-ends --end-weight 16 ..." (not tried here; --cycle refuses --burn-in).
# Not --end-weight for stage 2 from a new network: at 16 full supervision learnt to predict nothing (session 35).
# CHECKS (1; 0 skips
# the CUDA tests and the benchmark, to give the training their minutes).
# What comes back ($OUT, at most 8 files): session.log, bench-full-cuda.{md,json}, ifssnet-gpu.pt and
# ifssnet-gpu.ckpt.pt (to --resume here or on the next machine), train.jsonl, val-shipped.csv, val-gpu.csv;
# the image probe of the new weights (mask_copy_diagnostic.py --image-probe) is in session.log. With
# FEWSHOT_MIN, ifssnet-gpu-ws.pt and ifssnet-gpu-ws.ckpt.pt come back too, and the text files (the benchmark,
# train.jsonl, train-ws.jsonl, the val-*.csv) come packed in results.tar, to stay within 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    mkdir -p .whl && rm -f .whl/*
    py=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    python3 -m pip download -q "${py[@]}" -d .whl SimpleITK slicerio pynrrd
    tmp=$(mktemp -d)
    (cd "$tmp" && unzip -q "$OLDPWD"/.whl/simpleitk-*.whl)
    tar cf - -C "$tmp" . | xz -9 -T0 > .whl/simpleitk.tar.xz
    rm -rf "$tmp" .whl/simpleitk-*.whl
    du -sh .whl
    exit 0
fi

OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
IMAGE_MIN=${IMAGE_MIN:-1}
TRAIN_MIN=${TRAIN_MIN:-3}
BATCH=${BATCH:-8}
RUN_LENGTH=${RUN_LENGTH:-100}
VAL_EVERY=${VAL_EVERY:-200}
FROM=${FROM:-}
MASK_SEES_IMAGE=${MASK_SEES_IMAGE:-1}
END_WEIGHT=${END_WEIGHT:-0}
BURN_IN=${BURN_IN:-0}
TVERSKY_BETA=${TVERSKY_BETA:-0.5}
VAL_PROTOCOL=${VAL_PROTOCOL:-both}
FEWSHOT_MIN=${FEWSHOT_MIN:-0}
FEWSHOT_CYCLE=${FEWSHOT_CYCLE:-4}
FEWSHOT_ARGS=${FEWSHOT_ARGS:-}
FEWSHOT_LABELS=${FEWSHOT_LABELS:-}
CHECKS=${CHECKS:-1}
if [ -n "$FROM" ]; then START_ARGS=(--from "$FROM"); else START_ARGS=(--size 128 --width-mult 0.5); fi  # stage 1's start
[ -z "$FROM" ] && [ "$MASK_SEES_IMAGE" = 1 ] && START_ARGS+=(--mask-sees-image)
FEWSHOT_START=("${START_ARGS[@]}")              # stage 3 never starts from the image stage's labels
SMALL=${SMALL:-0}
mkdir -p "$OUT"
LOG="$OUT/session.log"
TXT="$OUT"                                       # where the text results go; packed into results.tar with stage 3
[ "$FEWSHOT_MIN" != 0 ] && TXT=/tmp/gpu-text && rm -rf "$TXT" && mkdir -p "$TXT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1          # progress bars would fill the log
PY=python3
step() { echo "== $(date -u +%T) $*" | tee -a "$LOG"; }
# train_stage LABEL MINUTES NAME ARGS...: MINUTES of `ifssnet train` into $OUT/NAME.pt with what both training
# stages share (session 9's --fixed-tversky --feedback-grad, cross-entropy, --image-aux 1, validation on
# VAL_CASES); ARGS give the mode, the start and the rest. The best network by validation Dice (session 10: one
# run's checkpoints differ a lot) becomes NAME.pt; NAME.ckpt.pt keeps the last step for --resume.
# A GPU that runs out of memory before the first checkpoint (exit 4, "The GPU ran out of memory") is tried again
# at half the batch.
train_stage() {
    local label=$1 minutes=$2 name=$3; shift 3
    local batch=$BATCH code
    while :; do
        timeout $(( minutes * 60 + 240 )) $IFSS train "${STAGE_CASES[@]}" --out "$OUT/$name.pt" --device "$DEVICE" \
            --batch "$batch" --run-length "$RUN_LENGTH" --epochs 4 --steps 1000 --lr-final 1e-4 --bce-weight 1 \
            --fixed-tversky --feedback-grad --image-aux 1 --checkpoint-every 50 --time-limit "$minutes" \
            --val "${VAL_CASES[@]}" --val-every "$VAL_EVERY" --val-protocol "$VAL_PROTOCOL" "$@" > /tmp/stage.log 2>&1
        code=$?
        cat /tmp/stage.log >> "$LOG"
        echo "$label exit $code (batch $batch)" >> "$LOG"
        if [ "$code" = 4 ] && [ "$batch" -gt 1 ] && [ ! -f "$OUT/$name.ckpt.pt" ] \
            && grep -q "GPU ran out of memory" /tmp/stage.log; then
            batch=$(( batch / 2 )); continue
        fi
        break
    done
    # A run that ended (or stopped at --time-limit) moved its best to NAME.best.pt; one that timeout killed left it
    # beside its checkpoint (NAME.ckpt.best.pt).
    if [ -f "$OUT/$name.ckpt.best.pt" ]; then mv -f "$OUT/$name.ckpt.best.pt" "$OUT/$name.pt"
    elif [ -f "$OUT/$name.best.pt" ]; then mv -f "$OUT/$name.best.pt" "$OUT/$name.pt"; fi
}

step "setup"
if [ -f .whl/simpleitk.tar.xz ]; then
    mkdir -p /tmp/site && tar xJf .whl/simpleitk.tar.xz -C /tmp/site
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
IFSS="$PY -m ifssnet.cli"
{ nvidia-smi -L 2>&1; $PY -c "import torch, SimpleITK, slicerio, ifssnet
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
print('SimpleITK', SimpleITK.Version.VersionString(), 'ifssnet', ifssnet.__version__)"; } >> "$LOG" 2>&1 || { cat "$LOG"; exit 1; }

if [ "$SMALL" = 1 ]; then
    SHAPE="48 64 64"; NTRAIN=4; BENCH=small; RUN_LENGTH=12; BATCH=2; VAL_EXTRA=(--segment GM)
    VAL_CASES=(/tmp/data/val/s502)                 # the CPU dry run validates within the stages' timeouts
else
    SHAPE="400 128 128"; NTRAIN=40; BENCH=full; VAL_EXTRA=(); VAL_CASES=(/tmp/data/val/s50{2,3,4,5})
fi

if [ "$CHECKS" = 1 ]; then
step "CUDA tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider Testing/test_propagate.py -k "cuda" >> "$LOG" 2>&1
echo "pytest exit $?" >> "$LOG"

step "benchmark ($BENCH, $DEVICE)"
timeout 300 $IFSS bench --size "$BENCH" --device "$DEVICE" --all-muscles --methods ifssnet,fbs \
    --presets accurate,balanced,fast --seed 1000 --json "$TXT/bench-full-cuda.json" --md "$TXT/bench-full-cuda.md" \
    >> "$LOG" 2>&1
echo "bench exit $?" >> "$LOG"
fi

# A step's working memory grows with BATCH x RUN_LENGTH (about 110 MB per slice of a run at size 128, width 0.5,
# measured on the CPU, ifssnet.train_memory): batch 8 x runs of 100 needs about 90 GB, more than an H100 holds.
# On a GPU the batch is lowered to what 80 % of its free memory fits (FIT_BATCH=0 keeps BATCH as given).
IMAGE_BATCH=$(( BATCH * 8 ))                       # the image stage's single windows: small, not fitted
if [ "$DEVICE" = cuda ] && [ "${FIT_BATCH:-1}" = 1 ]; then
    FIT=$($PY -c "import torch
from ifssnet.train_memory import network_training_bytes as need
per_run = need(128, 0.5, 1, $RUN_LENGTH) - need(128, 0.5, 0, $RUN_LENGTH)
print(max(1, min($BATCH, int(0.8 * torch.cuda.mem_get_info()[0] // per_run))))" 2>> "$LOG") && [ "$FIT" != "$BATCH" ] \
        && echo "batch $BATCH -> $FIT: runs of $RUN_LENGTH, what 80 % of the GPU's free memory fits" >> "$LOG" \
        && BATCH=$FIT
fi

step "training phantoms 1-$NTRAIN and validation phantoms 500-505 ($SHAPE)"
mkdir -p /tmp/data
seq 1 "$NTRAIN" | xargs -P 16 -I{} sh -c "OMP_NUM_THREADS=1 $IFSS phantom /tmp/data/train/s{} --seed {} --shape $SHAPE >/dev/null 2>&1"
for s in 500 501 502 503 504 505; do $IFSS phantom /tmp/data/val/s$s --seed $s --shape $SHAPE > /dev/null 2>&1; done
ls /tmp/data/train | wc -l >> "$LOG"
STAGE_CASES=(/tmp/data/train/s*)                # the cases train_stage trains on

# Two stages (model card, session 7): the encoder first learns to find the muscles in the image alone, then
# the whole network trains from it with the image-only head's loss kept on (--image-aux), so that the
# features stay. Decoupled weight decay (the default since session 8) keeps the deep path alive.
step "image pretraining for $IMAGE_MIN min from ${FROM:-a new network} (--mode image, batch $IMAGE_BATCH windows)"
rm -f /tmp/ifssnet-image.pt /tmp/ifssnet-image.ckpt.pt   # never start from an earlier run's files (train refuses to replace a stopped run)
timeout $(( IMAGE_MIN * 60 + 240 )) $IFSS train /tmp/data/train/s* --mode image "${START_ARGS[@]}" \
    --out /tmp/ifssnet-image.pt --device "$DEVICE" --batch "$IMAGE_BATCH" --epochs 1 --steps 100000 --lr 1e-3 \
    --seed 19 --checkpoint-every 200 --time-limit "$IMAGE_MIN" >> "$LOG" 2>&1
echo "image pretraining exit $?" >> "$LOG"
# Stage 2 starts from stage 1's file (not in $OUT: at most 8 files come back), or where stage 1 did.
[ -f /tmp/ifssnet-image.pt ] && START_ARGS=(--from /tmp/ifssnet-image.pt)

step "training for $TRAIN_MIN min from ${START_ARGS[*]} (batch $BATCH, runs of $RUN_LENGTH, --image-aux 1, session 9's --fixed-tversky --feedback-grad)"
train_stage train "$TRAIN_MIN" ifssnet-gpu --mode full "${START_ARGS[@]}" --lr 3e-4 --mask-jitter 0.5 \
    --jitter-first-only --end-weight "$END_WEIGHT" --burn-in "$BURN_IN" --tversky-beta "$TVERSKY_BETA" --seed 20 \
    --log "$TXT/train.jsonl"

if [ "$FEWSHOT_MIN" != 0 ]; then
    # --cycle takes no --burn-in (refused); --image-aux learns from the annotated slices only.
    if [ -n "$FEWSHOT_LABELS" ]; then             # the carried labels, in the order of the phantoms' folders
        STAGE_CASES=(); for d in /tmp/data/train/s*; do STAGE_CASES+=("$d/volume.nrrd:$PWD/$FEWSHOT_LABELS/${d##*/}.seg.nrrd"); done
        $PY -c "from ifssnet.bench import dice; from ifssnet.dataset import load_case
v = '/tmp/data/train/s1/volume.nrrd'; ref = load_case(v, '/tmp/data/train/s1/reference.seg.nrrd', 128)
own = load_case(v, '$FEWSHOT_LABELS/s1.seg.nrrd', 128)
print('carried labels of s1 against its reference here, on their slices:',
      {n: round(dice(own.masks[n][k], ref.masks[n][k]), 3) for n, k in own.known.items()})" >> "$LOG" 2>&1
    fi
    step "few-shot training for $FEWSHOT_MIN min from ${FEWSHOT_START[*]} (--mode fewshot --cycle $FEWSHOT_CYCLE $FEWSHOT_ARGS, batch $BATCH, runs of $RUN_LENGTH)"
    train_stage "few-shot train" "$FEWSHOT_MIN" ifssnet-gpu-ws --mode fewshot "${FEWSHOT_START[@]}" --lr 1e-3 \
        --cycle "$FEWSHOT_CYCLE" $FEWSHOT_ARGS --seed 70 --log "$TXT/train-ws.jsonl"
fi

step "validation: shipped and new weights, 3-seeds"
for tag in shipped gpu gpu-ws; do
    model=Resources/Models/ifssnet.pt; [ $tag != shipped ] && model="$OUT/ifssnet-$tag.pt"
    [ -f "$model" ] || continue
    timeout 240 $IFSS compare-set /tmp/data/val/s500 /tmp/data/val/s501 --methods ifssnet --model "$model" \
        --device "$DEVICE" --protocol 3-seeds "${VAL_EXTRA[@]}" --csv "$TXT/val-$tag.csv" >> "$LOG" 2>&1
    echo "compare-set $tag exit $?" >> "$LOG"
done
# Does the new network read the image? (the shipped one does not: model card, session 6). CPU, 4 runs.
if [ -f "$OUT/ifssnet-gpu.pt" ]; then
    step "image probe of the new weights"
    timeout 150 $PY benchmarks/mask_copy_diagnostic.py "$OUT/ifssnet-gpu.pt" --cases /tmp/data/val/s500 \
        /tmp/data/val/s501 --runs 4 --image-probe >> "$LOG" 2>&1
    echo "probe exit $?" >> "$LOG"
fi
[ "$TXT" != "$OUT" ] && tar cf "$OUT/results.tar" -C "$TXT" . && echo "results.tar: $(ls "$TXT" | tr '\n' ' ')" >> "$LOG"
step "done"
tail -n 40 "$LOG"
