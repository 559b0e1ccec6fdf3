"""Peak resident memory of a few training steps against the estimate that refuses a run too large for memory.

For each working size S, a new network (``--arch``: IFSS-Net, PG-Net or the 3-D U-Net, ``--width-mult``) trains
``--steps`` steps of its default recipe (``--batch`` runs of ``--run-length`` slices; for the baselines their own
batch of 2, PG-Net's chain of 6 slices, the U-Net's (run length, S, S) patch with ``--segments`` channels) on one
synthetic case already on the working grid (a box "muscle" per segment in noise, 80 slices), so that only the
network's share is measured. The peak resident memory above the process's memory before the call
(:class:`ifssnet.peak_memory.PeakMemory`, MiB) is printed next to the estimate's share for the network
(:func:`ifssnet.train_memory.network_training_bytes`, :func:`ifssnet.train_memory.baseline_step_bytes`, MiB).
Run it on one thread, as the numbers in :mod:`ifssnet.train_memory` were:

    OMP_NUM_THREADS=1 python benchmarks/training_memory.py --sizes 64 128 --width-mult 0.5
    OMP_NUM_THREADS=1 python benchmarks/training_memory.py --arch pgnet --sizes 64 128 --width-mult 1
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def synthetic_case(size: int, slices: int = 80, segments: int = 1):
    """A :class:`ifssnet.dataset.Case` on the working grid: noise, a box per segment, every slice known."""
    from ifssnet.dataset import Case

    rng = np.random.default_rng(0)
    image = rng.standard_normal((slices, size, size)).astype(np.float16)
    masks = {}
    for n in range(segments):
        mask = np.zeros((slices, size, size), np.uint8)
        mask[:, size // 4:size // 2, n * size // (segments + 1):(n + 1) * size // (segments + 1)] = 1
        masks["ABCDEFGH"[n]] = mask
    return Case("box", image, masks, {name: np.ones(slices, bool) for name in masks})


def measure_training(size: int, width_mult: float = 0.5, batch: int = 1, run_length: int = 32, steps: int = 2,
                     slices: int = 80):
    """Train a new IFSS-Net ``steps`` steps on one synthetic case of ``slices`` slices at working size ``size``.

    Returns ``(peak_mb, need_bytes)``: the measured peak resident memory of the call (MiB) and
    :func:`ifssnet.train_memory.network_training_bytes` (bytes)."""
    from ifssnet.model import IFSSNetConfig
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.train import TrainConfig, train
    from ifssnet.train_memory import network_training_bytes

    case = synthetic_case(size, slices)
    cfg = TrainConfig(epochs=1, steps_per_epoch=steps, batch=batch, run_length=run_length, checkpoint_every=10 ** 6)
    with tempfile.TemporaryDirectory() as folder:
        with PeakMemory() as mem:
            train([case], os.path.join(folder, "m.pt"), model_config=IFSSNetConfig(size=size, width_mult=width_mult),
                  cfg=cfg)
    return mem.peak_mb, network_training_bytes(size, width_mult, batch, run_length)


def measure_baseline(arch: str, size: int, width_mult: float = 1.0, run_length: int = 32, steps: int = 2,
                     segments: int = 3, batch: int = 2, slices: int = 80):
    """Train a new PG-Net or 3-D U-Net (``arch``) ``steps`` steps as ``ifssnet train --arch`` would (its width
    ``max(4, round(16 width_mult))``; PG-Net on one segment, the U-Net on ``segments``) on one synthetic case.

    Returns ``(peak_mb, need_bytes)``: the measured peak resident memory of the call (MiB) and
    :func:`ifssnet.train_memory.baseline_step_bytes` (bytes)."""
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.train_memory import baseline_step_bytes, baseline_width

    width = baseline_width(width_mult)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "m.pt")
        if arch == "pgnet":
            from ifssnet.baselines.pgnet import PGNetConfig, PGNetTrainConfig, train_pgnet

            case = synthetic_case(size, slices)
            cfg = PGNetTrainConfig(epochs=1, steps_per_epoch=steps, run_length=run_length, batch=batch,
                                   checkpoint_every=10 ** 6)
            with PeakMemory() as mem:
                train_pgnet([case], out, model_config=PGNetConfig(size=size, width=width), cfg=cfg)
            need = baseline_step_bytes("pgnet", size, width, batch=batch, run_length=run_length, chain=cfg.chain)
        else:
            from ifssnet.baselines.unet3d import UNet3DConfig, UNet3DTrainConfig, train_unet3d

            case = synthetic_case(size, slices, segments)
            config = UNet3DConfig(size=size, segments=tuple(case.masks), width=width, patch=(run_length, size, size))
            cfg = UNet3DTrainConfig(epochs=1, steps_per_epoch=steps, batch=batch, checkpoint_every=10 ** 6)
            with PeakMemory() as mem:
                train_unet3d([case], out, model_config=config, cfg=cfg)
            need = baseline_step_bytes("unet3d", size, width, batch=batch, patch=config.patch, segments=segments)
    return mem.peak_mb, need


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["ifssnet", "pgnet", "unet3d"], default="ifssnet")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="working sizes S")
    ap.add_argument("--width-mult", type=float, default=None, help="default: 0.5 for IFSS-Net, 1 for the baselines")
    ap.add_argument("--batch", type=int, default=None, help="default: 1 for IFSS-Net, 2 for the baselines")
    ap.add_argument("--run-length", type=int, default=32)
    ap.add_argument("--segments", type=int, default=3, help="the U-Net's output channels")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    baseline = args.arch != "ifssnet"
    width_mult = args.width_mult if args.width_mult is not None else (1.0 if baseline else 0.5)
    batch = args.batch if args.batch is not None else (2 if baseline else 1)
    print(f"{'S':>5} {'measured MiB':>13} {'estimate MiB':>13}   ({args.arch}, width_mult {width_mult}, batch {batch}, "
          f"run length {args.run_length}, {args.steps} steps" + (f", {args.segments} segments)"
                                                                 if args.arch == "unet3d" else ")"))
    for size in args.sizes:
        if baseline:
            peak, need = measure_baseline(args.arch, size, width_mult, args.run_length, args.steps, args.segments,
                                          batch)
        else:
            peak, need = measure_training(size, width_mult, batch, args.run_length, args.steps)
        print(f"{size:>5} {peak:>13.1f} {need / 2 ** 20:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
