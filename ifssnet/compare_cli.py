"""``ifssnet compare`` and ``ifssnet compare-set``: the command line of :mod:`ifssnet.compare`.

``--option METHOD.KEY=VALUE`` passes one option to one method (:func:`parse_options`); ``--model`` and
``--device`` go to the learned methods. Tables print to stdout; ``--csv``, ``--plot`` and ``--json``
write the rows, a figure and machine-readable output. Each row's ``case`` names its sweep: the volume file
(``compare``) or the case directory (``compare-set``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .compare import (DEFAULT_METHODS, compare, compare_set, format_failures, format_summary, format_table, plot,
                      plot_summary, sweep_first, write_csv)
from . import compare as _core
from .errors import InputError, SeedError
from .memory import check_reading
from .io import check_output_files, parse_names, same_file, write_together
from .seeds import PROTOCOLS


def _method_list(text: Optional[str]) -> List[str]:
    if not text:
        return list(DEFAULT_METHODS)
    return _core.method_names(text.split(","))


def _seed_sets_from_file(path, names: Sequence[str], geometry, shape, progress=None,
                         volume_path="the volume") -> Dict[str, object]:
    """The SeedSets of :func:`seeds_along_axis` (masks with the seeds' axis first)."""
    return seeds_along_axis(path, names, geometry, shape, progress, volume_path)[0]


def seeds_along_axis(path, names: Sequence[str], geometry, shape, progress=None,
                     volume_path="the volume") -> Tuple[Dict[str, object], int]:
    """``({name: SeedSet}, axis)`` from a seed .seg.nrrd read onto the volume's grid (``geometry``, ``shape``
    (K, J, I)), as ``ifssnet propagate`` reads it (:func:`~ifssnet.propagate_cli.seeds_from_segmentation`): each
    segment's seeds (its tags, else its paint), across the axis (0 = k, 1 = j, 2 = i) they lie across, with that
    axis first in every SeedSet's mask. ``volume_path``: the volume's file, named where the seeds' paint lies outside
    it."""
    from .io import read_segmentation
    from .propagate_cli import refuse_paint_off_the_volume, seeds_from_segmentation

    seg = read_segmentation(path, reference=geometry, reference_shape=shape, progress=progress)
    missing = [n for n in names if n not in seg.names]
    if missing:
        held = [n for n in names if n in seg.names]
        raise InputError(f"The seed file {path} has no segment named {', '.join(missing)} (it has: "
                         f"{', '.join(seg.names) or 'none'}); the reference's segments compared are {', '.join(names)}.",
                         (f"Compare the segments it seeds (--segment {','.join(held)}), or name" if held else "Name")
                         + " its segments as the reference's (in Slicer: double-click the name in Segment Editor), or "
                         "give '-' for SEEDS to cut the seeds from REF by --protocol.")
    refuse_paint_off_the_volume(path, volume_path, seg, names)
    for name in names:
        tag = seg.get(name).annotated
        if tag is not None and not tag.slices:
            raise SeedError(f"'{name}' has no annotated slice in {path}.", "Cut seeds with `ifssnet seeds`, or pass '-'.")
    out, axis = seeds_from_segmentation(seg, names)
    for name in names:
        for note in seg.get(name).notes:   # slices read otherwise than painted (ifssnet.io.seed_slices), as propagate says
            print(note, file=sys.stderr)
        _core.check_seeds(name, out[name], "Paint {name} on at least 3 slices (consecutive or far apart) in "
                          f"{Path(path).name}, then compare again; or give '-' for SEEDS to cut them from REF by --protocol.")
    return out, axis


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segment", default=None, help="segment name(s), comma-separated (default: all, e.g. GM,GL,SOL)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="registered methods, comma-separated (default fbs,gfs,ws; also ifssnet, pgnet, unet3d when installed)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="3-seeds",
                   help="3-seeds: 3 consecutive slices at the largest cross-section; paper: 3 every 100 slices; "
                        "3-seeds+ends: 3-seeds and the first empty slice past each end of the muscle")
    p.add_argument("--count", type=int, default=3, help="consecutive annotated slices per group (default 3)")
    p.add_argument("--every", type=int, default=100, help="paper protocol: a group every N slices (default 100)")
    p.add_argument("--score-extent", choices=_core.SCORE_EXTENTS, default="reference",
                   help="score the reference's slice extent (default) or every slice")
    p.add_argument("--model", default=None, help="IFSS-Net checkpoint for the 'ifssnet' method (default: shipped)")
    p.add_argument("--device", default="auto", help="device for learned methods: auto | cpu | cuda")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="an option for one method, repeatable; e.g. ws.feature_dtype=uint16 (fast, not "
                        "voxel-identical), ws.object_scale_mm=3, gfs.seed_locality=1, gfs.extent_growth=none, "
                        "gfs.isolate=true and fbs.isolate=true (the ITK filter in a child process that Ctrl-C kills "
                        "at once; ITK loads in it on each run, 4-12 s; auto: only on crops of 4 M (gfs) or 40 M (fbs) voxels "
                        "or more), "
                        "ifssnet.blend=mean (propagation's rule before session 21)")
    p.add_argument("--joint", action="store_true",
                   help="methods that can (ifssnet, pgnet) segment all muscles in one run, as Slicer's Propagate "
                        "does; the muscles do not overlap unless --option ifssnet.exclusive=false. fbs always runs "
                        "so, as Slicer's Fill between slices interpolates all visible segments in one run")
    p.add_argument("--csv", type=Path, default=None, help="write the rows to this CSV file (replaced if it exists; never an input)")
    p.add_argument("--plot", type=Path, default=None, help="write the plot (PNG) to this file (replaced if it exists; never an input)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` and ``compare-set`` to the ``ifssnet`` command line."""
    c = sub.add_parser("compare", help="compare propagation methods (FBS, GFS, WS, IFSS-Net, ...) on one volume",
                       description="Run each method from the same seeds and score it against REF. "
                                   "SEEDS is a seed .seg.nrrd, or '-' to cut seeds from REF by --protocol.")
    c.add_argument("volume", type=Path)
    c.add_argument("seeds", help="seed .seg.nrrd (annotated slices), or '-' to cut them from REF by protocol")
    c.add_argument("ref", type=Path, help="reference .seg.nrrd")
    c.add_argument("--axis", type=int, default=None, choices=[0, 1, 2],
                   help="array axis (k=0, j=1, i=2) the sweep runs along: the seeds cut by --protocol are slices across "
                        "it (default 0; with a seed file, the axis its seeds lie across)")
    _add_common(c)
    c.set_defaults(func=_cli_compare)

    s = sub.add_parser("compare-set", help="compare methods over several phantom cases (mean ± std per method)",
                       description="Each DIR holds volume.nrrd and reference.seg.nrrd (from `ifssnet phantom`).")
    s.add_argument("dirs", nargs="+", type=Path)
    s.add_argument("--axis", type=int, default=0, choices=[0, 1, 2],
                   help="array axis (k=0, j=1, i=2) every case's sweep runs along: the seeds cut by --protocol are "
                        "slices across it, and the methods run along it (default 0)")
    _add_common(s)
    s.set_defaults(func=_cli_compare_set)



def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(items: Sequence[str]) -> Dict[str, dict]:
    """``["ws.feature_dtype=uint16", "gfs.seed_locality=1"]`` -> ``{"ws": {"feature_dtype": "uint16"}, ...}``."""
    opts: Dict[str, dict] = {}
    for item in items or ():
        head, eq, value = item.partition("=")
        method, dot, key = head.partition(".")
        if not (eq and dot and method.strip() and key.strip()):
            raise InputError(f"Option {item!r} is not METHOD.KEY=VALUE.", "Write e.g. --option ws.feature_dtype=uint16.")
        opts.setdefault(method.strip().lower(), {})[key.strip()] = _parse_value(value)
    return opts


def _options(args) -> Dict[str, dict]:
    # the network _check_before_work read, else the file
    opts = _core.network_options(_core.NETWORK_METHODS, getattr(args, "loaded_model", None) or args.model,
                                 args.device)
    for method, kv in parse_options(args.option).items():
        opts.setdefault(method, {}).update(kv)
    return opts


def _jsonable(rows: Sequence[dict]) -> List[dict]:
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            if k == "mask":
                continue
            if isinstance(v, np.ndarray):
                v = [None if not np.isfinite(x) else float(x) for x in v]
            elif isinstance(v, (float, np.floating)) and not np.isfinite(v):
                v = None if np.isnan(v) else ("inf" if v > 0 else "-inf")
            d[k] = v
        out.append(d)
    return out


def _check_before_work(args, methods: Sequence[str], inputs: Sequence) -> None:
    """What can be checked cheaply, before the long work: each of --csv and --plot can be written and is not
    an input file (the --model file included) nor the other of the two, the plot's format and matplotlib are there,
    every --option names a compared method, and the --model file loads (the network read here is the one the
    comparison runs: the file is read once, ``args.loaded_model``), and --model is not given without ifssnet among the
    methods (it is the 'ifssnet' method's checkpoint, which no other method reads)."""
    if args.model and "ifssnet" not in methods:   # it went to no method: PG-Net's or the U-Net's shipped weights ran
        raise InputError(f"--model gives the checkpoint of the 'ifssnet' method, which is not among the compared "
                         f"methods (--methods {','.join(methods)}); no method would use it.",
                         "Add ifssnet to --methods; for PG-Net or the 3-D U-Net give their checkpoint with --option "
                         "pgnet.model=PATH or --option unet3d.model=PATH.")
    not_compared = [m for m in parse_options(args.option) if m not in methods]
    if not_compared:
        raise InputError(f"--option names {', '.join(map(repr, not_compared))}, which is not among the compared methods "
                         f"(--methods {','.join(methods)}).",
                         "Check the method's name in --option METHOD.KEY=VALUE, or add it to --methods.")
    inputs = list(inputs) + ([args.model] if args.model else [])
    check_output_files([("--csv", args.csv), ("--plot", args.plot)], inputs)
    if args.plot is not None:
        _core._pyplot()  # matplotlib missing: say so now, not after the comparison
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        suffix = args.plot.suffix.lstrip(".").lower() or "png"
        if suffix not in formats:
            raise InputError(f"--plot '{args.plot.name}': matplotlib cannot write .{suffix} files.",
                             f"End the name in .png (or one of: {', '.join(sorted(formats))}).")
    if args.model and "ifssnet" in methods:
        from .errors import require

        require("torch")
        from .propagate import load_model

        # missing, corrupt, unsafe or another kind: exit 3 before any work; the comparison runs this network
        args.loaded_model = load_model(args.model, "cpu")


def _cli_compare(args) -> int:
    from .cli import print_json
    from .io import read_segmentation, read_volume, split_names
    from .progress import TqdmProgress

    methods = _method_list(args.methods)
    _check_before_work(args, methods, [args.volume, args.ref] + ([args.seeds] if args.seeds != "-" else []))
    check_reading(args.volume, [args.ref] + ([args.seeds] if args.seeds != "-" else []))   # before any voxel is read
    bar = TqdmProgress()      # reading the reference and the seeds: ~7 s each on a full-size sweep
    try:
        image = read_volume(args.volume)
        ref = read_segmentation(args.ref, reference=image.geometry, reference_shape=image.array.shape, progress=bar)
        names = split_names(args.segment, ref.names)
        seeds, axis = None, args.axis or 0
        if args.seeds != "-":
            seeds, axis = seeds_along_axis(args.seeds, names, image.geometry, image.array.shape, progress=bar,
                                           volume_path=args.volume)
            if args.axis is not None and args.axis != axis:
                raise SeedError(f"--axis {args.axis} was given, but the seeds in {args.seeds} lie across axis {axis}.",
                                f"Leave --axis out, or give --axis {axis}.")
        # along the axis the seeds lie across (a sweep along i or j), as `ifssnet propagate` runs
        volume, refs, spacing = sweep_first(image.array, {n: ref.mask(n) for n in names},
                                            image.geometry.spacing_kji, axis)
        rows = compare(volume, refs, spacing, methods, args.protocol, progress=bar, seeds=seeds, count=args.count, every=args.every,
                       method_options=_options(args), score_extent=args.score_extent, joint=args.joint)
    finally:
        bar.close()
    for r in rows:   # which sweep a row is of, as compare-set's rows say: CSVs of several sweeps merge into one table
        r["case"] = str(args.volume)
    if args.json:  # first: a failure writing the files below refers to the errors in it
        print_json(_jsonable(rows))
    else:
        print(format_table(rows))
    title = f"{args.volume.name}: {args.protocol if seeds is None else 'given seeds'}"
    write_together([(args.csv, lambda tmp: write_csv(rows, tmp)),
                    (args.plot, lambda tmp: plot(rows, tmp, title=title))])
    return 0


def _cli_compare_set(args) -> int:
    from .cli import print_json
    from .progress import TqdmProgress

    segments = parse_names(args.segment) or None
    methods = _method_list(args.methods)
    for i, d in enumerate(args.dirs):      # a case given twice counts twice in every mean and std
        twin = next((e for e in args.dirs[:i] if same_file(d / "volume.nrrd", e / "volume.nrrd")), None)
        if twin is not None:
            raise InputError(f"The case {d} is given twice (also as {twin}): its scores would count twice in the "
                             "means.", "Give each case folder once.")
    _check_before_work(args, methods, [p for d in args.dirs for p in (d / "volume.nrrd", d / "reference.seg.nrrd")])
    for d in args.dirs:     # one case is read at a time: each must fit (compare_set lists the missing files)
        if (d / "volume.nrrd").is_file() and (d / "reference.seg.nrrd").is_file():
            check_reading(d / "volume.nrrd", [d / "reference.seg.nrrd"])
    bar = TqdmProgress()
    try:
        res = compare_set(args.dirs, methods, args.protocol, segments, progress=bar,
                          count=args.count, every=args.every, method_options=_options(args),
                          score_extent=args.score_extent, joint=args.joint, axis=args.axis)
    finally:
        bar.close()
    if args.json:
        print_json({"summary": _jsonable(res["summary"]), "summary_by_muscle": _jsonable(res["summary_by_muscle"]),
                    "rows": _jsonable(res["rows"])})
    else:
        print(f"{len(args.dirs)} case(s), protocol {args.protocol}; mean ± std per method")
        print(format_summary(res["summary"]))
        print()
        print(format_summary(res["summary_by_muscle"], ("method", "muscle")))
        failures = format_failures(res["rows"])    # the means leave these runs out: say which and why
        if failures:
            print()
            print(failures)
    title = f"{len(args.dirs)} cases, protocol {args.protocol}"
    write_together([(args.csv, lambda tmp: write_csv(res["rows"], tmp)),
                    (args.plot, lambda tmp: plot_summary(res["summary_by_muscle"], tmp, title=title))])
    return 0
