"""Review 43: Propagate on the segmentations a clinician's scene really holds (real MRML, slicer-core).

- several segments in one labelmap layer (Slicer 5's default), and overlapping segments in separate layers:
  propagating one changes no other segment (voxels, label value, name, colour, terminology, tags);
- a closed-surface source (a model or STL imported), with or without a reference geometry;
- a volume or a segmentation under a linear transform (not hardened): checked against Slicer's own export of the
  segment onto the volume (``ExportSegmentsToLabelmapNode``), which maps through the transforms;
- an empty segment, a segmentation without a reference geometry;
- Cancel of a preview and the Segment Editor's Undo (``vtkSegmentationHistory``) across two segments;
- Segment Statistics' volume (its Labelmap plugin's VTK pipeline) against the core's (``ifssnet.metrics``).
"""
from __future__ import annotations


import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _geometry, _nearest_seed_method, _paint,  # noqa: F401
                          scene_nodes, segment_statistics)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

LABELMAP, SURFACE = "Binary labelmap", "Closed surface"
TAGS = ("Segmentation.Status", "Custom.Note", "IFSSNet.AnnotatedSlices", "IFSSNet.ResultSliceCRC")


def _logic():
    from IFSSNetSegmentationLib import logic

    return logic


def _properties(segNode):
    """Per segment ID: (name, label value, colour, terminology, the tags in TAGS); what must not change unasked."""
    import vtk

    out = {}
    segmentation = segNode.GetSegmentation()
    for sid in segmentation.GetSegmentIDs():
        s = segmentation.GetSegment(sid)
        tags = {}
        for t in TAGS:
            value = vtk.reference("")
            tags[t] = str(value) if s.GetTag(t, value) else None
        terminology = vtk.reference("")
        s.GetTag(s.GetTerminologyEntryTagName(), terminology)
        out[sid] = (s.GetName(), s.GetLabelValue(), tuple(round(c, 6) for c in s.GetColor()), str(terminology), tags)
    return out


def _voxels(segNode, volumeNode):
    """Per segment ID: its voxels on the volume's grid, (k, j, i)."""
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    return {sid: arrays.segmentToArray(segNode, sid, g).copy() for sid in segNode.GetSegmentation().GetSegmentIDs()}


def _block(truth):
    """A box inside the scene's ellipsoid, on no slice that the tests paint: where a propagated GM overlaps it."""
    block = np.zeros_like(truth)
    block[[8, 9, 10, 13], 10:16, 12:18] = 1
    return block


def _import_labelmap(slicer, segNode, truth, painted):
    """Import into ``segNode`` a labelmap as a clinician's scene holds one: the ``painted`` slices at label 300, a
    box at 7 and :func:`_block` at 5, all in one layer (Slicer's default). Returns the painted segment's ID."""
    from slicer_nodes import _ijk_to_ras

    labels = np.where(painted > 0, 300, 0).astype(np.int16)
    labels[2:5, 2:8, 2:8] = 7
    labels[_block(truth) > 0] = 5
    labelmapNode = slicer.util.addVolumeFromArray(labels, _ijk_to_ras(), "labels",
                                                  nodeClassName="vtkMRMLLabelMapVolumeNode")
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmapNode, segNode)
    segmentation = segNode.GetSegmentation()
    ids = {segmentation.GetSegment(sid).GetLabelValue(): sid for sid in segmentation.GetSegmentIDs()}
    assert sorted(ids) == [5, 7, 300] and segmentation.GetNumberOfLayers() == 1
    return ids[300]


def _to_closed_surface_source(segNode, keepReferenceGeometry=True):
    """A segmentation as a model or STL imported leaves it: a closed-surface source, no binary labelmap, and (with
    ``keepReferenceGeometry`` False) no reference image geometry."""
    import slicer

    segmentation = segNode.GetSegmentation()
    segNode.CreateClosedSurfaceRepresentation()
    segmentation.SetSourceRepresentationName(SURFACE)
    segmentation.RemoveRepresentation(LABELMAP)
    if not keepReferenceGeometry:
        name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        segmentation.SetConversionParameter(name, "")


