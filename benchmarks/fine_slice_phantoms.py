"""Phantoms swept with finer frames than the training phantoms: the same calf, more slices.

The phantom spans the whole calf over its K slices whatever K is (``ifssnet.phantom``), and
``ifssnet phantom`` writes an isotropic voxel. This script writes the slice spacing that the finer
sweep really has: the calf keeps the length it has in a ``--like``-slice phantom of the same width
(default 400, the training phantoms), so K = 1400 at 128 wide gives 0.316 mm frames, the training's
1.108 mm / 3.5. Used to measure propagation on frames finer than the network was trained at
(``ifssnet.slice_spacing``):

    python benchmarks/fine_slice_phantoms.py .data/val1400 --seeds 500 501 --shape 1400 128 128
    ifssnet compare-set .data/val1400/s500 .data/val1400/s501 --methods ifssnet --protocol 3-seeds
    ifssnet compare-set .data/val1400/s500 .data/val1400/s501 --methods ifssnet --protocol 3-seeds \\
        --option ifssnet.match_slice_spacing=false          # every frame, as before
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume
from ifssnet.phantom import default_spacing, make_phantom


def write_fine(outdir: Path, seed: int, shape, like: int) -> float:
    """Write one phantom to ``outdir``; returns its slice spacing (mm)."""
    K, J, I = shape
    ph = make_phantom(seed, shape)
    sp = default_spacing(shape)
    sz = sp * (like - 1) / (K - 1)
    geo = Geometry(spacing=(sp, sp, sz))
    outdir.mkdir(parents=True, exist_ok=True)
    write_volume(Image(ph.volume, geo), outdir / "volume.nrrd")
    write_segmentation(segmentation_from_masks(dict(ph.labels), geo), outdir / "reference.seg.nrrd")
    return sz


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder; one subfolder sSEED per phantom")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--shape", type=int, nargs=3, default=(1400, 128, 128), metavar=("Z", "Y", "X"))
    p.add_argument("--like", type=int, default=400, help="the calf keeps its length in a phantom of this many slices")
    args = p.parse_args(argv)
    for s in args.seeds:
        sz = write_fine(Path(args.out) / f"s{s}", s, tuple(args.shape), args.like)
        print(f"{args.out}/s{s}: {' x '.join(map(str, args.shape))}, slices {sz:.4f} mm apart")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
