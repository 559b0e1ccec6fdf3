"""Writing and reading a .seg.nrrd: ``ifssnet.io`` against slicerio's own way, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_io_speed.py [--shape 1400 512 512] [--segments 3] [--repeat 2]

Three box-like "muscles" (random fill in each box, 1-30 % of the grid; the first two overlap, so a second layer is
made) on a (K, J, I) grid. Writing: ``ifssnet.io.write_segmentation`` (its own layering on the masks' bounding
boxes, :func:`ifssnet.io.add_to_layers`) against the baseline that it replaced, ``slicerio.add_segment`` with the
transposed (i, j, k) mask, then the same ``slicerio.write_segmentation``. Reading: ``ifssnet.io.read_segmentation``
against the former per-segment cast (``np.ascontiguousarray(mask, dtype=np.uint8)``). Prints each time (best of
``--repeat``) and the ratio baseline / ifssnet; both files hold the same masks (checked).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def masks(shape, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    K, J, I = shape
    out = []
    for n in range(count):
        m = np.zeros(shape, np.uint8)
        k0, j0, i0 = int(K * 0.1 * (n + 1)), int(J * 0.2 + 0.1 * J * n), int(I * 0.2 + 0.05 * I * n)
        box = (slice(k0, k0 + K // 2), slice(j0, j0 + J // 3), slice(i0, i0 + I // 3))
        m[box] = rng.random((min(K // 2, K - k0), min(J // 3, J - j0), min(I // 3, I - i0))) > 0.2
        out.append(m)
    return out


def slicerio_write(seg, path) -> None:
    """The former ``write_segmentation``: slicerio.add_segment on the transposed masks."""
    import slicerio

    raw = slicerio.create_segmentation(tuple(reversed(seg.shape)), seg.geometry.ijk_to_lps, dtype="uint8")
    for i, s in enumerate(seg.segments):
        slicerio.add_segment(raw, np.asarray(s.mask).transpose(2, 1, 0) > 0, {"id": f"Segment_{i + 1}", "name": s.name})
    slicerio.write_segmentation(str(path), raw, compression_level=1)


def cast_read(path):
    """The former reading: each segment's mask cast to a new uint8 (K, J, I) array."""
    import slicerio

    raw = slicerio.read_segmentation(str(path))
    voxels = np.asarray(raw["voxels"])
    layers = voxels if voxels.ndim == 4 else voxels[np.newaxis]
    return [np.ascontiguousarray((layers[int(s.get("layer", 0))] == int(s["labelValue"])).transpose(2, 1, 0),
                                 dtype=np.uint8) for s in raw["segments"]]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[1400, 512, 512])
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    from ifssnet.io import Geometry, Segment, Segmentation, read_segmentation, write_segmentation

    seg = Segmentation([Segment(f"M{n}", m) for n, m in enumerate(masks(tuple(a.shape), a.segments))],
                       Geometry(spacing=(0.28, 0.28, 0.28)))
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.seg.nrrd", Path(tmp) / "theirs.seg.nrrd"
        t_base = best(lambda: slicerio_write(seg, theirs), a.repeat)
        t_ours = best(lambda: write_segmentation(seg, ours), a.repeat)
        r_base = best(lambda: cast_read(theirs), a.repeat)
        r_ours = best(lambda: read_segmentation(ours), a.repeat)
        same = all(np.array_equal(x.mask, y) for x, y in zip(read_segmentation(ours).segments, cast_read(theirs)))
    print(f"grid {tuple(a.shape)}, {a.segments} segments; the same masks in both files: {same}")
    print(f"write: slicerio.add_segment {t_base:.2f} s, ifssnet.io {t_ours:.2f} s, ratio {t_base / t_ours:.1f}x")
    print(f"read:  per-segment cast {r_base:.2f} s, ifssnet.io {r_ours:.2f} s, ratio {r_base / r_ours:.1f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
