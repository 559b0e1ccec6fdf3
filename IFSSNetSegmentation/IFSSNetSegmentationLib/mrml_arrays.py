"""numpy views of Slicer's MRML volumes and segments, and writing segments back all or nothing.

Shared by the three modules' Logic classes (Segmentation, Training, Comparison). Imports ``slicer`` (MRML),
``vtk`` and ``numpy`` only, so it runs headless on slicer-core.

Arrays are indexed (k, j, i), as ``slicer.util.arrayFromVolume`` gives them; spacing is in mm. A segment
is read as a binary uint8 labelmap *on the volume's grid* (resampled with nearest neighbour when the
segmentation's own geometry differs) and written back onto the segmentation's own grid
(``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``, as Segment Editor effects do).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Dict, Optional, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ifssnet.errors import GeometryError, IFSSNetError, InputError, ResourceError, VolumeError

LABELMAP = "Binary labelmap"  # vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def volumeToArray(volumeNode) -> np.ndarray:
    """A copy of the voxels of a scalar volume, (k, j, i). Raises VolumeError for unusable volumes."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError("No volume is selected, or the volume has no voxels.", "Select the ultrasound volume.")
    if volumeNode.IsA("vtkMRMLVectorVolumeNode") or volumeNode.GetImageData().GetNumberOfScalarComponents() != 1:
        raise VolumeError(f"The volume '{volumeNode.GetName()}' has several components per voxel (colour or vector).",
                          "Convert it to a scalar volume first (Vector to Scalar Volume module).")
    image = volumeNode.GetImageData()
    shape = tuple(reversed(image.GetDimensions()))
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
    return np.array(array, copy=True)


