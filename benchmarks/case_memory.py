"""Peak memory of reading one training case and of validating on it, against the estimates that check a training run.

    OMP_NUM_THREADS=2 python benchmarks/case_memory.py VOLUME ANNOTATION [--size 128] [--no-validation]

For a case on disk (e.g. ``ifssnet phantom /tmp/p --seed 1000``: 1400 x 512 x 512, 3 segments), prints the peak
resident memory above the process's memory before each call (:class:`ifssnet.peak_memory.PeakMemory`, MiB) of
:func:`ifssnet.dataset.load_case` and of one :class:`ifssnet.validation.Validator` call with the shipped network
(``3-seeds``), next to :func:`ifssnet.train_memory.reading_bytes` and :func:`ifssnet.train_memory.validation_bytes`
of the same case (from its headers). Validation propagates every segment: about 1.5 minutes at full size on 2 cores.
The validation is the process's first (imports, torch's first inference), as a fine-tune's at step 0.
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume")
    ap.add_argument("annotation")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--no-validation", action="store_true")
    a = ap.parse_args(argv)
    from ifssnet.dataset import load_case
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.train_memory import case_shape, reading_bytes, validation_bytes, validation_runs

    import importlib

    importlib.import_module("torch")   # its import (about 200 MiB) is the process's, not reading the case's

    mib = 2 ** 20
    shape = case_shape(a.volume, a.annotation)
    with PeakMemory() as mem:
        case = load_case(a.volume, a.annotation, a.size)
    del case
    print(f"{tuple(shape.shape_kji)}, {shape.segments} segments, S {a.size}: reading {mem.peak_mb:.0f} MiB, "
          f"estimated {reading_bytes(shape, a.size) / mib:.0f} MiB")
    if not a.no_validation:
        from ifssnet.propagate import load_model
        from ifssnet.validation import Validator

        net = load_model(None, "cpu")
        with PeakMemory() as mem:
            score = Validator([(a.volume, a.annotation)])(net, 0)
        need = validation_bytes(shape, net.config.size, net.config.width_mult, net.config.window,
                                validation_runs(shape))
        print(f"validating (the shipped network, 3-seeds, Dice {score.dice:.3f}): {mem.peak_mb:.0f} MiB, "
              f"estimated {need / mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