def test_a_closed_surface_without_reference_geometry_is_propagated_on_the_volumes_voxels(scene_nodes):
    """A model or STL imported as a segmentation has no reference geometry: Slicer then converts each closed surface
    onto a grid of its own (about 256^3 voxels over the surface's bounds: here 0.067 mm, 7.9 million voxels for a
    2335-voxel muscle), the result was written there, and Segment Statistics' volume (on that grid) was not the
    core's (2353.72 against 2353.68 mm3; on a real sweep that grid is coarser than the volume's). The Segment Editor
    gives such a segmentation its source volume's geometry (vtkSlicerSegmentEditorLogic::GetReferenceImageGeometry
    String); Propagate now does too, so the result is on the volume's voxels and the two volumes agree."""
    from ifssnet.metrics import volume_stats

    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    L = _logic().IFSSNetSegmentationLogic()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    _to_closed_surface_source(segNode, keepReferenceGeometry=False)
    assert L.segmentVolumes(segNode)[a]["voxel_count"] > 0     # 'Show volume' before the run: converted meanwhile
    job = L.compute(L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method))
    summary = L.apply(job, segNode)["segments"][a]
    stored = slicer.vtkOrientedImageData()
    segNode.GetBinaryLabelmapRepresentation(a, stored)
    np.testing.assert_allclose(stored.GetSpacing(), volumeNode.GetSpacing())
    core = volume_stats(job.segments[0].result, arrays.spacingKji(volumeNode))
    assert segment_statistics(slicer, segNode, a) == (core["voxel_count"], core["volume_mm3"])
    assert (summary["voxel_count"], summary["volume_mm3"]) == (core["voxel_count"], core["volume_mm3"])
    assert arrays.referenceGeometry(volumeNode, segNode) is not None
    assert _logic().sameGrid(_logic().referenceImageGrid(segNode), _geometry(volumeNode, segNode))


def _expected(painted, slices):
    """What ``_nearest_seed_method`` makes of ``painted`` (k, j, i) seeded on ``slices`` across k."""
    from ifssnet.seeds import SeedSet

    return _nearest_seed_method(np.zeros(painted.shape), SeedSet(mask=painted, slices=tuple(slices)), None)


@pytest.mark.parametrize("layer", ["shared", "separate"])
def test_propagating_one_segment_changes_no_other_segment_in_its_layer_or_another(scene_nodes, layer):
    """GM is propagated over SOL's voxels (SOL overlaps the result), with SOL in GM's layer (Slicer 5's default:
    one layer, label values 1, 2, 3) or in a layer of its own, and an empty segment beside them. Slicer moves
    segments to another layer when a write would overlap them; every other segment keeps its voxels, label value,
    name, colour, terminology and tags, and GM keeps all of those but its voxels and its seed tags."""
    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    a, painted = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    segmentation = segNode.GetSegmentation()
    b = segmentation.AddEmptySegment("", "SOL")
    arrays.writeSegment(segNode, b, _block(truth), _geometry(volumeNode, segNode))
    if layer == "separate":
        segmentation.SeparateSegmentLabelmap(b)
    c = segmentation.AddEmptySegment("", "Empty")
    for sid in (a, b, c):
        segmentation.GetSegment(sid).SetTag("Custom.Note", f"note of {sid}")
    vtkSlicerSegmentationsModuleLogic = slicer.vtkSlicerSegmentationsModuleLogic
    vtkSlicerSegmentationsModuleLogic.SetSegmentStatus(segmentation.GetSegment(b),
                                                       vtkSlicerSegmentationsModuleLogic.Completed)
    assert (segmentation.GetLayerIndex(a) == segmentation.GetLayerIndex(b)) == (layer == "shared")
    labels = {sid: segmentation.GetSegment(sid).GetLabelValue() for sid in (a, b, c)}
    assert len(set(labels.values())) == 3 or layer == "separate"
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)

    _logic().IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    after, now = _properties(segNode), _voxels(segNode, volumeNode)
    for sid in (b, c):
        assert after[sid] == before[sid]
        np.testing.assert_array_equal(now[sid], voxels[sid])
    expected = _expected(painted, (5, 11, 16))
    np.testing.assert_array_equal(now[a], expected)
    assert (expected & _block(truth)).any()                       # the result does overlap SOL
    assert after[a][:4] == before[a][:4] and after[a][4]["Custom.Note"] == before[a][4]["Custom.Note"]
    assert after[a][4]["IFSSNet.AnnotatedSlices"] == "0:5,11,16"


