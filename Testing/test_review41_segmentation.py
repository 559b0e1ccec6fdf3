"""Review 41 (Segmentation Logic): what a slice edited after a run means to the next Propagate, on Slicer's real MRML
(slicer-core). A painted slice erased after a run; a muscle cleared and painted again across another axis; a second
propagation started while one runs."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _assert_same, _geometry, _nearest_seed_method, _paint,  # noqa: F401
                          _painted_gm, _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

from ifssnet.errors import InputError  # noqa: E402


def _present(mask, axis):
    """The slices across ``axis`` where ``mask`` holds voxels."""
    return [int(s) for s in np.flatnonzero(np.moveaxis(mask, axis, 0).any(axis=(1, 2)))]


def _edit(segNode, sid, geometry, change):
    """Read the segment, let ``change`` edit the array (as the user's Erase or Paint would), write it back."""
    arrays = _arrays_module()
    mask = arrays.segmentToArray(segNode, sid, geometry)
    change(mask)
    arrays.writeSegment(segNode, sid, mask, geometry)
    return mask


def test_erasing_a_painted_slice_after_a_run_takes_the_paint_back(scene_nodes):
    """A seed slice erased after a run was kept as an annotated empty slice, i.e. a 'no muscle here' mark: the next
    run stopped at it from both sides and cut the muscle in two (slices 10-13 empty between seeds 8 and 16). Erasing
    a slice you painted now takes the paint back, as Fill between slices treats an empty slice: the slice is
    propagated like any unpainted one, and the status says how to mark it 'no muscle here' instead."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 8, 11, 14, 16), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    _edit(segNode, a, g, lambda m: m.__setitem__(11, 0))          # the seed on slice 11 was wrong: erased
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].seedSlices == (5, 8, 14, 16)
    result = L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    assert _present(out, 0) == list(range(5, 17))                 # one muscle again, slice 11 propagated
    assert result["segments"][a]["seed_slices"] == [5, 8, 14, 16]
    text = L.notesText(result)
    assert "slice 11" in text and "No muscle here" in text
    # To say the muscle is not on a painted slice: erase it, then No muscle here (the explicit mark)
    _edit(segNode, a, g, lambda m: m.__setitem__(8, 0))
    assert L.markNoMuscle(volumeNode, segNode, a, 8) == (0, (5, 8, 14, 16), 8)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    assert not out[8].any() and out[6].any() and out[13].any()


def test_erasing_a_propagated_slice_still_marks_no_muscle_and_a_seed_erased_before_a_run_is_dropped(scene_nodes):
    """Guards for the fix above. A slice the network filled and the user erased says 'the muscle is not here'
    (a run that went on past the muscle's end, trimmed), as before. A painted slice erased after the ends were
    marked (the marks record checksums too), before any run, is dropped like one erased after a run."""
    slicer, volumeNode, segNode, truth, arrays, g, a, _, L = _painted_gm(scene_nodes)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    _edit(segNode, a, g, lambda m: m.__setitem__(15, 0))          # a propagated slice, erased
    result = L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert result["segments"][a]["seed_slices"] == [5, 11, 15, 16]
    assert not arrays.segmentToArray(segNode, a, g)[15].any() and L.notesText(result) == ""

    b, _ = _paint(slicer, volumeNode, segNode, truth, 0, (9, 11, 13, 15), name="SOL")
    L.markNoMuscle(volumeNode, segNode, b, 2)
    _edit(segNode, b, g, lambda m: m.__setitem__(13, 0))
    assert L.prepare(volumeNode, segNode, [b], method=_nearest_seed_method).segments[0].seedSlices == (2, 9, 11, 15)


@pytest.mark.parametrize("slices", [(9, 14, 20), (13, 14, 15)])
def test_a_muscle_cleared_and_painted_again_across_another_axis_gets_fresh_seeds(scene_nodes, slices):
    """After a run across k, the segment cleared and 3 slices painted across i: every k slice of the old result had
    changed and most still held paint (the i slices cross them), so each was taken for a correction across k; the
    run propagated nothing (every slice a seed), and the tag stayed on k with 17 seeds, for every later run too.
    The paint is now taken as fresh seeds across i. The old 'no muscle here' mark (across k) cannot apply across i:
    the status says so and what to do. The painted slices are kept exactly, and propagated between."""
    slicer, volumeNode, segNode, truth, arrays, g, a, _, L = _painted_gm(scene_nodes)
    L.markNoMuscle(volumeNode, segNode, a, 1)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    fresh = np.zeros_like(truth)
    fresh[:, :, list(slices)] = truth[:, :, list(slices)]
    arrays.writeSegment(segNode, a, fresh, g)                     # cleared, and painted again in another view
    assert L.paintedAxis(volumeNode, segNode, a) == 2
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert (job.segments[0].axis, job.segments[0].seedSlices) == (2, slices)
    result = L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, g)
    np.testing.assert_array_equal(out[:, :, list(slices)], fresh[:, :, list(slices)])
    assert _present(out, 2) == list(range(slices[0], slices[-1] + 1))
    segment = segNode.GetSegmentation().GetSegment(a)
    from IFSSNetSegmentationLib import logic

    assert logic.segmentTag(segment, logic.ANNOTATED_TAG) == "2:" + ",".join(map(str, slices))
    text = L.notesText(result)
    assert "across i" in text and "(slice 1)" in text and "No muscle here" in text
    # A slice painted after this run is found across i
    more = slices[-1] + 2
    _edit(segNode, a, g, lambda m: m.__setitem__((slice(None), slice(None), more), truth[:, :, more]))
    assert L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices == slices + (more,)


def test_a_correction_across_every_slice_of_a_flat_result_keeps_the_tags(scene_nodes):
    """Guard for the fix above: a flat muscle's result (thin along j, so find_axis reads the whole result as painted
    across j) with a stroke from another view across every k slice is a correction, not fresh paint across j: the
    painted-slice groups across j are as thick as the muscle, not a few slices."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    from ifssnet.seeds import find_axis
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    flat = np.zeros_like(truth)
    flat[3:19, 10:16, 4:26] = 1                                   # k 16 slices, j 6, i 22
    a = segNode.GetSegmentation().AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, a, flat, g)
    logic.tagSeeds(segNode.GetSegmentation().GetSegment(a), 0, (5, 11, 16), flat)   # as a run across k left it
    corrected = _edit(segNode, a, g, lambda m: m.__setitem__((slice(3, 19), 9, 4), 1))   # a line along k, in a j view
    assert find_axis(corrected) == 1
    L = logic.IFSSNetSegmentationLogic()
    job = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
    assert job.segments[0].axis == 0 and set(range(3, 19)) <= set(job.segments[0].seedSlices)


