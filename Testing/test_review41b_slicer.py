"""Review 41b (Segmentation Logic, the clinician's journey): what the seed tags mean when the volume's grid is not
the one they were written on, and other paths of Propagate on Slicer's real MRML (slicer-core)."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _propagated_gm, _assert_same, _ijk_to_ras, _nearest_seed_method, _paint,  # noqa: F401
                          _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


def _present(mask, axis):
    """The slices across ``axis`` where ``mask`` holds voxels."""
    return [int(s) for s in np.flatnonzero(np.moveaxis(mask, axis, 0).any(axis=(1, 2)))]


def _cropped(slicer, volumeNode, first, name="US cropped"):
    """The volume without its first ``first`` slices across k, as Crop Volume leaves it (same voxels, same spacing
    and directions, the origin moved to the first slice kept)."""
    voxels = slicer.util.arrayFromVolume(volumeNode)[first:].copy()
    m = _ijk_to_ras()
    m[:3, 3] = m[:3, :3] @ np.array([0.0, 0.0, float(first)]) + m[:3, 3]
    return slicer.util.addVolumeFromArray(voxels, m, name)


def test_seeds_recorded_on_the_uncropped_volume_land_on_the_same_slices_of_a_cropped_one(scene_nodes):
    """The seed tag names slices by their index on the volume's grid. Propagating the same segmentation on a cropped
    volume (Crop Volume, as the out-of-memory message advises) took those indices on the cropped grid: painted
    slices 6, 10, 15 and the mark at 18 became seeds 6, 10, 15, 18 on a grid where the paint lies on 3, 7, 12, so
    every seed was an empty slice ('no muscle here') and the result was an empty segment: the paint was lost. The
    tags now record their grid; on a crop of it (same voxels) the slices are mapped through it."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, painted = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    L.markNoMuscle(volumeNode, segNode, a, 18)
    crop = _cropped(slicer, volumeNode, 3)
    g = arrays.referenceGeometry(crop, segNode)
    job = L.prepare(crop, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].seedSlices == (3, 7, 12, 15)
    assert L.paintedAxis(crop, segNode, a) == 0
    L.propagate(crop, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    assert _present(out, 0) == list(range(3, 14))                  # up to the mark at 15 (the copier: 13 <- 12)
    np.testing.assert_array_equal(out[[3, 7, 12]], painted[[6, 10, 15]])   # painted slices as painted
    # the next run on the crop reads its own tags; a correction there re-anchors it
    out[9] = 0
    arrays.writeSegment(segNode, a, out, g)
    assert L.prepare(crop, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices == (3, 7, 9, 12, 15)


def test_seeds_recorded_after_a_run_on_the_uncropped_volume_keep_their_corrections_on_a_crop(scene_nodes):
    """After a run on the whole volume, a slice corrected there and then the volume cropped: the correction (found
    on the grid the checksums were taken on) and the seeds are the crop's same slices, not every slice."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, L, arrays, g0, out = _propagated_gm(scene_nodes)
    out[12] = 0                                                   # a 'no muscle here' correction on slice 12
    arrays.writeSegment(segNode, a, out, g0)
    crop = _cropped(slicer, volumeNode, 3)
    job = L.prepare(crop, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].seedSlices == (3, 7, 9, 12)


def test_seeds_recorded_on_another_grid_than_a_resampled_volume_take_the_paint_afresh(scene_nodes):
    """On a volume resampled to half as many slices (no slice of it is a slice of the grid the tags were written
    on), the tags' slice numbers were read on the new grid: seeds 6, 10, 15 of 11 slices (15 outside, 6 and 10 other
    places of the muscle), and the run replaced the result by those slices' copies. The paint on the new grid is now
    taken as fresh seeds (here every slice of the result: nothing is lost), and the status line says why."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, L, arrays, _, _ = _propagated_gm(scene_nodes)
    m = _ijk_to_ras()
    m[:3, 2] *= 2.0                                                 # every other slice: twice the spacing across k
    coarse = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode)[::2].copy(), m, "US coarse")
    g = arrays.referenceGeometry(coarse, segNode)
    before = arrays.segmentToArray(segNode, a, g)
    result = L.propagate(coarse, segNode, [a], method=_nearest_seed_method)
    assert result["segments"][a]["seed_slices"] == _present(before, 0)
    np.testing.assert_array_equal(arrays.segmentToArray(segNode, a, g), before)
    assert "another volume's grid" in L.notesText(result)


