"""WS: the Watershed effect of SegmentEditorExtraEffects, in SimpleITK, as the effect runs it.

What the effect does: the source volume goes to SimpleITK with its spacing; the feature image is
``GradientMagnitudeRecursiveGaussian(volume, sigma=object scale in mm)`` (default 2.0 mm; float32 for an
integer volume); then ``MorphologicalWatershedFromMarkers(feature, markers)`` with MarkWatershedLine
off and FullyConnected off, where the markers are the merged labelmap of the painted segments. Here the
markers are 1 = target and 2 = background (every other voxel of an annotated slice).

Crop. The effect is an auto-complete effect (``AbstractScriptedSegmentEditorAutoCompleteEffect``): its
``computePreviewLabelmap`` gets the merged seed labelmap and ``clippedMasterImageData``, both cut to the
seeds' bounding box grown by ``max(3, 0.1 * extent)`` voxels per axis (Watershed never changes the base
class's ``extentGrowthRatio`` of 0.1), and voxels outside that box stay empty. We cut the same box
(:func:`ifssnet.baselines.slicer_extent`) before both filters, so the Gaussian sees the same borders.
With the ``3-seeds`` protocol the box is the 3 painted slices plus 3 on each side, as for Grow from
seeds; ``extent_growth=None`` runs on the whole volume instead.

Feature type. The issue reports that the same feature rescaled to uint16 runs about 7x faster "with the
same result". ``benchmarks/ws_feature_dtype.py`` measures both in one run. On a 120 x 192 x 192 phantom
(2 cores): watershed 22.3 s on float32, 3.05 s on uint16 (7.3x), but 2 of 4.4 M voxels differ: quantising
4.3 M distinct float levels to 65 536 creates ties that change the flooding order of a few voxels (on an
80 x 160 x 160 phantom the voxels happened to be identical). Not identical in general, so the default
stays ``feature_dtype="float"`` (Slicer's voxels); ``"uint16"`` is an opt-in fast path, documented as
approximate (``--option ws.feature_dtype=uint16`` on the command line). An exact order-preserving
alternative (uint32 ranks of the float levels) gives identical voxels but only 1.5x, and costs a sort.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import Cancelled, DependencyError, IFSSNetError, InputError, VolumeError
from ..progress import check_cancel, is_cancelled, report
from . import SLICER_EXTENT_GROWTH, check_inputs, run_on_slicer_extent

STAGE = "Watershed"
DEFAULT_OBJECT_SCALE_MM = 2.0


def _import_sitk():
    try:
        import SimpleITK as sitk  # noqa: WPS433 (lazy)
    except ImportError as exc:
        raise DependencyError("Watershed needs SimpleITK.", "Install it with: python -m pip install SimpleITK") from exc
    return sitk


def _execute(filt, args, cancel, progress, stage_base: int) -> object:
    """Run a SimpleITK filter object with progress reporting and abort-on-cancel."""
    sitk = _import_sitk()

    last = [-1]

    def on_progress():
        done = stage_base + int(50 * filt.GetProgress())
        if done != last[0]:  # SimpleITK fires many events per percent: report each percent once
            last[0] = done
            report(progress, STAGE, done, 100)
        if is_cancelled(cancel):
            filt.Abort()

    filt.AddCommand(sitk.sitkProgressEvent, on_progress)
    try:
        return filt.Execute(*args)
    except RuntimeError as exc:
        if is_cancelled(cancel):
            raise Cancelled() from exc
        raise IFSSNetError(f"Watershed failed inside SimpleITK ({filt.GetName()}).", f"Details: {exc}") from exc
    finally:
        filt.RemoveAllCommands()


def feature_image(image, object_scale_mm: float = DEFAULT_OBJECT_SCALE_MM, feature_dtype: str = "float",
                  *, cancel=None, progress=None):
    """The watershed's feature image: gradient magnitude of a Gaussian of sigma ``object_scale_mm`` (mm).

    ``image`` is a SimpleITK image with its spacing. ``feature_dtype="uint16"`` rescales the feature
    to 0..65535 (fast, approximate).
    """
    sitk = _import_sitk()
    grad = sitk.GradientMagnitudeRecursiveGaussianImageFilter()
    grad.SetSigma(float(object_scale_mm))
    feature = _execute(grad, (image,), cancel, progress, 0)
    if feature_dtype == "uint16":
        feature = sitk.Cast(sitk.RescaleIntensity(feature, 0.0, 65535.0), sitk.sitkUInt16)
    elif feature_dtype != "float":
        raise InputError(f"Unknown feature type {feature_dtype!r}.", "Use 'float' (as Slicer) or 'uint16' (fast).")
    return feature


def watershed_from_markers(feature, markers, *, cancel=None, progress=None):
    """MorphologicalWatershedFromMarkers with MarkWatershedLine off and FullyConnected off (the effect's settings)."""
    sitk = _import_sitk()
    wsf = sitk.MorphologicalWatershedFromMarkersImageFilter()
    wsf.SetMarkWatershedLine(False)
    wsf.SetFullyConnected(False)
    return _execute(wsf, (feature, markers), cancel, progress, 50)


def watershed(volume, seeds, spacing_kji, *, object_scale_mm: float = DEFAULT_OBJECT_SCALE_MM,
              feature_dtype: str = "float", extent_growth: Optional[float] = SLICER_EXTENT_GROWTH,
              progress=None, cancel=None) -> np.ndarray:
    """SegmentEditorExtraEffects' Watershed on one segment (target vs. everything else on the annotated slices).

    volume: (K, J, I) intensities. seeds: SeedSet (``mask`` uint8 (K, J, I), ``slices`` on axis 0).
    spacing_kji: (sz, sy, sx) mm. object_scale_mm: the effect's "Object scale" (Gaussian sigma, mm).
    feature_dtype: "float" (as the effect) or "uint16" (faster, not voxel-identical).
    extent_growth: the auto-complete crop's growth ratio (0.1, as the effect); None = the whole volume.
    Returns uint8 (K, J, I), 0/1; zero outside the effect's crop; seed slices exactly as painted.
    """
    check_cancel(cancel)
    if not np.isfinite(object_scale_mm) or object_scale_mm <= 0:  # sigma 0: ITK's Gaussian throws (Slicer's slider stops at 0.0001)
        raise InputError(f"Object scale {object_scale_mm} mm is not usable.", "Use a value > 0 mm (Slicer's default: 2.0).")
    volume, mask, slices, spacing = check_inputs(volume, seeds, spacing_kji)
    if min(volume.shape) < 4:   # the crop is at least 4 voxels along an axis of 4 or more (margin >= 3)
        raise VolumeError(f"The volume has shape {volume.shape}; Watershed's Gaussian (ITK's recursive filter) needs "
                          "at least 4 voxels along each axis.", "Use a volume with at least 4 slices, rows and columns.")
    sitk = _import_sitk()
    report(progress, STAGE, 0, 100)
    if volume.dtype == np.bool_:
        volume = volume.astype(np.uint8)
    elif volume.dtype == np.float16:   # SimpleITK has no half-float image type
        volume = volume.astype(np.float32)
    elif not volume.dtype.isnative:    # big-endian arrays (e.g. read with pynrrd): SimpleITK refuses them
        volume = volume.astype(volume.dtype.newbyteorder("="))

    def run(crop: np.ndarray, labels: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(np.ascontiguousarray(crop))
        image.SetSpacing([float(s) for s in spacing[::-1]])
        markers = sitk.GetImageFromArray(np.ascontiguousarray(labels))
        markers.CopyInformation(image)
        feature = feature_image(image, object_scale_mm, feature_dtype, cancel=cancel, progress=progress)
        check_cancel(cancel)
        result = watershed_from_markers(feature, markers, cancel=cancel, progress=progress)
        check_cancel(cancel)
        return sitk.GetArrayFromImage(result)  # a copy: a view would not outlive ``result``

    out = run_on_slicer_extent(volume, mask, slices, run, extent_growth=extent_growth)
    report(progress, STAGE, 100, 100)
    return out


def _prepare() -> None:
    """Import SimpleITK and run both filters once on a tiny image (first-call costs: library loading,
    thread pool), so that timing a run leaves them out."""
    sitk = _import_sitk()
    image = sitk.GetImageFromArray(np.arange(8 ** 3, dtype=np.uint8).reshape(8, 8, 8))
    markers = sitk.GetImageFromArray(np.pad(np.ones((2, 2, 2), np.uint8), 3))
    markers.CopyInformation(image)
    watershed_from_markers(feature_image(image, 1.0), markers)


watershed.prepare = _prepare  # type: ignore[attr-defined]
