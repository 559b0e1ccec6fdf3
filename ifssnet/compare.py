"""Put propagation methods side by side on the same data: seeds by protocol, timing, memory, scores.

Protocols (seed slices cut from the reference of each muscle by :func:`ifssnet.seeds.protocol_slices`):

- ``3-seeds``: the clinical workflow; 3 consecutive annotated slices where the muscle's cross-section
  is largest, and nothing else.
- ``paper``: the paper's Table I; 3 consecutive annotated slices every 100 slices (about 3 %).

Scoring: :func:`ifssnet.metrics.evaluate` over the reference's sweep extent (the slices from the first
to the last slice where the reference muscle exists), with the annotated slices excluded (every
method returns them as painted). ``score_extent="volume"`` scores every slice instead, which also
counts leaks beyond the muscle's ends.

Timing and memory, per method and muscle, in this process:

- ``time_s``: wall-clock seconds of the method call (``time.perf_counter``), seeds and scoring excluded, and
  reading a network's file too: it is read once per run, before the first call (``registry.load_once``).
- ``peak_mb``: peak resident memory (RSS) of the process during the call, above its RSS just before
  the call, in MiB; ``mem_source`` says how it was read, and ``gpu_peak_mb`` is a torch method's GPU peak
  when CUDA is in use (:mod:`ifssnet.peak_memory` measures all three and says how).

Methods come from :mod:`ifssnet.baselines.registry`; a newly registered method joins the table with
no change here. Per-method options (e.g. the network's checkpoint) go through ``method_options``.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import Cancelled, DependencyError, IFSSNetError, InputError, ResourceError, SeedError
from .peak_memory import PeakMemory, gpu_peak_mb, gpu_reset
from .progress import check_cancel, report
from .seeds import PROTOCOLS, slice_extent

DEFAULT_METHODS = ("fbs", "gfs", "ws")

#: Columns of a result row, in table/CSV order (the row also carries ``slice_dice``, ``seed_slices`` and
#: ``extent`` for the plot; those are not written to CSV).
COLUMNS = ("method", "muscle", "protocol", "dice", "iou", "hd", "hd95", "asd", "slice_hd", "slice_asd",
           "precision", "recall", "volume_cm3", "ref_volume_cm3", "volume_error_pct", "volume_diff_pct",
           "past_ends_pct", "time_s", "peak_mb", "gpu_peak_mb", "mem_source", "seed_slices_n", "error")
#: Each column's unit and what it is (Slicer's table shows them as the column header's tooltip, as Segment Statistics'
#: table does); the figures are computed as :mod:`ifssnet.metrics` says.
COLUMN_INFO = {
    "method": ("", "The propagation method."), "muscle": ("", "The segment."),
    "protocol": ("", "Where the seed slices came from: a protocol that cut them from the reference, or 'given'."),
    "dice": ("", "Dice coefficient, 0..1, over the scored slices (seed slices excluded)."),
    "iou": ("", "Intersection over union (Jaccard), 0..1, over the scored slices."),
    "hd": ("mm", "Hausdorff distance between the surfaces."),
    "hd95": ("mm", "95th percentile Hausdorff distance."),
    "asd": ("mm", "Average symmetric surface distance."),
    "slice_hd": ("mm", "Mean over slices of the 2-D Hausdorff distance (the paper's)."),
    "slice_asd": ("mm", "Mean over slices of the 2-D average surface distance (the paper's)."),
    "precision": ("", "Share of the result inside the reference, 0..1."),
    "recall": ("", "Share of the reference the result covers, 0..1."),
    "volume_cm3": ("cm3", "Volume of the result, as Segment Statistics computes it."),
    "ref_volume_cm3": ("cm3", "Volume of the reference."),
    "volume_error_pct": ("%", "Absolute volume error, |result - reference| / reference."),
    "volume_diff_pct": ("%", "Signed volume error, (result - reference) / reference: + larger, - smaller."),
    "past_ends_pct": ("%", "Volume of the result on slices past the reference muscle's ends, in % of its volume."),
    "time_s": ("s", "Wall-clock time of the method's run (seeds and scoring excluded)."),
    "peak_mb": ("MiB", "Peak resident memory of the process during the run, above the memory before it."),
    "gpu_peak_mb": ("MiB", "Peak GPU memory during the run (CUDA only)."),
    "mem_source": ("", "How the peak memory was read."),
    "seed_slices_n": ("", "Number of seed slices (annotated, not scored)."),
    "error": ("", "Why the method failed; empty when it ran."),
}
METRIC_KEYS = ("dice", "iou", "hd", "hd95", "asd", "slice_hd", "slice_asd", "precision", "recall",
               "volume_cm3", "volume_error_pct", "past_ends_pct", "time_s", "peak_mb")
_FROM_EVALUATE = {"dice": "dice", "iou": "iou", "hd": "hd_mm", "hd95": "hd95_mm", "asd": "asd_mm",
                  "slice_hd": "slice_hd_mm", "slice_asd": "slice_asd_mm", "precision": "precision",
                  "recall": "recall", "volume_cm3": "volume_cm3", "ref_volume_cm3": "ref_volume_cm3",
                  "volume_error_pct": "volume_error_pct", "volume_diff_pct": "volume_diff_pct"}


# --------------------------------------------------------------------------------------------------
# Seeds by protocol


def protocol_seeds(ref_mask: np.ndarray, protocol: str = "3-seeds", count: int = 3, every: int = 100):
    """Cut a :class:`ifssnet.seeds.SeedSet` out of a reference mask (K, J, I) by protocol."""
    from .seeds import cut_seeds, protocol_slices

    if protocol not in PROTOCOLS:
        raise InputError(f"Unknown protocol {protocol!r}.", f"Choose one of: {', '.join(PROTOCOLS)}.")
    ref_mask = np.asarray(ref_mask)
    if not ref_mask.any():
        raise SeedError("The reference segment is empty; there is nothing to cut seeds from.",
                        "Check the segment name and the reference file.")
    return cut_seeds(ref_mask, protocol_slices(ref_mask, protocol, count=count, every=every))


#: What to do about seeds too few for Propagate, by where they came from ({name}: the segment).
SEEDS_TODO = "Paint {name} on at least 3 slices (consecutive or far apart), then compare again."
COUNT_TODO = "Cut at least 3 slices per segment: count 3, as in the paper (on the command line: --count 3)."


def check_seeds(name: str, seeds, todo: str = SEEDS_TODO) -> None:
    """Refuse, before any method runs, the seeds of segment ``name`` that Propagate refuses.

    The rule is Propagate's own (:func:`ifssnet.seeds.validate_seeds`): the muscle painted on at least 3 slices
    (consecutive or far apart; a slice marked "no muscle here" does not count). Every method of a
    comparison starts from the same seeds, so a table of baselines run on seeds IFSS-Net refuses, beside IFSS-Net's
    error row, compares nothing. ``seeds``: a :class:`~ifssnet.seeds.SeedSet`; ``todo`` (``{name}``: the segment,
    quoted): what to do, in the caller's terms (the command line's seed file, Slicer's seed segmentation).
    Raises :class:`SeedError`.
    """
    from .seeds import validate_seeds

    try:
        validate_seeds(seeds, name=name)
    except SeedError as err:
        raise SeedError(f"{err.what} The comparison starts every method from seeds Propagate would take.",
                        todo.format(name=repr(name))) from err


#: What to do about seeds on every slice of the muscle, by where they came from.
ALL_SEEDS_TODO = ("Give seeds on the painted slices only, not a complete segmentation (the reference, a copy of it, a "
                  "propagated result): on the command line '-' for SEEDS cuts them from REF by --protocol; in Slicer, "
                  "choose the segmentation with your painted slices, or the protocol '3-seeds'.")
SHORT_MUSCLE_TODO = ("Compare on a reference where the muscle spans more slices than the protocol cuts, or leave this "
                     "segment out (on the command line: --segment).")


def check_something_to_score(name: str, ref_mask: np.ndarray, seeds, given: bool = True) -> None:
    """Refuse seeds on every slice of the reference's extent (``ref_mask`` (K, J, I)): the seed slices are not scored,
    so no slice would be left, and every method would score a Dice of 1 over nothing. Seeds from a complete
    segmentation (the reference given as the seed file, a clone of it in Slicer) are so. ``given``: the seeds were
    given (else cut by a protocol, on a muscle shorter than it cuts). Raises :class:`SeedError`."""
    first, last = reference_extent(np.asarray(ref_mask) != 0)
    if last < first or set(range(first, last + 1)) - {int(s) for s in seeds.slices}:
        return
    span = last - first + 1
    raise SeedError(f"The seed slices of {name!r} cover every slice the reference has it on ({span} slice"
                    f"{'s' if span != 1 else ''}): no slice is left to score, and every method would score a Dice "
                    "of 1.", ALL_SEEDS_TODO if given else SHORT_MUSCLE_TODO)


def method_names(methods: Iterable[str]) -> List[str]:
    """The method names as :func:`compare` and :func:`ifssnet.bench.run_bench` take them: stripped, lower case,
    empty ones left out (the registry's names are lower case)."""
    return [m.strip().lower() for m in methods if m and m.strip()]


NETWORK_METHODS = ("ifssnet", "pgnet", "unet3d")
"""The learned methods: they take a ``device``; ``ifssnet`` also a ``model`` (its checkpoint)."""


def network_options(methods: Iterable[str], model=None, device: str = "auto") -> Dict[str, dict]:
    """``method_options`` for :func:`compare` from one model and one device (``ifssnet compare --model --device``,
    the Comparison module's Model and Device): ``{method: {"device": device}}`` for each of ``methods`` among
    :data:`NETWORK_METHODS`, and ``"model"`` for ``ifssnet`` where ``model`` (a checkpoint path or a loaded network)
    is given. ``{}`` where neither is given (each method's defaults: the shipped weights, ``auto``). The file is read,
    and a bad one refused, by the method's loader when the comparison starts (``registry.load_once``)."""
    model = None if isinstance(model, str) and not model else model   # "": the shipped weights (not a module's truth)
    if model is None and (device or "auto") == "auto":
        return {}
    opts: Dict[str, dict] = {}
    for name in method_names(methods):
        if name in NETWORK_METHODS:
            opts[name] = {"device": device or "auto"}
            if model is not None and name == "ifssnet":
                opts[name]["model"] = model
    return opts


def reference_extent(ref_mask: np.ndarray) -> Tuple[int, int]:
    """(first, last) slice along axis 0 where the reference is non-empty (inclusive)."""
    return slice_extent(ref_mask) or (0, -1)


def past_ends_pct(pred: np.ndarray, ref: np.ndarray, extent: Optional[Tuple[int, int]] = None) -> float:
    """The volume of ``pred`` on slices (axis 0) past ``ref``'s ends, in % of ``ref``'s volume (both (K, J, I));
    ``extent``: ``ref``'s (first, last) slice when already known (:func:`reference_extent`)."""
    r0, r1 = extent if extent is not None else reference_extent(ref)
    past = np.count_nonzero(pred[:r0]) + np.count_nonzero(pred[r1 + 1:])
    return 100.0 * past / max(np.count_nonzero(ref), 1)


@dataclass(frozen=True)
class CroppedMask:
    """A binary mask held as its bounding box, as :func:`compare` keeps a prediction with ``keep_masks="cropped"``:
    ``shape`` the whole mask's, ``box`` one ``slice`` per axis, ``array`` (uint8) the voxels inside the box. A muscle
    fills a small part of a sweep, so the box is a fraction of the volume: a whole mask of a 1400 x 512 x 512 sweep
    is 367 MB, and a comparison of 4 methods on 3 muscles keeps 12 of them until they are written."""

    shape: Tuple[int, ...]
    box: Tuple[slice, ...]
    array: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> "CroppedMask":
        mask = np.asarray(mask)
        box = []
        for axis in range(mask.ndim):
            extent = slice_extent(mask, axis)
            box.append(slice(extent[0], extent[1] + 1) if extent else slice(0, 0))
        box = tuple(box)
        return cls(tuple(mask.shape), box, (mask[box] != 0).astype(np.uint8))

    def full(self) -> np.ndarray:
        """The whole mask, uint8 of ``shape``."""
        out = np.zeros(self.shape, np.uint8)
        out[self.box] = self.array
        return out

    def moveaxis(self, source: int, destination: int) -> "CroppedMask":
        """The mask with axis ``source`` moved to ``destination`` (as ``np.moveaxis`` moves a whole mask's)."""
        order = [a for a in range(len(self.shape)) if a != source]
        order.insert(destination, source)
        return CroppedMask(tuple(self.shape[a] for a in order), tuple(self.box[a] for a in order),
                           np.ascontiguousarray(np.moveaxis(self.array, source, destination)))


# --------------------------------------------------------------------------------------------------
# The runner


def run_method(name: str, volume: np.ndarray, seeds, spacing_kji, *, options: Optional[dict] = None,
               progress=None, cancel=None) -> Tuple[np.ndarray, float, float, float, str]:
    """Run one registered method; returns ``(mask uint8 (K, J, I), time_s, peak_mb, gpu_peak_mb, mem_source)``.

    ``seeds``: one SeedSet, or ``{name: SeedSet}`` for a method that segments several segments in one
    call (its ``joint`` attribute is true): then the first item is ``{name: mask}``."""
    from .baselines.registry import get, prepare

    fn = get(name)
    prepare(name)  # one-off imports/loading, not timed
    gpu_reset()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        try:
            out = fn(volume, seeds, spacing_kji, progress=progress, cancel=cancel, **(options or {}))
        except MemoryError as exc:
            raise ResourceError(f"Method {name!r} ran out of memory on a volume of {volume.shape}.",
                                "Crop the volume, or run the comparison on a smaller case.") from exc
        seconds = time.perf_counter() - t0
    if isinstance(seeds, Mapping):
        if not isinstance(out, Mapping) or set(out) != set(seeds):
            raise InputError(f"Method {name!r} was given segments {', '.join(seeds)} and returned "
                             f"{', '.join(out) if isinstance(out, Mapping) else 'one mask'}.",
                             "Fix the method: for several segments it must return {name: mask}.")
        masks = {n: _checked_mask(name, m, volume.shape) for n, m in out.items()}
        return masks, seconds, mem.peak_mb, gpu_peak_mb(), mem.source
    return _checked_mask(name, out, volume.shape), seconds, mem.peak_mb, gpu_peak_mb(), mem.source


def _checked_mask(method: str, mask, shape) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise InputError(f"Method {method!r} returned shape {mask.shape}, the volume is {tuple(shape)}.",
                         "Fix the method: it must return a (K, J, I) mask.")
    return (mask != 0).astype(np.uint8)


#: what :func:`score` scores over: the reference's extent, or every slice.
SCORE_EXTENTS = ("reference", "volume")


def _check_score_extent(score_extent: str) -> None:
    if score_extent not in SCORE_EXTENTS:
        raise InputError(f"Unknown score extent {score_extent!r}.", "Use 'reference' or 'volume'.")


def score(pred: np.ndarray, ref: np.ndarray, spacing_kji, seed_slices: Sequence[int],
          score_extent: str = "reference", *, progress=None, cancel=None) -> dict:
    """Scores of one prediction: evaluate() over the reference extent (or the volume), seed slices excluded.

    Returns the row's metric columns plus ``slice_dice`` (float (K,), nan where both are empty or
    the slice is not scored) and ``extent`` (first, last slice scored). ``past_ends_pct``, whatever the extent
    scored, is the prediction's volume on slices past the reference's ends, in % of the reference's volume:
    what a mask that runs on past the muscle adds to the volume a clinician reads in Segment Statistics, which
    the reference extent's scores do not see. ``progress`` and ``cancel`` go to :func:`~ifssnet.metrics.evaluate`
    (its surface distances: 1.6-4 s per muscle on a 1400 x 512 x 512 phantom, uncancellable before).
    """
    from .metrics import evaluate, slice_dice

    K = ref.shape[0]
    r0, r1 = reference_extent(ref)
    _check_score_extent(score_extent)
    k0, k1 = (r0, r1) if score_extent == "reference" else (0, K - 1)
    outside = [k for k in range(K) if k < k0 or k > k1]
    exclude = sorted(set(int(s) for s in seed_slices) | set(outside))
    m = evaluate(pred, ref, spacing_kji, exclude_slices=exclude, progress=progress, cancel=cancel)
    row = {col: float(m[key]) for col, key in _FROM_EVALUATE.items()}
    row["past_ends_pct"] = past_ends_pct(pred, ref, (r0, r1))
    sd = slice_dice(pred, ref)
    sd[exclude] = np.nan
    row["slice_dice"] = sd
    row["extent"] = (k0, k1)
    return row


def compare(volume: np.ndarray, ref_masks: Mapping[str, np.ndarray], spacing_kji, methods: Iterable[str] = DEFAULT_METHODS,
            protocol: str = "3-seeds", progress=None, cancel=None, *, seeds: Optional[Mapping[str, object]] = None,
            count: int = 3, every: int = 100, method_options: Optional[Mapping[str, dict]] = None,
            score_extent: str = "reference", keep_masks: Union[bool, str] = False, joint: bool = False) -> List[dict]:
    """Run every method on every muscle and score it; one row (dict) per (muscle, method).

    volume: (K, J, I) intensities; ref_masks: name -> reference mask (K, J, I); spacing_kji: (sz, sy, sx) mm.
    methods: registered method names. protocol: one of :data:`ifssnet.seeds.PROTOCOLS` (seeds cut from the
    reference); ``seeds`` (name -> SeedSet) overrides the protocol for the muscles it names.
    method_options: method name -> keyword arguments for that method (e.g. ``{"ifssnet": {"model": path}}``).
    keep_masks: also put each prediction into its row under ``"mask"``; ``"cropped"``: as a :class:`CroppedMask`
    (its bounding box), which holds a fraction of the memory of a whole mask per row.
    joint: a method that can (its ``joint`` attribute: ``ifssnet``, ``pgnet``) segments all muscles in one
    call, as Slicer's Propagate does with several segments; its rows get ``joint`` = 1, and each the
    call's time divided by the number of muscles. The others run one muscle at a time, as without it.
    A method whose ``always_joint`` attribute is true (``fbs``: Slicer's Fill between slices interpolates all
    visible segments in one run) runs so whatever ``joint`` says.
    Rows have the keys of :data:`COLUMNS` (times in s, distances in mm, volumes in cm3, memory in MiB)
    plus ``slice_dice``, ``seed_slices`` and ``extent`` for :func:`plot`. A method that fails with an
    ifssnet error gets a row with ``error`` set and nan scores; Cancelled and DependencyError propagate.
    Seeds that Propagate refuses (fewer than 3 annotated slices: :func:`check_seeds`), given or cut with a
    ``count`` under 3, and given seeds on every slice of a muscle (a complete segmentation: nothing left to score,
    :func:`check_something_to_score`) raise :class:`SeedError` before any method runs. A protocol that cuts every
    slice of a muscle (one shorter than it cuts) gives that muscle's rows the error; the other muscles run.
    """
    from .baselines.registry import get, load_once, prepare

    volume = np.asarray(volume)
    methods = method_names(methods)
    if not methods:
        raise InputError("No method to compare.", "Give at least one method, e.g. --methods fbs,gfs,ws.")
    if not ref_masks:
        raise InputError("No reference segment to compare on.", "Give the reference segmentation and --segment.")
    _check_score_extent(score_extent)   # score() would say so only after the first method's run
    options = dict(method_options or {})
    for name in methods:
        _check_options(name, get(name), options.get(name))  # unknown name or option: fail before any work
    for name in methods:
        prepare(name)  # a missing package (ITK, torch) fails here, before any work
    for name in methods:   # a network's file is read once per run, not for each muscle (registry.load_once)
        options[name] = load_once(name, options.get(name))
    seeds = dict(seeds or {})
    from .preprocess import check_image

    check_image(volume)  # a 2-D image (also one slice thick), 4-D, empty: before any work
    for muscle, ref in ref_masks.items():
        if np.shape(ref) != volume.shape:
            raise InputError(f"Reference '{muscle}' has shape {np.shape(ref)}, the volume {volume.shape}.",
                             "Resample the reference onto the volume's grid.")
    empty = [muscle for muscle, ref in ref_masks.items() if not np.any(ref)]
    if empty:  # nothing to score against, nor to cut seeds from: before any work, naming the segment
        others = [m for m in ref_masks if m not in empty]
        raise SeedError(f"Reference segment {', '.join(map(repr, empty))} is empty (no voxel on this volume's grid): "
                        "there is nothing to score against.",
                        "Check that the reference is the complete (ground truth) segmentation of this volume"
                        + (f", or leave it out of the comparison (on the command line: --segment {','.join(others)})."
                           if others else "."))
    total = len(ref_masks) * len(methods)
    done = 0
    rows: List[dict] = []
    report(progress, "Compare", 0, total)
    seed_sets = {muscle: seeds.get(muscle) or protocol_seeds((np.asarray(ref) != 0).astype(np.uint8), protocol,
                                                              count, every)
                 for muscle, ref in ref_masks.items()}
    unscorable: Dict[str, SeedError] = {}
    for muscle, seed_set in seed_sets.items():  # Propagate's rule, for every method: before any of them runs
        check_seeds(muscle, seed_set, SEEDS_TODO if muscle in seeds else COUNT_TODO)
        try:
            check_something_to_score(muscle, ref_masks[muscle], seed_set, given=muscle in seeds)
        except SeedError as err:
            if muscle in seeds:    # the seeds given are a complete segmentation: the input is wrong
                raise
            unscorable[muscle] = err   # a muscle shorter than the protocol cuts: its rows say so, the others run
    together = [name for name in methods if getattr(get(name), "always_joint", False)
                or (joint and getattr(get(name), "joint", False))]
    scorable = {muscle: s for muscle, s in seed_sets.items() if muscle not in unscorable}
    joint_runs = {name: _run_joint(name, volume, scorable, spacing_kji, options.get(name), progress, cancel)
                  for name in together} if scorable else {}
    for muscle, ref in ref_masks.items():
        ref = (np.asarray(ref) != 0).astype(np.uint8)
        check_cancel(cancel)
        seed_set = seed_sets[muscle]
        for name in methods:
            check_cancel(cancel)
            row = {"method": name, "muscle": muscle, "protocol": protocol if muscle not in seeds else "given",
                   "seed_slices": tuple(int(s) for s in seed_set.slices), "seed_slices_n": len(seed_set.slices),
                   "error": "", "score_extent": score_extent}
            if name in joint_runs:
                row["joint"] = 1
            try:
                if muscle in unscorable:
                    raise unscorable[muscle]
                if name in joint_runs:
                    if isinstance(joint_runs[name], IFSSNetError):
                        raise joint_runs[name]
                    pred, seconds, peak, gpu_peak, source = joint_runs[name].pop(muscle)
                else:
                    pred, seconds, peak, gpu_peak, source = run_method(name, volume, seed_set, spacing_kji,
                                                                       options=options.get(name),
                                                                       progress=progress, cancel=cancel)
            except (Cancelled, DependencyError):
                raise
            except IFSSNetError as err:
                row.update({k: math.nan for k in _FROM_EVALUATE}, time_s=math.nan, peak_mb=math.nan,
                           gpu_peak_mb=math.nan, mem_source="", error=str(err), slice_dice=None,
                           extent=reference_extent(ref))
                rows.append(row)
                done += 1
                report(progress, "Compare", done, total)
                continue
            row.update(time_s=seconds, peak_mb=peak, gpu_peak_mb=gpu_peak, mem_source=source)
            row.update(score(pred, ref, spacing_kji, seed_set.slices, score_extent, progress=progress,
                             cancel=cancel))
            if keep_masks:
                row["mask"] = CroppedMask.of(pred) if keep_masks == "cropped" else pred
            rows.append(row)
            del pred
            done += 1
            report(progress, "Compare", done, total)
    return rows


def _run_joint(name: str, volume, seed_sets: Mapping[str, object], spacing_kji, options, progress, cancel):
    """Run ``name`` once on all ``seed_sets``; returns ``{muscle: run_method's tuple}`` (the time split
    evenly), or the ifssnet error the run raised, which each muscle's row then reports."""
    try:
        masks, seconds, peak, gpu_peak, source = run_method(name, volume, dict(seed_sets), spacing_kji,
                                                            options=options, progress=progress, cancel=cancel)
    except (Cancelled, DependencyError):
        raise
    except IFSSNetError as err:
        return err
    share = seconds / max(1, len(masks))
    return {muscle: (mask, share, peak, gpu_peak, source) for muscle, mask in masks.items()}


def _check_options(name: str, fn, opts: Optional[dict]) -> None:
    import inspect

    if not opts:
        return
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if getattr(fn, "option_names", None) is not None:      # **options passed on: the method names them
        known = accepted = list(fn.option_names())
    elif any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    else:
        from .baselines.registry import keyword_options

        accepted, known = params, keyword_options(fn)
    unknown = [k for k in opts if k not in accepted]
    if unknown:
        raise InputError(f"Method {name!r} has no option {', '.join(map(repr, unknown))}.",
                         f"Its options are: {', '.join(known) or '(none)'}.")
    from .baselines.child_process import ISOLATABLE, check_isolate

    if "isolate" in opts and name in ISOLATABLE:  # the ITK filter's child process: true, false or auto
        check_isolate(opts["isolate"], name)


# --------------------------------------------------------------------------------------------------
# Output: CSV, table, plot


def _fmt(v, digits: int = 3) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def write_csv(rows: Sequence[dict], path) -> Path:
    """Write the rows' scalar columns (:data:`COLUMNS`, then any extra scalar keys) to ``path``, atomically."""
    from .io import atomic_write

    def scalar(v) -> bool:
        return v is None or isinstance(v, (str, int, float, np.floating, np.integer))

    extra: List[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in COLUMNS and k not in extra and scalar(v):
                extra.append(k)
    # a key that holds an array in any row (slice_dice: None in a failed row) is not a column
    extra = [k for k in extra if all(scalar(r.get(k)) for r in rows)]
    cols = [c for c in COLUMNS if any(c in r for r in rows)] + extra

    def _write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow(["" if r.get(c) is None else (repr(float(r[c])) if isinstance(r.get(c), (float, np.floating)) else r.get(c))
                            for c in cols])

    return atomic_write(path, _write)


_TABLE = (("method", "method", 8, None), ("muscle", "muscle", 7, None), ("Dice", "dice", 7, 3), ("IoU", "iou", 7, 3),
          ("HD", "hd", 7, 1), ("HD95", "hd95", 7, 1), ("ASD", "asd", 6, 2), ("sHD", "slice_hd", 6, 1),
          ("sASD", "slice_asd", 6, 2), ("Prec", "precision", 6, 3), ("Rec", "recall", 6, 3),
          ("vol cm3", "volume_cm3", 8, 2), ("err %", "volume_error_pct", 7, 1), ("time s", "time_s", 7, 2),
          ("peak MB", "peak_mb", 8, 0))


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table: method, muscle, Dice, IoU, HD, HD95, ASD, per-slice HD/ASD (mm), precision,
    recall, volume (cm3), volume error (%), wall time (s), peak memory (MiB). Failed runs show their error."""
    head = " ".join(f"{title:>{w}}" if digits is not None else f"{title:<{w}}" for title, _, w, digits in _TABLE)
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['method']:<8} {r['muscle']:<7} error: {r['error']}")
            continue
        cells = []
        for _, key, w, digits in _TABLE:
            v = r.get(key)
            cells.append(f"{_fmt(v, digits):>{w}}" if digits is not None else f"{str(v):<{w}}")
        lines.append(" ".join(cells))
    extents = {r.get("score_extent", "reference") for r in rows}
    where = {"reference": "over the reference's extent", "volume": "over every slice"}
    scored = " and ".join(where.get(e, str(e)) for e in sorted(extents)) if extents else where["reference"]
    lines.append(f"distances in mm (sHD/sASD: per-slice means, the paper's); scored {scored}, "
                 "annotated slices excluded")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DependencyError("Plotting needs matplotlib.", "Install it with: python -m pip install matplotlib") from exc
    return plt


def _save_figure(plt, fig, path, title: str = "") -> Path:
    """Add the title, lay out and write ``fig`` atomically (format from the suffix, default png); close it."""
    from .io import atomic_write

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".") or "png"
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=suffix))
    finally:
        plt.close(fig)


def plot(results: Sequence[dict], path, title: str = "") -> Path:
    """Dice per slice along the sweep for each method (one panel per muscle; seed slices marked), and a
    bar chart of the signed volume error (%) per muscle and method. Writes a PNG (or any format matplotlib
    knows from the suffix) atomically."""
    plt = _pyplot()
    rows = [r for r in results if not r.get("error")]
    muscles = list(dict.fromkeys(r["muscle"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    if not rows:
        raise InputError("There is nothing to plot: every run failed.", "See the table for the errors.")
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(muscles) + 1, 1, figsize=(10, 2.6 * (len(muscles) + 1)), squeeze=False)
    for ax, muscle in zip(axes[:-1, 0], muscles):
        for r in rows:
            if r["muscle"] != muscle or r.get("slice_dice") is None:
                continue
            sd = np.asarray(r["slice_dice"], float)
            ax.plot(np.arange(sd.size), sd, lw=1.2, color=colors[r["method"]],
                    label=f"{r['method']} (Dice {r['dice']:.3f})")
        seeds_here = next((r["seed_slices"] for r in rows if r["muscle"] == muscle), ())
        for s in seeds_here:
            ax.axvline(s, color="0.6", lw=0.6, ls=":")
        k0, k1 = next((r["extent"] for r in rows if r["muscle"] == muscle), (0, 0))
        ax.set_xlim(k0 - 2, k1 + 2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{muscle}: Dice")
        ax.legend(loc="lower center", fontsize=7, ncol=max(1, len(methods)))
        ax.grid(alpha=0.3)
    axes[-2, 0].set_xlabel("slice along the sweep (dotted: annotated slices)")
    ax = axes[-1, 0]
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(muscles))
    for i, m in enumerate(methods):
        vals = [next((r.get("volume_diff_pct", r["volume_error_pct"]) for r in rows
                      if r["muscle"] == mu and r["method"] == m), np.nan) for mu in muscles]
        vals = [v if np.isfinite(v) else np.nan for v in vals]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, color=colors[m], label=m)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(muscles)
    ax.set_ylabel("volume error %")
    ax.legend(fontsize=7, ncol=max(1, len(methods)))
    return _save_figure(plt, fig, path, title)


# --------------------------------------------------------------------------------------------------
# Several cases


def _number(v) -> float:
    """A row's value as a float: missing, None, a blank CSV cell (a merged CSV of runs from before a column was
    added) or text that is not a number -> nan."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def summarize(rows: Sequence[dict], by: Sequence[str] = ("method",)) -> List[dict]:
    """Mean and standard deviation (population, ddof=0) of each metric per group (default: per method).

    Returns rows with the group keys, ``n`` (runs), ``failed`` (runs with an error), and for each metric
    ``<metric>_mean`` and ``<metric>_std`` (non-finite values, e.g. an infinite distance, are left out of
    the mean and counted in ``<metric>_nonfinite``).
    """
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if not r.get("error")]
        s = dict(zip(by, key))
        s["n"] = len(ok)
        s["failed"] = len(rs) - len(ok)
        for m in METRIC_KEYS:
            vals = np.array([_number(r.get(m)) for r in ok], float)
            fin = vals[np.isfinite(vals)]
            s[f"{m}_mean"] = float(fin.mean()) if fin.size else math.nan
            s[f"{m}_std"] = float(fin.std()) if fin.size else math.nan
            s[f"{m}_nonfinite"] = int(vals.size - fin.size)
        out.append(s)
    return out


