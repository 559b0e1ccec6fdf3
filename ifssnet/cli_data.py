"""CLI commands for data: ``ifssnet phantom``, ``ifssnet seeds`` and ``ifssnet evaluate``."""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import InputError
from .memory import check_reading
from .progress import TqdmProgress


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="make a synthetic 3-D freehand ultrasound of the lower leg",
                       description="Write OUTDIR/volume.nrrd (uint8) and OUTDIR/reference.seg.nrrd (GM, GL, SOL). "
                                   "OUTDIR is made if missing; where it already holds either file, nothing is written "
                                   "unless --force (files an earlier `ifssnet phantom` wrote there, unchanged since, "
                                   "are replaced).")
    p.add_argument("outdir", type=Path)
    p.add_argument("--force", action="store_true",
                   help="replace volume.nrrd and reference.seg.nrrd where OUTDIR already holds them")
    p.add_argument("--seed", type=int, default=0, help="subject seed (same seed and shape: same volume)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
                   help="slices, depth, width in voxels (default 1400 512 512, the paper's scale)")
    p.add_argument("--spacing", type=float, default=None,
                   help="isotropic voxel size in mm (default: 0.277 at paper scale, else fitted to the field of view)")
    p.add_argument("--supersample", type=int, default=1, metavar="F",
                   help="render each slice F times finer in-plane and shrink it (block mean): a coarse phantom then "
                        "looks like a 0.277 mm sweep on the network's working grid (e.g. --shape 400 128 128 --supersample 4)")
    p.add_argument("--montage", type=Path, default=None,
                   help="also write a PNG montage with the reference outlines here (replaced if it exists)")
    p.set_defaults(func=_phantom)

    s = sub.add_parser("seeds", help="cut seed annotations (a few slices) out of a reference segmentation")
    s.add_argument("reference", type=Path, help="reference .seg.nrrd")
    s.add_argument("--segment", default=None, help="segment name(s), comma-separated (default: all)")
    s.add_argument("--at", type=int, default=None,
                   help="first annotated slice (default: the slices of the largest cross-section)")
    s.add_argument("--count", type=int, default=3, help="consecutive slices per group (default 3)")
    s.add_argument("--every", type=int, default=None, help="repeat a group every N slices (paper protocol: 100)")
    s.add_argument("--axis", type=int, default=0, choices=[0, 1, 2],
                   help="array axis (k=0, j=1, i=2) the sweep runs along, across which the slices are cut (default 0; "
                        "`ifssnet propagate` then runs along it)")
    s.add_argument("--ends", action="store_true",
                   help="also mark the first slice past each end of the muscle 'no muscle here' (annotated, empty)")
    s.add_argument("-o", "--output", type=Path, required=True,
                   help="output .seg.nrrd (replaced if it exists; never the reference)")
    s.set_defaults(func=_seeds)

    e = sub.add_parser("evaluate", help="score a segmentation against a reference (Dice, distances, volume)")
    e.add_argument("pred", type=Path)
    e.add_argument("ref", type=Path)
    e.add_argument("--segment", default=None, help="segment name(s), comma-separated (default: all shared)")
    e.add_argument("--exclude-annotated", action="store_true",
                   help="leave out slices that PRED marks as annotated (seed slices)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_evaluate)


def _check_montage(montage: Path) -> None:
    """Refuse, before the rendering, a --montage that matplotlib cannot write (its format, from the suffix: png when
    there is none) or that is a folder; it was an internal error once the phantom was written."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = montage.suffix.lstrip(".").lower() or "png"
    if suffix not in formats:
        raise InputError(f"--montage '{montage.name}': matplotlib cannot write .{suffix} files.",
                         f"End the name in .png (or one of: {', '.join(sorted(formats))}).")
    if montage.is_dir():
        raise InputError(f"--montage '{montage}' is a folder.", "Give a file name, e.g. montage.png.")


def _phantom(args) -> int:
    import time

    from .io import record_made, refuse_replacing
    from .phantom import PHANTOM_FILES, save_montage, write_phantom

    refuse_replacing(args.outdir, PHANTOM_FILES, args.force, "phantom")
    start_ns = time.time_ns()
    if args.montage:
        _check_montage(args.montage)
    kwargs = {"seed": args.seed, "supersample": args.supersample}
    if args.shape:
        kwargs["shape"] = tuple(args.shape)
    if args.spacing is not None:          # 0 is refused by make_phantom, not dropped for the default
        kwargs["spacing"] = args.spacing
    bar = TqdmProgress()
    try:
        phantom = write_phantom(args.outdir, progress=bar, **kwargs)
    finally:
        bar.close()
        record_made(args.outdir, PHANTOM_FILES, start_ns)    # the next run replaces them without --force
    if args.montage:
        save_montage(phantom, args.montage)
    print(f"wrote {args.outdir / 'volume.nrrd'} {phantom.volume.shape} and {args.outdir / 'reference.seg.nrrd'}")
    return 0


def _seeds(args) -> int:
    from .io import read_segmentation, split_names, write_segmentation
    from .seeds import make_seed_segmentation

    from .propagate_cli import check_output_path

    check_output_path(args.output, (args.reference,))
    check_reading(None, [args.reference])     # before any voxel is read
    bar = TqdmProgress()      # reading and writing a full-size .seg.nrrd: ~7 s and ~5 s
    try:
        ref = read_segmentation(args.reference, progress=bar)
        if not ref.segments:
            raise InputError(f"'{args.reference}' holds no segment.", "Give a segmentation with the painted muscles.")
        names = split_names(args.segment, ref.names)
        seeds = make_seed_segmentation(ref, names, at=args.at, count=args.count, every=args.every, ends=args.ends,
                                       axis=args.axis)
        write_segmentation(seeds, args.output, progress=bar)
    finally:
        bar.close()
    for s in seeds.segments:
        print(f"{s.name}: slices {', '.join(map(str, s.annotated.slices))}")
    return 0


def _evaluate(args) -> int:
    from .cli import print_json

    check_reading(None, [args.ref, args.pred])     # before any voxel is read
    bar = TqdmProgress()      # reading (~7 s a full-size file) and the surface distances (seconds per segment)
    try:
        results = _evaluate_files(args, bar)
    finally:
        bar.close()
    if args.json:
        print_json(results)
    else:
        print(format_metrics(results))
    return 0


def _evaluate_files(args, progress) -> dict:
    """``{segment: metrics}`` of ``ifssnet evaluate``, reporting to ``progress``."""
    from .io import check_unique_names, parse_names, read_segmentation, resample_segmentation
    from .metrics import evaluate

    ref = read_segmentation(args.ref, progress=progress)
    if not ref.segments:
        raise InputError(f"The reference '{args.ref}' holds no segment.", "Give the reference segmentation.")
    # on the reference's grid, grown to hold all of the prediction (a reference Slicer saved cropped is smaller)
    pred = read_segmentation(args.pred, reference=ref.geometry, reference_shape=ref.shape, progress=progress,
                             cover=True)
    if pred.segments and (pred.shape != ref.shape or not pred.geometry.same_as(ref.geometry)):
        ref = resample_segmentation(ref, pred.geometry, pred.shape, progress=progress)
    shared = [n for n in pred.names if n in ref.names]
    if not shared and pred.segments:   # (a labelmap's segments are Label_v, a Slicer file's its segment names)
        raise InputError(f"No segment has the same name in both files: the prediction '{args.pred}' has "
                         f"{', '.join(pred.names)}; the reference '{args.ref}' has {', '.join(ref.names)}.",
                         "Segments are matched by name: give both files the same names (in Slicer: double-click a "
                         "segment's name in Segment Editor, then save); a plain labelmap's label v is segment "
                         "'Label_v'.")
    names = parse_names(args.segment) if args.segment else shared
    missing = [n for n in names if n not in shared]
    if missing or not names:
        raise InputError(f"Segment(s) {', '.join(missing) or '(none)'} are not in both files.",
                         f"Both files have: {', '.join(shared) or 'no segment of the same name'}.")
    check_unique_names(names, pred.names, f"The prediction '{args.pred}'")
    check_unique_names(names, ref.names, f"The reference '{args.ref}'")
    empty = [n for n in names if not ref.mask(n).any()]
    if empty:  # nothing to score against: a Dice of 0 and infinite distances would mean nothing
        others = [n for n in names if n not in empty]
        raise InputError(f"Segment {', '.join(map(repr, empty))} is empty in the reference '{args.ref}': "
                         "there is nothing to score against.",
                         "Check that it is the complete (ground truth) segmentation"
                         + (f", or leave the segment out: --segment {','.join(others)}." if others else "."))
    import numpy as np

    results = {}
    for name in names:
        exclude, axis = (), 0
        seg = pred.get(name)
        if args.exclude_annotated and seg.annotated is not None:
            exclude, axis = seg.annotated.slices, seg.annotated.axis
        p, r, sp = seg.mask, ref.mask(name), tuple(ref.geometry.spacing_kji)
        if axis:   # slices across j or i (a propagation along that axis): score with that axis first, as propagated
            p, r = np.moveaxis(p, axis, 0), np.moveaxis(r, axis, 0)
            sp = (sp[axis],) + tuple(v for a, v in enumerate(sp) if a != axis)
        results[name] = evaluate(p, r, sp, exclude_slices=exclude, progress=progress)
    return results


def format_metrics(results: dict) -> str:
    """A plain table, one row per segment: Dice, IoU, HD95, ASD (mm), volume (cm3), volume error (%)."""
    head = f"{'segment':<10}{'Dice':>8}{'IoU':>8}{'HD95mm':>9}{'ASDmm':>8}{'vol cm3':>10}{'ref cm3':>10}{'err %':>8}"
    rows = [head]
    for name, m in results.items():
        rows.append(f"{name:<10}{m['dice']:>8.4f}{m['iou']:>8.4f}{m['hd95_mm']:>9.2f}{m['asd_mm']:>8.2f}"
                    f"{m['volume_cm3']:>10.2f}{m['ref_volume_mm3'] / 1000:>10.2f}{m['volume_error_pct']:>8.2f}")
    return "\n".join(rows)
