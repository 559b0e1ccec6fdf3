"""``ifssnet propagate VOLUME SEEDS -o OUT.seg.nrrd``: the CLI of :func:`ifssnet.propagate.propagate`.

The seeds file is a .seg.nrrd (from Slicer or ``ifssnet seeds``). Annotated slices come from the
``IFSSNet.AnnotatedSlices`` tag when present, else from the slices where the segment is painted
(then an empty painted slice cannot be told from an unpainted one). The propagation axis is found
from those slices, or given with ``--axis``; the volume is transposed so that it comes first, and the
result transposed back. Writes OUT.seg.nrrd and OUT.confidence.json (per-slice confidence).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import SeedError


def add_commands(sub) -> None:
    p = sub.add_parser("propagate", help="propagate painted slices through the whole volume")
    p.add_argument("volume", type=Path)
    p.add_argument("seeds", type=Path, help=".seg.nrrd with the painted slices")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .seg.nrrd")
    p.add_argument("--segment", default=None, help="segment name(s), comma-separated (default: all)")
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--axis", type=int, default=None, choices=[0, 1, 2],
                   help="array axis (k=0, j=1, i=2) the painted slices lie across (default: found)")
    p.add_argument("--between-seeds-only", action="store_true",
                   help="do not propagate past the first and last painted slices")
    p.set_defaults(func=_propagate)


def seeds_from_segmentation(seg, names, axis=None):
    """``{name: SeedSet}`` along ``axis`` plus the axis, from a :class:`~ifssnet.io.Segmentation`.

    Returns ``(seed_map, axis)`` with every mask transposed so that ``axis`` comes first.
    """
    from .seeds import SeedSet, annotated_slices, find_axis

    axes = set()
    found = {}
    for n in names:
        s = seg.get(n)
        if s.annotated is not None and axis is None:
            ax, slices = s.annotated.axis, tuple(s.annotated.slices)
        else:
            ax = axis if axis is not None else find_axis(s.mask)
            slices = tuple(annotated_slices(s.mask, ax))
        axes.add(ax)
        found[n] = (ax, slices, s.mask)
    if len(axes) > 1:
        raise SeedError("The segments are painted across different axes.",
                        "Paint every segment on slices of the same view, or propagate them one at a time.")
    ax = axes.pop()
    seed_map = {}
    for n, (_, slices, mask) in found.items():
        m = np.moveaxis(mask, ax, 0)
        keep = np.zeros_like(m)
        keep[list(slices)] = m[list(slices)]
        seed_map[n] = SeedSet(np.ascontiguousarray(keep), slices)
    return seed_map, ax


def _propagate(args) -> int:
    from .io import read_segmentation, read_volume, segmentation_from_masks, split_names, write_json, write_segmentation
    from .progress import TqdmProgress
    from .propagate import propagate

    img = read_volume(args.volume)
    seg = read_segmentation(args.seeds, reference=img.geometry, reference_shape=img.array.shape)
    names = split_names(args.segment, seg.names)
    seed_map, axis = seeds_from_segmentation(seg, names, args.axis)
    volume = np.moveaxis(img.array, axis, 0)
    bar = TqdmProgress()
    try:
        result = propagate(volume, seed_map, args.model, device=args.device,
                           between_seeds_only=args.between_seeds_only, progress=bar)
    finally:
        bar.close()
    masks = {n: np.ascontiguousarray(np.moveaxis(m, 0, axis)) for n, m in result.masks.items()}
    write_segmentation(segmentation_from_masks(masks, img.geometry), args.output)
    sidecar = Path(str(args.output)[: -len(".seg.nrrd")] + ".confidence.json")
    write_json({"axis": axis, "confidence": {n: [round(float(c), 4) for c in v] for n, v in result.confidence.items()},
                "least_confident": {n: result.least_confident(n) for n in masks}}, sidecar)
    spacing = img.geometry.spacing_kji
    vox = float(np.prod(spacing))
    for n, m in masks.items():
        print(f"{n}: {int(m.sum())} voxels, {m.sum() * vox / 1000:.2f} cm3")
    print(f"wrote {args.output} and {sidecar} ({result.seconds:.1f} s on {result.device})")
    return 0
