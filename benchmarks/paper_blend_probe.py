"""Why masks come out small under the ``paper`` protocol: the blend between seed groups, or the runs?

Under ``paper`` (3 slices every 100) a muscle has 2-3 seed groups. Between two groups a slice gets two
runs, forward from the group before it and backward from the group after it, and propagation keeps the
weighted mean of their probabilities (weights 1 / (1 + distance to the run's seed)) thresholded at 0.5;
past the outer groups (the tails) one run covers a slice, with no blend. Where two runs' masks are offset
from each other, their mean can fall under 0.5 over the part only one of them covers, so the blend keeps
about their intersection.

For every muscle of every case this propagates, in one batch, the muscle from all its groups (what a user
gets) and from each group alone (each alone gives exactly that group's runs in the full propagation, up to
the next group). It prints, per zone, the signed volume error (% of the reference's voxels in the zone) of:
the blend (``blend``), each direction alone (``fwd``: the run from the group before; ``bwd``: the run from
the group after) and their union (``union``). Seed slices are left out, as in ``ifssnet compare``.

    python benchmarks/paper_blend_probe.py .data/test/s100{0,1,2,3,4} [--model M] [--csv OUT.csv] [--blend max]

The ``fwd``, ``bwd`` and ``union`` columns do not depend on ``--blend``. Each group alone sets its own bar
for the stop at a muscle's end (a tenth of its painted area, not of all groups'), so a run alone can go a
little further than in the full propagation.
"""
from __future__ import annotations

import argparse
import csv

import numpy as np

ZONE_KINDS = ("between", "tails")


def zones(painted, K: int):
    """``{"between": [(lo, hi, g)], "tails": [(lo, hi)]}`` of slices (inclusive, seed slices left out)
    for seed groups ``painted`` (sorted tuples): between group g and g + 1, and outside the outer groups."""
    from ifssnet.seeds import seed_groups

    groups = seed_groups([k for g in painted for k in g])
    between = [(a[-1] + 1, b[0] - 1, g) for g, (a, b) in enumerate(zip(groups, groups[1:])) if b[0] - a[-1] > 1]
    tails = [(0, groups[0][0] - 1), (groups[-1][-1] + 1, K - 1)]
    return {"between": between, "tails": [(lo, hi) for lo, hi in tails if hi >= lo]}


COLUMNS = ("blend", "fwd", "bwd", "union")


def case_rows(case: str, net, stop_at_end: bool = True, blend: str = "mean") -> list:
    from ifssnet.compare import load_case
    from ifssnet.propagate import propagate
    from ifssnet.seeds import cut_seeds, protocol_slices, seed_groups

    volume, masks, spacing = load_case(case)
    K = volume.shape[0]
    seeds, groups, refs = {}, {}, {}
    for n, mask in masks.items():
        refs[n] = mask.astype(bool)
        groups[n] = seed_groups(protocol_slices(refs[n], "paper"))
        seeds[n] = cut_seeds(mask, [k for g in groups[n] for k in g])
        for gi, g in enumerate(groups[n]):
            seeds[f"{n}#{gi}"] = cut_seeds(mask, g)
    res = propagate(volume, seeds, net, device="cpu", exclusive=False, stop_at_end=stop_at_end, blend=blend,
                    slice_spacing_mm=spacing[0])
    rows = []
    for n, ref in refs.items():
        z = zones(groups[n], K)
        together = res.masks[n].astype(bool)
        for lo, hi, g in z["between"]:
            sl = slice(lo, hi + 1)
            fwd, bwd = res.masks[f"{n}#{g}"][sl].astype(bool), res.masks[f"{n}#{g + 1}"][sl].astype(bool)
            rows.append(dict(case=case, muscle=n, zone="between", first=lo, last=hi, ref=int(ref[sl].sum()),
                             blend=int(together[sl].sum()), fwd=int(fwd.sum()), bwd=int(bwd.sum()),
                             union=int((fwd | bwd).sum())))
        for lo, hi in z["tails"]:       # one run each: no blend (fwd, bwd, union left empty)
            sl = slice(lo, hi + 1)
            rows.append(dict(case=case, muscle=n, zone="tails", first=lo, last=hi, ref=int(ref[sl].sum()),
                             blend=int(together[sl].sum()), fwd=None, bwd=None, union=None))
    return rows


def signed_pct(rows, column: str) -> float:
    """Signed volume error (%) of ``column``'s voxels against the reference's, summed over ``rows``
    (a tail past a muscle's end counts by its false voxels); nan where the column is empty."""
    sel = [r for r in rows if r[column] is not None]
    ref = sum(r["ref"] for r in sel)
    return float("nan") if not sel or ref == 0 else 100.0 * (sum(r[column] for r in sel) - ref) / ref


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    p.add_argument("--csv", default=None)
    p.add_argument("--blend", default="mean", choices=("mean", "max"),
                   help="propagation's blend for the 'blend' column (default: mean, the rule before session 21)")
    p.add_argument("--no-stop", action="store_true", help="no stop at a muscle's end (runs go to the next group)")
    args = p.parse_args(argv)

    from ifssnet.propagate import load_model

    net = load_model(args.model, "cpu")
    rows = []
    for case in args.cases:
        rows += case_rows(case, net, stop_at_end=not args.no_stop, blend=args.blend)
        print(f"{case}: done", flush=True)
    print("signed volume error, % of the reference's voxels in the zone")
    print("case   muscle zone     slices     ref vox    blend     fwd      bwd     union")
    for r in rows:
        print(f"{r['case'][-5:]:6s} {r['muscle']:6s} {r['zone']:8s} {r['first']:4d}-{r['last']:<4d} {r['ref']:9d} "
              + " ".join(f"{signed_pct([r], c):8.1f}" for c in COLUMNS))
    for kind in ZONE_KINDS:
        for muscle in [None] + sorted({r["muscle"] for r in rows}):
            sel = [r for r in rows if r["zone"] == kind and muscle in (None, r["muscle"])]
            print(f"pooled {kind:8s} {muscle or 'all':4s}: "
                  + ", ".join(f"{c} {signed_pct(sel, c):+.1f} %" for c in COLUMNS))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
