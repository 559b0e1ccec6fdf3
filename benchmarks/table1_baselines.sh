#!/usr/bin/env bash
# Table I for Slicer's three baselines (FBS, GFS, WS) on five held-out phantoms at the paper's slice count.
# Usage, from the repository root: [JOBS=2] bash benchmarks/table1_baselines.sh [DATA_DIR] [OUT_DIR] [IN_PLANE]
# Cases: phantom subjects 1000-1004, 1400 x IN_PLANE x IN_PLANE (the paper's 1400 slices; default 128).
# One thread per process (ITK and torch); JOBS processes share the cases (each writes part CSVs, merged at
# the end by results_table.py into the same CSV and plot that one compare-set run would write).
# GFS and WS run on Slicer's auto-complete crop (the seeds' box + 10 %): under the paper protocol that is
# nearly the whole sweep, and the float watershed is most of the time (about 9 min per muscle at 256).
# At 128 Fill between slices lands just below the calibration band (Dice 0.851); at 256 it is in the band.
set -euo pipefail
N=${3:-128}
D=${1:-.data/t1400-$N}
O=${2:-benchmarks/results}
JOBS=${JOBS:-1}
export OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1
SUBJECTS=(1000 1001 1002 1003 1004)
P="$D/parts"
mkdir -p "$D" "$O" "$P"
for s in "${SUBJECTS[@]}"; do
  [ -f "$D/s$s/reference.seg.nrrd" ] || ifssnet phantom "$D/s$s" --seed "$s" --shape 1400 "$N" "$N"
done
job() {  # job J: the subjects i with i % JOBS == J, both protocols
  local dirs=() i
  for i in "${!SUBJECTS[@]}"; do (( i % JOBS == $1 )) && dirs+=("$D/s${SUBJECTS[$i]}"); done
  for protocol in paper 3-seeds; do
    ifssnet compare-set "${dirs[@]}" --methods fbs,gfs,ws --protocol "$protocol" --csv "$P/$protocol.job$1.csv"
  done
}
pids=()
for ((j = 0; j < JOBS; j++)); do job "$j" > "$P/job$j.log" 2>&1 & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
for protocol in paper 3-seeds; do
  python benchmarks/results_table.py "$P/$protocol".job*.csv --by-muscle --merge "$O/table1-1400x$N-$protocol.csv" \
    --plot "$O/table1-1400x$N-$protocol.png" --title "${#SUBJECTS[@]} cases, 1400 x $N x $N, protocol $protocol"
done