def _seedSlab(shape, axis, slices):
    """The voxels of ``slices`` across ``axis`` (bool, (k, j, i))."""
    slab = np.zeros(shape, bool)
    index = [slice(None)] * 3
    index[axis] = list(slices)
    slab[tuple(index)] = True
    return slab


def test_segments_painted_across_different_axes_do_not_overlap_when_asked(scene_nodes):
    """``exclusive`` (the default) promises that the segments propagated together do not overlap and that a voxel
    painted for one is not given to another. The Logic calls the core once per propagation axis, and the core keeps
    apart only the segments of its call: GM painted across k and SOL across i overlapped by thousands of voxels, and
    SOL's result held GM's painted voxels. Across axes the Logic now applies the core's rules: painted voxels stay
    their segment's, and a voxel both claim goes to the one painted nearer (in mm along its own axis)."""
    pytest.importorskip("torch")
    from fake_models import CopyModel

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    g = arrays.referenceGeometry(volumeNode, segNode)
    a, paintedA = _paint(slicer, volumeNode, segNode, truth, 0, (8, 11, 14), name="GM")
    b, paintedB = _paint(slicer, volumeNode, segNode, truth, 2, (10, 15, 20), name="SOL")
    result = logic.IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [a, b], model=CopyModel(size=32),
                                                        device="cpu")
    assert (result["segments"][a]["axis"], result["segments"][b]["axis"]) == (0, 2)
    outA, outB = (arrays.segmentToArray(segNode, s, g).astype(bool) for s in (a, b))
    slabA, slabB = _seedSlab(outA.shape, 0, (8, 11, 14)), _seedSlab(outB.shape, 2, (10, 15, 20))
    np.testing.assert_array_equal(outA[slabA], paintedA.astype(bool)[slabA])      # painted slices as painted
    np.testing.assert_array_equal(outB[slabB], paintedB.astype(bool)[slabB])
    bothPainted = slabA & slabB & (paintedA > 0) & (paintedB > 0)
    assert not (outA & outB & ~bothPainted).any()                                  # apart, but where both painted
    assert not (outB & slabA & (paintedA > 0) & ~slabB).any()                      # GM's paint not given to SOL
    assert not (outA & slabB & (paintedB > 0) & ~slabA).any()
    assert outA.sum() > paintedA.sum() and outB.sum() > paintedB.sum()


