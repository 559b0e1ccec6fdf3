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
other muscles included). FastGrowCut has no progress events: ``cancel`` is checked before and after.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import IFSSNetError
from ..progress import check_cancel, report
from . import SLICER_EXTENT_GROWTH, check_inputs, import_itk_filter, run_on_slicer_extent

STAGE = "Grow from seeds"
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
                    extent_growth: Optional[float] = SLICER_EXTENT_GROWTH, progress=None, cancel=None) -> np.ndarray:
    """Slicer's Grow from seeds on one segment (target vs. everything else on the annotated slices).

    volume: (K, J, I) intensities. seeds: SeedSet (``mask`` uint8 (K, J, I), ``slices`` on axis 0).
    spacing_kji: (sz, sy, sx) mm. seed_locality: Slicer's "Seed locality" (distance penalty, intensity
    levels per mm, default 0). extent_growth: Slicer's auto-complete extent growth ratio (0.1 at the first
    Initialize, 0.2 on a re-initialization); None = the whole volume.
    Returns uint8 (K, J, I), 0/1; zero outside Slicer's crop; seed slices exactly as painted.
    """
    check_cancel(cancel)
    volume, mask, slices, spacing = check_inputs(volume, seeds, spacing_kji)
    report(progress, STAGE, 0, 1)
    out = run_on_slicer_extent(volume, mask, slices, lambda v, lab: fast_grow_cut(v, lab, spacing, seed_locality),
                               extent_growth=extent_growth, min_size=3)
    check_cancel(cancel)
    report(progress, STAGE, 1, 1)
    return out


def _prepare() -> None:
    """Import ITK and load FastGrowCut's wrapping (seconds), so that timing a run leaves this out."""
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[2, 2, 1], labels[2, 2, 3] = 1, 2
    fast_grow_cut(np.arange(125, dtype=np.uint8).reshape(5, 5, 5), labels, (1.0, 1.0, 1.0))


grow_from_seeds.prepare = _prepare  # type: ignore[attr-defined]
