"""``ifssnet propagate VOLUME SEEDS -o OUT.seg.nrrd``: the CLI of :func:`ifssnet.propagate.propagate`.

The seeds file is a .seg.nrrd (from Slicer or ``ifssnet seeds``). Annotated slices come from the
``IFSSNet.AnnotatedSlices`` tag when present, with the slices corrected since (``IFSSNet.ResultSliceCRC``), as
Slicer's Propagate reads them (:func:`ifssnet.io.seed_slices`), else from the slices where the segment is painted
(then an empty painted slice cannot be told from an unpainted one). The propagation axis is found
from those slices, or given with ``--axis``; the volume is transposed so that it comes first, and the
result transposed back. Writes OUT.seg.nrrd (each segment tagged with its painted slices) and
OUT.confidence.json (per-slice confidence), both or neither.

Before the long work starts, it checks the output path, the device, the model file and the memory
needed (:mod:`ifssnet.memory`), so a run that cannot finish is refused in seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import SeedError


def add_commands(sub) -> None:
    p = sub.add_parser("propagate", help="propagate painted slices through the whole volume")
    p.add_argument("volume", type=Path)
    p.add_argument("seeds", type=Path, help=".seg.nrrd with the painted slices")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output .seg.nrrd, written with OUT.confidence.json beside it; both are replaced if they "
                        "exist (a previous result), but never the volume or the seeds")
    p.add_argument("--segment", default=None, help="segment name(s), comma-separated (default: all)")
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", default="balanced", choices=["accurate", "balanced", "fast"],
                   help="speed/accuracy trade-off (see docs/performance.md)")
    p.add_argument("--axis", type=int, default=None, choices=[0, 1, 2],
                   help="array axis (k=0, j=1, i=2) the painted slices lie across (default: found); it settles a "
                        "paint whose axis is unclear, and is refused where it contradicts the paint or its tag")
    p.add_argument("--stop-area", type=float, default=None, metavar="FRACTION",
                   help="end a run where the mask stays below this share of the painted area for 5 slices "
                        "(default 0.1; a higher value stops a mask that runs on past a muscle's end sooner, and may "
                        "stop inside a muscle that thins: README, 'Where a run stops')")
    p.add_argument("--between-seeds-only", action="store_true",
                   help="do not propagate past the first and last painted slices")
    p.add_argument("--no-muscle-at", action="append", default=[], metavar="[NAME:]K,K",
                   help="slices (array index along the propagation axis) where the segment is absent, e.g. "
                        "where the muscle has ended: annotated empty, so propagation does not run past them; "
                        "repeatable, NAME may be left out when one segment is propagated")
    p.add_argument("--allow-overlap", action="store_true",
                   help="propagate each segment as if it were alone, so segments may overlap (default: they do "
                        "not; a voxel two of them claim goes to the one painted nearer to its slice, README)")
    p.add_argument("--blend", default="max", choices=["mean", "max"],
                   help="between two groups of painted slices: keep the larger probability of the two runs "
                        "(default; a run that lost the muscle does not erase what the other found, and a 'no muscle' "
                        "mark still weighs in near it) or their distance-weighted mean (before session 21; README)")
    p.add_argument("--every-frame", action="store_true",
                   help="run the network on every frame, even on a sweep finer than the network's training "
                        "sweeps (default: the frames nearest to its slice spacing; README)")
    p.set_defaults(func=_propagate)


def _painted_axis(segment, names):
    """The axis ``segment`` (a :class:`~ifssnet.io.Segment`) is painted across: its tag's, else
    :func:`~ifssnet.seeds.find_axis`'s; a :class:`SeedError` from it names the segment. ``names``: the
    segments propagated, for the what-to-do of an empty one."""
    from .seeds import find_axis

    if segment.annotated is not None:
        return segment.annotated.axis
    try:
        return find_axis(segment.mask)
    except SeedError as err:
        others = [m for m in names if m != segment.name]
        todo = err.todo
        if not segment.mask.any() and others:
            todo = f"Paint it, or leave it out: --segment {','.join(others)}."
        raise SeedError(f"Segment '{segment.name}': {err.what}", todo) from err


def seeds_from_segmentation(seg, names, axis=None):
    """``{name: SeedSet}`` along ``axis`` plus the axis, from a :class:`~ifssnet.io.Segmentation`.

    ``axis`` None: each segment's axis from its tag (:data:`~ifssnet.io.ANNOTATED_TAG`) or its paint (paint whose
    strokes lie on no slices of the volume is refused: :func:`~ifssnet.io.require_strokes_on_slices`). A given
    ``axis`` (``--axis``) settles a paint whose axis is unclear, but one that contradicts the tag or a clear
    paint is refused: propagating across the painted slices would take every slice the paint crosses for a seed.
    Returns ``(seed_map, axis)`` with every mask transposed so that ``axis`` comes first.
    """
    from .io import ANNOTATED_TAG, require_strokes_on_slices
    from .seeds import annotated_slices, cut_seeds

    names_kji = ("k", "j", "i")
    axes = set()
    found = {}
    for n in names:
        s = seg.get(n)
        if axis is None:
            ax = _painted_axis(s, names)
        else:
            ax = axis
            try:
                painted = _painted_axis(s, names)
            except SeedError:
                if not s.mask.any():
                    raise
                painted = axis          # unclear paint: --axis settles it
            if painted != axis:
                source = "its tag says" if s.annotated is not None else "its paint lies on slices across"
                raise SeedError(f"Segment '{n}': --axis {axis} ({names_kji[axis]}) was given, but {source} axis "
                                f"{painted} ({names_kji[painted]}).",
                                f"Leave --axis out, or give --axis {painted}.")
        if s.annotated is not None:
            slices = tuple(s.annotated.slices)
        else:   # fresh paint, refused where its strokes lie on no slices, as Slicer's Propagate refuses it
            slices = tuple(annotated_slices(s.mask, ax))
            require_strokes_on_slices(s.mask, ax, slices, n)
        axes.add(ax)
        found[n] = (ax, slices, s.mask)
    if len(axes) > 1:
        raise SeedError("The segments are painted across different axes.",
                        "Paint every segment on slices of the same view, or propagate them one at a time.")
    ax = axes.pop()
    seed_map = {}
    for n, (_, slices, mask) in found.items():
        try:
            seed_map[n] = cut_seeds(np.moveaxis(mask, ax, 0), slices)
        except SeedError as err:    # slices outside the volume: from a tag made on another volume
            raise SeedError(f"Segment '{n}' (tag {ANNOTATED_TAG}, axis {ax}): {err.what}",
                            "The tag was made on another volume: remove it from the segment (the painted slices "
                            "are then found from the paint), or give the seeds of this volume.") from err
    return seed_map, ax


def refuse_paint_off_the_volume(seeds_path, volume_path, seg, names) -> None:
    """Raise :class:`~ifssnet.errors.GeometryError` where a segment of ``names`` is empty in ``seg`` (the seed file
    read onto the volume's grid) but painted in the file on its own grid: its paint lies outside the volume, as in a
    seed file made on another volume (said before as "Nothing is painted in this segment"). The file is read again
    only then."""
    from .errors import GeometryError
    from .io import read_segmentation

    empty = [n for n in names if not seg.get(n).mask.any()]
    if not empty:
        return
    own = read_segmentation(seeds_path)
    off = [n for n in empty if n in own.names and own.get(n).mask.any()]
    if off:
        raise GeometryError(f"The paint of {', '.join(off)} in '{seeds_path}' lies outside the volume '{volume_path}' "
                            "(the seed file was made on another volume, or placed elsewhere).",
                            "Give the volume the seeds were painted on, or paint the seeds on this volume (in "
                            "Slicer: with it as the source volume) and save them again.")


def parse_no_muscle(items, names) -> dict:
    """``--no-muscle-at`` values (``"GM:12,380"``, or ``"12,380"`` for the only segment) -> {name: [k, ...]}."""
    from .errors import InputError

    out: dict = {}
    for item in items:
        name, _, ks = item.rpartition(":")
        if not name:
            if len(names) != 1:
                raise InputError(f"--no-muscle-at {item}: {len(names)} segments are propagated, which one is it?",
                                 f"Name it, e.g. --no-muscle-at {names[0]}:{ks}.")
            name = names[0]
        if name not in names:
            raise InputError(f"--no-muscle-at {item}: there is no segment '{name}' among {', '.join(names)}.",
                             "Give a segment that is propagated, e.g. --no-muscle-at GM:12,380.")
        try:
            out.setdefault(name, []).extend(int(k) for k in ks.split(",") if k.strip())
        except ValueError:
            raise InputError(f"--no-muscle-at {item}: '{ks}' is not a list of slice numbers.",
                             "Give slice numbers separated by commas, e.g. --no-muscle-at GM:12,380.") from None
    return out


def check_output_path(output: Path, inputs=()) -> Path:
    """Refuse, before any work, an output that cannot be written or would overwrite an input."""
    from .errors import InputError
    from .io import check_output_file

    output = Path(output)
    if not output.name.lower().endswith(".seg.nrrd"):
        raise InputError(f"'{output.name}' does not end in .seg.nrrd.", "Name the output file like 'result.seg.nrrd'.")
    return check_output_file(output, inputs, what_it_replaces="your painted slices",
                             file_hint="Give a file name ending in .seg.nrrd.")


def sidecar_path(output: Path) -> Path:
    """OUT.seg.nrrd -> OUT.confidence.json."""
    return Path(str(output)[: -len(".seg.nrrd")] + ".confidence.json")


def _write_outputs(seg, output: Path, sidecar_obj, progress=None) -> None:
    """Write OUT.seg.nrrd and OUT.confidence.json together (:func:`ifssnet.io.write_together`): a failure or
    Ctrl-C before both are written leaves both files as they were. ``progress``: the segmentation's
    :data:`~ifssnet.io.STAGE_WRITING` steps (about a minute for three segments of a 1400 x 512 x 512 sweep)."""
    from . import io

    io.write_together([(output, lambda tmp: io.write_segmentation(seg, tmp, progress=progress)),
                       (sidecar_path(output), lambda tmp: io.write_json(sidecar_obj, tmp))])


def _propagate(args) -> int:
    from .errors import require

    require("torch")
    from .memory import check_reading
    from .progress import TqdmProgress
    from .propagate import load_model, resolve_device

    # Everything that can be checked cheaply is checked before the long work starts.
    output = check_output_path(args.output, (args.volume, args.seeds))
    from .io import check_output_files

    check_output_files([("--output", output), ("its confidence file", sidecar_path(output))],
                       (args.volume, args.seeds) + ((args.model,) if args.model else ()))
    if args.stop_area is not None and not 0.0 <= args.stop_area < 1.0:
        from .errors import InputError

        raise InputError(f"--stop-area {args.stop_area} is not a share of the painted area in [0, 1).",
                         "Give a fraction such as 0.1 or 0.3.")
    device = resolve_device(args.device)
    net = load_model(args.model, "cpu")
    # a file that cannot be read is refused as read_volume would; one too large to read, before any voxel is read
    check_reading(args.volume, [args.seeds], what="Reading the volume and its seeds")

    bar = TqdmProgress()      # from here on every long stage shows: reading, propagating, writing
    try:
        _propagate_with(args, output, device, net, bar)
    finally:
        bar.close()
    return 0


def _propagate_with(args, output: Path, device: str, net, bar) -> None:
    """The long part of ``ifssnet propagate``, once the cheap checks passed; reports to ``bar``."""
    from .io import AnnotatedSlices, read_segmentation, read_volume, segmentation_from_masks, split_names
    from .memory import check_propagation_memory
    from .preprocess import check_volume
    from .propagate import STOP_AREA_FRACTION, frames_for, propagate
    from .seeds import slice_extent, validate_seeds

    window = int(getattr(getattr(net, "config", None), "window", 3))
    img = read_volume(args.volume)
    seg = read_segmentation(args.seeds, reference=img.geometry, reference_shape=img.array.shape, progress=bar)
    if not seg.segments:
        from .errors import InputError

        raise InputError(f"'{args.seeds}' holds no segment.",
                         "Paint the muscle on at least 3 slices in Slicer and save the segmentation, or cut seeds "
                         "from a reference with `ifssnet seeds`.")
    names = split_names(args.segment, seg.names)
    refuse_paint_off_the_volume(args.seeds, args.volume, seg, names)
    seed_map, axis = seeds_from_segmentation(seg, names, args.axis)
    for n, ks in parse_no_muscle(args.no_muscle_at, list(seed_map)).items():
        seed_map[n] = seed_map[n].with_empty(ks)
    volume = np.moveaxis(img.array, axis, 0)
    spacing_k = img.geometry.spacing_kji[axis]
    check_volume(volume, window)
    for n, s in seed_map.items():
        validate_seeds(s, name=n)
    # The masks transposed back and slicerio's buffer when writing: 2 bytes per voxel per segment. The
    # working-grid arrays hold only the frames the network will run on (ifssnet.slice_spacing).
    frames = frames_for(volume.shape[0], spacing_k, net, not args.every_frame, seed_map)
    check_propagation_memory(volume.shape, seed_map, net, extra_bytes=2 * len(seed_map) * volume.size,
                             frames=len(frames.frames))

    result = propagate(volume, seed_map, net, device=device, slice_spacing_mm=spacing_k,
                       match_slice_spacing=not args.every_frame,
                       between_seeds_only=args.between_seeds_only, preset=args.preset,
                       exclusive=not args.allow_overlap, blend=args.blend, progress=bar,
                       min_area_fraction=STOP_AREA_FRACTION if args.stop_area is None else args.stop_area)
    masks = {n: np.ascontiguousarray(np.moveaxis(m, 0, axis)) for n, m in result.masks.items()}
    annotated = {n: AnnotatedSlices(axis, tuple(s.slices)) for n, s in seed_map.items()}
    sidecar = sidecar_path(output)
    paint_next = {n: result.paint_next(n) for n in masks}      # each reads a whole mask: once per segment
    # Where each mask starts and ends: where to check that it stops with the muscle (--no-muscle-at if not).
    ends = {n: slice_extent(m, axis) for n, m in masks.items()}
    # each segment keeps its seed's colour, ID, terminology and label value
    _write_outputs(segmentation_from_masks(masks, img.geometry, annotated, like=seg), output,
                   {"axis": axis,
                    "confidence": {n: [round(float(c), 4) for c in v] for n, v in result.confidence.items()},
                    "least_confident": {n: result.least_confident(n) for n in masks},
                    "paint_next": paint_next, "ends": ends,
                    "frames": result.frames,
                    "frame_spacing_mm": result.frame_spacing_mm}, progress=bar)
    bar.close()               # the summary below prints under the bars, not between them
    spacing = img.geometry.spacing_kji
    vox = float(np.prod(spacing))
    for n, m in masks.items():
        nxt = paint_next[n]
        hint = f"; to correct it, paint slice {nxt} (axis {axis}) next" if nxt is not None else ""
        where = f", on slices {ends[n][0]}-{ends[n][1]}" if ends[n] else ""
        print(f"{n}: {int(m.sum())} voxels, {m.sum() * vox / 1000:.2f} cm3{where}{hint}")
    for n in masks:          # slices of the seed file read otherwise than painted (ifssnet.io.seed_slices)
        for note in seg.get(n).notes:
            print(note)
    if result.frames < volume.shape[0]:
        print(f"propagated on {result.frames} of {volume.shape[0]} frames, {result.frame_spacing_mm:.2f} mm apart "
              "(the network's slice spacing); every frame has its result")
    print(f"wrote {output} and {sidecar} ({result.seconds:.1f} s on {result.device})")
