"""Where propagation loses the muscle: predicted area and overlap with the truth, slice by slice.

For each muscle of one case, paints the 3 slices of largest cross-section (the ``3-seeds`` protocol),
propagates over the whole sweep with the stop at the muscle's end switched off, and prints, every
``--every`` slices, three areas as fractions of the seeds' mean area: the reference's, the
prediction's, and their overlap. A network that tracks the muscle keeps overlap close to the
reference; one that drifts keeps some area but loses the overlap; one that leaks keeps area where the
reference has none (the volume error under ``3-seeds``). The last column is propagation's per-slice
confidence (``slice_confidence``), to see whether it falls where the overlap does. The first line per muscle says where
propagation's own stop at the muscle's end (``min_area_fraction`` of the seeds' area for ``patience``
slices) ends the runs at each threshold of ``--thresholds``: one more propagation per threshold.

    python benchmarks/area_along_sweep.py .data/val/s500 [--model M] [--every 10]
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", help="folder with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--thresholds", default="0.02,0.05,0.1,0.2")
    args = p.parse_args(argv)

    from ifssnet.io import read_segmentation, read_volume
    from ifssnet.propagate import load_model, propagate
    from ifssnet.seeds import cut_seeds, largest_slices

    img = read_volume(f"{args.case}/volume.nrrd")
    seg = read_segmentation(f"{args.case}/reference.seg.nrrd", reference=img.geometry,
                            reference_shape=img.array.shape)
    refs = {n: seg.get(n).mask.astype(bool) for n in seg.names}
    painted = {n: largest_slices(m) for n, m in refs.items()}
    seeds = {n: cut_seeds(m.astype(np.uint8), painted[n]) for n, m in refs.items()}
    net = load_model(args.model, "cpu")               # once, for the 1 + len(thresholds) propagations
    sz = img.geometry.spacing_kji[0]
    res = propagate(img.array, seeds, net, device="cpu", stop_at_end=False, slice_spacing_mm=sz)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    ended = {t: propagate(img.array, seeds, net, device="cpu", min_area_fraction=t, slice_spacing_mm=sz).ended
             for t in thresholds}
    for n, ref in refs.items():
        seed_area = ref[list(painted[n])].sum((1, 2)).mean()
        pred = res.masks[n].astype(bool)
        ra, pa = ref.sum((1, 2)) / seed_area, pred.sum((1, 2)) / seed_area
        ov = (pred & ref).sum((1, 2)) / seed_area
        nz = np.nonzero(ra)[0]
        print(f"{n}: painted {painted[n]}, reference from slice {nz[0]} to {nz[-1]}; runs stop at "
              + ", ".join(f"{t}: {sorted(ended[t].get(n, [])) or 'the ends of the sweep'}" for t in thresholds))
        conf = res.confidence[n]
        print("  slice  reference  prediction  overlap  confidence")
        for k in range(0, ref.shape[0], args.every):
            print(f"  {k:5d}  {ra[k]:9.2f}  {pa[k]:10.2f}  {ov[k]:7.2f}  {conf[k]:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
