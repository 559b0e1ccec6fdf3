"""How good are the labels that ``--fill-gap`` adds? Dice of the filled slices against the full reference.

Few-shot training keeps a decremental share of each case's slices painted, in the order the cases are given
(``ifssnet.train.decremental_cases``, which ``ifssnet train --mode fewshot`` calls), and
``--fill-gap N`` labels the gaps of up to N slices between two painted groups with Fill between slices
(:mod:`ifssnet.fill_gaps`). This prints, per case and segment, the painted share, the slices filled, and the
Dice of the filled slices against the case's complete reference (which training never reads), then the
totals: the share of slices that training scores against a label rather than its own pseudo-label.

    python benchmarks/fill_gap_labels.py .data/train/s* --fill-gap 40
    python benchmarks/fill_gap_labels.py .data/train/s* --fill-gap 40 --decay-ratio 1 --paint-group 1

``--write DIR`` also writes each case's training labels, ``DIR/<case>.seg.nrrd``: the painted and filled slices,
tagged as the annotated ones, so that ``ifssnet train --mode fewshot VOLUME:DIR/<case>.seg.nrrd ...`` trains on
them without ``--fill-gap`` (and without ITK, which Fill between slices needs: the GPU machine has none). The
volumes' in-plane size must be ``--size``, so that the labels lie on their grid.
"""
from __future__ import annotations

import argparse

import numpy as np

from ifssnet.train import TrainConfig, decremental_cases


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd, in training order")
    p.add_argument("--fill-gap", type=int, default=40, metavar="N")
    p.add_argument("--size", type=int, default=128, help="the network's in-plane working size")
    p.add_argument("--annotated-total", type=float, default=0.035,
                   help="mean painted share over the cases (TrainConfig.annotated_total; default the paper's 3.5 %%)")
    p.add_argument("--decay-ratio", type=float, default=TrainConfig.decay_ratio,
                   help="painted share of one case over the one before (default the paper's 0.5; 1: all the same)")
    p.add_argument("--paint-group", type=int, default=TrainConfig.paint_group,
                   help="consecutive slices per painted group (default 3)")
    p.add_argument("--write", metavar="DIR", default=None, help="also write each case's labels to DIR/<case>.seg.nrrd")
    args = p.parse_args(argv)

    from ifssnet.bench import dice
    from ifssnet.dataset import decremental_fractions, load_case
    from ifssnet.fill_gaps import fill_gaps

    fulls = [load_case(f"{path}/volume.nrrd", f"{path}/reference.seg.nrrd", args.size) for path in args.cases]
    cfg = TrainConfig(mode="fewshot", annotated_total=args.annotated_total, decay_ratio=args.decay_ratio,
                      paint_group=args.paint_group)
    cfg.validate()
    fractions = decremental_fractions(len(fulls), cfg.annotated_total, cfg.decay_ratio)
    print("case     share  segment  painted  filled  Dice(filled)")
    totals = np.zeros(3)      # slices: painted, filled, all
    for path, full, sparse, fraction in zip(args.cases, fulls, decremental_cases(fulls, cfg), fractions):
        dense = fill_gaps(sparse, args.fill_gap)
        if args.write:
            _write_labels(dense, f"{path}/volume.nrrd", args.write, args.size)
        for name in full.masks:
            new = dense.known[name] & ~sparse.known[name]
            shown = f"{dice(dense.masks[name][new], full.masks[name][new]):.3f}" if new.any() else "-"
            print(f"{full.name:8s} {fraction:5.3f}  {name:7s}  {int(sparse.known[name].sum()):7d}  {int(new.sum()):6d}  {shown}")
            totals += (sparse.known[name].sum(), new.sum(), full.n_slices)
    print(f"painted {100 * totals[0] / totals[2]:.1f} % of the slices; filled {100 * totals[1] / totals[2]:.1f} % more "
          f"(--fill-gap {args.fill_gap})")
    return 0


def _write_labels(case, volume_path: str, folder: str, size: int) -> None:
    """``case``'s known slices as a seeds-format .seg.nrrd on the volume's grid (``folder/<case>.seg.nrrd``)."""
    from pathlib import Path

    from ifssnet.errors import InputError
    from ifssnet.io import AnnotatedSlices, read_volume, segmentation_from_masks, write_segmentation
    from ifssnet.seeds import cut_seeds

    image = read_volume(volume_path)          # its geometry; the case holds the working grid's arrays only
    if image.array.shape[1:] != (size, size):
        raise InputError(f"{volume_path} is {image.array.shape[1]} x {image.array.shape[2]} in-plane, not {size} x {size}: "
                         "the labels would not lie on its grid.", f"Write labels only for volumes of {size} x {size}.")
    seeds = {n: cut_seeds(case.masks[n], np.flatnonzero(known)) for n, known in case.known.items()}
    seg = segmentation_from_masks({n: s.mask for n, s in seeds.items()}, image.geometry,
                                  {n: AnnotatedSlices(0, s.slices) for n, s in seeds.items()})
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_segmentation(seg, Path(folder) / f"{case.name}.seg.nrrd")


if __name__ == "__main__":
    raise SystemExit(main())
