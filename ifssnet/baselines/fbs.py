"""FBS: Slicer's "Fill between slices", ITK's MorphologicalContourInterpolator with Slicer's defaults.

What Slicer's effect does (``SegmentEditorFillBetweenSlicesEffect`` -> ``vtkITKMorphologicalContourInterpolator``):
the merged labelmap of the painted segments goes through ``itk::MorphologicalContourInterpolator`` with
label 0 (all labels), axis -1 (all axes), heuristic alignment ON, use-distance-transform OFF (ITK's own
default is ON and gives different voxels) and ball structuring element OFF. We call the same ITK filter
(PyPI ``itk-morphologicalcontourinterpolation``) with the same settings.

All segments in one run, as Slicer's effect does: it interpolates *all visible segments* together, on their
merged labelmap (the n-th segment is label n + 1). The filter interpolates each label between that label's own
key slices, but writes one labelmap: where two labels' interpolations meet, the higher label (the later
segment) takes the voxel, and painted voxels keep their label. So the segments never overlap, and a muscle
loses to its neighbour what a run on that muscle alone would give to both. Given ``{name: SeedSet}``,
:func:`fill_between_slices` does the same, in the mapping's order, and the comparison
(:mod:`ifssnet.compare`) always calls it so with all its muscles (``always_joint``). One SeedSet is one segment
visible alone. On the held-out phantoms 1000-1004 with the ``paper`` protocol, GM and SOL meet: run one at a
time both took those voxels, together SOL does, and GM's volume error grows by 6.6 points on average (README).

The filter takes a labelled slice as a *key* slice only when both its neighbours along that axis are
unlabelled. Three consecutive painted slices are therefore not key slices and nothing would be
interpolated. A Slicer user paints isolated slices, so we feed the filter the middle slice of each
group of consecutive seed slices (or, where the segment is absent from it, the group's nearest slice
that holds it), then put every seed slice back exactly as painted.

The crop is Slicer's: its auto-complete effects (``AbstractScriptedSegmentEditorAutoCompleteEffect``) run the
filter on the painted segments' extent grown per axis by 10 % of it, at least 3 voxels, clipped to the volume
(:func:`ifssnet.baselines.slicer_extent` of the key slices), and leave everything outside empty. The crop is not
only for speed: the interpolated shapes can reach a voxel or two past the key shapes' bounding box, which a
crop then cuts. Until session 41 we cropped to that box plus 2 voxels and took it for voxel-identical with the
whole volume; on the held-out phantoms it cut up to 561 voxels of SOL (phantom 1002, one muscle at a time), where
Slicer's crop cuts 3.

One engineering choice, tested to give the same voxels:

- Thread safety: the filter keeps ``thread_local`` ITK filters and is known to corrupt memory
  intermittently with several threads on large inputs. It runs here single-threaded (global default
  threads and the filter's work units set to 1 for the duration of the call, one call at a time), or
  with ``isolate=True`` in a child process (:mod:`ifssnet.baselines.child_process`) that can also be
  killed on cancel.
"""
from __future__ import annotations

import threading
from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import Cancelled, IFSSNetError, SeedError
from ..progress import check_cancel, is_cancelled, report
from . import check_inputs, import_itk_filter, restore_painted, slicer_extent
from .child_process import check_isolate, run_in_child, wants_child

STAGE = "Fill between slices"
#: ``isolate="auto"``: the crop (voxels) from which the interpolator runs in a child process (an in-process
#: run about as long as the child's start-up, about 12 s on 2 shared cores).
AUTO_CHILD_VOXELS = 40_000_000
#: Slicer's settings of vtkITKMorphologicalContourInterpolator (its constructor's values).
SLICER_DEFAULTS = dict(label=0, axis=-1, heuristic_alignment=True, use_distance_transform=False,
                       use_ball_structuring_element=False)

_ITK_LOCK = threading.Lock()  # one interpolation at a time: the global thread setting is process-wide