def matrixArray(matrix) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4x4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijkToRasArray(volumeNode) -> np.ndarray:
    """The volume's IJK-to-RAS matrix as a 4x4 numpy array (spacing, origin, direction)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrixArray(matrix)


def spacingKji(volumeNode) -> Tuple[float, float, float]:
    """Spacing in array order (k, j, i), in mm."""
    sx, sy, sz = volumeNode.GetSpacing()
    return (float(sz), float(sy), float(sx))


def referenceGeometry(volumeNode, segmentationNode):
    """A ``vtkOrientedImageData`` with the volume's grid (no voxels), in the segmentation's frame."""
    if volumeNode.GetParentTransformNode() is segmentationNode.GetParentTransformNode():
        geometry = slicer.vtkOrientedImageData()
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        geometry.SetImageToWorldMatrix(matrix)
        geometry.SetExtent(volumeNode.GetImageData().GetExtent())
        return geometry
    # Different parent transforms: the volume's grid mapped into the segmentation's frame by the matrix between them,
    # its extent kept (as SetReferenceImageGeometryParameterFromVolumeNode maps it). Not Slicer's
    # CreateOrientedImageDataFromVolumeNode: where each node has a transform of its own, the transform between them
    # nests general transforms that its linearity check does not flatten, and it returned a bounding grid of another
    # size. Through a warping transform there is no such grid whose voxels are the volume's: refused.
    volumeToSegmentation = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
            volumeNode.GetParentTransformNode(), segmentationNode.GetParentTransformNode(), volumeToSegmentation):
        raise GeometryError(
            f"The volume '{volumeNode.GetName()}' and the segmentation '{segmentationNode.GetName()}' are under "
            "different transforms, and the transform between them is not linear (a warping transform), so the "
            "segment's voxels are not the volume's. Nothing was changed.",
            "Harden the transform on the node under it (Data module: right-click it > Harden transform), or put "
            "both under the same transform, then try again.")
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy((matrixArray(volumeToSegmentation) @ ijkToRasArray(volumeNode)).ravel())
    geometry = slicer.vtkOrientedImageData()
    geometry.SetImageToWorldMatrix(matrix)
    geometry.SetExtent(volumeNode.GetImageData().GetExtent())
    return geometry


def axesParallel(a, b, tolerance: float = 1e-3) -> bool:
    """Whether the axes of two grids (``vtkOrientedImageData``) are parallel one for one, in any order or sense: the
    slices of one across some axis are slices of the other."""
    directions = []
    for grid in (a, b):
        matrix = vtk.vtkMatrix4x4()
        grid.GetImageToWorldMatrix(matrix)
        columns = matrixArray(matrix)[:3, :3]
        directions.append(columns / np.linalg.norm(columns, axis=0))
    cosines = np.abs(directions[0].T @ directions[1])
    return bool(np.all(cosines.max(axis=1) > 1 - tolerance)
                and len(set(int(n) for n in cosines.argmax(axis=1))) == 3)


def _extentShape(e) -> tuple:
    """The (k, j, i) array shape of a VTK extent ``(i0, i1, j0, j1, k0, k1)``."""
    return (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)


def _voxelArray(image) -> Optional[np.ndarray]:
    """The scalars of a ``vtkImageData`` as a (k, j, i) array view over its extent; None where it has no scalars or
    an empty extent."""
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        return None
    s = image.GetExtent()
    if s[0] > s[1] or s[2] > s[3] or s[4] > s[5]:
        return None
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(_extentShape(s))


def orientedImageToArray(image, geometry) -> np.ndarray:
    """Paste a labelmap (same grid as ``geometry``, any extent) into a full uint8 (k, j, i) array."""
    e = geometry.GetExtent()
    out = np.zeros(_extentShape(e), np.uint8)
    src = _voxelArray(image)
    if src is None:
        return out
    s = image.GetExtent()
    lo = [max(s[2 * a], e[2 * a]) for a in range(3)]  # i, j, k
    hi = [min(s[2 * a + 1], e[2 * a + 1]) for a in range(3)]
    if any(l > h for l, h in zip(lo, hi)):
        return out
    out[lo[2] - e[4]:hi[2] - e[4] + 1, lo[1] - e[2]:hi[1] - e[2] + 1, lo[0] - e[0]:hi[0] - e[0] + 1] = (
        src[lo[2] - s[4]:hi[2] - s[4] + 1, lo[1] - s[2]:hi[1] - s[2] + 1, lo[0] - s[0]:hi[0] - s[0] + 1] > 0)
    return out


def requireSegmentationNode(node, role: str = "The segmentation") -> None:
    """Refuse (``InputError``, saying how to convert it) a node given where a segmentation node is needed: a
    labelmap volume, most often. ``role``: what the node is for, for the message."""
    if node is None or node.IsA("vtkMRMLSegmentationNode"):
        return
    kind = "a labelmap volume" if node.IsA("vtkMRMLLabelMapVolumeNode") else f"a {node.GetClassName()}"
    raise InputError(f"{role} '{node.GetName()}' is {kind}, not a segmentation node.",
                     "Convert it first (Data module: right-click the labelmap > Convert labelmap to segmentation "
                     "node), then select that segmentation.")


def ensureLabelmap(segmentationNode) -> None:
    """Give a segmentation whose source representation is not a binary labelmap (a closed surface: a model
    imported as a segmentation, a .vtm file) its binary labelmap, converted from the source, as Segment
    Statistics and the Segment Editor do. Without it every segment reads as empty."""
    if not segmentationNode.GetSegmentation().ContainsRepresentation(LABELMAP):
        segmentationNode.CreateBinaryLabelmapRepresentation()


def labelmapOnVolume(segmentationNode, volumeNode) -> None:
    """Make sure the segmentation has its binary labelmap (``CreateBinaryLabelmapRepresentation``), and where its source
    is not a binary labelmap (a model or STL imported) and it has no reference image geometry, on the volume's grid,
    as the Segment Editor does when a source volume is selected (vtkSlicerSegmentEditorLogic::
    GetReferenceImageGeometryString). Without that, Slicer converts each closed surface onto a grid of its own (about
    256^3 voxels over the surface's bounds), where a result written is not on the volume's voxels, and Segment
    Statistics' volume is not the one propagated. A labelmap already converted (only derived from the source, which
    stays as it is) is converted again on that grid. Call it after :func:`referenceGeometry` (which refuses a warping
    transform between the two)."""
    segmentation = segmentationNode.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if segmentation.GetSourceRepresentationName() != LABELMAP and not segmentation.GetConversionParameter(name):
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        if segmentation.ContainsRepresentation(LABELMAP):
            segmentation.CreateRepresentation(LABELMAP, True)   # always convert: the one there is on the old grids
    segmentationNode.CreateBinaryLabelmapRepresentation()


def useLabelmapSource(segmentationNode) -> None:
    """Make the binary labelmap the segmentation's source representation before writing voxels, as the Segment
    Editor does before an effect edits: a labelmap written under a closed-surface source is only a derived copy,
    which Slicer makes again from the surface (and the surface is what is saved). Call it inside
    :func:`allOrNothing`, whose snapshot puts the old source back when the write fails."""
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetSourceRepresentationName() != LABELMAP:
        ensureLabelmap(segmentationNode)
        segmentation.SetSourceRepresentationName(LABELMAP)


def segmentToArray(segmentationNode, segmentId: str, geometry) -> np.ndarray:
    """The segment as a uint8 (k, j, i) binary mask on ``geometry``'s grid (resampled if needed)."""
    if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
        raise InputError(f"The segmentation has no segment with ID '{segmentId}'.", "Select an existing segment.")
    ensureLabelmap(segmentationNode)
    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    if labelmap.GetPointData() is None or labelmap.GetPointData().GetScalars() is None:
        return orientedImageToArray(None, geometry)
    if not slicer.vtkOrientedImageDataResample.DoGeometriesMatch(labelmap, geometry):
        resampled = slicer.vtkOrientedImageData()
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, geometry, resampled, False, True)  # nearest neighbour, pad to the reference
        labelmap = resampled
    return orientedImageToArray(labelmap, geometry)


