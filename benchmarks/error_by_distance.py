"""Where along the sweep a propagated mask goes wrong: its area and Dice by distance from the seeds, and its leak.

Runs ``compare-set``'s own comparison (the same seeds, propagation and scores; its rows can be written with
``--csv``, so one propagation gives both) and, for each muscle, splits the slices between the seeds and each end
of the reference into ``--bins`` bins of equal relative distance (0: next to the seeds, the last: at the muscle's
ends). Per bin it prints the predicted area over the reference's (1.00: the right size; above: too large) and the
bin's Dice, and per muscle the volume predicted past the reference's ends, % of the muscle's volume (the CSV's
``past_ends_pct``). Means over the cases, per muscle and over all.

    python benchmarks/error_by_distance.py .data/test/s100{0,1,2,3,4} --model runs/ul33/ifssnet.pt \\
        [--protocol 3-seeds] [--bins 5] [--csv OUT.csv]

A network that tracks the muscle keeps the area near 1 out to the ends; one that does not follow a muscle that
tapers towards its ends keeps the seeds' area, and its ratio grows bin by bin (session 34, model card).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence

import numpy as np


def distance_bins(pred: np.ndarray, ref: np.ndarray, seed_slices: Sequence[int], bins: int = 5) -> Dict[str, list]:
    """Area ratio and Dice of ``pred`` against ``ref`` (bool (K, J, I)) in ``bins`` bins of relative distance from
    the seeds' middle slice to each end of ``ref``'s extent (the seed slices themselves are left out).

    Returns ``{"area_ratio": [bins floats], "dice": [bins floats], "past_ends_pct": float}``; a bin with no
    slice is nan. Bin b holds the slices whose distance d, as a fraction of the way from the seeds to that side's
    end, has ``b <= d * bins < b + 1`` (the end slice itself goes in the last bin)."""
    from ifssnet.compare import past_ends_pct, reference_extent

    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    k0, k1 = reference_extent(ref)
    mid = int(sorted(seed_slices)[len(seed_slices) // 2])
    k = np.setdiff1d(np.arange(k0, k1 + 1), np.asarray(seed_slices, int))   # the scored slices
    span = np.maximum(np.where(k > mid, k1 - mid, mid - k0), 1)
    b = np.minimum((np.abs(k - mid) / span * bins).astype(int), bins - 1)
    p, r = pred[k], ref[k]
    per_slice = np.stack([p.sum(axis=(1, 2)), r.sum(axis=(1, 2)), (p & r).sum(axis=(1, 2))], axis=1)
    sums = np.zeros((bins, 3))                                    # predicted, reference, overlap voxels
    np.add.at(sums, b, per_slice)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1], np.nan)
        dice = np.where(sums[:, 0] + sums[:, 1] > 0, 2 * sums[:, 2] / (sums[:, 0] + sums[:, 1]), np.nan)
    return {"area_ratio": ratio.tolist(), "dice": dice.tolist(), "past_ends_pct": past_ends_pct(pred, ref, (k0, k1))}


def table(per_case: List[Dict[str, dict]], bins: int) -> str:
    """Markdown: per muscle and over all, the mean over cases of each bin's area ratio and Dice and of the leak."""
    muscles = sorted({m for c in per_case for m in c})
    head = (["muscle", "n"] + [f"area {b}" for b in range(bins)] + [f"Dice {b}" for b in range(bins)]
            + ["past ends %"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in muscles + ["all"]:
        rows = [c[m] for c in per_case for m in c if name in ("all", m)]
        area = np.nanmean([r["area_ratio"] for r in rows], axis=0)
        dice = np.nanmean([r["dice"] for r in rows], axis=0)
        past = float(np.mean([r["past_ends_pct"] for r in rows]))
        lines.append("| " + " | ".join([name, str(len(rows))] + [f"{v:.2f}" for v in area] + [f"{v:.3f}" for v in dice]
                                       + [f"{past:.1f}"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="IFSS-Net checkpoint (default: the shipped weights)")
    p.add_argument("--protocol", default="3-seeds")
    p.add_argument("--bins", type=int, default=5)
    p.add_argument("--csv", default=None, help="also write compare-set's rows (the same propagations) to this CSV")
    args = p.parse_args(argv)

    from ifssnet.compare import compare, load_case, write_csv

    rows, per_case = [], []
    for case in args.cases:
        vol, refs, spacing = load_case(case)
        out = compare(vol, refs, spacing, methods=["ifssnet"], protocol=args.protocol, keep_masks=True,
                      method_options={"ifssnet": {"model": args.model}} if args.model else None)
        per_case.append({r["muscle"]: distance_bins(r["mask"], refs[r["muscle"]], r["seed_slices"], args.bins)
                         for r in out if not r.get("error")})
        for r in out:
            r["case"] = str(case)
            r.pop("mask", None)
        rows.extend(out)
    if args.csv:
        write_csv(rows, args.csv)
    print(f"bins of distance from the seeds to the muscle's ends (0: next to the seeds, {args.bins - 1}: at the ends)")
    print(table(per_case, args.bins))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
