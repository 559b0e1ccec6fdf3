"""Propagate from the Segment Editor effect honours the editor's masking settings (real MRML, slicer-core).

The Logic's ``apply(..., editorNode=...)`` writes each result as Slicer's auto-complete effects (Grow from seeds, Fill
between slices) apply theirs, through ``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap`` in mode Set: inside the
editable area (mask mode, editable intensity range) the segment becomes the result, outside it the segment keeps its
voxels (the painted slices among them), and "Modify other segments" decides which other segments lose the voxels the
result takes. ``editorNode=None`` (the module page, the command line) writes the result as it is, and changes no
other segment. GM is painted across k on slices 5, 11, 16 of ``scene_nodes``' ellipsoid and propagated by
``_nearest_seed_method`` (every slice between the seeds copies the nearest seed slice), so the result is known.
"""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import _arrays_module, _geometry, _nearest_seed_method, _paint, scene_nodes  # noqa: F401
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

SEEDS = (5, 11, 16)


def _setup(scene_nodes, others=("SOL",)):
    """GM painted on SEEDS, segments ``others`` each a block over the right half of the volume (i >= 15: GM's result
    overlaps it), a Segment Editor node on the segmentation and the volume as the effect's, and the job computed.
    Returns (slicer, volumeNode, segNode, Logic, job, GM's ID, GM as painted, {name: ID}, editor node, geometry)."""
    from IFSSNetSegmentationLib import logic

    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    geometry = _geometry(volumeNode, segNode)
    gm, painted = _paint(slicer, volumeNode, segNode, truth, 0, SEEDS, name="GM")
    block = np.zeros_like(truth)
    block[:, :, 15:] = 1
    ids = {}
    for name in others:
        ids[name] = segNode.GetSegmentation().AddEmptySegment("", name)
        arrays.writeSegment(segNode, ids[name], block, geometry)
    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(segNode)
    editor.SetAndObserveSourceVolumeNode(volumeNode)
    editor.SetSelectedSegmentID(gm)
    L = logic.IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [gm], method=_nearest_seed_method))
    return slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, geometry


def _read(segNode, sid, geometry):
    return _arrays_module().segmentToArray(segNode, sid, geometry)


def test_without_an_editor_node_the_result_is_written_as_it_is(scene_nodes):
    """None (the module page, the CLI): GM is its result voxel for voxel, and SOL, which the result overlaps, keeps
    every voxel (as before masking existed)."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    sol = _read(segNode, ids["SOL"], g)
    result = job.segments[0].result.copy()
    assert (result & sol).any()
    L.apply(job, segNode, editorNode=None)
    np.testing.assert_array_equal(_read(segNode, gm, g), result)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol)


@pytest.mark.parametrize("moved", [False, True])
def test_editable_intensity_range_leaves_bright_voxels_out_and_painted_slices_as_painted(scene_nodes, moved):
    """Editable intensity range 0..80 of the volume (the muscle is 60..100): the result's voxels brighter than 80 are
    not added; the painted slices come out exactly as painted, their bright voxels too (outside the editable area a
    segment keeps its voxels). ``moved``: the volume under a linear transform (not hardened), whose intensities
    Slicer reads through it (the editor's aligned source volume)."""
    if moved:
        import vtk

        slicer, volumeNode = scene_nodes[:2]
        move = vtk.vtkTransform()
        move.RotateWXYZ(25, 0.3, 1, 0.2)
        move.Translate(7, -4, 11)
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transform.SetMatrixTransformToParent(move.GetMatrix())
        volumeNode.SetAndObserveTransformNodeID(transform.GetID())
        scene_nodes[2].SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)   # the source volume, then paint
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes, others=())
    editor.SetSourceVolumeIntensityMask(True)
    editor.SetSourceVolumeIntensityMaskRange(0, 80)
    volume = slicer.util.arrayFromVolume(volumeNode)
    result = job.segments[0].result.copy()
    editable = (volume >= 0) & (volume <= 80)
    assert (result.astype(bool) & ~editable).any() and (painted.astype(bool) & ~editable).any()
    L.apply(job, segNode, editorNode=editor)
    written = _read(segNode, gm, g)
    np.testing.assert_array_equal(written, np.where(editable, result, painted))
    np.testing.assert_array_equal(written[list(SEEDS)], painted[list(SEEDS)])
    assert not (written & ~editable)[[k for k in range(written.shape[0]) if k not in SEEDS]].any()


