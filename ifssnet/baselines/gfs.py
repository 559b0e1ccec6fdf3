"""GFS: Slicer's "Grow from seeds", FastGrowCut with a target and a background seed label.

What Slicer's effect does (``SegmentEditorGrowFromSeedsEffect``, an auto-complete effect):

1. The seed segments are merged into one labelmap (target = 1, background = 2 here), cropped to the
   *effective extent* of the seeds (bounding box of all non-zero seed voxels) grown on each axis by
   ``max(3, int(ratio * (extent_max - extent_min)))`` voxels and clipped to the volume. The source
   volume is cropped to the same extent. ``ratio`` is the effect's ``extentGrowthRatio``: on the first
   Initialize it is the auto-complete base class's 0.1, because Grow from seeds sets its own value
   (0.2 without an editable-area mask, 0.5 with one) only when it creates its filter, after the extent
   has been computed; a later re-initialization in the same Slicer session uses 0.2. We default to the
   first-Initialize value 0.1 (``extent_growth`` changes it).
2. ``vtkITKGrowCut`` / ``vtkImageGrowCutSegment`` runs ``itk::FastGrowCut`` on that crop with the seed
   locality as distance penalty (default 0, in intensity levels per mm, so spacing matters when > 0).
3. Voxels outside the crop stay empty.

We call the same ``itk::FastGrowCut`` (PyPI ``itk-growcut``) on the same crop and spacing.
A test proves the voxels equal slicer-core's ``vtkImageGrowCutSegment`` on the same input.

Consequence worth knowing: with the ``3-seeds`` protocol (3 consecutive slices) the seeds span 2 slices
along the sweep, so Slicer grows only 3 slices beyond each side (the minimum margin, whatever the ratio). That is how the effect behaves for a
user who painted 3 slices; ``extent_growth=None`` runs on the whole volume instead.

Seeds: on each annotated slice, the target muscle is 1 and every other voxel is 2 (background, the
other muscles included).

Cancel. FastGrowCut has no progress events and holds Python's GIL for its whole ``Update()``: in this
process ``cancel`` is only checked before and after. With ``isolate=True`` the filter runs in a child
process (:mod:`ifssnet.baselines.child_process`) that is killed as soon as ``cancel`` is set (polled
every 50 ms); same voxels, at the cost of starting Python and loading ITK's wrapping in the child on each
call: 4-8 s on 2 shared cores, against 0.06-0.14 s for the whole in-process run on the 3-seeds crops of a
400 x 128 x 128 phantom and 2-6 s on its paper-protocol crops. ``isolate="auto"`` isolates only a crop
of at least :data:`AUTO_CHILD_VOXELS` (4 M voxels, an in-process run about as long as the child's
start-up): the Comparison module's setting. The command line's default stays in-process
(``--option gfs.isolate=true`` or ``auto``).
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..errors import IFSSNetError, InputError
from ..progress import check_cancel, report
from . import SLICER_EXTENT_GROWTH, check_inputs, import_itk_filter, run_on_slicer_extent
from .child_process import check_isolate, run_in_child, wants_child

STAGE = "Grow from seeds"
#: ``isolate="auto"``: the crop (voxels) from which FastGrowCut runs in a child process.
AUTO_CHILD_VOXELS = 4_000_000
# itk::FastGrowCut is wrapped for these intensity types (label type: unsigned char).
_WRAPPED = {np.dtype(np.uint8): "UC", np.dtype(np.uint16): "US", np.dtype(np.int16): "SS",
            np.dtype(np.float32): "F", np.dtype(np.float64): "D"}


def fast_grow_cut(intensity: np.ndarray, labels: np.ndarray, spacing_kji, distance_penalty: float = 0.0) -> np.ndarray:
    """Run itk::FastGrowCut; intensity (K, J, I), labels uint8 (K, J, I) seeds; returns the uint8 label map.

    Intensity types other than uint8/uint16/int16/float32/float64 are converted to float32, the type
    in which FastGrowCut computes its intensity differences anyway.
    """
    itk = import_itk_filter("FastGrowCut", "Grow from seeds", "FastGrowCut", "itk-growcut")
    intensity = np.asarray(intensity)
    if intensity.dtype not in _WRAPPED:
        intensity = intensity.astype(np.float32)
    image = itk.image_from_array(np.ascontiguousarray(intensity))
    seeds = itk.image_from_array(np.ascontiguousarray(labels, dtype=np.uint8))
    spacing_xyz = [float(s) for s in spacing_kji][::-1]
    image.SetSpacing(spacing_xyz)
    seeds.SetSpacing(spacing_xyz)
    filt = itk.FastGrowCut[type(image), type(seeds)].New()
    filt.SetInput(image)
    filt.SetSeedImage(seeds)
    filt.SetDistancePenalty(float(distance_penalty))
    try:
        filt.Update()
    except RuntimeError as exc:
        raise IFSSNetError("Grow from seeds failed inside ITK.", f"Details: {exc}") from exc
    return itk.array_from_image(filt.GetOutput()).astype(np.uint8, copy=True)


def grow_from_seeds(volume, seeds, spacing_kji, *, seed_locality: float = 0.0,
                    extent_growth: Optional[float] = SLICER_EXTENT_GROWTH, isolate: Union[bool, str] = False,
                    timeout_s: Optional[float] = None, progress=None, cancel=None) -> np.ndarray:
    """Slicer's Grow from seeds on one segment (target vs. everything else on the annotated slices).

    volume: (K, J, I) intensities. seeds: SeedSet (``mask`` uint8 (K, J, I), ``slices`` on axis 0).
    spacing_kji: (sz, sy, sx) mm. seed_locality: Slicer's "Seed locality" (distance penalty, intensity
    levels per mm, default 0). extent_growth: Slicer's auto-complete extent growth ratio (0.1 at the first
    Initialize, 0.2 on a re-initialization); None = the whole volume.
    isolate: run FastGrowCut in a child process, killed on cancel (same voxels; ITK loads in the child on
    each call); "auto": only for a crop of at least :data:`AUTO_CHILD_VOXELS`. timeout_s: with ``isolate``,
    seconds before the child is killed (ResourceError); None = no limit.
    Returns uint8 (K, J, I), 0/1; zero outside Slicer's crop; seed slices exactly as painted.
    """
    check_cancel(cancel)
    check_isolate(isolate, "gfs")
    if not (np.isfinite(seed_locality) and seed_locality >= 0):   # negative: FastGrowCut segfaults; NaN: no growth
        raise InputError(f"Seed locality {seed_locality} is not usable.",
                         "Use a value >= 0 (Slicer's slider: 0 to 10; default 0).")
    volume, mask, slices, spacing = check_inputs(volume, seeds, spacing_kji)
    report(progress, STAGE, 0, 1)

    def run(crop: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if not wants_child(isolate, crop.size, AUTO_CHILD_VOXELS):
            return fast_grow_cut(crop, labels, spacing, seed_locality)
        return run_in_child(fast_grow_cut, [crop, labels], {"spacing_kji": list(spacing),
                                                            "distance_penalty": float(seed_locality)},
                            what=STAGE, cancel=cancel, timeout_s=timeout_s,
                            timeout_todo="Paint the seeds closer together (the crop grows with their extent), or crop the volume.")

    out = run_on_slicer_extent(volume, mask, slices, run, extent_growth=extent_growth, min_size=3)
    check_cancel(cancel)
    report(progress, STAGE, 1, 1)
    return out


def _prepare() -> None:
    """Import ITK and load FastGrowCut's wrapping (seconds), so that timing a run leaves this out."""
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[2, 2, 1], labels[2, 2, 3] = 1, 2
    fast_grow_cut(np.arange(125, dtype=np.uint8).reshape(5, 5, 5), labels, (1.0, 1.0, 1.0))


grow_from_seeds.prepare = _prepare  # type: ignore[attr-defined]
