"""Where propagation loses the muscle: predicted area and overlap with the truth, slice by slice.

For each muscle of one case, paints the 3 slices of largest cross-section (the ``3-seeds`` protocol),
propagates over the whole sweep with the stop at the muscle's end switched off, and prints, every
``--every`` slices, three areas as fractions of the seeds' mean area: the reference's, the
prediction's, and their overlap. A network that tracks the muscle keeps overlap close to the
reference; one that drifts keeps some area but loses the overlap; one that leaks keeps area where the
reference has none (the volume error under ``3-seeds``). The last columns say at which slice a run
would stop under each ``min_area_fraction`` (propagation's stop: ``patience`` slices below that
fraction of the seeds' area).

    python benchmarks/area_along_sweep.py .data/val/s500 [--model M] [--every 10]
"""
from __future__ import annotations

import argparse

import numpy as np


def first_stop(area_fraction: np.ndarray, start: int, step: int, threshold: float, patience: int = 5):
    """First slice from ``start`` in direction ``step`` after which ``patience`` slices in a row are
    below ``threshold``; None if the run reaches the end of the sweep."""
    quiet = 0
    k = start
    while 0 <= k < len(area_fraction):
        quiet = quiet + 1 if area_fraction[k] < threshold else 0
        if quiet >= patience:
            return k
        k += step
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", help="folder with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--thresholds", default="0.02,0.05,0.1,0.2")
    args = p.parse_args(argv)

    from ifssnet.io import read_segmentation, read_volume
    from ifssnet.propagate import propagate
    from ifssnet.seeds import cut_seeds, largest_slices

    img = read_volume(f"{args.case}/volume.nrrd")
    seg = read_segmentation(f"{args.case}/reference.seg.nrrd", reference=img.geometry,
                            reference_shape=img.array.shape)
    refs = {n: seg.get(n).mask.astype(bool) for n in seg.names}
    seeds = {n: cut_seeds(m.astype(np.uint8), largest_slices(m)) for n, m in refs.items()}
    res = propagate(img.array, seeds, args.model, device="cpu", stop_at_end=False)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    for n, ref in refs.items():
        painted = largest_slices(ref)
        seed_area = ref[list(painted)].sum((1, 2)).mean()
        pred = res.masks[n].astype(bool)
        ra, pa = ref.sum((1, 2)) / seed_area, pred.sum((1, 2)) / seed_area
        ov = (pred & ref).sum((1, 2)) / seed_area
        nz = np.nonzero(ra)[0]
        stops = {t: (first_stop(pa, painted[0] - 1, -1, t), first_stop(pa, painted[-1] + 1, 1, t)) for t in thresholds}
        print(f"{n}: painted {painted}, reference from slice {nz[0]} to {nz[-1]}; runs would stop at "
              + ", ".join(f"{t}: {a}/{b}" for t, (a, b) in stops.items()))
        print("  slice  reference  prediction  overlap")
        for k in range(0, ref.shape[0], args.every):
            print(f"  {k:5d}  {ra[k]:9.2f}  {pa[k]:10.2f}  {ov[k]:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