def test_cancel_of_a_preview_takes_back_the_result_only(scene_nodes):
    """Cancel of a preview put the whole segmentation back as it was before the run: while the preview was shown
    (Slicer stays usable) the clinician painted SOL in a new segment and erased a slice of another muscle, and Cancel
    threw both away, which the docs do not say ('Cancel leaves the segment exactly as painted'). Cancel now puts back
    the propagated segments (voxels and tags) and leaves the rest of the segmentation as it is now."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    g = arrays.referenceGeometry(volumeNode, segNode)
    other, paintedOther = _paint(slicer, volumeNode, segNode, truth, 0, (4, 5, 6), name="GL")
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    before = _state(segNode, volumeNode)
    L = logic.IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method))
    L.apply(job, segNode)                                           # the preview
    paintedOther[5] = 0                                             # meanwhile: GL's slice 5 erased, SOL painted
    arrays.writeSegment(segNode, other, paintedOther, g)
    sol, paintedSol = _paint(slicer, volumeNode, segNode, truth, 2, (12, 14, 16), name="SOL")
    L.revert(job, segNode)                                          # Cancel
    after = _state(segNode, volumeNode)
    _assert_same({a: before[a]}, {a: after[a]})                     # the propagated segment as painted
    np.testing.assert_array_equal(after[other][1], paintedOther)   # the edits made meanwhile kept
    np.testing.assert_array_equal(after[sol][1], paintedSol)


def test_seeds_follow_a_reoriented_volume(scene_nodes):
    """Guard for the grid mapping: the same voxels with the axes in another order and one flipped (Orient Scalar
    Volume): the seeds and the mark lie across the new array axis that was k, on the slices holding the same voxels,
    and the run gives the same segment as on the volume the tags were written on."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    L.markNoMuscle(volumeNode, segNode, a, 18)
    voxels = slicer.util.arrayFromVolume(volumeNode)             # (k, j, i)
    # new (k', j', i') = (i, k flipped, j): new IJK (j, n_k - 1 - k, i) -> old IJK (i, j, k)
    reoriented = np.ascontiguousarray(np.transpose(voxels[::-1], (2, 0, 1)))
    old = _ijk_to_ras()
    nk = voxels.shape[0]
    m = np.eye(4)
    m[:3, 0] = old[:3, 1]                                           # new i steps old j
    m[:3, 1] = -old[:3, 2]                                          # new j steps old k backwards
    m[:3, 2] = old[:3, 0]                                           # new k steps old i
    m[:3, 3] = old[:3, 3] + old[:3, 2] * (nk - 1)
    other = slicer.util.addVolumeFromArray(reoriented, m, "US reoriented")
    job = L.prepare(other, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].axis == 1
    assert job.segments[0].seedSlices == tuple(sorted(nk - 1 - s for s in (6, 10, 15, 18)))
    L.propagate(other, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, arrays.referenceGeometry(volumeNode, segNode))
    assert _present(out, 0) == list(range(6, 17))                   # up to the mark at 18 (16 <- 15)


def test_a_volume_under_a_warping_transform_is_refused_with_what_to_do(scene_nodes):
    """A volume under a non-linear (grid) transform that the segmentation is not under: Slicer maps its grid into the
    segmentation's frame as a bounding grid of another size, so Propagate (and No muscle here) crashed with numpy's
    'shape mismatch: value array of shape (3,41,31) could not be broadcast ...'. It is now refused before anything is
    read, saying to harden the transform or put both under it; the segmentation is as it was."""
    from vtk.util import numpy_support
    import vtk

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    from ifssnet.errors import InputError
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    displacement = vtk.vtkImageData()
    displacement.SetDimensions(5, 5, 5)
    displacement.SetOrigin(-50, -50, -50)
    displacement.SetSpacing(40, 40, 40)
    displacement.AllocateScalars(vtk.VTK_DOUBLE, 3)
    numpy_support.vtk_to_numpy(displacement.GetPointData().GetScalars())[:] = (
        np.random.default_rng(0).random((125, 3)) * 2)
    warp = slicer.vtkOrientedGridTransform()
    warp.SetDisplacementGridData(displacement)
    transformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    transformNode.SetAndObserveTransformToParent(warp)
    volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())
    L = logic.IFSSNetSegmentationLogic()
    for call in (lambda: L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method),
                 lambda: L.markNoMuscle(volumeNode, segNode, a, 18)):
        with pytest.raises(InputError, match="not linear") as err:
            call()
        assert "Harden transform" in err.value.todo
    volumeNode.SetAndObserveTransformNodeID(None)
    before = _state(segNode, volumeNode)
    segNode.SetAndObserveTransformNodeID(transformNode.GetID())     # the other way round
    with pytest.raises(InputError, match="not linear"):
        L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    segNode.SetAndObserveTransformNodeID(None)
    _assert_same(before, _state(segNode, volumeNode))