def test_cancel_and_undo_across_two_segments_of_one_layer_put_every_voxel_back(scene_nodes):
    """GM and GL painted in one layer, propagated together by a method that lets them overlap (so Slicer moves one
    to a layer of its own), beside SOL in that layer. Cancel of the preview (``revert``) puts both back voxel for
    voxel with their tags, and SOL is untouched; the Segment Editor's Undo (its ``vtkSegmentationHistory``, saved
    before the write as the effect does) puts back everything, label values and layers too."""
    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    L = _logic().IFSSNetSegmentationLogic()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    b, _ = _paint(slicer, volumeNode, segNode, np.roll(truth, 2, axis=2), 0, (6, 12, 15), name="GL")
    segmentation = segNode.GetSegmentation()
    c = segmentation.AddEmptySegment("", "SOL")
    arrays.writeSegment(segNode, c, _block(truth), _geometry(volumeNode, segNode))
    assert segmentation.GetNumberOfLayers() == 1
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)

    job = L.compute(L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method))
    L.apply(job, segNode)                                               # the preview
    assert (job.segments[0].result & job.segments[1].result).any()
    shown = _voxels(segNode, volumeNode)
    assert all(shown[s.segmentId].sum() > voxels[s.segmentId].sum() for s in job.segments)
    L.revert(job, segNode)                                              # Cancel
    now = _voxels(segNode, volumeNode)
    for sid in (a, b, c):
        np.testing.assert_array_equal(now[sid], voxels[sid])
    after = _properties(segNode)
    assert after[c] == before[c]
    for sid in (a, b):
        assert (after[sid][0], after[sid][2], after[sid][3], after[sid][4]) == \
            (before[sid][0], before[sid][2], before[sid][3], before[sid][4])

    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(segmentation)
    undoState = _properties(segNode), _voxels(segNode, volumeNode), segmentation.GetNumberOfLayers()
    history.SaveState()                                                 # scriptedEffect.saveStateForUndo()
    L.apply(L.compute(L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)), segNode)
    assert not np.array_equal(_voxels(segNode, volumeNode)[a], undoState[1][a])
    assert history.RestorePreviousState()                               # Undo
    assert _properties(segNode) == undoState[0]
    assert segmentation.GetNumberOfLayers() == undoState[2]
    for sid, mask in _voxels(segNode, volumeNode).items():
        np.testing.assert_array_equal(mask, undoState[1][sid])


def _export(slicer, segNode, segmentId, volumeNode):
    """The segment on the volume's voxels as Slicer exports it (ExportSegmentsToLabelmapNode with the volume as the
    reference: through the transforms between the two), (k, j, i) 0/1."""
    import vtk

    labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentId)
    assert slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(segNode, ids, labelmapNode, volumeNode)
    out = (slicer.util.arrayFromVolume(labelmapNode) > 0).astype(np.uint8)
    slicer.mrmlScene.RemoveNode(labelmapNode)
    return out


def _toWorld(node):
    """The 4 x 4 matrix from a node's frame to world: its parent transforms, each linear, composed."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    if node.GetParentTransformNode() is not None:
        node.GetParentTransformNode().GetMatrixTransformToWorld(matrix)
    return _arrays_module().matrixArray(matrix)


def _volumeGrid(slicer, volumeNode, segNode):
    """The volume's grid in the segmentation's frame, computed here from the two nodes' transforms to world."""
    import vtk

    m = np.linalg.inv(_toWorld(segNode)) @ _toWorld(volumeNode) @ _arrays_module().ijkToRasArray(volumeNode)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, m[r, c])
    grid = slicer.vtkOrientedImageData()
    grid.SetImageToWorldMatrix(matrix)
    grid.SetExtent(volumeNode.GetImageData().GetExtent())
    return grid


