"""Review 40 (second Logic review): clinician workflows end to end through the Segmentation Logic on real MRML
(slicer-core): paint, propagate, correct, propagate again; several muscles; cancel, preview; odd geometry."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (SHAPE, _arrays_module, _assert_same, _geometry, _method,  # noqa: F401
                          _nearest_seed_method, _paint, _painted_gm, _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


def test_overlapping_results_in_one_layer_keep_their_voxels_and_seeds(scene_nodes):
    """Two segments painted in one labelmap layer whose results overlap (a method that does not keep them apart):
    each keeps its whole result (Slicer moves one to a layer of its own), and the next run finds no slice
    changed (the checksums are of what is stored)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="tendon")
    b, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 12, 15), name="vessel")
    L = logic.IFSSNetSegmentationLogic()
    job = L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)
    L.compute(job)
    res = L.apply(job, segNode)
    g = _geometry(volumeNode, segNode)
    for seg in job.segments:
        np.testing.assert_array_equal(arrays.segmentToArray(segNode, seg.segmentId, g), seg.result)
        assert res["segments"][seg.segmentId]["voxel_count"] == int(seg.result.sum())
    assert (job.segments[0].result & job.segments[1].result).any()
    again = L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)
    assert [s.seedSlices for s in again.segments] == [(5, 11, 16), (6, 12, 15)]


def _display(segNode):
    d = segNode.GetDisplayNode()
    out = {}
    for sid in segNode.GetSegmentation().GetSegmentIDs():
        out[sid] = (d.GetSegmentVisibility(sid), d.GetSegmentVisibility3D(sid), d.GetSegmentVisibility2DFill(sid),
                    d.GetSegmentVisibility2DOutline(sid), round(d.GetSegmentOpacity3D(sid), 6),
                    round(d.GetSegmentOpacity2DFill(sid), 6), round(d.GetSegmentOpacity2DOutline(sid), 6),
                    segNode.GetSegmentation().GetSegment(sid).GetColor())
    return out


def test_preview_cancel_and_a_failed_write_keep_how_segments_are_shown(scene_nodes, monkeypatch):
    """Cancel of a preview (and the rollback of a failed write) put the segmentation back with a deep copy, which
    Slicer sees as every segment removed and added again: the display node reset each segment's display
    properties, so a muscle the clinician had hidden (or made translucent) showed again after Cancel."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="tendon")
    b, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 12, 15), name="vessel")
    d = segNode.GetDisplayNode()
    d.SetSegmentVisibility(b, False)
    d.SetSegmentVisibility2DOutline(a, False)
    d.SetSegmentOpacity3D(a, 0.3)
    d.SetSegmentOpacity2DFill(a, 0.2)
    segNode.GetSegmentation().GetSegment(a).SetColor(0.1, 0.2, 0.3)
    before = _display(segNode)
    L = logic.IFSSNetSegmentationLogic()
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    L.compute(job)
    L.apply(job, segNode)
    assert _display(segNode) == before
    L.revert(job, segNode)
    assert _display(segNode) == before

    job = L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)
    L.compute(job)
    real = arrays.writeSegment
    calls = []

    def failSecond(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(arrays, "writeSegment", failSecond)
    with pytest.raises(RuntimeError):
        L.apply(job, segNode)
    assert _display(segNode) == before


def test_no_segment_chosen_is_not_called_an_empty_segmentation(scene_nodes):
    """The effect passes [] when no segment is selected, or, with "All visible segments at once", when every
    segment is hidden; the message said "The segmentation has no segments" of a segmentation that has them."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.errors import InputError, SeedError
    from IFSSNetSegmentationLib import logic
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="tendon")
    with pytest.raises((InputError, SeedError)) as err:
        logic.IFSSNetSegmentationLogic().prepare(volumeNode, segNode, [], method=_nearest_seed_method)
    assert "has no segments" not in str(err.value)
    assert "select" in str(err.value).lower() and "visible" in str(err.value).lower()
    segNode.GetSegmentation().RemoveSegment(a)
    with pytest.raises(SeedError, match="has no segments"):
        logic.IFSSNetSegmentationLogic().prepare(volumeNode, segNode, [], method=_nearest_seed_method)


