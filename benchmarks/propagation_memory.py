"""Peak resident memory of propagation against the estimate that refuses a run too large for memory.

For each sweep length K, a (K, J, J) uint8 volume with ``--segments`` box "muscles", each painted on 3
slices in the middle, is propagated by a stand-in network that copies the painted mask
(``Testing/fake_models.CopyModel``: propagation's own arrays, not a network's). The peak resident memory
above the process's memory before the call (:class:`ifssnet.peak_memory.PeakMemory`, MiB) is printed next
to :func:`ifssnet.memory.propagation_bytes` without its fixed overhead (MiB; the network's share stays in).
Measurements carry about +-10 % of the allocator's noise; read the growth with K against the estimate's.

    python benchmarks/propagation_memory.py --size 256 --work 128 --segments 3 --slices 200 800
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))


def measure_propagation(k: int, size: int = 256, work: int = 128, segments: int = 3):
    """Propagate a (k, size, size) uint8 volume with ``segments`` box "muscles" through every slice.

    Returns ``(peak_mb, need_bytes, boxes, masks)``: the measured peak resident memory of the call (MiB), the
    estimate :func:`ifssnet.memory.propagation_bytes` (bytes, overhead included), and the true and the
    propagated masks (name -> uint8 (k, size, size))."""
    from fake_models import CopyModel
    from ifssnet.memory import propagation_bytes
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.propagate import propagate
    from ifssnet.seeds import cut_seeds

    volume = (np.random.default_rng(0).random((k, size, size)) * 100).astype(np.uint8)
    boxes, seeds = {}, {}
    for s in range(segments):
        box = np.zeros(volume.shape, np.uint8)
        top = size // 8 + s * size // 4
        box[:, top:top + size // 5, size // 4:3 * size // 4] = 1
        boxes[f"S{s}"] = box
        seeds[f"S{s}"] = cut_seeds(box, (k // 2 - 1, k // 2, k // 2 + 1))
    net = CopyModel(size=work)
    with PeakMemory() as mem:
        masks = propagate(volume, seeds, net, device="cpu").masks
    return mem.peak_mb, propagation_bytes(volume.shape, seeds, net), boxes, masks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="in-plane size J = I of the volume (voxels)")
    ap.add_argument("--work", type=int, default=128, help="the network's working size S")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--slices", type=int, nargs="+", default=[200, 800], help="sweep lengths K")
    args = ap.parse_args(argv)

    from ifssnet.memory import OVERHEAD_BYTES

    print(f"{'K':>6} {'measured MiB':>13} {'estimate MiB':>13}   (J = I = {args.size}, S = {args.work}, "
          f"{args.segments} segments)")
    for k in args.slices:
        peak, need, _, _ = measure_propagation(k, args.size, args.work, args.segments)
        print(f"{k:>6} {peak:>13.1f} {(need - OVERHEAD_BYTES) / 2 ** 20:>13.1f}")


if __name__ == "__main__":
    main()