def test_inside_one_segment_confines_the_result_to_it(scene_nodes):
    """Editable area "Inside Box" (Allow overlap, so Box itself stays): GM's result is kept inside Box only; outside
    it GM keeps what it had, its painted slices."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes, others=("Box",))
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    editor.SetMaskSegmentID(ids["Box"])
    editor.SetOverwriteMode(editor.OverwriteNone)
    box = _read(segNode, ids["Box"], g)
    result = job.segments[0].result.copy()
    assert (result & ~box.astype(bool)).any()
    summary = L.apply(job, segNode, editorNode=editor)
    written = np.where(box > 0, result, painted)
    np.testing.assert_array_equal(_read(segNode, gm, g), written)
    np.testing.assert_array_equal(_read(segNode, ids["Box"], g), box)
    left = int((result & (1 - written)).sum())                          # the status line says what masking left out
    assert f"left out {left} of the result's {int(result.sum())} voxels" in L.notesText(summary)
    assert summary["segments"][gm]["voxel_count"] == int(written.sum())


def test_an_editable_area_with_nothing_in_it_leaves_the_segment_as_painted_and_says_so(scene_nodes):
    """"Inside one segment" with no segment chosen (Slicer: nothing is editable): GM stays as painted, as Grow from
    seeds would leave it, and the status line says the masking left out the whole result."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes, others=())
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    result = job.segments[0].result.copy()
    summary = L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), painted)
    assert f"left out {int((result & (1 - painted)).sum())} of the result's" in L.notesText(summary)


def test_outside_all_segments_leaves_other_segments_areas_alone(scene_nodes):
    """Editable area "Outside all segments": GM's result is not added where SOL is; GM keeps its paint there."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    editor.SetOverwriteMode(editor.OverwriteNone)
    sol = _read(segNode, ids["SOL"], g)
    result = job.segments[0].result.copy()
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), np.where(sol > 0, painted, result))
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol)


def test_overwrite_all_removes_the_new_voxels_from_other_segments(scene_nodes):
    """Modify other segments "Overwrite all" (the editor's default): GM is its result; SOL loses exactly the voxels GM
    now holds, and keeps the rest."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    editor.SetOverwriteMode(editor.OverwriteAllSegments)
    sol = _read(segNode, ids["SOL"], g)
    result = job.segments[0].result.copy()
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), result)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol & (1 - result))


def test_overwrite_visible_spares_hidden_segments_and_overwrite_none_spares_all(scene_nodes):
    """"Overwrite visible": SOL (shown) loses GM's new voxels, GL (hidden) keeps them; "Allow overlap" (none): both keep
    every voxel, and GM is its result."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes, others=("SOL", "GL"))
    segNode.GetDisplayNode().SetSegmentVisibility(ids["GL"], False)
    editor.SetOverwriteMode(editor.OverwriteVisibleSegments)
    block = _read(segNode, ids["SOL"], g)
    result = job.segments[0].result.copy()
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), block & (1 - result))
    np.testing.assert_array_equal(_read(segNode, ids["GL"], g), block)
    L.revert(job, segNode)

    editor.SetOverwriteMode(editor.OverwriteNone)
    job = L.compute(L.prepare(volumeNode, segNode, [gm], method=_nearest_seed_method))
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), result)
    for name in ("SOL", "GL"):
        np.testing.assert_array_equal(_read(segNode, ids[name], g), block)


def test_masked_slices_are_not_taken_for_corrections_on_the_next_run(scene_nodes):
    """The seed tags' checksums are of what was written (the masked result), so the next Propagate reads the same
    painted slices, not every slice the editable area changed as one the user corrected."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes, others=())
    editor.SetSourceVolumeIntensityMask(True)
    editor.SetSourceVolumeIntensityMaskRange(0, 80)
    L.apply(job, segNode, editorNode=editor)
    again = L.prepare(volumeNode, segNode, [gm], method=_nearest_seed_method)
    assert again.segments[0].seedSlices == SEEDS


