"""Propagation baselines: Slicer's Fill between slices (FBS), Grow from seeds (GFS) and Watershed (WS).

Each one reproduces what the Slicer effect computes, voxel for voxel, from the same painted slices:

- :func:`ifssnet.baselines.fbs.fill_between_slices`: ITK MorphologicalContourInterpolator with
  Slicer's defaults (``SegmentEditorFillBetweenSlicesEffect`` / ``vtkITKMorphologicalContourInterpolator``).
- :func:`ifssnet.baselines.gfs.grow_from_seeds`: FastGrowCut (``itk-growcut``, the algorithm of
  ``vtkImageGrowCutSegment`` / ``vtkITKGrowCut``), with Slicer's auto-complete extent.
- :func:`ifssnet.baselines.ws.watershed`: SimpleITK gradient magnitude + morphological watershed
  from markers (SegmentEditorExtraEffects' Watershed).

All three follow the method contract of :mod:`ifssnet.baselines.registry` and are registered there
under ``fbs``, ``gfs`` and ``ws``. Importing this package imports numpy only; ITK and SimpleITK are
imported inside the functions.

Seeds for GFS and WS: on an annotated slice, the target muscle is label 1 and *every other voxel*
is label 2 (background, the other muscles included), which is what a Slicer user paints with a
"target" and a "background" segment. Slices that are not annotated carry no label.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError, SeedError, VolumeError
from .registry import available, get, label, prepare, register, register_lazy, unregister

__all__ = ["available", "get", "label", "prepare", "register", "register_lazy", "unregister",
           "bounding_box", "check_inputs", "marker_labels", "restore_painted", "run_on_slicer_extent", "slicer_extent", "TARGET_LABEL", "BACKGROUND_LABEL",
           "SLICER_EXTENT_GROWTH", "SLICER_MIN_MARGIN"]

TARGET_LABEL = 1
BACKGROUND_LABEL = 2
#: Slicer's auto-complete crop (AbstractScriptedSegmentEditorAutoCompleteEffect, the base of Grow from seeds
#: and Watershed): extentGrowthRatio at the first Initialize, and the minimum margin in voxels.
SLICER_EXTENT_GROWTH = 0.1
SLICER_MIN_MARGIN = 3


def check_inputs(volume, seeds, spacing_kji) -> Tuple[np.ndarray, np.ndarray, Tuple[int, ...], Tuple[float, float, float]]:
    """Validate a method's inputs; return ``(volume, seed_mask uint8 0/1, slices, spacing_kji)``.

    ``volume`` (K, J, I) numeric; ``seeds.mask`` (K, J, I); ``seeds.slices`` indices into axis 0;
    ``spacing_kji`` three positive numbers in mm. Raises VolumeError / SeedError with what to do.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise VolumeError(f"The volume has {volume.ndim} dimensions; a 3-D (K, J, I) volume is needed.",
                          "Load a 3-D ultrasound volume (one scalar per voxel).")
    if volume.dtype.kind not in "uifb" or min(volume.shape) < 1:
        raise VolumeError(f"The volume has type {volume.dtype} and shape {volume.shape}.",
                          "Use a non-empty scalar volume (integer or floating point).")
    mask = np.asarray(getattr(seeds, "mask", None))
    slices = tuple(int(s) for s in getattr(seeds, "slices", ()) or ())
    if mask.shape != volume.shape:
        raise SeedError(f"The seed mask has shape {mask.shape}, the volume {volume.shape}.",
                        "Paint the seeds on the volume's own grid (or resample them onto it).")
    if not slices:
        raise SeedError("No slice is marked as annotated.", "Paint the target muscle on at least one slice.")
    bad = [s for s in slices if not 0 <= s < volume.shape[0]]
    if bad:
        raise SeedError(f"Annotated slice(s) {bad} are outside the volume (0..{volume.shape[0] - 1}).",
                        "Cut the seeds from a segmentation on the same volume.")
    spacing = tuple(float(s) for s in spacing_kji)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise VolumeError(f"Spacing {spacing_kji} is not three positive sizes in mm.", "Check the volume's geometry.")
    return volume, (mask != 0).astype(np.uint8), tuple(sorted(set(slices))), spacing  # type: ignore[return-value]