def test_all_visible_segments_skip_a_segment_cleared_after_a_run(scene_nodes):
    """'All visible segments at once' (``skipEmpty``; ``segmentIds=None``) takes the segments that have painted
    slices. A segment cleared after a run (GL is not in this volume) kept its tags, so it was taken anyway: its old
    result's slices became 'no muscle here' marks, and the run of every visible segment stopped with "'GL' is empty
    on every painted slice". A segment with no voxels is now left out there, tags and all; chosen alone it is still
    refused with what to do."""
    pytest.importorskip("torch")
    from fake_models import CopyModel
    from ifssnet.errors import SeedError

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    g = arrays.referenceGeometry(volumeNode, segNode)
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    b, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 8, 12), name="GL")
    L = logic.IFSSNetSegmentationLogic()
    L.propagate(volumeNode, segNode, [a, b], model=CopyModel(size=32), device="cpu")
    arrays.writeSegment(segNode, b, np.zeros(truth.shape, np.uint8), g)     # GL cleared
    stateGL = _state(segNode, volumeNode)[b]
    for ids, skip in (([a, b], True), (None, False)):
        result = L.propagate(volumeNode, segNode, ids, model=CopyModel(size=32), device="cpu", skipEmpty=skip)
        assert list(result["segments"]) == [a]
        _assert_same({b: stateGL}, {b: _state(segNode, volumeNode)[b]})
    with pytest.raises(SeedError, match="GL"):
        L.propagate(volumeNode, segNode, [b], model=CopyModel(size=32), device="cpu")


def _strokesInRasViews(truth, planes):
    """What three strokes painted in Slicer's default views (axial: planes of constant S) leave on the oblique test
    volume's grid: the voxels within half a slice view's spacing of each plane, inside the muscle."""
    m = _ijk_to_ras()
    k, j, i = np.indices(truth.shape)
    s = m[2, 0] * i + m[2, 1] * j + m[2, 2] * k + m[2, 3]
    painted = np.zeros(truth.shape, np.uint8)
    for c in planes:
        painted[(np.abs(s - c) < 0.35) & (truth > 0)] = 1
    return painted


def test_strokes_painted_in_views_rotated_against_an_oblique_volume_are_refused(scene_nodes):
    """An oblique volume (a freehand reconstruction's grid) shown in Slicer's default views, which are not rotated to
    it: each of three strokes lies on a plane tilted to the volume's slices, so it left a band on each of several
    consecutive k slices. The Logic took the 10 slices holding a band for 10 painted slices, each 'exactly as
    painted', and propagated from partial cross-sections without a word. Such paint (consecutive painted slices whose
    paint does not overlap) is now refused before anything changes, saying to align the views and paint again; the
    same three slices painted in aligned views still run."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    from ifssnet.errors import SeedError
    arrays = _arrays_module()
    g = arrays.referenceGeometry(volumeNode, segNode)
    painted = _strokesInRasViews(truth, (12.0, 16.0, 20.0))
    assert len(_present(painted, 0)) >= 8                            # each stroke crosses several k slices
    sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, sid, painted, g)
    before = _state(segNode, volumeNode)
    L = logic.IFSSNetSegmentationLogic()
    with pytest.raises(SeedError, match="does not lie on slices of the volume") as err:
        L.propagate(volumeNode, segNode, [sid], method=_nearest_seed_method)
    assert "Rotate to volume plane" in err.value.todo
    _assert_same(before, _state(segNode, volumeNode))
    segNode.GetSegmentation().RemoveSegment(sid)
    for slices in ((6, 7, 8), (5, 6, 7, 12, 13, 14, 18)):               # consecutive slices painted in aligned views
        a, _ = _paint(slicer, volumeNode, segNode, truth, 0, slices, name="GM")
        assert L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices == slices
        segNode.GetSegmentation().RemoveSegment(a)
