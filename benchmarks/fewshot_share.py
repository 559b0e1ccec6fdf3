"""How many slices few-shot training keeps annotated: ``python benchmarks/fewshot_share.py CASE_DIR...``.

Each CASE_DIR holds ``volume.nrrd`` and ``reference.seg.nrrd`` (``ifssnet phantom``), taken in the order given,
as ``ifssnet train CASE_DIR... --mode fewshot`` takes them. Prints, per case, the annotated slices that
:func:`ifssnet.train.decremental_cases` keeps for each segment, then the share of all slices with any segment
annotated, which the paper bounds at 3.5 % (``--annotated-total``). It counts the share itself, so it runs with
the code of earlier commits too (``PYTHONPATH=<a worktree of that commit>``) to see their share. No network is run.

``--val CASE_DIR...``: validation cases too (``ifssnet train --val``), counted as annotated where any segment is
(a sparse one on its tagged slices, :func:`ifssnet.dataset.annotated_slices_of`; a complete one on every slice), and
the share of training and validation slices together: annotation spent on validation is annotation all the same.
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
    ap.add_argument("--val", nargs="+", type=Path, default=[], help="validation case folders, counted too")
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
    if args.val:
        val_painted, val_slices = 0, 0
        for d in args.val:
            n, k = _annotated(d)
            print(d, f"validation: {n} of {k} slices annotated")
            val_painted, val_slices = val_painted + n, val_slices + k
        print(f"validation: {val_painted} of {val_slices} slices; training and validation: "
              f"{painted + val_painted} of {slices + val_slices} slices, "
              f"{(painted + val_painted) / (slices + val_slices):.2%}")


def _annotated(case_dir: Path):
    """(slices with any segment annotated, slices) of a validation case folder."""
    from ifssnet.dataset import annotated_slices_of
    from ifssnet.io import read_header, read_segmentation

    k = read_header(case_dir / "volume.nrrd").shape_kji[0]
    seg = read_segmentation(case_dir / "reference.seg.nrrd")
    known = np.zeros(k, bool)
    for s in seg.segments:
        slices = annotated_slices_of(s, k, str(case_dir))
        known[list(range(k)) if slices is None else list(slices)] = True
    return int(known.sum()), k


if __name__ == "__main__":
    main()