def test_cancel_and_undo_put_back_the_segments_that_overwrite_changed(scene_nodes):
    """Cancel of the preview (``revert``) puts GM and SOL (which "Overwrite all" cut) back voxel for voxel, also after
    the user painted another segment meanwhile (when only the segments written go back); the Segment Editor's Undo
    (its ``vtkSegmentationHistory``, saved before the write as the effect does) puts every segment back. The node the
    Logic made for the masking is gone from the scene."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    arrays = _arrays_module()
    sol = _read(segNode, ids["SOL"], g)
    editorNodes = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode")
    L.apply(job, segNode, editorNode=editor)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode") == editorNodes
    assert not np.array_equal(_read(segNode, ids["SOL"], g), sol)
    other = segNode.GetSegmentation().AddEmptySegment("", "Painted meanwhile")
    mark = np.zeros_like(sol)
    mark[0, :3, :3] = 1
    arrays.writeSegment(segNode, other, mark, g)
    L.revert(job, segNode)
    np.testing.assert_array_equal(_read(segNode, gm, g), painted)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol)
    np.testing.assert_array_equal(_read(segNode, other, g), mark)

    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(segNode.GetSegmentation())
    history.SaveState()                                                 # scriptedEffect.saveStateForUndo()
    L.apply(L.compute(L.prepare(volumeNode, segNode, [gm], method=_nearest_seed_method)), segNode, editorNode=editor)
    assert not np.array_equal(_read(segNode, ids["SOL"], g), sol)
    assert history.RestorePreviousState()                               # Undo
    np.testing.assert_array_equal(_read(segNode, gm, g), painted)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol)


def test_the_effect_writes_its_preview_with_its_parameter_set_node():
    """The wiring the Logic tests above cannot reach headless (qt): the effect gives the panel its parameter set node
    (``editorNode=self.scriptedEffect.parameterSetNode``), the panel hands it to ``Logic.apply`` where the preview is
    written (read then, as the auto-complete effects read the masking settings when they apply), and the module page
    gives none (it has no Segment Editor, so it writes the result as it is)."""
    import ast

    from test_review42_slicerapi import GUI_FILES, ROOT, _dotted, _method

    effect = ast.parse((ROOT / GUI_FILES[1]).read_text())
    panel = next(n for n in ast.walk(_method(effect, "SegmentEditorEffect", "setupOptionsFrame"))
                 if isinstance(n, ast.Call) and _dotted(n.func) == "PropagatePanel")
    assert {k.arg: _dotted(k.value) for k in panel.keywords}.get("editorNode") == "self.scriptedEffect.parameterSetNode"
    gui = ast.parse((ROOT / GUI_FILES[2]).read_text())
    apply = [n for n in ast.walk(_method(gui, "PropagatePanel", "_showPreview"))
             if isinstance(n, ast.Call) and _dotted(n.func) == "self.logic.apply"]
    assert len(apply) == 1
    assert {k.arg: ast.unparse(k.value) for k in apply[0].keywords}.get("editorNode") == "self.editorNode()"
    page = ast.parse((ROOT / GUI_FILES[0]).read_text())
    pagePanel = [n for n in ast.walk(page) if isinstance(n, ast.Call) and _dotted(n.func) == "PropagatePanel"]
    assert pagePanel and all("editorNode" not in {k.arg for k in c.keywords} for c in pagePanel)


def test_masking_a_segment_stored_on_another_grid_is_refused_and_changes_nothing(scene_nodes):
    """The volume moved (a transform, not hardened) after the segmentation took its geometry, and GM written on the
    volume's voxels (by a script, or the module page): GM's layer is not on the segmentation's grid, where Slicer
    makes the editable area, and Slicer would drop GM's voxels outside it ("geometry mismatch"). With an editable
    intensity range the run is refused with what to do, and every segment is as it was; with no masking (and Allow
    overlap) GM is written voxel for voxel as the module page writes it, on its own grid."""
    import vtk

    from ifssnet.errors import InputError
    from slicer_nodes import _assert_same, _state

    slicer, volumeNode = scene_nodes[:2]
    move = vtk.vtkTransform()
    move.RotateWXYZ(25, 0.3, 1, 0.2)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(move.GetMatrix())
    volumeNode.SetAndObserveTransformNodeID(transform.GetID())
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    editor.SetSourceVolumeIntensityMask(True)
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="another grid"):
        L.apply(job, segNode, editorNode=editor)
    _assert_same(before, _state(segNode, volumeNode))
    L.apply(job, segNode)
    asThePageWrites = _read(segNode, gm, g)
    L.revert(job, segNode)
    _assert_same(before, _state(segNode, volumeNode))
    editor.SetSourceVolumeIntensityMask(False)
    editor.SetOverwriteMode(editor.OverwriteNone)
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), asThePageWrites)
    assert asThePageWrites.sum() > painted.sum()


def test_the_segment_written_is_the_edited_one_and_may_lose_its_old_voxels_in_the_editable_area(scene_nodes):
    """Propagate again after a painted slice was erased: the result is shorter than the last one. With "Outside all
    segments", each segment written is the edited segment (as the selected one is when painting: its own voxels do not
    fence it in), so in the editable area GM becomes the new result and loses the old one's voxels; under SOL it keeps
    them. The editor's selected segment (SOL here) stays selected."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic

    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    gm, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 8, 11, 16), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    L.propagate(volumeNode, segNode, [gm], method=_nearest_seed_method)
    old = _read(segNode, gm, g)
    old[16] = 0                                                         # the user erases painted slice 16
    arrays.writeSegment(segNode, gm, old, g)
    sol = segNode.GetSegmentation().AddEmptySegment("", "SOL")
    block = np.zeros_like(old)
    block[:, :, 15:] = 1
    arrays.writeSegment(segNode, sol, block, g)
    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(segNode)
    editor.SetAndObserveSourceVolumeNode(volumeNode)
    editor.SetSelectedSegmentID(sol)
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    editor.SetOverwriteMode(editor.OverwriteNone)
    job = L.compute(L.prepare(volumeNode, segNode, [gm], method=_nearest_seed_method))
    assert job.segments[0].seedSlices == (5, 8, 11)
    result = job.segments[0].result.copy()
    assert (old[12:16] & (1 - block[12:16])).any() and not result[12:16].any()
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), np.where(block > 0, old, result))
    assert editor.GetSelectedSegmentID() == sol