@pytest.mark.parametrize("under", ["volume", "segmentation", "both", "each its own"])
def test_a_transformed_volume_or_segmentation_is_read_and_written_on_the_volumes_voxels(scene_nodes, under):
    """A linear transform (25 degrees and 14 mm) not hardened, over the volume, the segmentation, both, or each its
    own: the seeds are read, and the result lands, on the voxels Slicer's own export through the transforms puts
    them (the same as Grow from seeds and Fill between slices see them through the editor's aligned volume)."""
    import vtk

    slicer, volumeNode, segNode, truth = scene_nodes
    nodes = []
    for n, (angle, shift) in enumerate(((25, (7, -4, 11)), (-10, (-3, 5, 2)))):
        move = vtk.vtkTransform()
        move.RotateWXYZ(angle, 0.3, 1, 0.2)
        move.Translate(*shift)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"T{n}")
        node.SetMatrixTransformToParent(move.GetMatrix())
        nodes.append(node)
    if under in ("volume", "both", "each its own"):
        volumeNode.SetAndObserveTransformNodeID(nodes[0].GetID())
    if under in ("segmentation", "both"):
        segNode.SetAndObserveTransformNodeID(nodes[0].GetID())
    if under == "each its own":
        segNode.SetAndObserveTransformNodeID(nodes[1].GetID())
    arrays = _arrays_module()
    grid = _volumeGrid(slicer, volumeNode, segNode)
    painted = np.zeros_like(truth)
    painted[[5, 11, 16]] = truth[[5, 11, 16]]
    a = segNode.GetSegmentation().AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, a, painted, grid)              # painted on the volume's slices, where they are
    exact = under != "each its own"   # there Slicer's export nests transforms and resamples a bounding grid
    if exact:
        np.testing.assert_array_equal(_export(slicer, segNode, a, volumeNode), painted)
    summary = _logic().IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    expected = _expected(painted, (5, 11, 16))
    np.testing.assert_array_equal(arrays.segmentToArray(segNode, a, grid), expected)
    if exact:
        np.testing.assert_array_equal(_export(slicer, segNode, a, volumeNode), expected)
    assert summary["segments"][a]["seed_slices"] == [5, 11, 16]
    assert summary["segments"][a]["voxel_count"] == int(expected.sum())


@pytest.mark.parametrize("scene", ["shared layer", "transformed volume", "imported labelmap"])
def test_segment_statistics_gives_the_volume_the_core_reports(scene_nodes, scene):
    """After Propagate, Segment Statistics (its Labelmap plugin's pipeline, on the segmentation's own labelmap) gives
    the voxel count and mm3 that ``ifssnet.metrics.volume_stats`` gives for the core's result on the volume's grid,
    and the run's summary gives them too: with another segment overlapping the result in its layer, with the volume
    under a rotation and a shift (not hardened), and for a segment imported from an int16 labelmap whose label
    value (300) is not 1 and whose layer holds two other labels (5, 7), which keep their values."""
    import vtk
    from ifssnet.metrics import volume_stats

    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    painted = np.zeros_like(truth)
    painted[[5, 11, 16]] = truth[[5, 11, 16]]
    if scene == "imported labelmap":
        a = _import_labelmap(slicer, segNode, truth, painted)
    else:
        if scene == "transformed volume":
            move = vtk.vtkTransform()
            move.RotateWXYZ(30, 1, 0.2, 0.4)
            move.Translate(-6, 9, 3)
            transformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
            transformNode.SetMatrixTransformToParent(move.GetMatrix())
            volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())
        a = segNode.GetSegmentation().AddEmptySegment("", "GM")
        arrays.writeSegment(segNode, a, painted, _geometry(volumeNode, segNode))
        if scene == "shared layer":
            b = segNode.GetSegmentation().AddEmptySegment("", "SOL")
            arrays.writeSegment(segNode, b, _block(truth), _geometry(volumeNode, segNode))
    others = {sid: p for sid, p in _properties(segNode).items() if sid != a}
    L = _logic().IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method))
    summary = L.apply(job, segNode)["segments"][a]
    core = volume_stats(job.segments[0].result, arrays.spacingKji(volumeNode))
    np.testing.assert_array_equal(job.segments[0].result, _expected(painted, (5, 11, 16)))
    count, mm3 = segment_statistics(slicer, segNode, a)
    assert (summary["voxel_count"], summary["volume_mm3"]) == (count, mm3)
    # the spacing of a grid rotated into the segmentation's frame is the volume's to the last bits, not the last bit
    assert count == core["voxel_count"] and mm3 == pytest.approx(core["volume_mm3"], rel=1e-12)
    assert {sid: p for sid, p in _properties(segNode).items() if sid != a} == others


