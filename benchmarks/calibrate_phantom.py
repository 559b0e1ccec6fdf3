"""Calibration gate of the phantom: Slicer's Fill between slices under the paper's protocol.

For each muscle: 3 consecutive reference slices every 100 slices within the muscle's extent
(groups centred in the extent: ``ifssnet.seeds.protocol_slices(..., "paper")``), fed to the
comparison's own Fill between slices (``ifssnet.baselines.fbs``): ITK's MorphologicalContourInterpolator with Slicer's
settings (UseDistanceTransform off, HeuristicAlignment on, UseBallStructuringElement off,
Label 0, Axis -1). The filter only treats isolated labelled slices as key slices, so it gets the
middle slice of each group; the other seed slices are added back afterwards. Scored over the
reference's sweep extent, annotated slices excluded. The gate: mean Dice over GM, GL, SOL in
[0.86, 0.95] and mean volume error above 4 % (the paper's Table I: FBS Dice 0.918, 10.78 %).

    python benchmarks/calibrate_phantom.py --shape 1400 128 128 --seeds 0 1 2
    python benchmarks/calibrate_phantom.py --shape 1400 512 512 --seeds 0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ifssnet.baselines.fbs import fill_between_slices  # noqa: E402
from ifssnet.compare import reference_extent  # noqa: E402
from ifssnet.phantom import MUSCLES, make_phantom  # noqa: E402
from ifssnet.seeds import cut_seeds, protocol_slices, seed_groups  # noqa: E402


def score(pred: np.ndarray, ref: np.ndarray, extent, annotated):
    """Dice and volume error (%) over the slices ``extent[0]..extent[1]``, ``annotated`` slices left out.
    (Only these two: ``ifssnet.compare.score`` also computes surface distances, minutes at paper scale.)"""
    keep = np.zeros(ref.shape[0], bool)
    keep[extent[0]:extent[1] + 1] = True
    keep[list(annotated)] = False
    p, r = pred[keep] > 0, ref[keep] > 0
    inter = np.logical_and(p, r).sum()
    dice = 2 * inter / max(p.sum() + r.sum(), 1)
    verr = 100 * abs(int(p.sum()) - int(r.sum())) / max(int(r.sum()), 1)
    return float(dice), float(verr)


def calibrate(phantom, every=100, count=3, verbose=True):
    res = {}
    for name in MUSCLES:
        ref = phantom.labels[name]
        extent = reference_extent(ref)
        slices = protocol_slices(ref, "paper", count, every)
        t = time.time()
        pred = fill_between_slices(ref, cut_seeds(ref, slices), phantom.spacing_kji)
        d, v = score(pred, ref, extent, slices)
        res[name] = (d, v)
        if verbose:
            print(f"  {name:3s} extent {extent[0]:4d}-{extent[1]:4d} groups {len(seed_groups(slices)):2d}  "
                  f"Dice {d:.3f}  vol err {v:5.1f} %  (MCI {time.time() - t:.1f} s)", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(1400, 128, 128))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--spacing", type=float, default=None)
    ap.add_argument("--difficulty", type=float, default=1.0)
    ap.add_argument("--every", type=int, default=100)
    args = ap.parse_args(argv)
    all_d, all_v = [], []
    for seed in args.seeds:
        t = time.time()
        ph = make_phantom(seed, tuple(args.shape), args.spacing, difficulty=args.difficulty)
        print(f"seed {seed}: shape {ph.volume.shape} spacing {ph.spacing_kji[0]:.3f} mm, made in {time.time() - t:.1f} s",
              flush=True)
        res = calibrate(ph, args.every)
        d = np.mean([r[0] for r in res.values()])
        v = np.mean([r[1] for r in res.values()])
        print(f"  mean Dice {d:.3f}  mean vol err {v:.1f} %", flush=True)
        all_d.append(d)
        all_v.append(v)
        del ph
    D, V = float(np.mean(all_d)), float(np.mean(all_v))
    ok = 0.86 <= D <= 0.95 and V > 4.0
    print(f"ALL seeds {args.seeds}: mean Dice {D:.3f}, mean volume error {V:.1f} %  -> gate {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
