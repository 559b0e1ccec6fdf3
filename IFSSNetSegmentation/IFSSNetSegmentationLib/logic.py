"""Logic of the IFSS-Net Segmentation module: MRML <-> numpy around the ``ifssnet`` core.

This file imports ``slicer`` (MRML), ``vtk``, ``numpy`` and ``ifssnet`` only: no qt, no ctk, no
``slicer.ScriptedLoadableModule``. It runs headless on slicer-core, in tests and in Slicer's
Python console. torch and ``ifssnet.model`` are imported inside the functions that need them, so a
Slicer without torch still loads the module.

Geometry
    Arrays from Slicer are indexed (k, j, i); ``mrml_arrays`` reads and writes them on the volume's grid
    (spacing, origin and an oblique direction kept). The propagation axis is the array axis across which
    the painted slices lie; both arrays are transposed so that it comes first, the core runs, and the
    result is transposed back.

Which slices are seeds
    The segment tag ``IFSSNet.AnnotatedSlices`` (``axis:s0,s1,...``, as ``ifssnet.io`` writes it) names
    the painted slices; an annotated empty slice means "no muscle here". A segment without the tag is
    a freshly painted one: its non-empty slices along the axis from ``find_axis`` are the seeds. After a run
    the Logic stores the seeds in that tag and a checksum of every result slice in
    ``IFSSNet.ResultSliceCRC``; a later run adds every slice whose checksum changed (the user corrected it)
    to the seeds, which is how a repainted slice re-anchors the propagation, and a slice of the result erased
    whole becomes a "no muscle here" mark. A painted slice erased whole is dropped from the seeds instead: the
    paint taken back, as Fill between slices reads an empty slice (the "No muscle here" button marks it). A
    segment cleared and painted again (every slice that had the muscle changed, and most of them now empty, or
    the new paint on a few slices across another axis) is taken as freshly painted (``io.painted_again``): across
    the same axis it keeps its "no muscle here" marks beyond the new paint; across another they cannot apply, and
    the summary's notes say so. The slice numbers are of the grid ``IFSSNet.SeedGrid`` records: on a crop of it
    they are mapped onto the crop's slices; on another grid the paint is taken afresh (``_seedsOnGrid``). The rule
    is ``ifssnet.io.seed_slices``, by which ``ifssnet propagate`` reads the same segmentation saved to a file.

Safety
    The result is computed completely before anything is written. The whole segmentation is snapshot
    before writing and restored if writing fails; a cancelled or failed run leaves every segment
    voxel-identical. One propagation runs at a time in Slicer: a second one, on any segmentation (the module
    page's and the Segment Editor effect's share the Logic's slot), is refused with the name of the running one.

Masking
    From the Segment Editor effect, ``apply`` writes each result with the editor's masking settings (editable area,
    editable intensity range, Modify other segments) through ``vtkSlicerSegmentEditorLogic``, as Slicer's auto-complete
    effects apply theirs (``mrml_arrays.editorMasking``); the module page and the command line write the result as it
    is. A segment keeps its voxels outside the editable area, so painted slices stay as painted.

The work is split so that a GUI can keep MRML access in the main thread (and run ``compute`` on the
``worker.BackgroundWorker``):
``prepare`` (main thread, MRML -> numpy), ``compute`` (any thread, core only), ``apply`` (main thread,
numpy -> MRML). ``propagate`` does the three in a row.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import slicer
import vtk

from ifssnet.errors import IFSSNetError, InputError, ResourceError, SeedError, StrokesOffSlices, VolumeError
from ifssnet.io import (ANNOTATED_TAG, RESULT_CRC_TAG, AnnotatedSlices, annotated_on_grid, crcs_from_tag, fresh_seeds,
                        other_grid_note, seed_slices, slice_crcs)
from ifssnet.progress import check_cancel, report
from ifssnet.seeds import annotated_slices

from IFSSNetSegmentationLib import mrml_arrays as arrays

DEFAULT_METHOD = "ifssnet"
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
STAGE_PREPARING = "preparing"
STAGE_PROPAGATING = "propagating"
STAGE_WRITING = "writing result"
LEAST_CONFIDENT_COUNT = 5


# --------------------------------------------------------------------------------------------------
# Which slices are seeds: segment tags


SEED_GRID_TAG = "IFSSNet.SeedGrid"
"""The grid the two tags above number their slices on: the volume's image-to-world matrix in the segmentation's frame
(3 x 4, row by row) and its extent, ``m00,...,m23;e0,...,e5``. A segment without it (``ifssnet.io``'s files) is read
on the segmentation's own grid (``recordedGrid``), as ``ifssnet.io`` reads a file's tags."""


def recordedGrid(segmentationNode, segment):
    """The grid a tagged segment's seed tags number their slices on: its ``IFSSNet.SeedGrid``, else (a file written by
    ``ifssnet.io``, whose tags are on the file's grid) the segmentation's own grid (``referenceImageGrid``); None for a
    segment without tags, or where neither is known (then the tags are read on the grid propagated on)."""
    if not segmentTag(segment, ANNOTATED_TAG):
        return None
    text = segmentTag(segment, SEED_GRID_TAG)
    return gridFromText(text) if text is not None else referenceImageGrid(segmentationNode)


def tagSeeds(segment, axis: int, seedSlices, mask: np.ndarray, geometry=None) -> None:
    """Record a segment's seeds (``IFSSNet.AnnotatedSlices``) and a checksum of each of its slices
    (``IFSSNet.ResultSliceCRC``, the baseline against which later edits are found: ``_seedSlices``), as
    ``ifssnet.io`` writes them, so a file's paint edited in Slicer is found too; with ``geometry`` (the grid of
    ``mask``), that grid (``IFSSNet.SeedGrid``), so a run on another volume's grid (a crop) maps the slices."""
    segment.SetTag(ANNOTATED_TAG, AnnotatedSlices(axis, tuple(sorted(seedSlices))).to_tag())
    segment.SetTag(RESULT_CRC_TAG, ",".join(str(c) for c in slice_crcs(mask, axis)))
    if geometry is not None:
        segment.SetTag(SEED_GRID_TAG, gridText(geometry))
    else:
        segment.RemoveTag(SEED_GRID_TAG)


def _gridMatrix(geometry) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    return arrays.matrixArray(matrix)


def gridText(geometry) -> str:
    """``IFSSNet.SeedGrid`` of a ``vtkOrientedImageData`` grid."""
    values = _gridMatrix(geometry)[:3].ravel()
    return ",".join(repr(float(v)) for v in values) + ";" + ",".join(str(int(e)) for e in geometry.GetExtent())