def test_segments_propagated_together_are_tagged_as_they_end_up(scene_nodes):
    """GM and GL propagated together, allowed to overlap ("Segments do not overlap" off) under "Overwrite all": GL,
    written after GM, cuts GM where they overlap, as Slicer's effects cut other segments. The seed tags' checksums of
    GM are taken after every segment is written, so the next run reads the same painted slices for both (taken before
    GL's write, every slice GL cut read as a correction of GM)."""
    from IFSSNetSegmentationLib import logic

    slicer, volumeNode, segNode, truth = scene_nodes
    g = _geometry(volumeNode, segNode)
    gm, _ = _paint(slicer, volumeNode, segNode, truth, 0, SEEDS, name="GM")
    gl, _ = _paint(slicer, volumeNode, segNode, np.roll(truth, 3, axis=2), 0, (6, 12, 15), name="GL")
    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(segNode)
    editor.SetAndObserveSourceVolumeNode(volumeNode)
    editor.SetOverwriteMode(editor.OverwriteAllSegments)
    L = logic.IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [gm, gl], method=_nearest_seed_method, exclusive=False))
    results = {seg.segmentId: seg.result.copy() for seg in job.segments}
    assert (results[gm] & results[gl]).any()
    L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gl, g), results[gl])
    np.testing.assert_array_equal(_read(segNode, gm, g), results[gm] & (1 - results[gl]))
    again = L.prepare(volumeNode, segNode, [gm, gl], method=_nearest_seed_method, exclusive=False)
    assert {seg.segmentId: seg.seedSlices for seg in again.segments} == {gm: SEEDS, gl: (6, 12, 15)}


def test_a_slicer_without_the_segment_editor_logic_writes_the_result_as_it_is_and_says_so(scene_nodes, monkeypatch):
    """A Slicer from before ``vtkSlicerSegmentEditorLogic`` (2025): the effect's Propagate still works, the result is
    written as the module page writes it (SOL keeps every voxel), and the status line says the masking was not
    applied."""
    slicer, volumeNode, segNode, L, job, gm, painted, ids, editor, g = _setup(scene_nodes)
    editor.SetSourceVolumeIntensityMask(True)
    sol = _read(segNode, ids["SOL"], g)
    result = job.segments[0].result.copy()
    monkeypatch.delattr(slicer, "vtkSlicerSegmentEditorLogic")
    summary = L.apply(job, segNode, editorNode=editor)
    np.testing.assert_array_equal(_read(segNode, gm, g), result)
    np.testing.assert_array_equal(_read(segNode, ids["SOL"], g), sol)
    assert "without the Segment Editor's Masking settings" in L.notesText(summary)