def test_an_empty_segment_is_skipped_or_refused_and_stays_empty_with_its_label(scene_nodes):
    """An empty segment in the propagated one's layer: 'all segments' (``segmentIds=None``, as 'all visible') skips it
    and it stays empty with its label value; chosen on its own it is refused with what to do, and nothing changes.
    The same on a segmentation with no reference geometry at all."""
    from ifssnet.errors import SeedError

    slicer, volumeNode, segNode, truth = scene_nodes
    L = _logic().IFSSNetSegmentationLogic()
    a, painted = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    segmentation = segNode.GetSegmentation()
    e = segmentation.AddEmptySegment("", "Empty")
    assert segmentation.GetLayerIndex(e) == segmentation.GetLayerIndex(a)
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)
    with pytest.raises(SeedError, match="Empty") as err:
        L.propagate(volumeNode, segNode, [e], method=_nearest_seed_method)
    assert "Paint" in err.value.todo
    assert _properties(segNode) == before
    for sid, mask in _voxels(segNode, volumeNode).items():     # the refusal changed no voxel
        np.testing.assert_array_equal(mask, voxels[sid])
    summary = L.propagate(volumeNode, segNode, None, method=_nearest_seed_method)
    assert list(summary["segments"]) == [a]
    assert _properties(segNode)[e] == before[e]
    assert not _voxels(segNode, volumeNode)[e].any()
    np.testing.assert_array_equal(_voxels(segNode, volumeNode)[a], _expected(painted, (5, 11, 16)))

    bare = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "No geometry")
    only = bare.GetSegmentation().AddEmptySegment("", "Empty")
    assert _logic().referenceImageGrid(bare) is None
    for segmentIds in ([only], None):
        with pytest.raises(SeedError):
            L.propagate(volumeNode, bare, segmentIds, method=_nearest_seed_method)
    assert L.segmentVolumes(bare)[only]["voxel_count"] == 0
    assert not _voxels(bare, volumeNode)[only].any()


