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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="in-plane size J = I of the volume (voxels)")
    ap.add_argument("--work", type=int, default=128, help="the network's working size S")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--slices", type=int, nargs="+", default=[200, 800], help="sweep lengths K")
    args = ap.parse_args(argv)

    from fake_models import CopyModel
    from ifssnet.memory import OVERHEAD_BYTES, propagation_bytes
    from ifssnet.peak_memory import PeakMemory
    from ifssnet.propagate import propagate
    from ifssnet.seeds import cut_seeds

    mib, j = 2 ** 20, args.size
    print(f"{'K':>6} {'measured MiB':>13} {'estimate MiB':>13}   (J = I = {j}, S = {args.work}, {args.segments} segments)")
    for k in args.slices:
        volume = (np.random.default_rng(0).random((k, j, j)) * 100).astype(np.uint8)
        seeds = {}
        for s in range(args.segments):
            box = np.zeros(volume.shape, np.uint8)
            top = j // 8 + s * j // 4
            box[:, top:top + j // 5, j // 4:3 * j // 4] = 1
            seeds[f"S{s}"] = cut_seeds(box, (k // 2 - 1, k // 2, k // 2 + 1))
        net = CopyModel(size=args.work)
        with PeakMemory() as mem:
            propagate(volume, seeds, net, device="cpu")
        need = (propagation_bytes(volume.shape, seeds, net) - OVERHEAD_BYTES) / mib
        print(f"{k:>6} {mem.peak_mb:>13.1f} {need:>13.1f}")


if __name__ == "__main__":
    main()