def key_slices(slices: Sequence[int], mask: Optional[np.ndarray] = None) -> Tuple[int, ...]:
    """The slice fed to the interpolator for each run of consecutive seed slices: its middle one.

    For a run of even length the lower middle is taken (run 10, 11, 12, 13 -> 11). With ``mask``
    (K, J, I), the run's painted slice where the segment is present nearest to that middle (the lower
    one on a tie): a run where the muscle ends (30 painted, 31 and 32 marked empty) keys on 30, as
    Slicer would on the one slice the user painted, rather than on the empty 31, which dropped the run
    and left the whole gap up to it empty.
    """
    from ..seeds import seed_groups

    keys = []
    for group in seed_groups(sorted(set(int(s) for s in slices))):
        middle = (len(group) - 1) // 2
        present = [n for n, s in enumerate(group) if mask is None or mask[s].any()] or [middle]
        keys.append(int(group[min(present, key=lambda n: (abs(n - middle), n))]))
    return tuple(keys)


def interpolate(labels: np.ndarray, *, label: int = 0, axis: int = -1, heuristic_alignment: bool = True,
                use_distance_transform: bool = False, use_ball_structuring_element: bool = False,
                cancel=None, progress=None) -> np.ndarray:
    """Run itk::MorphologicalContourInterpolator on ``labels`` (uint8 (K, J, I)), single-threaded.

    Defaults are Slicer's. Returns the uint8 (K, J, I) output of the filter. ``cancel`` is polled
    from the filter's progress events and aborts it (raises Cancelled).
    """
    itk = import_itk_filter("MorphologicalContourInterpolator", "Fill between slices", "MorphologicalContourInterpolation",
                            "itk-morphologicalcontourinterpolation")
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    image = itk.image_from_array(labels)
    with _ITK_LOCK:
        mt = itk.MultiThreaderBase
        previous = mt.GetGlobalDefaultNumberOfThreads()
        mt.SetGlobalDefaultNumberOfThreads(1)
        try:
            filt = itk.MorphologicalContourInterpolator[type(image)].New()
            filt.SetNumberOfWorkUnits(1)
            threader = filt.GetMultiThreader()
            threader.SetMaximumNumberOfThreads(1)
            threader.SetNumberOfWorkUnits(1)
            filt.SetInput(image)
            filt.SetLabel(int(label))
            filt.SetAxis(int(axis))
            filt.SetHeuristicAlignment(bool(heuristic_alignment))
            filt.SetUseDistanceTransform(bool(use_distance_transform))
            filt.SetUseBallStructuringElement(bool(use_ball_structuring_element))

            def _on_progress():
                report(progress, STAGE, int(round(100 * filt.GetProgress())), 100)
                if is_cancelled(cancel):
                    filt.AbortGenerateDataOn()

            filt.AddObserver(itk.ProgressEvent(), _on_progress)
            try:
                filt.Update()
            except RuntimeError as exc:
                if is_cancelled(cancel) or "abort" in str(exc).lower():
                    raise Cancelled() from exc
                raise IFSSNetError("Fill between slices failed inside ITK.", f"Details: {exc}") from exc
            out = itk.array_from_image(filt.GetOutput()).astype(np.uint8, copy=True)
        finally:
            mt.SetGlobalDefaultNumberOfThreads(previous)
    return out