def marker_labels(mask: np.ndarray, slices) -> np.ndarray:
    """Seed labelmap for GFS/WS: uint8 (K, J, I), 1 = target, 2 = background on annotated slices, 0 elsewhere."""
    labels = np.zeros(mask.shape, np.uint8)
    idx = list(slices)
    labels[idx] = np.where(mask[idx] != 0, TARGET_LABEL, BACKGROUND_LABEL).astype(np.uint8)
    return labels


def restore_painted(out: np.ndarray, mask: np.ndarray, slices) -> np.ndarray:
    """Put the annotated slices back exactly as painted (in place); returns ``out``."""
    idx = list(slices)
    out[idx] = (mask[idx] != 0)
    return out


def bounding_box(mask: np.ndarray, margin: int = 2) -> Optional[Tuple[slice, slice, slice]]:
    """Bounding box of the non-zero voxels of ``mask`` (K, J, I), grown by ``margin`` voxels and clipped; None if empty."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        box.append(slice(max(0, int(nz[0]) - margin), min(mask.shape[axis], int(nz[-1]) + 1 + margin)))
    return tuple(box)  # type: ignore[return-value]


def slicer_extent(labels: np.ndarray, growth: Optional[float] = SLICER_EXTENT_GROWTH,
                  min_margin: int = SLICER_MIN_MARGIN) -> Optional[Tuple[slice, slice, slice]]:
    """The crop that Slicer's auto-complete effects (Grow from seeds, Watershed) compute from the seed
    labelmap (K, J, I): they run on it and leave every voxel outside it empty.

    Effective extent = bounding box of the non-zero seeds; margin per axis =
    ``int(max(min_margin, growth * (hi - lo)))`` voxels (``hi`` the last seed index), clipped to the
    volume. ``growth=None``: the whole volume. Returns None if there is no seed.
    """
    if growth is None:
        return tuple(slice(0, n) for n in labels.shape)  # type: ignore[return-value]
    if isinstance(growth, bool) or not isinstance(growth, numbers.Real) or not (0 <= float(growth) < float("inf")):
        raise InputError(f"Extent growth {growth!r} is not a ratio >= 0.",   # inf: OverflowError; a string: TypeError
                         "Use e.g. extent_growth=0.1 (Slicer's), or none for the whole volume.")
    tight = bounding_box(labels, 0)
    if tight is None:
        return None
    box = []
    for s, n in zip(tight, labels.shape):
        m = int(max(min_margin, growth * (s.stop - 1 - s.start)))
        box.append(slice(max(0, s.start - m), min(n, s.stop + m)))
    return tuple(box)  # type: ignore[return-value]


def run_on_slicer_extent(volume: np.ndarray, mask: np.ndarray, slices, run, *,
                         extent_growth: Optional[float] = SLICER_EXTENT_GROWTH, min_size: int = 1) -> np.ndarray:
    """What Slicer's auto-complete effects do around their algorithm, for one target segment.

    Merge the seeds (:func:`marker_labels`), cut the volume and the seeds to :func:`slicer_extent`, call
    ``run(volume_crop, labels_crop)`` (a label map of the crop's shape), keep its target label inside
    the crop, leave everything outside empty, and put the painted slices back as painted. ``min_size``:
    the smallest crop (voxels per axis) the algorithm accepts; a thinner one, or no painted target,
    leaves the result empty. Returns uint8 (K, J, I), 0/1.
    """
    labels = marker_labels(mask, slices)
    out = np.zeros(volume.shape, np.uint8)
    box = slicer_extent(labels, extent_growth)
    if box is not None and mask[list(slices)].any() and min(b.stop - b.start for b in box) >= min_size:
        out[box] = run(volume[box], labels[box]) == TARGET_LABEL
    return restore_painted(out, mask, slices)


def import_itk_filter(attribute: str, what: str, module: str, package: str):
    """``import itk`` and load the wrapping of ``itk.<attribute>``; a missing install raises
    :class:`~ifssnet.errors.DependencyError` naming ``what``, ITK's ``module`` and the pip ``package``."""
    from ..errors import DependencyError

    try:
        import itk  # lazy: ITK takes seconds to import

        getattr(itk, attribute)  # loads the module's wrapping
    except (ImportError, AttributeError) as exc:
        raise DependencyError(f"{what} needs ITK's {module} module.",
                              f"Install it with: python -m pip install {package}") from exc
    return itk