def holdsVoxels(segmentationNode, segmentId: str) -> bool:
    """Whether the segment holds voxels on its own grid (its labelmap as stored). A segment that is empty on a
    volume's grid (:func:`segmentToArray`) but not here was painted outside that volume."""
    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    values = _voxelArray(labelmap)
    return values is not None and bool(values.any())


def arrayToOrientedImage(mask: np.ndarray, geometry):
    """A uint8 ``vtkOrientedImageData`` with ``geometry``'s grid holding ``mask`` (k, j, i)."""
    image = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    e = geometry.GetExtent()
    image.SetExtent(e)
    shape = _extentShape(e)
    if tuple(mask.shape) != shape:  # VTK would read the voxels with the wrong row length, or past the array
        raise IFSSNetError(f"A mask of {mask.shape} voxels does not fit the grid of {shape} voxels (k, j, i).",
                           "Report this as a bug.")
    flat = np.ascontiguousarray(mask, dtype=np.uint8).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    return image


def segmentGrid(segmentationNode, segmentId: str):
    """The grid (a ``vtkOrientedImageData`` whose matrix matters) the segment's binary labelmap is stored on: its
    layer's, shared with the other segments of that layer; None for a segment with no stored voxels."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    stored = segment.GetRepresentation(LABELMAP) if segment is not None else None
    if stored is None or not stored.IsA("vtkOrientedImageData"):
        return None
    e = stored.GetExtent()
    return stored if e[0] <= e[1] and e[2] <= e[3] and e[4] <= e[5] else None


def writeSegment(segmentationNode, segmentId: str, mask: np.ndarray, geometry) -> bool:
    """Replace the segment's voxels by ``mask`` (k, j, i on ``geometry``'s grid), like an effect does (the
    binary labelmap becomes the source representation: :func:`useLabelmapSource`).

    A segment stored on another grid than ``geometry`` (a segmentation with its own geometry: oversampled, or
    made on another volume) gets ``mask`` resampled onto its grid (nearest neighbour), as an effect's edit is:
    Slicer would otherwise move the whole layer, the segments not written included, onto ``geometry``.
    The segment's voxels outside ``geometry``'s grid stay as they were.
    Returns True when it resampled (what is stored is then not ``mask`` voxel for voxel)."""
    useLabelmapSource(segmentationNode)
    image = arrayToOrientedImage(mask, geometry)
    grid = segmentGrid(segmentationNode, segmentId)
    resampled = grid is not None and not slicer.vtkOrientedImageDataResample.DoGeometriesMatch(image, grid)
    if grid is not None:
        g, e = grid.GetExtent(), image.GetExtent()
        beyond = any(g[2 * a] < e[2 * a] or g[2 * a + 1] > e[2 * a + 1] for a in range(3))
        if resampled or beyond:  # MODE_REPLACE replaces the whole segment, not only the extent given
            image = _onSegmentGrid(segmentationNode, segmentId, mask, geometry, grid)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentationNode, segmentId, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
        image.GetExtent())
    if not ok:
        raise IFSSNetError(f"Slicer could not write the result into segment '{segmentId}'.",
                           "Check that the segmentation is editable (not locked) and try again.")
    return resampled


# The Segment Editor's masking settings (vtkMRMLSegmentEditorNode), as ``editorMasking`` copies them.
MASKING_SETTINGS = ("MaskMode", "MaskSegmentID", "OverwriteMode", "SourceVolumeIntensityMask",
                    "SourceVolumeIntensityMaskRange")


def editorMaskingAvailable() -> bool:
    """Whether this Slicer has ``vtkSlicerSegmentEditorLogic`` (the Segment Editor's logic without Qt, added to Slicer
    in 2025), which :func:`editorMasking` writes through."""
    return hasattr(slicer, "vtkSlicerSegmentEditorLogic")


@contextlib.contextmanager
def editorMasking(editorNode, segmentationNode, volumeNode):
    """Yield a ``write(segmentId, mask, geometry)`` that puts ``mask`` (k, j, i on ``geometry``'s grid) into a segment
    as a Segment Editor effect applies its result: through ``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap`` in
    mode Set, with the editing settings of ``editorNode`` (a ``vtkMRMLSegmentEditorNode``: editable area, editable
    intensity range of ``volumeNode``, Modify other segments). Inside the editable area the segment becomes ``mask``;
    outside it, it keeps its voxels (painted slices among them), and other segments lose the voxels ``mask`` holds as
    the overwrite mode says.

    The settings are copied onto a node of this call's own (hidden, not saved, removed after), on ``segmentationNode``
    and ``volumeNode``: the editor's node may show another segmentation by now, and the segment written is the one
    the editable area leaves editable (as the selected segment is when painting), which must not change the editor's
    selection."""
    node = slicer.vtkMRMLSegmentEditorNode()
    node.SetHideFromEditors(True)
    node.SetSaveWithScene(False)
    for name in MASKING_SETTINGS:
        getattr(node, "Set" + name)(getattr(editorNode, "Get" + name)())
    scene = segmentationNode.GetScene()
    scene.AddNode(node)
    editor = slicer.vtkSlicerSegmentEditorLogic()
    try:
        editor.SetMRMLScene(scene)
        editor.SetMaximumNumberOfUndoStates(0)   # the caller saves the undo state (the effect's saveStateForUndo)
        editor.SetSegmentEditorNode(node)
        node.SetAndObserveSegmentationNode(segmentationNode)
        node.SetAndObserveSourceVolumeNode(volumeNode)
        yield functools.partial(_writeMasked, editor, segmentationNode)
    finally:
        editor.SetSegmentEditorNode(None)
        scene.RemoveNode(node)


def _writeMasked(editor, segmentationNode, segmentId: str, mask: np.ndarray, geometry) -> None:
    """``editorMasking``'s writer. With an editable area or intensity range, the result goes onto the editor's
    reference grid (the segmentation's grid, grown to hold every segment), where Slicer makes the editable area and
    takes the source volume's intensities, and a segment stored on another grid is refused (``InputError``); without,
    onto the segment's own grid, as :func:`writeSegment` writes it. The segment's voxels that ``geometry`` does not
    reach stay, as :func:`writeSegment` keeps them."""
    node = editor.GetSegmentEditorNode()
    node.SetSelectedSegmentID(segmentId)   # the edited segment: inside-all/visible/outside modes leave it editable
    useLabelmapSource(segmentationNode)
    image = arrayToOrientedImage(mask, geometry)
    if not editor.UpdateReferenceGeometryImage():
        raise IFSSNetError("Slicer could not find the segmentation's geometry to apply the Segment Editor's editable "
                           "area. Nothing was changed.",
                           "Select the source volume in the Segment Editor and try again.")
    grid = editor.GetReferenceGeometryImage()
    stored = segmentGrid(segmentationNode, segmentId)
    masked = (node.GetMaskMode() != slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere
              or node.GetSourceVolumeIntensityMask())
    if masked and stored is not None and not slicer.vtkOrientedImageDataResample.DoGeometriesMatch(stored, grid):
        # Slicer masks on the editor's grid and keeps the segment's voxels outside the editable area only where its
        # layer lies on that grid: elsewhere they would be lost (ModifyImage: "geometry mismatch")
        name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        raise InputError(f"Segment '{name}' is stored on another grid than the segmentation's geometry (it was "
                         "painted on another volume, or the volume was moved since), so the Segment Editor's masking "
                         "cannot be applied to it. Nothing was changed.",
                         "Set Masking to Editable area: Everywhere with no intensity range and propagate again, or "
                         "propagate from the IFSS-Net module page (it ignores masking).")
    if not masked and stored is not None:   # no editable area to make: on the segment's own grid, as writeSegment does
        grid = stored
    if not (slicer.vtkOrientedImageDataResample.DoGeometriesMatch(image, grid)
            and tuple(grid.GetExtent()) == tuple(image.GetExtent())):
        image = _onSegmentGrid(segmentationNode, segmentId, mask, geometry, grid)
    ready = node.GetMaskMode() == slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere or editor.UpdateMaskLabelmap()
    if ready and node.GetSourceVolumeIntensityMask():   # ModifySegmentByLabelmap writes nothing, and says nothing, else
        ready = (editor.UpdateAlignedSourceVolume()
                 and slicer.vtkOrientedImageDataResample.DoGeometriesMatch(image, editor.GetAlignedSourceVolume()))
    if not ready:
        raise IFSSNetError("Slicer could not make the Segment Editor's editable area (masking) for the result. "
                           "Nothing was changed.", "Check the Masking settings in the Segment Editor and try again.")
    editor.ModifySegmentByLabelmap(segmentationNode, segmentId, image, editor.ModificationModeSet, False, False)


STATUS_TAG = "Segmentation.Status"   # vtkSlicerSegmentationsModuleLogic.GetStatusTagName()


def markInProgress(segmentationNode, segmentId: str) -> None:
    """Set a segment's status 'Not started' to 'In progress' (tag ``Segmentation.Status``), as Slicer's effects do
    when they write a segment (vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap); any other status stays."""
    statusLogic = slicer.vtkSlicerSegmentationsModuleLogic
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    if segment is not None and statusLogic.GetSegmentStatus(segment) == statusLogic.NotStarted:
        statusLogic.SetSegmentStatus(segment, statusLogic.InProgress)


def _onSegmentGrid(segmentationNode, segmentId: str, mask: np.ndarray, geometry, grid):
    """``mask`` (on ``geometry``'s grid) resampled onto the segment's stored ``grid`` (nearest neighbour), with the
    segment's current voxels kept where ``geometry``'s grid does not reach."""
    onGrid = slicer.vtkOrientedImageData()
    # One resample of mask + 1 (1 outside the mask, 2 inside): the background 0 marks where geometry does not reach.
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        arrayToOrientedImage((np.asarray(mask) > 0).view(np.uint8) + 1, geometry), grid, onGrid,
        False, True)  # extent grown to hold all of the image
    values = _voxelArray(onGrid)
    merged = np.where(values > 0, values > 1, segmentToArray(segmentationNode, segmentId, onGrid))
    return arrayToOrientedImage(merged, onGrid)


def snapshotSegmentation(segmentationNode):
    """A deep copy of the whole segmentation (all layers, segments and tags)."""
    backup = slicer.vtkSegmentation()
    backup.DeepCopy(segmentationNode.GetSegmentation())
    return backup


_DISPLAY_PROPERTIES = ("Visibility3D", "Visibility2DFill", "Visibility2DOutline", "Opacity3D", "Opacity2DFill",
                       "Opacity2DOutline", "Pickable", "Visibility")


def _displayProperties(segmentationNode) -> list:
    """Per display node, the display properties of every segment (the deep copy of a restore removes and adds
    the segments again, and the display node then resets them to the defaults)."""
    out = []
    segmentIds = list(segmentationNode.GetSegmentation().GetSegmentIDs())
    for n in range(segmentationNode.GetNumberOfDisplayNodes()):
        display = segmentationNode.GetNthDisplayNode(n)
        if display is None or not display.IsA("vtkMRMLSegmentationDisplayNode"):
            continue
        props = {sid: {name: getattr(display, "GetSegment" + name)(sid) for name in _DISPLAY_PROPERTIES
                       if hasattr(display, "GetSegment" + name)} for sid in segmentIds}
        out.append((display, props))
    return out


def _setDisplayProperties(segmentationNode, saved) -> None:
    segmentation = segmentationNode.GetSegmentation()
    for display, props in saved:
        wasModifying = display.StartModify()
        try:
            for sid, values in props.items():
                if segmentation.GetSegment(sid) is None:
                    continue
                for name, value in values.items():
                    getattr(display, "SetSegment" + name)(sid, value)
        finally:
            display.EndModify(wasModifying)


def restoreSegmentation(segmentationNode, backup) -> None:
    """Put a snapshot from :func:`snapshotSegmentation` back, voxel for voxel; how each segment is shown
    (visibility, opacity: the display node's) stays as it is now."""
    shown = _displayProperties(segmentationNode)
    wasModifying = segmentationNode.StartModify()
    try:
        segmentationNode.GetSegmentation().DeepCopy(backup)
    finally:
        segmentationNode.EndModify(wasModifying)
    _setDisplayProperties(segmentationNode, shown)
    segmentationNode.Modified()


def editState(segmentationNode) -> tuple:
    """What tells whether a segmentation was edited since: per segment, in order, its ID, name, colour, label value,
    terminology, and its binary labelmap's object and modification time (a voxel written bumps it; a layer shared,
    split or merged is another object). Equal states: nothing was painted, erased, added, removed or renamed between
    them. Its other representations do not count (a closed surface made for the 3-D view)."""
    segmentation = segmentationNode.GetSegmentation()
    state = []
    for sid in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(sid)
        stored = segment.GetRepresentation(LABELMAP)
        terminology = vtk.reference("")   # the tag: vtkSegment.GetTerminology is new in Slicer 5.9
        segment.GetTag(segment.GetTerminologyEntryTagName(), terminology)
        state.append((sid, segment.GetName(), tuple(segment.GetColor()), segment.GetLabelValue(), str(terminology),
                      stored.__this__ if stored is not None else None,
                      stored.GetMTime() if stored is not None else None))
    return tuple(state)


def restoreSegments(segmentationNode, backup, segmentIds, tags=()) -> None:
    """Put the segments ``segmentIds`` back as they are in ``backup`` (a :func:`snapshotSegmentation`): their voxels,
    and the tags named in ``tags`` (removed where the backup has none). The other segments, and segments removed or
    added since, stay as they are now (the user's edits meanwhile). A segmentation whose source representation the
    write changed (a closed surface made a labelmap) goes back whole (:func:`restoreSegmentation`). All or nothing."""
    segmentation = segmentationNode.GetSegmentation()
    if backup.GetSourceRepresentationName() != segmentation.GetSourceRepresentationName():
        restoreSegmentation(segmentationNode, backup)
        return
    with allOrNothing(segmentationNode):
        for sid in segmentIds:
            old, now = backup.GetSegment(sid), segmentation.GetSegment(sid)
            if old is None or now is None:
                continue
            image = _segmentVoxels(old) or _emptyOn(segmentGrid(segmentationNode, sid))
            if image is not None and not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                    image, segmentationNode, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
                    image.GetExtent()):
                raise IFSSNetError(f"Slicer could not put segment '{now.GetName()}' back.",
                                   "Use the Segment Editor's Undo.")
            for tag in tags:
                value = vtk.reference("")
                if old.GetTag(tag, value):
                    now.SetTag(tag, str(value))
                else:
                    now.RemoveTag(tag)


def _segmentVoxels(segment):
    """A binary uint8 ``vtkOrientedImageData`` of a segment's voxels in its (possibly shared) layer, on the layer's
    grid; None for a segment with no stored voxels."""
    stored = segment.GetRepresentation(LABELMAP)
    values = _voxelArray(stored) if stored is not None and stored.IsA("vtkOrientedImageData") else None
    if values is None:
        return None
    return arrayToOrientedImage((values == segment.GetLabelValue()).view(np.uint8), stored)


def _emptyOn(grid):
    if grid is None:
        return None
    return arrayToOrientedImage(np.zeros(_extentShape(grid.GetExtent()), np.uint8), grid)


@contextlib.contextmanager
def allOrNothing(segmentationNode):
    """Write to a segmentation as one modification; if anything fails, put the whole segmentation back,
    voxel for voxel. Yields the snapshot taken before (a Preview's Cancel restores it later)."""
    backup = snapshotSegmentation(segmentationNode)
    try:
        wasModifying = segmentationNode.StartModify()
        try:
            yield backup
        finally:
            segmentationNode.EndModify(wasModifying)
    except BaseException:
        restoreSegmentation(segmentationNode, backup)
        raise



def outOfMemoryAsResourceError(what: str):
    """Decorate a main-thread step of a Logic (reading MRML into numpy, writing results back) so that running out
    of memory is a :class:`ResourceError` that says what to do, not a bare ``MemoryError`` (whose message is
    empty). The steps change nothing or write inside :func:`allOrNothing`, so nothing was changed."""
    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MemoryError as err:
                raise ResourceError(f"The computer ran out of memory while {what}. Nothing was changed.",
                                    "Close other programs, or crop the volume (Crop Volume module) or use fewer "
                                    "segments at a time, then try again.") from err
        return run
    return decorate


def ijkToWorldArray(volumeNode) -> np.ndarray:
    """The 4x4 matrix from the volume's IJK to world RAS, where slice views are: its IJK-to-RAS and its parent
    transforms (a linear transform; a non-linear one has no matrix, and its IJK-to-RAS stands in)."""
    ijkToRas = ijkToRasArray(volumeNode)
    parent = volumeNode.GetParentTransformNode()
    if parent is None:
        return ijkToRas
    toWorld = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, toWorld):
        return ijkToRas
    return matrixArray(toWorld) @ ijkToRas


def sliceCenterRAS(volumeNode, axis: int, index: int) -> Tuple[float, float, float]:
    """World RAS position (where the slice views are, through the volume's parent transforms) of the centre of
    slice ``index`` across array axis ``axis`` (0 = k)."""
    dims = volumeNode.GetImageData().GetDimensions()  # i, j, k
    ijk = [(d - 1) / 2.0 for d in dims]
    ijk[2 - axis] = float(index)
    ras = ijkToWorldArray(volumeNode) @ np.array(ijk + [1.0])
    return (float(ras[0]), float(ras[1]), float(ras[2]))


def sliceIndexAt(volumeNode, sliceToRAS, axis: int, tolerance: float = 0.05) -> Optional[int]:
    """The slice across array axis ``axis`` (0 = k) that a slice view shows, or None when the view is
    not across that axis (its normal is more than ``tolerance`` off, as a sine) or shows no slice of the
    volume. ``sliceToRAS``: the view's SliceToRAS matrix (4x4 array-like; column 2 is its normal, column 3
    its centre, mm, in world RAS: a volume under a transform is placed through it)."""
    m = np.asarray(sliceToRAS, float).reshape(4, 4)
    ijkToRas = ijkToWorldArray(volumeNode)
    rasToIjk = np.linalg.inv(ijkToRas)
    normal = rasToIjk[:3, :3] @ m[:3, 2]                      # the view's normal in voxel units
    length = np.linalg.norm(normal)
    if length == 0:
        return None
    across = 2 - int(axis)                                     # array axis k, j, i = IJK index 2, 1, 0
    if np.linalg.norm(np.delete(normal / length, across)) > tolerance:
        return None
    index = int(round(float((rasToIjk @ np.append(m[:3, 3], 1.0))[across])))
    dims = volumeNode.GetImageData().GetDimensions()           # i, j, k
    return index if 0 <= index < dims[across] else None


def voxelStatistics(segmentationNode, segmentId: str) -> Dict[str, float]:
    """voxel_count, volume_mm3, volume_cm3 of a segment, computed as Segment Statistics' Labelmap plugin does.

    The plugin takes the segment's binary labelmap in the segmentation's own geometry, counts voxels
    above zero, and multiplies by the product of that labelmap's spacing.
    """
    ensureLabelmap(segmentationNode)
    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    values = _voxelArray(labelmap)
    count = 0 if values is None else int(np.count_nonzero(values > 0))
    voxel_mm3 = float(np.prod(labelmap.GetSpacing()))
    return {"voxel_count": count, "volume_mm3": count * voxel_mm3, "volume_cm3": count * voxel_mm3 * 0.001}