def test_the_effect_asks_to_show_a_hidden_segment_before_writing_it():
    """Slicer's effects that edit the selected segment (Margin, Smoothing, Islands, Logical, Hollow, Threshold) call
    ``scriptedEffect.confirmCurrentSegmentVisible()`` first: where it is hidden, 'make it visible?' (Yes shows it,
    Cancel returns 0 and nothing runs). The IFSS-Net effect propagated a hidden segment without a word: the preview
    was written where the user could not see it, and Apply kept it unseen. The panel now asks its owner's
    ``confirmVisible`` before a run of the selected segment (not 'all visible segments', which are visible) and
    before No muscle here, and returns without a run or a mark when it says no; the effect gives Slicer's."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def method(tree, cls, name):
        klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        return next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name)

    effect = ast.parse((root / "IFSSNetSegmentation/IFSSNetSegmentationLib/SegmentEditorEffect.py").read_text())
    call = next(n for n in ast.walk(method(effect, "SegmentEditorEffect", "setupOptionsFrame"))
                if isinstance(n, ast.Call) and ast.unparse(n.func) == "PropagatePanel")
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert keywords.get("confirmVisible") == "self.scriptedEffect.confirmCurrentSegmentVisible"

    gui = ast.parse((root / "IFSSNetSegmentation/IFSSNetSegmentationLib/gui.py").read_text())
    for name, write in (("onPropagateOrCancel", "self.logic.prepare"), ("onNoMuscleHere", "self.logic.markNoMuscle")):
        body = method(gui, "PropagatePanel", name)
        asks = [n for n in ast.walk(body) if isinstance(n, ast.If) and "self.confirmVisible()" in ast.unparse(n.test)]
        writes = [n for n in ast.walk(body) if isinstance(n, ast.Call) and ast.unparse(n.func) == write]
        assert len(asks) == 1 and writes and asks[0].lineno < writes[0].lineno, name
        assert isinstance(asks[0].body[0], ast.Return), name          # no: nothing runs
        assert ast.unparse(asks[0].test).startswith("not "), name
    run = ast.unparse(next(n for n in ast.walk(method(gui, "PropagatePanel", "onPropagateOrCancel"))
                           if isinstance(n, ast.If) and "self.confirmVisible()" in ast.unparse(n.test)).test)
    assert "self.allVisibleCheck.checked" in run                     # all visible: no hidden segment is written


def test_cancel_of_a_preview_puts_back_label_values_and_layers_when_nothing_else_changed(scene_nodes):
    """An int16 labelmap imported as one layer (GM 300, SOL 5, tendon 7): the preview of GM overlaps SOL, so
    Slicer moves GM to a layer of its own with label value 1. Cancel put GM's voxels back but left it there, label
    1, two layers: the segmentation saved after Cancel was not the one before the run. Where nothing else was
    edited while the preview was shown, Cancel now puts the whole segmentation back as it was (label values,
    layers, tags), as Slicer's own Cancel of a preview leaves it (the preview is in another node there)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    painted = np.zeros_like(truth)
    painted[[5, 11, 16]] = truth[[5, 11, 16]]
    a = _import_labelmap(slicer, segNode, truth, painted)
    segmentation = segNode.GetSegmentation()
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)
    L = _logic().IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method))
    L.apply(job, segNode)                                               # the preview
    assert segmentation.GetNumberOfLayers() == 2 and segmentation.GetSegment(a).GetLabelValue() == 1
    L.revert(job, segNode)                                              # Cancel
    assert _properties(segNode) == before
    assert segmentation.GetNumberOfLayers() == 1
    for sid, mask in _voxels(segNode, volumeNode).items():
        np.testing.assert_array_equal(mask, voxels[sid])


def _load(slicer, folder):
    """A phantom case as Slicer loads it (File > Add data: the storage nodes' readers): its volume, and its
    reference.seg.nrrd (GM, GL and SOL in one layer, label values 1, 2, 3)."""
    volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(folder / "volume.nrrd"))
    assert storage.ReadData(volumeNode)
    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reference")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(folder / "reference.seg.nrrd"))
    assert storage.ReadData(segNode)
    segNode.CreateDefaultDisplayNodes()
    return volumeNode, segNode


