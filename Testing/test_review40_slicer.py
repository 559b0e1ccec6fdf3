"""Review 40: the Slicer Logic classes on segmentations that are not the plain case (real MRML, slicer-core).

- a segmentation whose source (master) representation is a closed surface (a model imported as a segmentation);
"""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (SHAPE, _arrays_module, _assert_same, _method, _paint, _reference_segmentation,  # noqa: F401
                          _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

from ifssnet.errors import IFSSNetError  # noqa: E402

LABELMAP, SURFACE = "Binary labelmap", "Closed surface"


def _to_closed_surface_source(segNode):
    """What a segmentation made from a model (or loaded from .vtm / .stl) looks like: a closed-surface source
    and no binary labelmap."""
    segmentation = segNode.GetSegmentation()
    segNode.CreateClosedSurfaceRepresentation()
    segmentation.SetSourceRepresentationName(SURFACE)
    segmentation.RemoveRepresentation(LABELMAP)
    assert not segmentation.ContainsRepresentation(LABELMAP)


def test_closed_surface_source_is_read_as_its_voxels(scene_nodes):
    """paintedAxis, segmentVolumes and the Comparison's reference read a closed-surface segmentation through its
    binary labelmap (converted, as Segment Statistics does), not as empty."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    sid, painted = _paint(slicer, volumeNode, segNode, truth, 1, (6, 13, 19))
    _to_closed_surface_source(segNode)
    L = IFSSNetSegmentationLogic()
    assert L.paintedAxis(volumeNode, segNode, sid) == 1
    assert L.segmentVolumes(segNode)[sid]["voxel_count"] > 0.5 * painted.sum()

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    _to_closed_surface_source(ref)
    job = IFSSNetComparisonLogic().prepare(volumeNode, None, ref, ["fbs"], "3-seeds")
    assert job["refs"]["GM"].sum() > 0.8 * truth.sum()


def test_propagating_a_closed_surface_source_keeps_the_result(scene_nodes):
    """The result goes into the segmentation's source representation: before, it went into a derived binary
    labelmap only, and the closed surface (what is saved, and what the labelmap is made again from) kept the
    three painted slices."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic
    arrays = _arrays_module()

    sid, painted = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    _to_closed_surface_source(segNode)
    result = IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_method())
    count = result["segments"][sid]["voxel_count"]
    assert count > 2 * painted.sum()
    segmentation = segNode.GetSegmentation()
    assert segmentation.GetSourceRepresentationName() == LABELMAP      # as the Segment Editor switches it
    segmentation.CreateRepresentation(SURFACE)
    out = arrays.segmentToArray(segNode, sid, arrays.referenceGeometry(volumeNode, segNode))
    assert int(out.sum()) == count


def test_a_failed_write_to_a_closed_surface_source_puts_the_source_back(scene_nodes, monkeypatch):
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic
    arrays = _arrays_module()

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    _to_closed_surface_source(segNode)
    real = arrays.writeSegment

    def failing_write(node, segmentId, mask, geometry):
        real(node, segmentId, mask, geometry)
        raise IFSSNetError("disk on fire", "")

    monkeypatch.setattr(arrays, "writeSegment", failing_write)
    with pytest.raises(IFSSNetError):
        IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_method())
    assert segNode.GetSegmentation().GetSourceRepresentationName() == SURFACE
