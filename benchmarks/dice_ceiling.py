"""What Dice >= 0.95 asks of a boundary, per muscle and voxel size.

For each case and segment of the reference, prints:

- the mean thickness of the muscle (mm): its volume over its mean in-plane cross-section's
  "depth", i.e. voxels per (slice, column) that the muscle crosses, times the voxel size;
- the Dice of the reference against itself eroded and dilated by one voxel in-plane (3 x 3 cross,
  slice by slice): what a network scores whose boundary is one voxel off everywhere;
- the mean boundary error allowed for Dice 0.95, in mm and in voxels. Moving a boundary of area S by d
  changes the volume V by d S, so Dice = 2 (V - d S) / (2 V - d S) (inwards) or 2 V / (2 V + d S)
  (outwards), which reach 0.95 at d = 0.095 V / S and 0.105 V / S. S is measured as the mean volume
  that the one-voxel erosion and dilation remove and add (first order in d, so exact for thin shifts).

- with ``--working-size S`` (default 128, the shipped network's): the Dice of an ideal network that
  works at S x S in-plane, as propagation does. The reference is resized to S x S as the image is
  (area-averaged: the exact fraction of each working pixel that is muscle), resized back as propagation
  resizes probabilities (bilinear), and thresholded at 0.5. The working size's own limit on a volume
  finer than it.

The paper's IFSS-Net-FS scores Dice 0.987 with an average surface distance of 0.197 mm on 0.277 mm
voxels. The same muscle at another voxel size asks for the same boundary error in mm; the phantom's
muscles are measured here at whatever size they were made.

    python benchmarks/dice_ceiling.py .data/test/s1000 .data/t1400-256/s1000 [--working-size 128] [--csv OUT.csv]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

DICE_TARGET = 0.95


def boundary_budget(mask: np.ndarray, spacing_kji) -> dict:
    """Dice at one voxel off and the boundary error allowed for Dice 0.95.

    ``mask``: bool (K, J, I), slices along axis 0; ``spacing_kji``: mm. In-plane voxels must be square
    (the phantom's are isotropic); the in-plane voxel size is ``spacing_kji[1]``.
    Returns mm and voxel figures (see the module docstring); an empty mask raises ValueError.
    """
    from scipy import ndimage as ndi

    m = mask.astype(bool)
    v = int(m.sum())
    if v == 0:
        raise ValueError("The segment is empty.")
    cross = np.zeros((1, 3, 3), bool)
    cross[0] = ndi.generate_binary_structure(2, 1)
    eroded = int(ndi.binary_erosion(m, cross).sum())
    dilated = int(ndi.binary_dilation(m, cross).sum())
    surface_vox = 0.5 * ((v - eroded) + (dilated - v))        # voxels moved per voxel of shift
    vox = float(spacing_kji[1])
    v_over_s = v / surface_vox                                # voxels
    columns = int(m.any(axis=1).sum())                        # (slice, column) pairs the muscle crosses
    return {
        "voxel_mm": vox,
        "thickness_mm": v / columns * vox,
        "dice_erode_1vox": 2 * eroded / (v + eroded),
        "dice_dilate_1vox": 2 * v / (v + dilated),
        "allowed_error_vox": 0.1 * v_over_s,                  # mean of 0.095 and 0.105
        "allowed_error_mm": 0.1 * v_over_s * vox,
    }


def working_size_dice(mask: np.ndarray, size: int, chunk: int = 64) -> float:
    """Dice of the reference after the round trip through the S x S working grid (see the docstring).

    ``mask``: bool (K, J, I); ``size``: S. Slices go ``chunk`` at a time, so memory stays small.
    """
    import torch

    from ifssnet.preprocess import InPlaneGrid

    grid = InPlaneGrid(tuple(mask.shape[1:]), size)
    inter = total = 0
    with torch.no_grad():
        for a in range(0, mask.shape[0], chunk):
            ref = torch.from_numpy(mask[a:a + chunk].astype(np.float32))
            back = grid.to_volume(grid.to_work(ref)) >= 0.5
            r = ref.bool()
            inter += int((back & r).sum())
            total += int(back.sum()) + int(r.sum())
    return 2 * inter / total if total else 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--working-size", type=int, default=128, help="the network's in-plane size S")
    p.add_argument("--csv", default=None, help="also write the rows here")
    args = p.parse_args(argv)

    from ifssnet.io import read_segmentation, read_volume

    rows = []
    for case in args.cases:
        img = read_volume(f"{case}/volume.nrrd")
        seg = read_segmentation(f"{case}/reference.seg.nrrd", reference=img.geometry,
                                reference_shape=img.array.shape)
        for name in seg.names:
            row = {"case": case, "segment": name, "shape": "x".join(map(str, img.array.shape))}
            mask = seg.get(name).mask.astype(bool)
            row.update(boundary_budget(mask, img.geometry.spacing_kji))
            row["dice_working_size"] = working_size_dice(mask, args.working_size)
            rows.append(row)
            print(f"{case} {name:4s} {row['shape']:>13s} voxel {row['voxel_mm']:.3f} mm, "
                  f"thickness {row['thickness_mm']:5.1f} mm | Dice one voxel in {row['dice_erode_1vox']:.3f}, "
                  f"out {row['dice_dilate_1vox']:.3f} | error allowed for Dice {DICE_TARGET}: "
                  f"{row['allowed_error_mm']:.2f} mm = {row['allowed_error_vox']:.2f} voxel | "
                  f"ideal at {args.working_size}: {row['dice_working_size']:.3f}", flush=True)
    if args.csv:
        from ifssnet.compare import write_csv

        write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