def test_a_phantom_case_as_loaded_propagates_gm_and_leaves_gl_and_sol_as_they_were(slicer_scene, tmp_path):
    """A case as ``ifssnet phantom`` writes it (``volume.nrrd``, ``reference.seg.nrrd``), loaded by Slicer's readers:
    GL and SOL finished, GM erased but for 3 slices across the sweep, all in the one layer the file holds.
    Propagating GM changes none of GL's and SOL's voxels, label values, names, colours or terminology;
    Segment Statistics gives the core's volume for GM; Cancel puts the file's segmentation back exactly."""
    import slicer
    from ifssnet.metrics import volume_stats

    from ifssnet.phantom import write_phantom

    write_phantom(tmp_path, seed=3, shape=(60, 64, 64))
    volumeNode, segNode = _load(slicer, tmp_path)
    arrays = _arrays_module()
    segmentation = segNode.GetSegmentation()
    ids = {segmentation.GetSegment(sid).GetName(): sid for sid in segmentation.GetSegmentIDs()}
    assert sorted(ids) == ["GL", "GM", "SOL"] and segmentation.GetNumberOfLayers() == 1
    g = _geometry(volumeNode, segNode)
    gm = arrays.segmentToArray(segNode, ids["GM"], g)
    present = np.flatnonzero(gm.any(axis=(1, 2)))
    slices = [int(present[int(len(present) * f)]) for f in (0.2, 0.5, 0.8)]
    painted = np.zeros_like(gm)
    painted[slices] = gm[slices]
    arrays.writeSegment(segNode, ids["GM"], painted, g)                  # the clinician's 3 slices
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)
    layers = segmentation.GetNumberOfLayers()

    L = _logic().IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [ids["GM"]], method=_nearest_seed_method))
    summary = L.apply(job, segNode)["segments"][ids["GM"]]
    assert summary["seed_slices"] == slices and summary["axis"] == 0
    after, now = _properties(segNode), _voxels(segNode, volumeNode)
    for name in ("GL", "SOL"):
        assert after[ids[name]] == before[ids[name]]
        np.testing.assert_array_equal(now[ids[name]], voxels[ids[name]])
    np.testing.assert_array_equal(now[ids["GM"]], job.segments[0].result)
    core = volume_stats(job.segments[0].result, arrays.spacingKji(volumeNode))
    assert segment_statistics(slicer, segNode, ids["GM"]) == (core["voxel_count"], core["volume_mm3"])
    assert summary["volume_mm3"] == core["volume_mm3"]

    L.revert(job, segNode)                                              # Cancel
    assert _properties(segNode) == before and segmentation.GetNumberOfLayers() == layers
    for sid, mask in _voxels(segNode, volumeNode).items():
        np.testing.assert_array_equal(mask, voxels[sid])


def test_show_volume_gives_a_closed_surface_segmentation_its_volumes(scene_nodes):
    """Segment Statistics' Labelmap plugin returns nothing for a segmentation that holds no binary labelmap
    (LabelmapSegmentStatisticsPlugin.computeStatistics: ``if not containsLabelmapRepresentation: return {}``), and
    "Show volume" switches the closed-surface plugin off: for a model imported as a segmentation, not yet propagated,
    the table had no volume. The panel now converts to a labelmap first (``mrml_arrays.ensureLabelmap``, as
    ``segmentVolumes`` does), and the plugin's pipeline then gives the module's volumes."""
    import ast
    from pathlib import Path

    slicer, volumeNode, segNode, truth = scene_nodes
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, range(4, 18), name="GM")
    _to_closed_surface_source(segNode)
    assert not segNode.GetSegmentation().ContainsRepresentation(LABELMAP)       # the plugin's 'return {}'
    _arrays_module().ensureLabelmap(segNode)
    ours = _logic().IFSSNetSegmentationLogic().segmentVolumes(segNode)[a]
    assert ours["voxel_count"] > 0
    assert segment_statistics(slicer, segNode, a) == (ours["voxel_count"], ours["volume_mm3"])

    tree = ast.parse((Path(__file__).resolve().parent.parent / "IFSSNetSegmentation/IFSSNetSegmentationLib/gui.py")
                     .read_text())
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PropagatePanel")
    show = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == "onShowVolume")
    calls = {ast.unparse(n.func): n.lineno for n in ast.walk(show) if isinstance(n, ast.Call)}
    assert "A.ensureLabelmap" in calls and calls["A.ensureLabelmap"] < calls["statsLogic.computeStatistics"]