def test_a_segmentation_removed_during_the_run_is_named(scene_nodes):
    """The panel looks the segmentation up by ID when the worker is done; removed meanwhile (Data module, or Close
    Scene), apply got None and failed with "'NoneType' object has no attribute 'GetSegmentation'"."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.errors import InputError
    from IFSSNetSegmentationLib import logic
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="tendon")
    L = logic.IFSSNetSegmentationLogic()
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    L.compute(job)
    slicer.mrmlScene.RemoveNode(segNode)
    with pytest.raises(InputError, match="segmentation .*removed"):
        L.apply(job, slicer.mrmlScene.GetNodeByID(job.segmentationNodeId))
    with pytest.raises(InputError, match="segmentation .*removed"):
        L.apply(job, segNode)


def test_a_segment_edited_during_the_run_is_not_written_over(scene_nodes):
    """Slicer stays usable while the worker computes: a slice painted (or erased) in a propagated segment meanwhile
    was lost at apply, which wrote the result computed from the paint read before the run, and tagged it, so not
    even the next run saw the edit. apply now refuses, changing nothing, and names the segment."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.errors import InputError
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="Achilles tendon")
    b, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 12, 15), name="vessel")
    L = logic.IFSSNetSegmentationLogic()
    job = L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)
    L.compute(job)
    edited = arrays.segmentToArray(segNode, b, g)
    edited[8] = truth[8]                                   # the clinician paints slice 8 of 'vessel' meanwhile
    arrays.writeSegment(segNode, b, edited, g)
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="vessel.*edited during the run") as err:
        L.apply(job, segNode)
    assert "Achilles" not in str(err.value)
    _assert_same(before, _state(segNode, volumeNode))
    job = L.prepare(volumeNode, segNode, [a, b], method=_nearest_seed_method)   # propagating again uses the edit
    assert dict((s.name, s.seedSlices) for s in job.segments)["vessel"] == (6, 8, 12, 15)
    L.compute(job)
    L.apply(job, segNode)
    np.testing.assert_array_equal(arrays.segmentToArray(segNode, b, g)[8], truth[8])


def test_a_segment_cleared_and_painted_again_starts_afresh(scene_nodes):
    """Starting a muscle over (erase it all, or Logical operators > Clear, then paint 3 slices again) kept the last
    run's tags: every slice of the old result was now 'edited' (empty) and became a 'no muscle here' seed, so
    nothing was propagated (the result was the 3 painted slices), and a new painted slice that happened to match
    the old result there was not even a seed. A segment none of whose slices keeps what it had at the last run
    is now painted afresh; its 'no muscle here' marks beyond the new paint still count."""
    slicer, volumeNode, segNode, truth, arrays, g, a, _, L = _painted_gm(scene_nodes)
    L.markNoMuscle(volumeNode, segNode, a, 1)
    L.markNoMuscle(volumeNode, segNode, a, 20)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    fresh = np.zeros_like(truth)
    fresh[[7, 9, 14]] = truth[[7, 9, 14]]
    arrays.writeSegment(segNode, a, fresh, g)     # cleared, and painted again
    assert L.paintedAxis(volumeNode, segNode, a) == 0
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].seedSlices == (1, 7, 9, 14, 20)
    result = L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    for k in (7, 9, 14):
        np.testing.assert_array_equal(out[k], truth[k])
    assert out[7:15].any(axis=(1, 2)).all() and result["segments"][a]["seed_slices"] == [1, 7, 9, 14, 20]


def test_marks_survive_repainting_every_painted_slice_before_a_run(scene_nodes):
    """Guard for the fix above: paint 3 slices, mark both ends, then redo each painted slice before the first
    run: the slices are new paint and the ends stay marked."""
    slicer, volumeNode, segNode, truth, arrays, g, a, painted, L = _painted_gm(scene_nodes)
    L.markNoMuscle(volumeNode, segNode, a, 2)
    L.markNoMuscle(volumeNode, segNode, a, 19)
    redone = painted.copy()
    redone[[5, 11, 16], 0, 0] = 1
    arrays.writeSegment(segNode, a, redone, g)
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].seedSlices == (2, 5, 11, 16, 19)


def test_a_correction_across_every_slice_from_another_view_is_not_a_fresh_start(scene_nodes):
    """Guard for the fix above: a stroke in another view changes every slice of the result but leaves them full;
    the tags stand (every changed slice is a seed), as before."""
    slicer, volumeNode, segNode, truth, arrays, g, a, _, L = _painted_gm(scene_nodes)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    present = np.flatnonzero(out.any(axis=(1, 2)))
    out[:, 0, 0] = 1                                   # a line across every k slice, painted in a j view
    arrays.writeSegment(segNode, a, out, g)
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].axis == 0 and set(present) <= set(job.segments[0].seedSlices)