def fill_between_slices(volume, seeds, spacing_kji, *, crop: bool = True,
                        isolate: Union[bool, str] = False,
                        timeout_s: Optional[float] = None, progress=None, cancel=None):
    """Slicer's Fill between slices on one segment, or on several in one run as Slicer's effect does.

    volume: (K, J, I) array (only its shape is used; the method is purely shape-based).
    seeds: SeedSet, ``mask`` uint8 (K, J, I) and ``slices`` (indices along axis 0); or ``{name: SeedSet}``: all
    segments in one run on their merged labelmap (module docstring), returning ``{name: mask}``; where two
    segments' interpolations meet, the later one takes the voxel, and each segment's painted voxels are its own
    (where two segments' paint overlaps, the first one's, as in Slicer, where the segment higher in the list wins).
    spacing_kji: (sz, sy, sx) in mm (unused: the interpolation is in voxel space, as in Slicer).
    crop: run on Slicer's crop (module docstring), as Slicer does; False: on the whole volume.
    isolate: run the ITK filter in a child process (crash-proof, killed on cancel; loading ITK in the child
    takes about 12 s on 2 shared cores); "auto": only for a crop of at least :data:`AUTO_CHILD_VOXELS`
    (in-process the filter sees cancel only at its rare progress events: 3 polls in a 2.3 s run).
    Returns uint8 (K, J, I), 0/1 (``{name: mask}`` for a mapping); the seed slices are exactly as painted.
    """
    check_cancel(cancel)
    check_isolate(isolate, "fbs")
    seed_map = dict(seeds) if isinstance(seeds, Mapping) else {None: seeds}
    if not seed_map or len(seed_map) > 255:
        raise SeedError(f"Fill between slices was given {len(seed_map)} segments.", "Give 1 to 255 segments.")
    checked = {n: check_inputs(volume, s, spacing_kji) for n, s in seed_map.items()}
    volume = next(iter(checked.values()))[0]
    report(progress, STAGE, 0, 100)
    key = np.zeros(volume.shape, np.uint8)                     # the merged labelmap of the key slices
    runs = 0
    for label, (_, mask, slices, _) in reversed(list(enumerate(checked.values(), start=1))):
        keys = list(key_slices(slices, mask))
        key[keys] = np.where(mask[keys] != 0, np.uint8(label), key[keys])   # the first segment's paint on top
        runs += len([k for k in keys if mask[k].any()]) >= 2
    box = slicer_extent(key) if crop else tuple(slice(0, n) for n in key.shape)
    labels = np.zeros(volume.shape, np.uint8)
    if box is not None and runs:
        sub = key[box]
        if wants_child(isolate, sub.size, AUTO_CHILD_VOXELS):
            result = _interpolate_isolated(sub, cancel=cancel, timeout_s=timeout_s)
        else:
            result = interpolate(sub, cancel=cancel, progress=progress)
        check_cancel(cancel)
        labels[box] = result
    out = {n: (labels == label).astype(np.uint8) for label, n in enumerate(checked, start=1)}
    for n in reversed(list(checked)):    # each segment's paint is its own; where paint overlaps, the first one's
        _, mask, slices, _ = checked[n]
        painted = np.zeros(volume.shape[0], bool)
        painted[list(slices)] = True
        for other in out:
            if other != n:
                out[other][painted] &= (mask[painted] == 0)
        restore_painted(out[n], mask, slices)
    report(progress, STAGE, 100, 100)
    return out if isinstance(seeds, Mapping) else out[None]


def _prepare() -> None:
    """Import ITK and load the interpolator's wrapping (seconds), so that timing a run leaves this out."""
    labels = np.zeros((5, 6, 6), np.uint8)
    labels[0, 1:4, 1:4] = labels[4, 2:5, 2:5] = 1
    interpolate(labels)


fill_between_slices.prepare = _prepare  # type: ignore[attr-defined]
fill_between_slices.joint = True  # type: ignore[attr-defined]
#: Slicer's effect interpolates all visible segments in one run: the comparison runs it so whatever its ``joint``.
fill_between_slices.always_joint = True  # type: ignore[attr-defined]


def _interpolate_isolated(labels: np.ndarray, *, cancel=None, timeout_s: Optional[float] = None) -> np.ndarray:
    """:func:`interpolate` with Slicer's defaults in a child process (:mod:`.child_process`): killed on cancel."""
    return run_in_child(interpolate, [np.ascontiguousarray(labels, np.uint8)], what=STAGE, cancel=cancel,
                        timeout_s=timeout_s, timeout_todo="Crop the volume or paint fewer, closer slices.")
