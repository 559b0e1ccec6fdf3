"""Peak resident memory of a few training steps against the estimate that refuses a run too large for memory.

For each working size S, a new network (``--width-mult``) trains ``--steps`` steps of the default recipe
(``--batch`` runs of ``--run-length`` slices) on one synthetic case already on the working grid (a box
"muscle" in noise, 80 slices), so that only the network's share is measured. The peak resident memory above
the process's memory before the call (:class:`ifssnet.peak_memory.PeakMemory`, MiB) is printed next to
:func:`ifssnet.train_memory.network_training_bytes` (MiB), the estimate's share for the network. Run it on one
thread, as the numbers in :mod:`ifssnet.train_memory` were:

    OMP_NUM_THREADS=1 python benchmarks/training_memory.py --sizes 64 128 --width-mult 0.5
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def measure_training(size: int, width_mult: float = 0.5, batch: int = 1, run_length: int = 32, steps: int = 2,
                     slices: int = 80):
    """Train a new network ``steps`` steps on one synthetic case of ``slices`` slices at working size ``size``.

    Returns ``(peak_mb, need_bytes)``: the measured peak resident memory of the call (MiB) and
    :func:`ifssnet.train_memory.network_training_bytes` (bytes)."""
    from ifssnet.dataset import Case
    from ifssnet.model import IFSSNetConfig
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.train import TrainConfig, train
    from ifssnet.train_memory import network_training_bytes

    rng = np.random.default_rng(0)
    image = rng.standard_normal((slices, size, size)).astype(np.float16)
    mask = np.zeros((slices, size, size), np.uint8)
    mask[:, size // 4:size // 2, size // 4:3 * size // 4] = 1
    case = Case("box", image, {"A": mask}, {"A": np.ones(slices, bool)})
    cfg = TrainConfig(epochs=1, steps_per_epoch=steps, batch=batch, run_length=run_length, checkpoint_every=10 ** 6)
    with tempfile.TemporaryDirectory() as folder:
        with PeakMemory() as mem:
            train([case], os.path.join(folder, "m.pt"), model_config=IFSSNetConfig(size=size, width_mult=width_mult),
                  cfg=cfg)
    return mem.peak_mb, network_training_bytes(size, width_mult, batch, run_length)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="working sizes S")
    ap.add_argument("--width-mult", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--run-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"{'S':>5} {'measured MiB':>13} {'estimate MiB':>13}   (width_mult {args.width_mult}, batch {args.batch}, "
          f"run length {args.run_length}, {args.steps} steps)")
    for size in args.sizes:
        peak, need = measure_training(size, args.width_mult, args.batch, args.run_length, args.steps)
        print(f"{size:>5} {peak:>13.1f} {need / 2 ** 20:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
