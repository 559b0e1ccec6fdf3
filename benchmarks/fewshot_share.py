"""How many slices few-shot training keeps annotated: ``python benchmarks/fewshot_share.py CASE_DIR...``.

Each CASE_DIR holds ``volume.nrrd`` and ``reference.seg.nrrd`` (``ifssnet phantom``), taken in the order given,
as ``ifssnet train CASE_DIR... --mode fewshot`` takes them. Prints, per case, the annotated slices that
:func:`ifssnet.train.decremental_cases` keeps for each segment, then the share of all slices with any segment
annotated, which the paper bounds at 3.5 % (``--annotated-total``). It counts the share itself, so it runs with
the code of earlier commits too (``PYTHONPATH=<a worktree of that commit>``) to see their share. No network is run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ifssnet.dataset import load_case
import numpy as np

from ifssnet.train import TrainConfig, decremental_cases


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", type=Path, help="case folders (volume.nrrd, reference.seg.nrrd)")
    ap.add_argument("--annotated-total", type=float, default=TrainConfig.annotated_total)
    ap.add_argument("--paint-group", type=int, default=TrainConfig.paint_group)
    ap.add_argument("--size", type=int, default=32, help="in-plane working size to load at (the share does not "
                                                          "depend on it much; default 32, fast)")
    args = ap.parse_args(argv)
    cases = [load_case(d / "volume.nrrd", d / "reference.seg.nrrd", args.size) for d in args.cases]
    start = time.perf_counter()
    kept = decremental_cases(cases, TrainConfig(mode="fewshot", annotated_total=args.annotated_total,
                                                paint_group=args.paint_group))
    seconds = time.perf_counter() - start
    for d, c in zip(args.cases, kept):
        print(d, " ".join(f"{n}:{int(k.sum())}" for n, k in c.known.items()), f"of {c.n_slices}")
    painted = sum(int(np.any([k for k in c.known.values()], axis=0).sum()) for c in kept)
    slices = sum(c.n_slices for c in kept)
    print(f"annotated: {painted} of {slices} slices, {painted / slices:.2%} "
          f"(--annotated-total {args.annotated_total:.2%}; schedule chosen in {seconds:.1f} s)")


if __name__ == "__main__":
    main()