def gridFromText(text: Optional[str]):
    """The grid (a ``vtkOrientedImageData`` without voxels) of an ``IFSSNet.SeedGrid`` tag, None if there is none or
    it does not parse."""
    try:
        matrixText, extentText = (text or "").split(";")
        values = [float(v) for v in matrixText.split(",")]
        extent = [int(e) for e in extentText.split(",")]
    except ValueError:
        return None
    if len(values) != 12 or len(extent) != 6 or not np.all(np.isfinite(values)):
        return None
    matrix = vtk.vtkMatrix4x4()
    for n, v in enumerate(values):
        matrix.SetElement(n // 4, n % 4, v)
    grid = slicer.vtkOrientedImageData()
    grid.SetImageToWorldMatrix(matrix)
    grid.SetExtent(extent)
    return grid


def referenceImageGrid(segmentationNode):
    """The segmentation's own grid (its 'Reference image geometry': the volume it was painted on, in its frame), a
    ``vtkOrientedImageData`` without voxels; None where it has none."""
    converter = slicer.vtkSegmentationConverter
    text = segmentationNode.GetSegmentation().GetConversionParameter(
        converter.GetReferenceImageGeometryParameterName())
    grid = slicer.vtkOrientedImageData()
    if not text or not converter.DeserializeImageGeometry(text, grid, False):
        return None
    e = grid.GetExtent()
    return grid if e[0] <= e[1] and e[2] <= e[3] and e[4] <= e[5] else None


def sameGrid(a, b, tolerance: float = 1e-4) -> bool:
    return tuple(a.GetExtent()) == tuple(b.GetExtent()) and np.allclose(_gridMatrix(a), _gridMatrix(b), atol=tolerance)


def seedsOnGrid(old, new, annotated: AnnotatedSlices, name: str = "") -> Optional[AnnotatedSlices]:
    """``annotated`` (slices of grid ``old``, a ``vtkOrientedImageData``, counted from its extent's first) on grid
    ``new``, whose voxels they are resampled onto (``ifssnet.io.annotated_on_grid``: a crop, a flip, the axes in
    another order, finer or coarser slices; those outside ``new`` are left out), or None where its slices are not
    parallel to them (rotated). SeedError where they do not map one for one."""
    def voxelZero(grid) -> np.ndarray:      # IJK of the extent's first voxel -> world
        e = grid.GetExtent()
        shift = np.eye(4)
        shift[:3, 3] = (e[0], e[2], e[4])
        return _gridMatrix(grid) @ shift

    return annotated_on_grid(annotated, np.linalg.inv(voxelZero(new)) @ voxelZero(old),
                             arrays._extentShape(new.GetExtent()), name)


def segmentTag(segment, tag: str) -> Optional[str]:
    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else None


class NoMuscleMark(NamedTuple):
    """What ``markNoMuscle`` did: the ``axis`` (0 = k) of the segment's seeds, its annotated ``slices`` now, and the
    slice ``index`` it marked."""

    axis: int
    slices: Tuple[int, ...]
    index: int


# --------------------------------------------------------------------------------------------------
# The job that travels between prepare / compute / apply


@dataclasses.dataclass
class SegmentJob:
    segmentId: str
    name: str  # the key of this segment's seeds in the core call (the segment name, made unique)
    axis: int  # array axis (0 = k) across which the seed slices lie
    seedSlices: Tuple[int, ...]
    painted: np.ndarray  # the segment before the run, (k, j, i) on the volume grid
    result: Optional[np.ndarray] = None  # (k, j, i)
    confidence: Optional[np.ndarray] = None  # (slices along axis,)
    frames: int = 0  # frames along the axis that the method ran on (fewer than the slices: a finer sweep, thinned)
    notes: List[str] = dataclasses.field(default_factory=list)  # for the user: slices read otherwise than painted
    recorded: list = dataclasses.field(default_factory=list)  # [(grid, seeds there)] where read on the tags' grid


@dataclasses.dataclass
class PropagationJob:
    volumeNodeId: str
    segmentationNodeId: str
    volume: np.ndarray  # (k, j, i)
    spacingKji: Tuple[float, float, float]
    segments: List[SegmentJob]
    method: Any = DEFAULT_METHOD
    model: Any = None
    device: str = "auto"
    preset: str = "balanced"
    extent: str = "muscle"  # "muscle": to the ends of the muscle; "between": only between seed groups
    exclusive: bool = True  # the segments propagated together do not overlap (IFSS-Net; ifssnet.exclusive)
    runTime: float = 0.0
    backup: Any = None  # the segmentation before apply (for Cancel of a preview)
    written: Any = None  # mrml_arrays.editState of the segmentation as apply left it
    overwritten: List[str] = dataclasses.field(default_factory=list)  # other segments apply changed (overwrite mode)


class IFSSNetSegmentationLogic:
    """Propagate painted slices through the volume, and measure segment volumes.

    ``propagate(volumeNode, segmentationNode, segmentIds=None, model=None, device="auto", progress=None,
    cancel=None, *, method="ifssnet", preset="balanced", extent="muscle", skipEmpty=False, exclusive=True,
    editorNode=None) -> dict``

    ``editorNode``: a Segment Editor parameter set node whose masking settings the result is written with (``apply``).

    ``exclusive`` (default): the segments propagated together do not overlap; a voxel two of them claim
    goes to the one painted nearer to its slice, and a voxel painted for one is not given to another
    (the network only).

    The returned dict::

        {"segments": {segmentId: {"name", "voxel_count", "volume_mm3", "volume_cm3", "axis",
                                  "seed_slices", "least_confident": [(slice, confidence), ...],
                                  "paint_next": slice or None, "ends": (first, last) or None,
                                  "notes": [sentence, ...] (``notesText``)}},
         "run_time_s": float, "method": str, "device": str}
    """

    _busy: Dict[str, str] = {}   # the segmentation a propagation runs on (ID -> name); one at a time, process-wide
    _busyLock = threading.Lock()

    def __init__(self, scene=None) -> None:
        self.scene = scene

    # ---- public API ----------------------------------------------------------------------------

    def propagate(self, volumeNode, segmentationNode, segmentIds: Optional[Sequence[str]] = None,
                  model=None, device: str = "auto", progress=None, cancel=None, *,
                  method=DEFAULT_METHOD, preset: str = "balanced", extent: str = "muscle",
                  skipEmpty: bool = False, exclusive: bool = True, editorNode=None) -> dict:
        job = self.prepare(volumeNode, segmentationNode, segmentIds, model=model, device=device,
                           method=method, preset=preset, extent=extent, progress=progress, skipEmpty=skipEmpty,
                           exclusive=exclusive)
        self._acquire(segmentationNode)
        try:
            self.compute(job, progress=progress, cancel=cancel)
            check_cancel(cancel)
            return self.apply(job, segmentationNode, progress=progress, cancel=cancel, editorNode=editorNode)
        finally:
            self._release(segmentationNode)

    def paintedAxis(self, volumeNode, segmentationNode, segmentId: str) -> Optional[int]:
        """The array axis (0 = k) a segment is painted across (its tag, else found from the paint), or
        None for a segment with nothing painted. Changes nothing."""
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId) if segmentationNode else None
        if volumeNode is None or segment is None:
            return None
        tag = segmentTag(segment, ANNOTATED_TAG)
        geometry = arrays.referenceGeometry(volumeNode, segmentationNode)
        mask = arrays.segmentToArray(segmentationNode, segmentId, geometry)
        if mask.any() or tag:   # the tag's axis, unless the segment was cleared and painted again (_seedSlices)
            try:
                return self._seedsOnGrid(segmentationNode, segmentId, geometry, mask,
                                         volumeName=volumeNode.GetName())[0]
            except SeedError:   # marks only, on a grid they cannot apply to: no axis; paint that cannot be read: say why
                if mask.any():
                    raise
                return None
        return None

    @arrays.outOfMemoryAsResourceError("marking the slice")
    def markNoMuscle(self, volumeNode, segmentationNode, segmentId: str, sliceIndex: Optional[int] = None,
                     axis: Optional[int] = None, *, views: Sequence[Any] = ()) -> "NoMuscleMark":
        """Mark slice ``sliceIndex`` of a segment "no muscle here", as a clinician marks where a muscle ends.

        The segment is cleared on that slice (a leak of a previous run, say), and the slice joins the
        segment's annotated slices (tag ``IFSSNet.AnnotatedSlices``), so the next Propagate does not run
        past it. ``axis``: the array axis the slice is across (0 = k); default: the painted slices' axis,
        and it must be that axis when given. ``sliceIndex`` None: the slice the first of ``views`` (slice views'
        SliceToRAS matrices, 4 x 4) that shows slices across that axis shows (``mrml_arrays.sliceIndexAt``), as the
        module's button asks, reading the segment once. Returns (axis, annotated slices, the slice marked). Raises
        (changing nothing) for an unpainted segment without ``axis``, another axis than the painted one, no view
        across it, a slice outside the volume, or a slice the user painted with the muscle (erase it first).
        """
        if volumeNode is None or segmentationNode is None:
            raise InputError("No volume or no segmentation is selected.", "Select the volume and the segmentation.")
        arrays.requireSegmentationNode(segmentationNode)
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if segment is None:
            raise InputError(f"The segmentation has no segment with ID '{segmentId}'.", "Select an existing segment.")
        geometry = arrays.referenceGeometry(volumeNode, segmentationNode)
        arrays.labelmapOnVolume(segmentationNode, volumeNode)
        mask = arrays.segmentToArray(segmentationNode, segmentId, geometry)
        recorded: list = []
        if mask.any() or segmentTag(segment, ANNOTATED_TAG):
            paintedAxis, slices = self._seedsOnGrid(segmentationNode, segmentId, geometry, mask, recorded=recorded,
                                                    volumeName=volumeNode.GetName())
        elif axis is None:
            raise SeedError(f"Segment '{segment.GetName()}' has no painted slices, so the sweep's axis is unknown.",
                            "Paint the muscle on a few slices first, then mark where it ends.")
        else:
            paintedAxis, slices = int(axis), ()
        if axis is not None and int(axis) != paintedAxis:
            raise SeedError(f"The slice is across array axis {axis}, but '{segment.GetName()}' is painted across "
                            f"axis {paintedAxis}.", "Mark 'no muscle here' in the view where you painted the muscle.")
        if sliceIndex is None:
            sliceIndex = next((k for k in (arrays.sliceIndexAt(volumeNode, v, paintedAxis) for v in views)
                               if k is not None), None)
            if sliceIndex is None:
                raise InputError("No slice view shows slices across the axis the muscle is painted across.",
                                 "Show the painted view (Reformat: reset to the volume's axes) and go to the slice "
                                 "where the muscle has ended.")
        n = mask.shape[paintedAxis]
        k = int(sliceIndex)
        if not 0 <= k < n:
            raise InputError(f"Slice {k} is outside the volume (0..{n - 1}).", "Show a slice of the volume and mark it.")
        onSlice = np.moveaxis(mask, paintedAxis, 0)[k]
        if k in slices and onSlice.any():
            raise SeedError(f"Slice {k} is one of the slices you painted '{segment.GetName()}' on.",
                            "Erase the muscle there first if it is not on that slice, or mark another slice.")
        slices = tuple(sorted(set(slices) | {k}))
        np.moveaxis(mask, paintedAxis, 0)[k] = 0
        with arrays.allOrNothing(segmentationNode):
            if arrays.writeSegment(segmentationNode, segmentId, mask, geometry):   # on the segmentation's own grid
                mask = arrays.segmentToArray(segmentationNode, segmentId, geometry)
            # slices painted after the mark are still found; seeds outside this volume (a crop) are kept
            self._tagSeedsKeeping(segmentationNode, segmentId, paintedAxis, slices, mask, geometry, recorded)
            arrays.markInProgress(segmentationNode, segmentId)
        return NoMuscleMark(paintedAxis, slices, k)

    def segmentVolumes(self, segmentationNode, segmentIds: Optional[Sequence[str]] = None) -> dict:
        """Per segment ID: name, voxel_count, volume_mm3, volume_cm3 (as Segment Statistics computes them)."""
        segmentation = segmentationNode.GetSegmentation()
        ids = list(segmentIds) if segmentIds is not None else list(segmentation.GetSegmentIDs())
        out = {}
        for sid in ids:
            stats = arrays.voxelStatistics(segmentationNode, sid)
            stats["name"] = segmentation.GetSegment(sid).GetName()
            out[sid] = stats
        return out

    def expectedSeconds(self, volumeNode, segmentationNode=None, segmentIds: Optional[Sequence[str]] = None, *,
                        model=None, device: str = "auto", preset: str = "balanced") -> float:
        """The expected wall time (s) of propagating ``segmentIds`` through ``volumeNode`` with ``preset``.

        Shown before a run, so it reads no voxels: the shape comes from the volume's dimensions, the
        propagation axis and the number of seed groups from the segments' ``IFSSNet.AnnotatedSlices`` tag
        where a previous run left one (mapped onto this volume's grid where it was written on another's: a reoriented
        or cropped copy), else the volume's longest axis (a sweep) and one group.
        ``segmentIds=None``: every segment of ``segmentationNode`` (one if there is no segmentation).
        The core's ``expected_seconds`` times one network step on this machine (about 1 s the first time
        for a network, device and preset; cached after) and assumes every run goes to the volume's end,
        so the figure is an upper bound: a run stops a few slices past the muscle's end.
        """
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError("No volume is selected, or the volume has no voxels.", "Select the ultrasound volume.")
        shape = list(reversed(volumeNode.GetImageData().GetDimensions()))  # (k, j, i)
        if min(shape) < 1:
            raise VolumeError("The volume has no voxels.", "Load a 3-D ultrasound volume.")
        segments = []
        if segmentationNode is not None:
            segmentation = segmentationNode.GetSegmentation()
            ids = list(segmentIds) if segmentIds is not None else list(segmentation.GetSegmentIDs())
            segments = [segmentation.GetSegment(sid) for sid in ids if segmentation.GetSegment(sid) is not None]
        from ifssnet.seeds import seed_groups

        axis, groups = int(np.argmax(shape)), 1
        for segment in segments:
            annotated = self._taggedSeedsOn(volumeNode, segmentationNode, segment)
            if annotated is not None:
                axis, groups = annotated.axis, max(groups, len(seed_groups(annotated.slices)))
                break
        from ifssnet.estimate import expected_seconds  # lazy: imports torch

        moved = [shape[axis]] + [shape[a] for a in range(3) if a != axis]
        return expected_seconds(moved, max(1, len(segments)), preset, device, model, seed_groups=groups,
                                slice_spacing_mm=float(arrays.spacingKji(volumeNode)[axis]))

    @staticmethod
    def _taggedSeedsOn(volumeNode, segmentationNode, segment) -> Optional[AnnotatedSlices]:
        """A segment's tagged seeds on ``volumeNode``'s grid without reading voxels: the tag's slices mapped from the
        grid ``IFSSNet.SeedGrid`` records (a crop, a flip, the axes in another order: ``seedsOnGrid``); None where
        there is no tag, or it was written on a grid that is no such copy (Propagate then reads the paint afresh)."""
        tag = segmentTag(segment, ANNOTATED_TAG)
        if not tag:
            return None
        try:
            annotated = AnnotatedSlices.from_tag(tag)
            old = recordedGrid(segmentationNode, segment)
            if old is None:
                return annotated
            geometry = arrays.referenceGeometry(volumeNode, segmentationNode)
        except IFSSNetError:   # a tag that does not parse, a volume under a warping transform: Propagate says so
            return None
        if sameGrid(old, geometry):
            return annotated
        try:
            return seedsOnGrid(old, geometry, annotated)
        except SeedError:   # not one for one: Propagate says so
            return None

    @staticmethod
    def volumeTable(volumes: dict, name: str = "Segment volumes", tableNode=None):
        """A table node (segment, voxel_count, volume_mm3, volume_cm3) from :meth:`segmentVolumes`."""
        if tableNode is None:
            tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
        table = tableNode.GetTable()
        table.Initialize()
        names = vtk.vtkStringArray()
        names.SetName("segment")
        table.AddColumn(names)
        for column, cls in (("voxel_count", vtk.vtkIntArray), ("volume_mm3", vtk.vtkDoubleArray),
                            ("volume_cm3", vtk.vtkDoubleArray)):
            array = cls()
            array.SetName(column)
            table.AddColumn(array)
        table.SetNumberOfRows(len(volumes))
        for row, entry in enumerate(volumes.values()):
            table.SetValue(row, 0, vtk.vtkVariant(str(entry.get("name", ""))))
            table.SetValue(row, 1, vtk.vtkVariant(int(entry["voxel_count"])))
            table.SetValue(row, 2, vtk.vtkVariant(float(entry["volume_mm3"])))
            table.SetValue(row, 3, vtk.vtkVariant(float(entry["volume_cm3"])))
        tableNode.Modified()
        return tableNode

    # ---- the three steps -----------------------------------------------------------------------

    @arrays.outOfMemoryAsResourceError("reading the volume and the segments")
    def prepare(self, volumeNode, segmentationNode, segmentIds=None, *, model=None, device="auto",
                method=DEFAULT_METHOD, preset="balanced", extent="muscle", progress=None,
                skipEmpty: bool = False, exclusive: bool = True) -> PropagationJob:
        """Main thread: read the volume and the seeds from MRML. Changes no voxel and no tag (a segmentation imported
        from a model without a reference geometry is given the volume's, as the Segment Editor gives it:
        ``mrml_arrays.labelmapOnVolume``).

        ``segmentIds=None`` takes every segment that has painted slices (as does ``skipEmpty=True`` for a
        given list, e.g. "all visible segments"); an explicitly chosen empty segment is an error.
        """
        report(progress, STAGE_PREPARING, 0, 1)
        if segmentationNode is None:
            raise InputError("No segmentation is selected.", "Select the segmentation that holds the painted slices.")
        arrays.requireSegmentationNode(segmentationNode)
        from ifssnet.preprocess import check_image, check_volume
        from ifssnet.seeds import check_slice_count, painted_count

        volume = arrays.volumeToArray(volumeNode)   # (K, J, I); a 2-D image arrives one slice thick
        check_image(volume)                         # 2-D, empty, not numbers: before reading any segment
        segmentation = segmentationNode.GetSegmentation()
        if segmentIds is None:
            segmentIds = [sid for sid in segmentation.GetSegmentIDs()]
            skipEmpty = True
        if not segmentIds:
            if segmentation.GetNumberOfSegments():   # the effect's [] : none selected, or none visible
                raise SeedError("No segment is selected, or (with all visible segments at once) none is visible.",
                                "Select the segment to propagate, or show the segments to propagate together.")
            raise SeedError("The segmentation has no segments.", "Add a segment and paint it on at least 3 slices.")
        if extent not in ("muscle", "between"):
            raise InputError(f"Unknown extent '{extent}'.", "Use 'muscle' or 'between'.")
        geometry = arrays.referenceGeometry(volumeNode, segmentationNode)
        arrays.labelmapOnVolume(segmentationNode, volumeNode)   # a model imported: its labelmap on these voxels
        segments = []
        names = [segmentation.GetSegment(sid).GetName() if segmentation.GetSegment(sid) else sid for sid in segmentIds]
        for sid in segmentIds:
            segment = segmentation.GetSegment(sid)
            if segment is None:
                raise InputError(f"The segmentation has no segment with ID '{sid}'.", "Select an existing segment.")
            painted = arrays.segmentToArray(segmentationNode, sid, geometry)
            if skipEmpty and not painted.any():   # nothing to propagate (cleared after a run: its tags stay)
                continue
            notes: List[str] = []
            recorded: list = []
            axis, slices = self._seedsOnGrid(segmentationNode, sid, geometry, painted, notes, recorded,
                                             volumeName=volumeNode.GetName())
            withPaint = painted_count(painted, slices, axis)
            check_slice_count(withPaint, name=segment.GetName(), marks=len(slices) - withPaint)
            name = segment.GetName()
            if names.count(name) > 1:  # two segments with one name: keep their seeds apart
                name = f"{name} ({sid})"
            segments.append(SegmentJob(sid, name, axis, slices, painted, notes=notes, recorded=recorded))
        if not segments:
            raise SeedError("None of the segments has painted slices.", "Paint a segment on at least 3 slices.")
        for axis in sorted({seg.axis for seg in segments}):
            check_volume(np.moveaxis(volume, axis, 0))   # the core's check, in the main thread, before the run
        report(progress, STAGE_PREPARING, 1, 1)
        return PropagationJob(volumeNode.GetID(), segmentationNode.GetID(), volume, arrays.spacingKji(volumeNode),
                              segments, method=method, model=model, device=device, preset=preset, extent=extent,
                              exclusive=bool(exclusive))

    def compute(self, job: PropagationJob, progress=None, cancel=None) -> PropagationJob:
        """Any thread: run the core on numpy arrays. Touches no MRML node."""
        start = time.perf_counter()
        # Group the segments by propagation axis: the network sees one volume orientation per call.
        byAxis: Dict[int, List[SegmentJob]] = {}
        for seg in job.segments:
            byAxis.setdefault(seg.axis, []).append(seg)
        for axis, segs in byAxis.items():
            check_cancel(cancel)
            volumeT = np.moveaxis(job.volume, axis, 0)
            spacingT = tuple(np.array(job.spacingKji)[[axis] + [a for a in range(3) if a != axis]])
            seeds = seedSetsAlongAxis(segs, axis, volumeT.shape)

            report(progress, STAGE_PROPAGATING, 0, volumeT.shape[0])
            try:
                masks, confidence, frames = self._runCore(job, volumeT, seeds, spacingT, progress, cancel)
            except MemoryError as err:
                raise ResourceError("The computer ran out of memory while propagating. Nothing was changed.",
                                    "Close other programs, or crop the volume (Crop Volume module) or propagate "
                                    "fewer segments at a time, then propagate again.") from err
            for n, seg in enumerate(segs):    # copies of the volume's size per segment (seconds at full size)
                report(progress, STAGE_WRITING, n, len(segs))
                check_cancel(cancel)
                seg.frames = frames
                resultT = np.asarray(masks[seg.name])
                if resultT.shape != volumeT.shape:
                    raise IFSSNetError(f"The method returned a mask of shape {resultT.shape}, expected {volumeT.shape}.",
                                       "Report this as a bug.")
                # as uint8 (a no-op for the core's uint8 masks), then 0/1 in a new array: its bool viewed, not cast
                resultT = (resultT.astype(np.uint8, copy=False) > 0).view(np.uint8)
                if job.extent == "between":
                    lo, hi = min(seg.seedSlices), max(seg.seedSlices)
                    resultT[:lo] = 0
                    resultT[hi + 1:] = 0
                paintedT = np.moveaxis(seg.painted, axis, 0)
                resultT[list(seg.seedSlices)] = paintedT[list(seg.seedSlices)]  # painted slices stay as painted
                seg.result = np.ascontiguousarray(np.moveaxis(resultT, 0, axis))
                conf = confidence.get(seg.name) if confidence else None
                seg.confidence = None if conf is None else np.asarray(conf, np.float32)
            report(progress, STAGE_WRITING, len(segs), len(segs))
        if job.exclusive and job.method == DEFAULT_METHOD and len(byAxis) > 1:
            check_cancel(cancel)
            keepApartAcrossAxes(job.segments, job.spacingKji)
        job.runTime = time.perf_counter() - start
        return job

    @arrays.outOfMemoryAsResourceError("writing the result")
    def apply(self, job: PropagationJob, segmentationNode, progress=None, cancel=None, *, editorNode=None) -> dict:
        """Main thread: write the results into the segments. All or nothing.

        ``editorNode``: a ``vtkMRMLSegmentEditorNode`` (the Segment Editor effect's parameter set node) whose editing
        settings the results are written with, as Slicer's auto-complete effects apply theirs
        (``mrml_arrays.editorMasking``): the editable area and the editable intensity range of the volume confine what
        changes, and "Modify other segments" says which other segments lose the voxels a result takes. A segment keeps
        its voxels outside the editable area, so painted slices come out as painted also there: the editable area
        limits what Propagate changes, as it limits a paint brush, and never erases what is there. None (the module
        page, the command line): each segment becomes its result, and no other segment changes."""
        if any(seg.result is None for seg in job.segments):
            raise IFSSNetError("There is no result to write.", "Run the propagation first.")
        check_cancel(cancel)
        if segmentationNode is None or segmentationNode.GetScene() is None:
            raise InputError("The segmentation was removed from the scene during the run. Nothing was changed.",
                             "Select the segmentation again (or load it) and propagate.")
        volumeNode = slicer.mrmlScene.GetNodeByID(job.volumeNodeId) if slicer.mrmlScene else None
        if volumeNode is None:
            raise InputError("The volume was removed from the scene during the run.", "Load it again and propagate.")
        shape = tuple(reversed(volumeNode.GetImageData().GetDimensions())) if volumeNode.GetImageData() else ()
        if shape != tuple(job.volume.shape):
            was, now = (" x ".join(str(n) for n in s) or "no" for s in (job.volume.shape, shape))
            raise InputError(f"The volume '{volumeNode.GetName()}' changed size during the run ({was} voxels, now "
                             f"{now}). Nothing was changed.", "Propagate again.")
        removed = [seg.name for seg in job.segments
                   if segmentationNode.GetSegmentation().GetSegment(seg.segmentId) is None]
        if removed:
            raise InputError(f"Segment {', '.join(repr(n) for n in removed)} was removed during the run. Nothing "
                             "was changed.", "Propagate again.")
        geometry = arrays.referenceGeometry(volumeNode, segmentationNode)
        # Slicer stays usable during the run: a slice painted or erased meanwhile would be written over (and the
        # checksums taken of the result would hide the edit from the next run too)
        edited = [seg.name for seg in job.segments
                  if not np.array_equal(arrays.segmentToArray(segmentationNode, seg.segmentId, geometry), seg.painted)]
        if edited:
            raise InputError(f"Segment {', '.join(repr(n) for n in edited)} was edited during the run. Nothing was "
                             "changed.", "Propagate again: the slices you edited are taken as painted.")
        total = len(job.segments)
        if editorNode is not None and not arrays.editorMaskingAvailable():
            for seg in job.segments:   # an older Slicer: written as the module page writes, and the status line says so
                seg.notes.append(f"'{seg.name}' was written without the Segment Editor's Masking settings: this Slicer "
                                 "has no vtkSlicerSegmentEditorLogic to apply them (a Slicer from 2025 on has).")
            editorNode = None
        with arrays.allOrNothing(segmentationNode) as job.backup:
            if editorNode is None:
                readBack = [arrays.writeSegment(segmentationNode, seg.segmentId, seg.result, geometry)
                            for seg in self._writing(job, progress)]
                job.overwritten = []
            else:
                others = self._overwritable(job, segmentationNode, editorNode, geometry)
                with arrays.editorMasking(editorNode, segmentationNode, volumeNode) as write:
                    for seg in self._writing(job, progress):
                        write(seg.segmentId, seg.result, geometry)
                readBack = [True] * total   # what the editable area let through, after every segment is written
                job.overwritten = [sid for sid, before in others.items() if not np.array_equal(
                    arrays.segmentToArray(segmentationNode, sid, geometry), before)]
            for seg, again in zip(job.segments, readBack):
                # the checksums are of what the next run reads back: stored on the segmentation's own grid, or masked
                stored = arrays.segmentToArray(segmentationNode, seg.segmentId, geometry) if again else seg.result
                if editorNode is not None:
                    self._noteMasked(seg, stored)
                self._tagSeedsKeeping(segmentationNode, seg.segmentId, seg.axis, seg.seedSlices, stored, geometry,
                                      seg.recorded)
                arrays.markInProgress(segmentationNode, seg.segmentId)
        report(progress, STAGE_WRITING, total, total)
        summary = self._summary(job, segmentationNode)
        job.written = arrays.editState(segmentationNode)
        return summary

    @staticmethod
    def _writing(job: PropagationJob, progress):
        """The job's segments, one by one, with the progress of writing them."""
        for n, seg in enumerate(job.segments):
            report(progress, STAGE_WRITING, n, len(job.segments))
            yield seg

    @staticmethod
    def _noteMasked(seg: SegmentJob, stored: np.ndarray) -> None:
        """After a write with the Segment Editor's masking: a note for the user where it left out voxels of the result
        (an editable area that excludes all of it leaves the segment as painted, which would otherwise pass unseen),
        and ``seg.result`` becomes what was written, which the summary's ends and next slice to paint are of."""
        left = int(np.count_nonzero((seg.result > 0) & (stored == 0)))
        if left:
            seg.notes.append(f"'{seg.name}': the Segment Editor's Masking settings (editable area, intensity range, "
                             f"Modify other segments) left out {left} of the result's "
                             f"{int(np.count_nonzero(seg.result))} voxels.")
        seg.result = stored

    @staticmethod
    def _overwritable(job: PropagationJob, segmentationNode, editorNode, geometry) -> Dict[str, np.ndarray]:
        """{segment ID: voxels on ``geometry``} of the segments not propagated, before the write, where "Modify other
        segments" of ``editorNode`` may let the results cut them (none with "Allow overlap"): those that changed are
        what ``revert`` puts back besides the propagated ones."""
        if editorNode.GetOverwriteMode() == slicer.vtkMRMLSegmentEditorNode.OverwriteNone:
            return {}
        written = {seg.segmentId for seg in job.segments}
        return {sid: arrays.segmentToArray(segmentationNode, sid, geometry)
                for sid in segmentationNode.GetSegmentation().GetSegmentIDs() if sid not in written}

    def revert(self, job: PropagationJob, segmentationNode) -> None:
        """Undo ``apply`` (Cancel of a preview): the propagated segments go back to what they were, voxel for voxel,
        with their seed tags, and so do the other segments that the Segment Editor's "Modify other segments" let the
        result cut (``PropagationJob.overwritten``); the rest of the segmentation (a segment painted or edited while
        the preview was shown) stays as it is now. Where nothing was edited since ``apply``
        (``mrml_arrays.editState``), the whole segmentation goes back as it was: also the label values and layers
        that Slicer changed where the result overlapped another segment of its layer (it moves one of them to a
        layer of its own)."""
        if job.backup is None:
            return
        if job.written is not None and arrays.editState(segmentationNode) == job.written:
            arrays.restoreSegmentation(segmentationNode, job.backup)
        else:
            arrays.restoreSegments(segmentationNode, job.backup,
                                   [seg.segmentId for seg in job.segments] + list(job.overwritten),
                                   tags=(ANNOTATED_TAG, RESULT_CRC_TAG, SEED_GRID_TAG, arrays.STATUS_TAG))
        job.backup = job.written = None

    # ---- helpers -------------------------------------------------------------------------------

    def _seedsOnGrid(self, segmentationNode, segmentId: str, geometry, painted: np.ndarray,
                     notes: Optional[List[str]] = None, recorded: Optional[list] = None,
                     volumeName: str = "") -> Tuple[int, Tuple[int, ...]]:
        """``_readSeedsOnGrid``, whose refusal of strokes that cross the volume's slices says what to do where the
        segment is stored on a grid rotated against the volume's (``volumeName``), as when the segmentation was made
        on another volume: the Segment Editor paints along that grid's slices, and its rotated-view warning button
        aligns the views with that grid (qMRMLSegmentEditorWidget::rotateSliceViewsToSegmentation), not the volume."""
        try:
            return self._readSeedsOnGrid(segmentationNode, segmentId, geometry, painted, notes, recorded)
        except StrokesOffSlices as err:
            stored = arrays.segmentGrid(segmentationNode, segmentId)
            if stored is None or arrays.axesParallel(stored, geometry):
                raise
            name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
            volume = f"'{volumeName}'" if volumeName else "this volume"
            raise SeedError(
                f"The paint of '{name}' crosses several slices of the volume: the segmentation "
                f"'{segmentationNode.GetName()}' is on a grid of its own, and that grid is rotated against the volume "
                "(the segmentation was made on another volume). The Segment Editor paints along the slices of the "
                "segmentation's grid.",
                f"In the Segment Editor, click Specify geometry (the button right of Source volume), choose {volume} "
                "as the source geometry and click OK; then erase the strokes and paint the slices again.") from err

    def _readSeedsOnGrid(self, segmentationNode, segmentId: str, geometry, painted: np.ndarray,
                         notes: Optional[List[str]] = None,
                         recorded: Optional[list] = None) -> Tuple[int, Tuple[int, ...]]:
        """``_seedSlices`` of a segment read on ``geometry`` (``painted``), its tags written on the grid their
        ``IFSSNet.SeedGrid`` names (``recordedGrid``: else the segmentation's own, a file's). On that grid, or where
        none is known, they are read as they are. On a grid whose
        slices lie parallel to its slices (a crop, a flip, the axes in another order, the sweep resampled finer or
        coarser): read on that grid, where the checksums were taken, and the slices mapped onto ``geometry``'s
        (``seedsOnGrid``). On a grid rotated against it, or where a seed lies between two of its slices, they cannot
        apply: the paint is taken as fresh seeds (``find_axis``), and ``notes`` says so. ``recorded``: where the seeds
        were read on the recorded grid, (that grid, its seeds there) is appended to it (``_tagSeedsKeeping``)."""
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        old = recordedGrid(segmentationNode, segment)
        if old is None or sameGrid(old, geometry):
            if not painted.any() and arrays.holdsVoxels(segmentationNode, segmentId):
                raise SeedError(f"Segment '{segment.GetName()}' is painted, but outside the selected volume: none of "
                                "its paint lies on the volume's voxels (it was painted on another volume?).",
                                "Select the volume it was painted on, or paint the muscle on at least 3 slices of "
                                "this volume, then propagate.")
            return self._seedSlices(segment, painted, notes)
        axis = AnnotatedSlices.from_tag(segmentTag(segment, ANNOTATED_TAG)).axis
        if seedsOnGrid(old, geometry, AnnotatedSlices(axis, ())) is not None:
            onOld = arrays.segmentToArray(segmentationNode, segmentId, old)
            seedAxis, slices = self._seedSlices(segment, onOld, notes)   # another axis where painted again across it
            if recorded is not None:
                recorded.append((old, AnnotatedSlices(seedAxis, slices)))
            try:
                mapped = seedsOnGrid(old, geometry, AnnotatedSlices(seedAxis, slices), segment.GetName())
            except SeedError:   # a seed between two slices of this grid: read afresh, as ifssnet.io reads a file
                mapped = None
            if mapped is not None:
                return mapped.axis, mapped.slices
        if not painted.any():
            raise SeedError(f"Segment '{segment.GetName()}' has no paint on this volume, and its 'no muscle here' "
                            "marks were made on another volume's grid.",
                            "Paint the muscle on at least 3 slices of this volume, then propagate.")
        fresh = fresh_seeds(painted, segment.GetName())
        if notes is not None:
            notes.append(other_grid_note(segment.GetName()))
        return fresh

    def _tagSeedsKeeping(self, segmentationNode, segmentId: str, axis: int, slices, stored: np.ndarray, geometry,
                         recorded: Sequence[Any] = ()) -> None:
        """``tagSeeds`` of a segment's seeds ``slices`` across ``axis`` of ``geometry`` (``stored``: its voxels there),
        unless ``geometry`` is a crop of the grid its tags were recorded on (``recorded``: [(that grid, its seeds
        there before this write)], from ``_seedsOnGrid``) and some of those seeds lie outside it: then the tags stay
        on that grid, with those seeds kept and the new ones mapped onto it; likewise fresh paint (no tags yet) that
        lies outside ``geometry`` on the segmentation's own grid (``referenceImageGrid``: the volume it was made on). Re-recorded on the crop, a seed or mark outside
        it was dropped, so on the whole volume again a painted slice there was propagated over."""
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if not recorded and not segmentTag(segment, ANNOTATED_TAG):
            # fresh paint: all of it is seeds, also where it lies outside this volume (on the segmentation's grid)
            grid = referenceImageGrid(segmentationNode)
            if grid is not None and not sameGrid(grid, geometry):
                try:
                    covered = seedsOnGrid(geometry, grid, AnnotatedSlices(axis, tuple(range(int(stored.shape[axis])))))
                except SeedError:
                    covered = None
                if covered is not None and len(covered.slices) == int(stored.shape[axis]):   # this volume: a crop
                    onGrid = arrays.segmentToArray(segmentationNode, segmentId, grid)
                    recorded = [(grid, AnnotatedSlices(covered.axis, annotated_slices(onGrid, covered.axis)))]
        if recorded:
            old, before = recorded[0]
            n = int(stored.shape[axis])
            try:
                back = seedsOnGrid(geometry, old, AnnotatedSlices(axis, tuple(slices)))
                covered = seedsOnGrid(geometry, old, AnnotatedSlices(axis, tuple(range(n))))
            except SeedError:   # not one for one (resampled): the tags go onto this grid
                back = covered = None
            if back is not None and covered is not None and len(covered.slices) == n and back.axis == before.axis:
                outside = set(before.slices) - set(covered.slices)
                if outside:
                    onOld = arrays.segmentToArray(segmentationNode, segmentId, old)
                    tagSeeds(segment, before.axis, outside | set(back.slices), onOld, old)
                    return
        tagSeeds(segment, axis, slices, stored, geometry)

    def _seedSlices(self, segment, painted: np.ndarray,
                    notes: Optional[List[str]] = None) -> Tuple[int, Tuple[int, ...]]:
        """(axis, seed slices) of ``segment`` whose voxels are ``painted`` (k, j, i), read from its tags
        (``IFSSNet.AnnotatedSlices``, ``IFSSNet.ResultSliceCRC``) and its paint by ``ifssnet.io.seed_slices``, the
        rule ``ifssnet propagate`` reads a saved file by. ``notes``: sentences for the user about slices read
        otherwise than painted are appended to it."""
        tag = segmentTag(segment, ANNOTATED_TAG)
        annotated = AnnotatedSlices.from_tag(tag) if tag else None
        crcs = crcs_from_tag(segmentTag(segment, RESULT_CRC_TAG))
        return seed_slices(annotated, crcs, painted, segment.GetName(), notes)

    def _runCore(self, job: PropagationJob, volumeT, seeds: dict, spacingT, progress, cancel):
        """One call into the core. Returns (masks by name, confidence by name or {}, frames the method ran on)."""
        method = job.method
        if method == DEFAULT_METHOD:
            import inspect

            from ifssnet.propagate import propagate as corePropagate  # lazy: imports torch

            options = {"device": job.device, "stop_at_end": True, "preset": job.preset,
                       "between_seeds_only": job.extent == "between", "slice_spacing_mm": float(spacingT[0]),
                       "exclusive": job.exclusive, "progress": progress, "cancel": cancel,
                       # each segment's result, and apply's backup of what it replaces: uint8, one volume each
                       "reserved_bytes": 2 * len(seeds) * int(volumeT.size)}
            accepted = inspect.signature(corePropagate).parameters
            options = {k: v for k, v in options.items() if k in accepted}
            result = corePropagate(volumeT, seeds, job.model, **options)
            job.device = getattr(result, "device", job.device)
            return result.masks, dict(result.confidence or {}), result.frames
        if callable(method):
            fn = method
        else:
            from ifssnet.baselines import registry

            fn = registry.get(method)
        # On the worker thread, with Cancel: FBS / GFS on a large crop run in a child process that Cancel kills
        # (in this process FastGrowCut would hold Python's GIL, and so Slicer's Python, for its whole run).
        extra = {}
        if isinstance(method, str) and cancel is not None:
            from ifssnet.baselines.child_process import cancellable_options

            extra = cancellable_options([method]).get(method, {})
        masks = {}
        for name, seedSet in seeds.items():
            check_cancel(cancel)
            masks[name] = fn(volumeT, seedSet, spacingT, progress=progress, cancel=cancel, **extra)
        return masks, {}, volumeT.shape[0]

    def _summary(self, job: PropagationJob, segmentationNode) -> dict:
        volumes = self.segmentVolumes(segmentationNode, [s.segmentId for s in job.segments])
        segments = {}
        for seg in job.segments:
            entry = dict(volumes[seg.segmentId])
            entry.update(axis=seg.axis, seed_slices=list(seg.seedSlices), frames=seg.frames, notes=list(seg.notes),
                         slices=int(job.volume.shape[seg.axis]),
                         least_confident=self.leastConfident(seg), paint_next=self.paintNext(seg),
                         ends=self.resultEnds(seg))
            segments[seg.segmentId] = entry
        methodName = job.method if isinstance(job.method, str) else getattr(job.method, "__name__", "custom")
        return {"segments": segments, "run_time_s": job.runTime, "method": methodName, "device": job.device}

    @staticmethod
    def framesText(summary: dict) -> str:
        """A sentence for the status line when the network ran on fewer frames than the sweep has (a sweep
        finer than the network's training sweeps, ``ifssnet.slice_spacing``); empty otherwise."""
        thinned = {(e["frames"], e["slices"]) for e in summary.get("segments", {}).values()
                   if 0 < e.get("frames", 0) < e.get("slices", 0)}
        if not thinned:
            return ""
        frames, slices = max(thinned)
        return (f"The network ran on {frames} of {slices} frames, at the slice spacing it was trained at; "
                "every frame has a result.")

    @staticmethod
    def notesText(summary: dict) -> str:
        """The sentences for the status line about slices read otherwise than painted (a painted slice erased since
        the last run, 'no muscle here' marks across an axis no longer painted); empty when there are none."""
        return " ".join(note for e in summary.get("segments", {}).values() for note in e.get("notes", ()))

    @staticmethod
    def leastConfident(seg: SegmentJob, count: int = LEAST_CONFIDENT_COUNT) -> List[Tuple[int, float]]:
        """The ``count`` propagated slices with the lowest confidence, as (slice along axis, confidence),
        spread out along the sweep (``ifssnet.confidence.least_confident_slices``)."""
        if seg.confidence is None or seg.confidence.size == 0:
            return []
        from ifssnet.confidence import least_confident_slices

        order = least_confident_slices(seg.confidence, count, exclude=seg.seedSlices)
        return [(s, float(seg.confidence[s])) for s in order]

    @staticmethod
    def resultEnds(seg: SegmentJob) -> Optional[Tuple[int, int]]:
        """(first, last) slice along the segment's axis where the result has the muscle, or None for an empty
        result. The place to check a run that went on past the muscle's end (mark it 'no muscle here')."""
        from ifssnet.seeds import slice_extent

        return None if seg.result is None else slice_extent(seg.result, seg.axis)

    @staticmethod
    def paintNext(seg: SegmentJob) -> Optional[int]:
        """The slice (along the segment's axis) where one more painted slice should help most: the middle of
        the longest stretch of the result that no painted slice anchors (``ifssnet.confidence.next_slice_to_paint``).
        None without a result, or when every stretch is shorter than 2 slices."""
        if seg.result is None:
            return None
        from ifssnet.confidence import next_slice_to_paint

        present = np.moveaxis(seg.result, seg.axis, 0).reshape(seg.result.shape[seg.axis], -1).any(axis=1)
        return next_slice_to_paint(present, seg.seedSlices)

    @classmethod
    def _acquire(cls, segmentationNode) -> None:
        """Take the one propagation slot of this Slicer for ``segmentationNode`` (``_release`` gives it back), or
        raise InputError naming the segmentation a propagation runs on. One slot for the whole process: the module
        page and the Segment Editor effect would otherwise each hold a network, the volume and its buffers at once
        (the memory check before a run counts one run), and share the CPU cores."""
        key = segmentationNode.GetID() or str(id(segmentationNode))
        with cls._busyLock:
            if cls._busy:
                running = next(iter(cls._busy.values()))
                raise InputError(f"A propagation is already running on '{running}'.",
                                 "Wait for it to finish or cancel it, then propagate again.")
            cls._busy[key] = segmentationNode.GetName()

    @classmethod
    def _release(cls, segmentationNode) -> None:
        key = segmentationNode.GetID() or str(id(segmentationNode))
        with cls._busyLock:
            cls._busy.pop(key, None)

    # ---- models --------------------------------------------------------------------------------

    @staticmethod
    def shippedModelFolder() -> str:
        """``Resources/Models`` next to the installed ``ifssnet`` package (same layout in the repo)."""
        import ifssnet

        return os.path.normpath(os.path.join(os.path.dirname(ifssnet.__file__), os.pardir, "Resources", "Models"))

    @staticmethod
    def userModelFolder() -> str:
        """Where fine-tuned models go: $IFSSNET_MODEL_DIR, else ~/.ifssnet/models."""
        return os.environ.get("IFSSNET_MODEL_DIR") or os.path.join(os.path.expanduser("~"), ".ifssnet", "models")

    @classmethod
    def availableModels(cls) -> List[Dict[str, str]]:
        """Shipped and fine-tuned models: [{"name", "path", "card", "source"}], shipped first."""
        models = []
        for source, folder in (("shipped", cls.shippedModelFolder()), ("user", cls.userModelFolder())):
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(name)
                # .ckpt.pt: training state; .ckpt.best.pt: a run's best network while it goes (or was stopped)
                if ext.lower() not in MODEL_SUFFIXES or stem.endswith((".ckpt", ".ckpt.best")):
                    continue
                path = os.path.join(folder, name)
                models.append({"name": stem, "path": path, "card": cls.modelCard(path), "source": source})
        return models

    @staticmethod
    def modelCard(path: str, maxChars: int = 1500) -> str:
        """The model card of a checkpoint, for its tooltip: ``<stem>.md`` next to it, else its section of the
        folder's shared card (MODEL_CARD.md, model_card.md or README.md). A shared card that holds several
        (top-level headings ``# Model card: `<file name>` ...``, as ``Resources/Models/README.md`` does) gives
        the section that names this file, up to the next such heading; one that names other files only gives
        "" (never another model's card). A longer card ends at its last paragraph break within ``maxChars``
        characters, and then names the file that holds the rest."""
        folder, name = os.path.split(path)
        stem = os.path.splitext(name)[0]
        for candidate in (stem + ".md", "MODEL_CARD.md", "model_card.md", "README.md"):
            p = os.path.join(folder, candidate)
            if not os.path.isfile(p):
                continue
            try:
                with open(p, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                logging.warning("Cannot read model card %s", p)
                continue
            card = text if candidate == stem + ".md" else modelCardSection(text, name)
            if len(card) <= maxChars:
                return card
            cut = card.rfind("\n\n", 0, maxChars)     # end at a paragraph, and say where the rest is
            return card[:cut if cut > maxChars // 3 else maxChars].rstrip() + f"\n\n(The whole card: {p})"
        return ""

    @staticmethod
    def torchAvailable() -> bool:
        """True if torch can be imported (checked without importing it)."""
        import importlib.util

        return importlib.util.find_spec("torch") is not None



def _paintedDistanceMm(seg: "SegmentJob", spacingKji) -> np.ndarray:
    """mm from each voxel of ``seg``'s grid (k, j, i), broadcastable, to the nearest of its seed slices that hold
    paint (a 'no muscle here' mark claims nothing), along its own axis."""
    n = seg.painted.shape[seg.axis]
    moved = np.moveaxis(seg.painted, seg.axis, 0)
    held = [s for s in seg.seedSlices if moved[s].any()]
    index = np.arange(n, dtype=np.float64)
    d = (np.abs(index[:, None] - np.asarray(held, np.float64)[None, :]).min(axis=1) if held
         else np.full(n, np.inf)) * float(spacingKji[seg.axis])
    shape = [1, 1, 1]
    shape[seg.axis] = n
    return d.reshape(shape)


def keepApartAcrossAxes(segments: Sequence["SegmentJob"], spacingKji) -> None:
    """In place on ``seg.result``: segments propagated together across different axes do not overlap, by the rules
    the core applies within one call (``ifssnet.exclusive``): a voxel painted for one segment (on its seed slices)
    is not given to another, unless that one painted it too (painted slices stay as painted), and a voxel two
    segments claim goes to the one painted nearer to it, in mm along its own axis (the one listed first at equal
    distance). Segments across the same axis were kept apart by the core and are not compared here."""
    slabs = []
    for seg in segments:
        slab = np.zeros(seg.painted.shape, bool)
        np.moveaxis(slab, seg.axis, 0)[list(seg.seedSlices)] = True
        slabs.append(slab)
    for n, seg in enumerate(segments):
        for m, other in enumerate(segments):
            if other.axis != seg.axis:   # the other's paint is not given to this one, off this one's seed slices
                seg.result[slabs[m] & (other.painted > 0) & ~slabs[n]] = 0
    distances = [_paintedDistanceMm(seg, spacingKji) for seg in segments]   # once per segment, not per pair
    for n, seg in enumerate(segments):
        for m in range(n + 1, len(segments)):
            other = segments[m]
            if other.axis == seg.axis:
                continue
            both = (seg.result > 0) & (other.result > 0) & ~slabs[n] & ~slabs[m]
            if not both.any():
                continue
            nearer = distances[n] <= distances[m]
            other.result[both & nearer] = 0
            seg.result[both & ~nearer] = 0


def seedSetsAlongAxis(segments: Sequence["SegmentJob"], axis: int, shape) -> Dict[str, Any]:
    """``{segment name: SeedSet}`` of the painted seed slices of ``segments``, moved so ``axis`` comes first
    (``shape`` is the moved volume's shape)."""
    from ifssnet.seeds import SeedSet

    seeds = {}
    for seg in segments:
        seedMask = np.zeros(shape, np.uint8)
        paintedT = np.moveaxis(seg.painted, axis, 0)
        seedMask[list(seg.seedSlices)] = paintedT[list(seg.seedSlices)]
        seeds[seg.name] = SeedSet(mask=seedMask, slices=tuple(seg.seedSlices))
    return seeds


#: Line colours (RGB in [0, 1]) for plot series, matplotlib's tab10 as the command line's plots use: a plot series
#: node is black unless its colour is set, so series without one cannot be told apart.
SERIES_COLORS = ((0.122, 0.467, 0.706), (1.0, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
                 (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.890, 0.467, 0.761), (0.498, 0.498, 0.498),
                 (0.737, 0.741, 0.133), (0.090, 0.745, 0.812))


def addLinePlotSeries(scene, chartNode, tableNode, name: str, xColumn: str, color=None):
    """Add a line series (scatter type, no markers) of column ``name`` against ``xColumn`` to ``chartNode``;
    ``color``: its RGB (e.g. from :data:`SERIES_COLORS`; None: the node's default, black)."""
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    if color is not None:
        series.SetColor(*color)
    series.SetAndObserveTableNodeID(tableNode.GetID())
    series.SetXColumnName(xColumn)
    series.SetYColumnName(name)
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
    chartNode.AddAndObservePlotSeriesNodeID(series.GetID())
    return series


def progressText(stage: str, done: int, total: int) -> str:
    """The named state the progress bar shows: "preparing", "propagating 12/40 slices", "writing result"."""
    if stage == STAGE_PROPAGATING and total:
        return f"propagating {done}/{total} slices"
    if total and stage not in (STAGE_PREPARING, STAGE_WRITING):
        return f"{stage} {done}/{total}"
    return stage


def durationText(seconds: float) -> str:
    """A wall time as a clinician reads it: "under 1 s", "about 40 s", "about 2 min 10 s", "about 1 h 5 min"."""
    seconds = float(seconds)
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"about {int(round(seconds))} s"
    if seconds < 3600:
        minutes, rest = divmod(int(round(seconds / 10.0)) * 10, 60)
        return f"about {minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(int(round(seconds / 60.0)), 60)
    return f"about {hours} h" + (f" {rest} min" if rest else "")


MODEL_CARD_HEADING = "# Model card: "


def modelCardSection(text: str, fileName: str) -> str:
    """The section of a shared model card about ``fileName`` (see ``IFSSNetSegmentationLogic.modelCard``).

    Sections start at lines ``# Model card: `<file name>` ...``. Without such headings the whole text is the
    folder's one card; with them, the section naming ``fileName`` (up to the next heading), else ""."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(MODEL_CARD_HEADING)]
    if not starts:
        return text
    for k, i in enumerate(starts):
        if lines[i][len(MODEL_CARD_HEADING):].startswith(f"`{fileName}`"):
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            return "".join(lines[i:end]).rstrip() + "\n"
    return ""
