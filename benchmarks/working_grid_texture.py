"""What the network sees of the same calf rendered at two in-plane resolutions.

Propagation shrinks every slice to the network's working grid (128 x 128, area average,
``ifssnet.preprocess``). A sweep recorded at 0.277 mm (512 wide) therefore reaches the network as the
mean of 4 x 4 resolved speckle cells, while the training phantoms (128 wide, 1.108 mm) were rendered
with speckle finer than a pixel. This script puts numbers on that difference, per muscle and for the
tissue around them, on the working grid after the per-volume z-score (its statistics taken on the
working grid, as propagation takes them since session 15: ``intensity_stats(volume, grid)``):

- ``mean``/``std``: the normalised intensity inside the region;
- ``r1``: the correlation of neighbouring working pixels (lag 1 along depth), i.e. the speckle grain;
- ``edge``: the mean gradient magnitude on the region's boundary over the mean gradient magnitude
  inside it (how much the boundary stands out of the texture).

    python benchmarks/working_grid_texture.py .data/test/s1000 .data/test400-512/s1000

Each argument is a folder with ``volume.nrrd`` and ``reference.seg.nrrd``; the two should be the
same subject and sweep (``benchmarks/fine_slice_phantoms.py .data/test400-512 --seeds 1000 --shape
400 512 512 --like 1597`` makes subject 1000 at 512 wide with the training's 1.108 mm frames).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def working_grid(folder: Path, size: int = 128, every: int = 4):
    """(image (K', S, S) z-scored, {muscle: mask (K', S, S) bool}) on every ``every``-th slice."""
    import torch

    from ifssnet.io import read_segmentation, read_volume
    from ifssnet.preprocess import InPlaneGrid, normalized_work_volume

    vol = read_volume(folder / "volume.nrrd")
    seg = read_segmentation(folder / "reference.seg.nrrd", reference=vol.geometry)
    frames = np.arange(0, vol.array.shape[0], every)
    grid = InPlaneGrid(vol.array.shape[1:], size)
    image = normalized_work_volume(vol.array, grid, frames=frames).numpy()
    masks = {}
    for name in seg.names:
        m = torch.from_numpy(seg.mask(name)[frames].astype(np.float32))
        masks[name] = grid.to_work(m).numpy() > 0.5
    return image, masks


def stats(image: np.ndarray, region: np.ndarray) -> dict:
    """Normalised-intensity statistics of ``image`` (K, S, S) inside ``region`` (K, S, S) bool."""
    from scipy import ndimage

    vals = image[region]
    a, b = image[:, :-1], image[:, 1:]
    both = region[:, :-1] & region[:, 1:]
    r1 = float(np.corrcoef(a[both], b[both])[0, 1]) if both.sum() > 10 else float("nan")
    grad = np.hypot(ndimage.sobel(image, axis=1), ndimage.sobel(image, axis=2))
    inner = ndimage.binary_erosion(region, structure=np.ones((1, 3, 3)), iterations=2)
    border = region & ~ndimage.binary_erosion(region, structure=np.ones((1, 3, 3)))
    edge = float(grad[border].mean() / max(grad[inner].mean(), 1e-6)) if inner.any() else float("nan")
    return {"mean": float(vals.mean()), "std": float(vals.std()), "r1": r1, "edge": edge}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="+", type=Path)
    p.add_argument("--size", type=int, default=128, help="working grid (the shipped network's: 128)")
    args = p.parse_args(argv)
    print(f"{'case':32s} {'region':8s} {'mean':>7s} {'std':>6s} {'r1':>6s} {'edge':>6s}")
    for case in args.cases:
        image, masks = working_grid(case, args.size)
        muscle = np.zeros(image.shape, bool)
        for m in masks.values():
            muscle |= m
        regions = dict(masks)
        regions["other"] = ~muscle & (image > image.min() + 1e-3)
        for name, region in regions.items():
            s = stats(image, region)
            print(f"{str(case):32s} {name:8s} {s['mean']:7.3f} {s['std']:6.3f} {s['r1']:6.3f} {s['edge']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