def test_paint_along_a_segmentation_grid_rotated_against_the_volume_says_to_give_it_the_volumes_geometry(scene_nodes):
    """A segmentation whose own grid is rotated against the volume's (made on another volume: here an axis-aligned
    1 mm grid, the volume oblique): the Segment Editor paints on that grid, so three strokes along its slices cross
    12 of the volume's slices. The refusal said to align the slice views with the volume by the Segment Editor's
    rotated-view warning button, but that button aligns them with the segmentation's grid (qMRMLSegmentEditorWidget::
    rotateSliceViewsToSegmentation), where they already were. It now says the segmentation's grid is rotated against
    the volume and to give it the volume's geometry (Specify geometry), and changes nothing. Strokes off the slices of
    a segmentation on the volume's own grid keep the advice about the views."""
    from ifssnet.errors import SeedError
    from slicer_nodes import SHAPE, _ijk_to_ras

    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    corners = np.array([[i, j, k, 1.0] for i in (0, SHAPE[2] - 1) for j in (0, SHAPE[1] - 1)
                        for k in (0, SHAPE[0] - 1)]) @ _ijk_to_ras().T
    lo, hi = corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)
    m = np.eye(4)
    m[:3, 3] = lo
    aligned = slicer.util.addVolumeFromArray(
        np.zeros(tuple(int(np.ceil(hi[a] - lo[a])) + 1 for a in (2, 1, 0)), np.uint8), m, "made on")
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(aligned)
    grid = arrays.referenceGeometry(aligned, segNode)
    onGrid = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        arrays.arrayToOrientedImage(truth, g), grid, onGrid, False, False)
    truthOnGrid = arrays._voxelArray(onGrid).copy()
    present = np.flatnonzero(truthOnGrid.any(axis=(1, 2)))
    strokes = np.zeros_like(truthOnGrid)
    for f in (0.25, 0.5, 0.75):                                   # three slices of the segmentation's grid
        k = int(present[int(len(present) * f)])
        strokes[k] = truthOnGrid[k]
    a = segNode.GetSegmentation().AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, a, strokes, grid)
    assert np.flatnonzero(arrays.segmentToArray(segNode, a, g).any(axis=(1, 2))).size >= 8
    before, voxels = _properties(segNode), _voxels(segNode, volumeNode)
    L = _logic().IFSSNetSegmentationLogic()
    for call in (lambda: L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method),
                 lambda: L.paintedAxis(volumeNode, segNode, a)):
        with pytest.raises(SeedError, match="grid is rotated against the volume") as err:
            call()
        assert "Specify geometry" in err.value.todo and "US" in err.value.todo
    assert _properties(segNode) == before
    for sid, mask in _voxels(segNode, volumeNode).items():
        np.testing.assert_array_equal(mask, voxels[sid])


def test_a_propagated_segment_not_started_is_marked_in_progress_as_slicers_effects_mark_it(scene_nodes):
    """Slicer's effects set a segment's status 'Not started' to 'In progress' when they write it
    (vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap), and leave any other status; the segments table shows and
    filters by it. Propagate left seeds read from a file 'Not started'. It now marks them as the effects do (and
    No muscle here too); a 'Completed' segment stays completed; Cancel of the preview takes the mark back."""
    slicer, volumeNode, segNode, truth = scene_nodes
    status = slicer.vtkSlicerSegmentationsModuleLogic
    L = _logic().IFSSNetSegmentationLogic()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    b, _ = _paint(slicer, volumeNode, segNode, np.roll(truth, 2, axis=2), 0, (6, 12, 15), name="GL")
    segmentation = segNode.GetSegmentation()
    status.SetSegmentStatus(segmentation.GetSegment(b), status.Completed)
    assert status.GetSegmentStatus(segmentation.GetSegment(a)) == status.NotStarted
    job = L.compute(L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method))
    L.apply(job, segNode)
    assert status.GetSegmentStatus(segmentation.GetSegment(a)) == status.InProgress
    assert status.GetSegmentStatus(segmentation.GetSegment(b)) == status.Completed
    L.revert(job, segNode)
    assert status.GetSegmentStatus(segmentation.GetSegment(a)) == status.NotStarted
    job = L.compute(L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method))
    L.apply(job, segNode)
    segmentation.GetSegment(b).SetName("GL renamed")                   # edited meanwhile: Cancel per segment
    L.revert(job, segNode)
    assert status.GetSegmentStatus(segmentation.GetSegment(a)) == status.NotStarted
    assert segmentation.GetSegment(b).GetName() == "GL renamed"
    c, _ = _paint(slicer, volumeNode, segNode, np.roll(truth, -2, axis=2), 0, (7, 10, 14), name="SOL")
    L.markNoMuscle(volumeNode, segNode, c, 18)
    assert status.GetSegmentStatus(segmentation.GetSegment(c)) == status.InProgress