def format_summary(summary: Sequence[dict], by: Sequence[str] = ("method",)) -> str:
    """Mean ± std per group, like the paper's figures; a mean over only some of the runs (the others' values not
    finite, e.g. an infinite per-slice distance) says over how many: ``24.0 ± 12.3 (6/15)``; a mean of one run has no
    spread: ``0.315 ± -`` (one case's row per muscle). ``n``: the runs the means
    are over; where any run failed, a ``failed`` column counts the runs left out (:func:`format_failures` says why)."""
    cols = (("Dice", "dice", 3), ("IoU", "iou", 3), ("HD95", "hd95", 1), ("ASD", "asd", 2), ("sHD", "slice_hd", 1),
            ("sASD", "slice_asd", 2), ("err %", "volume_error_pct", 1), ("time s", "time_s", 2), ("peak MB", "peak_mb", 0))
    failed = any(s.get("failed") for s in summary)
    head = (" ".join(f"{k:<8}" for k in by) + f" {'n':>3} " + (f"{'failed':>6} " if failed else "")
            + " ".join(f"{t:>15}" for t, _, _ in cols))
    lines = [head, "-" * len(head)]
    def spread(s, k, d) -> str:   # over one run there is no spread: '-', not the 0.000 a population std gives
        return _fmt(s[f"{k}_std"], d) if s["n"] - s.get(f"{k}_nonfinite", 0) > 1 else "-"

    for s in summary:
        cells = [f"{_fmt(s['%s_mean' % k], d)} ± {spread(s, k, d)}"
                 + (f" ({s['n'] - s['%s_nonfinite' % k]}/{s['n']})"
                    if s.get('%s_nonfinite' % k) and math.isfinite(s['%s_mean' % k]) else "") for _, k, d in cols]
        lines.append(" ".join(f"{str(s[k]):<8}" for k in by) + f" {s['n']:>3} "
                     + (f"{s.get('failed', 0):>6} " if failed else "") + " ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def format_failures(rows: Sequence[dict]) -> str:
    """One line per failed run (its case, method, muscle and error), which the summaries' means leave out; empty
    when every run succeeded."""
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return ""
    lines = [f"{len(failed)} run(s) failed and are left out of the means:"]
    for r in failed:
        where = " ".join(str(r[k]) for k in ("case", "method", "muscle") if r.get(k) not in (None, ""))
        lines.append(f"  {where}: {r['error']}")
    return "\n".join(lines)


def load_case(case_dir, progress=None, cancel=None
              ) -> Tuple[np.ndarray, Dict[str, np.ndarray], Tuple[float, float, float]]:
    """A phantom case directory: ``volume.nrrd`` + ``reference.seg.nrrd`` -> (volume, {name: mask}, spacing_kji).
    ``progress`` and ``cancel`` go to :func:`~ifssnet.io.read_segmentation` (about 10 s at 1400 x 512 x 512)."""
    from .io import read_segmentation, read_volume

    case = Path(case_dir)
    vol_path, ref_path = case / "volume.nrrd", case / "reference.seg.nrrd"
    for p in (vol_path, ref_path):
        if not p.is_file():
            raise InputError(f"{p} does not exist.", "A case directory holds volume.nrrd and reference.seg.nrrd "
                                                     "(make one with `ifssnet phantom DIR`).")
    image = read_volume(vol_path)
    ref = read_segmentation(ref_path, reference=image.geometry, reference_shape=image.array.shape,
                            progress=progress, cancel=cancel)
    return image.array, {s.name: s.mask for s in ref.segments}, tuple(image.geometry.spacing_kji)


def sweep_first(volume: np.ndarray, masks: Mapping[str, np.ndarray], spacing_kji: Sequence[float], axis: int):
    """``(volume, masks, spacing)`` with array axis ``axis`` (0 = k, 1 = j, 2 = i), the one a sweep runs along, first,
    as :func:`compare` and propagation take them: views of ``volume`` (K, J, I) and each of ``masks``, and the
    spacing (mm) reordered alike. The inputs themselves where ``axis`` is 0."""
    if not axis:
        return volume, dict(masks), tuple(spacing_kji)
    return (np.moveaxis(volume, axis, 0), {n: np.moveaxis(m, axis, 0) for n, m in masks.items()},
            (spacing_kji[axis],) + tuple(s for a, s in enumerate(spacing_kji) if a != axis))


def compare_set(case_dirs: Sequence, methods: Iterable[str] = DEFAULT_METHODS, protocol: str = "3-seeds",
                segments: Optional[Sequence[str]] = None, progress=None, cancel=None, axis: int = 0, **kwargs) -> dict:
    """Run :func:`compare` on several case directories; ``{"rows": all rows (with "case"),
    "summary": mean ± std per method, "summary_by_muscle": per method and muscle}``. ``axis``: the array axis
    (0 = k, 1 = j, 2 = i) every case's sweep runs along; the protocol cuts its seeds across it and the methods run
    along it, as ``ifssnet compare --axis``."""
    if not case_dirs:
        raise InputError("No case directory given.", "Give one or more directories made by `ifssnet phantom`.")
    methods = list(methods)
    count = kwargs.get("count", 3)
    if protocol == "3-seeds" and isinstance(count, int) and 1 <= count < 3:  # every case would be refused: say so
        raise SeedError(f"Protocol '3-seeds' with count {count} cuts {count} seed slice{'s' if count > 1 else ''} per "
                        "segment; Propagate needs at least 3, and the comparison starts every method from the same "
                        "seeds.", COUNT_TODO)
    from .baselines.registry import get, load_once, prepare

    known = [name for name in set(method_names(methods)) if _known(get, name)]   # as compare() names them
    for name in known:
        prepare(name)
    absent = [str(p) for case in case_dirs for p in (Path(case) / "volume.nrrd", Path(case) / "reference.seg.nrrd")
              if not p.is_file()]
    if absent:     # every case's files before any case runs: a later one missing lost the cases compared before it
        raise InputError(f"{', '.join(absent)} {'does' if len(absent) == 1 else 'do'} not exist.",
                         "A case directory holds volume.nrrd and reference.seg.nrrd (make one with `ifssnet phantom "
                         "DIR`); check the directories given.")
    if segments:   # every case's names from its header: before any case runs, not at the case that lacks one
        lacking = [(case, missing, names) for case in case_dirs
                   if (names := _segment_names(Path(case) / "reference.seg.nrrd")) is not None
                   and (missing := [s for s in segments if s not in names])]
        if lacking:
            raise InputError("; ".join(f"{case}: no segment named {', '.join(missing)} (it has: {', '.join(names)})"
                                       for case, missing, names in lacking) + ".",
                             "Compare the segments every case holds (--segment), or leave those cases out; each "
                             "case's own segments are compared where --segment is left out.")
    options = dict(kwargs.get("method_options") or {})
    for name in known:   # each network's file read once for all cases, not once per case; after the cheap checks
        options[name] = load_once(name, options.get(name))
    kwargs["method_options"] = options
    rows: List[dict] = []
    for i, case in enumerate(case_dirs):
        check_cancel(cancel)
        report(progress, "Cases", i, len(case_dirs))
        volume, refs, spacing = load_case(case, progress, cancel)
        volume, refs, spacing = sweep_first(volume, refs, spacing, axis)
        if segments:
            missing = [s for s in segments if s not in refs]
            if missing:
                raise InputError(f"{case}: no segment named {', '.join(missing)}.", f"It has: {', '.join(refs)}.")
            refs = {s: refs[s] for s in segments}
        try:
            found = compare(volume, refs, spacing, methods, protocol, progress=progress, cancel=cancel, **kwargs)
        except InputError as err:  # the volume or the reference of one case: say which case
            raise type(err)(f"{case}: {err.what}", err.todo) from err
        for r in found:
            r["case"] = str(case)
            rows.append(r)
        del volume, refs
    report(progress, "Cases", len(case_dirs), len(case_dirs))
    return {"rows": rows, "summary": summarize(rows, ("method",)),
            "summary_by_muscle": summarize(rows, ("method", "muscle"))}


def _segment_names(path) -> Optional[List[str]]:
    """The segment names a .seg.nrrd's header lists (``SegmentN_Name``), without reading its voxels; None where the
    header cannot be read or lists none (reading the case says what is wrong)."""
    import re

    try:
        import nrrd  # pynrrd, which slicerio reads with

        header = nrrd.read_header(str(path))
    except Exception:
        return None
    found = sorted((int(m.group(1)), str(v)) for k, v in header.items() if (m := re.fullmatch(r"Segment(\d+)_Name", k)))
    return [name for _, name in found] or None


def _known(get, name: str) -> bool:
    """Whether ``name`` is a method ``get`` can give; an unknown one is left to :func:`compare` to refuse."""
    try:
        get(name)
    except IFSSNetError:
        return False
    return True


def plot_summary(summary: Sequence[dict], path, title: str = "") -> Path:
    """Bar charts of Dice and volume error (mean ± std) per method (and muscle if the summary has it)."""
    plt = _pyplot()
    labels = [" ".join(str(s[k]) for k in ("method", "muscle") if k in s) for s in summary]
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 0.6 * len(labels) + 3), 3.5))
    for ax, (key, name) in zip(axes, (("dice", "Dice"), ("volume_error_pct", "volume error %"))):
        ax.bar(np.arange(len(labels)), [s[f"{key}_mean"] for s in summary], yerr=[s[f"{key}_std"] for s in summary],
               capsize=3, color="tab:blue")
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    return _save_figure(plt, fig, path, title)
