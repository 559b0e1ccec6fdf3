"""How good are the labels that ``--fill-gap`` adds? Dice of the filled slices against the full reference.

Few-shot training keeps a decremental share of each case's slices painted, in the order the cases are given
(``ifssnet.train.decremental_cases``, which ``ifssnet train --mode fewshot`` calls), and
``--fill-gap N`` labels the gaps of up to N slices between two painted groups with Fill between slices
(:mod:`ifssnet.fill_gaps`). This prints, per case and segment, the painted share, the slices filled, and the
Dice of the filled slices against the case's complete reference (which training never reads), then the
totals: the share of slices that training scores against a label rather than its own pseudo-label.

    python benchmarks/fill_gap_labels.py .data/train/s* --fill-gap 40
    python benchmarks/fill_gap_labels.py .data/train/s* --fill-gap 40 --decay-ratio 1 --paint-group 1
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
    for full, sparse, fraction in zip(fulls, decremental_cases(fulls, cfg), fractions):
        dense = fill_gaps(sparse, args.fill_gap)
        for name in full.masks:
            new = dense.known[name] & ~sparse.known[name]
            shown = f"{dice(dense.masks[name][new], full.masks[name][new]):.3f}" if new.any() else "-"
            print(f"{full.name:8s} {fraction:5.3f}  {name:7s}  {int(sparse.known[name].sum()):7d}  {int(new.sum()):6d}  {shown}")
            totals += (sparse.known[name].sum(), new.sum(), full.n_slices)
    print(f"painted {100 * totals[0] / totals[2]:.1f} % of the slices; filled {100 * totals[1] / totals[2]:.1f} % more "
          f"(--fill-gap {args.fill_gap})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