def test_a_second_propagation_on_another_segmentation_is_refused_while_one_runs(scene_nodes):
    """The module page and the Segment Editor effect could each run a network at once on two segmentations (two
    networks and two volumes' buffers in memory, both sized by one memory check, and two threads on the same cores).
    A second Propagate anywhere is now refused while one runs, naming the running one; it changes nothing, and runs
    once the first is done."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (4, 10, 17))
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Right leg")
    other.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    b, _ = _paint(slicer, volumeNode, other, truth, 0, (5, 11, 16))
    L, L2 = logic.IFSSNetSegmentationLogic(), logic.IFSSNetSegmentationLogic()   # the module page's and the effect's
    before = _state(other, volumeNode)
    seen = []

    def reentrant(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        with pytest.raises(InputError, match="already running on 'Seg'") as err:
            L2.propagate(volumeNode, other, [b], method=_nearest_seed_method)
        seen.append(err.value.todo)
        return _nearest_seed_method(volume, seeds, spacing_kji)

    L.propagate(volumeNode, segNode, [a], method=reentrant)
    assert seen and "wait" in seen[0].lower() and "cancel" in seen[0].lower()
    _assert_same(before, _state(other, volumeNode))
    L2.propagate(volumeNode, other, [b], method=_nearest_seed_method)    # released afterwards
