"""Does training ever show the network a muscle's end? The share of sampled runs that reach one, per mode.

Prepares the cases as ``ifssnet train`` does (few-shot: the decremental share painted, ``--fill-gap``,
``--empty-past-ends``), draws runs of ``--run-length`` + ``--burn-in`` slices with the training's sampler
(:func:`ifssnet.dataset.sample_run`, which biases a share of runs to cross a muscle's end where it can) and
prints the share of runs that hold a slice where the muscle is absent (in the reference, which few-shot
training never reads) and a slice labelled empty (which training scores as such).

    python benchmarks/runs_past_ends.py .data/train/s* --mode full --run-length 8
    python benchmarks/runs_past_ends.py .data/train/s* --mode fewshot --decay-ratio 1 --paint-group 1 \\
        --fill-gap 40 --run-length 8 [--burn-in 32] [--empty-past-ends]

A run must start on a window of labelled slices where the muscle is present. Full supervision has those up to
the muscle's last slice; few-shot with single painted slices has them only where ``--fill-gap`` joined two
painted slices, which stops at the last slice painted with the muscle, tens of slices before its end.
"""
from __future__ import annotations

import argparse

import numpy as np

from ifssnet.train import TrainConfig, added_labels, decremental_cases


def run_shares(cases, run_length: int, n: int = 400, seed: int = 0, window: int = 3):
    """(share of runs with a slice where the muscle is absent, share with a slice labelled empty) over ``n``
    runs of ``run_length`` slices drawn from ``cases`` (:class:`ifssnet.dataset.Case`) in turn."""
    from ifssnet.dataset import sample_run

    rng = np.random.default_rng(seed)
    absent = labelled_empty = drawn = 0
    for i in range(n):
        run = sample_run(cases[i % len(cases)], rng, run_length, window, augment=False)
        if run is None:
            continue
        drawn += 1
        empty = run.mask.reshape(run.mask.shape[0], -1).sum(axis=1) == 0
        absent += bool(empty.any())
        labelled_empty += bool((empty & run.known).any())
    return absent / max(drawn, 1), labelled_empty / max(drawn, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd, in training order")
    p.add_argument("--mode", choices=("full", "fewshot"), default="full")
    p.add_argument("--run-length", type=int, default=8)
    p.add_argument("--burn-in", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--decay-ratio", type=float, default=TrainConfig.decay_ratio)
    p.add_argument("--paint-group", type=int, default=TrainConfig.paint_group)
    p.add_argument("--fill-gap", type=int, default=0)
    p.add_argument("--empty-past-ends", action="store_true")
    p.add_argument("--runs", type=int, default=400)
    args = p.parse_args(argv)

    from ifssnet.dataset import load_case

    cases = [load_case(f"{c}/volume.nrrd", f"{c}/reference.seg.nrrd", args.size) for c in args.cases]
    if args.mode == "fewshot":
        cfg = TrainConfig(mode="fewshot", decay_ratio=args.decay_ratio, paint_group=args.paint_group,
                          fill_gap=args.fill_gap, empty_past_ends=args.empty_past_ends)
        cases = [added_labels(c, cfg) for c in decremental_cases(cases, cfg)]
    absent, labelled = run_shares(cases, args.run_length + args.burn_in, args.runs)
    print(f"{args.mode}, runs of {args.run_length} + {args.burn_in} burn-in slices, {len(cases)} cases, "
          f"{args.runs} runs: {100 * absent:.1f} % reach a slice without the muscle, "
          f"{100 * labelled:.1f} % a slice labelled empty")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
