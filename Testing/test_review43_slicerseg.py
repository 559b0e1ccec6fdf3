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

from functools import reduce

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _geometry, _ijk_to_ras, _nearest_seed_method, _paint,  # noqa: F401
                          scene_nodes)
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
        out[sid] = (s.GetName(), s.GetLabelValue(), tuple(round(c, 6) for c in s.GetColor()), s.GetTerminology(),
                    tags)
    return out


def _voxels(segNode, volumeNode):
    """Per segment ID: its voxels on the volume's grid, (k, j, i)."""
    arrays = _arrays_module()
    g = _geometry(volumeNode, segNode)
    return {sid: arrays.segmentToArray(segNode, sid, g).copy() for sid in segNode.GetSegmentation().GetSegmentIDs()}


def _block(truth):
    """A box inside the scene's ellipsoid, on no slice that the tests paint: where a propagated GM overlaps it."""
    block = np.zeros_like(truth)
    block[8:14, 10:16, 12:18] = 1
    block[11] = 0
    return block


def _segment_statistics(slicer, segNode, segmentId):
    """(voxel count, volume mm3) as Segment Statistics' Labelmap plugin computes them (its VTK pipeline:
    LabelmapSegmentStatisticsPlugin.computeStatistics), from the segment's labelmap on the segmentation's grid."""
    import vtk

    labelmap = slicer.vtkOrientedImageData()
    segNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputData(labelmap)
    thresh.ThresholdByLower(0)
    thresh.SetInValue(0)
    thresh.SetOutValue(1)
    thresh.SetOutputScalarType(vtk.VTK_UNSIGNED_CHAR)
    thresh.Update()
    stencil = vtk.vtkImageToImageStencil()
    stencil.SetInputData(thresh.GetOutput())
    stencil.ThresholdByUpper(1)
    stencil.Update()
    stat = vtk.vtkImageAccumulate()
    stat.SetInputData(thresh.GetOutput())
    stat.SetStencilData(stencil.GetOutput())
    stat.Update()
    return stat.GetVoxelCount(), stat.GetVoxelCount() * reduce(lambda x, y: x * y, labelmap.GetSpacing())


def _to_closed_surface_source(segNode, keepReferenceGeometry=True):
    """A segmentation as a model or STL imported leaves it: a closed-surface source, no binary labelmap, and (with
    ``keepReferenceGeometry`` False) no reference image geometry."""
    import slicer

    segmentation = segNode.GetSegmentation()
    segNode.CreateClosedSurfaceRepresentation()
    segmentation.SetSourceRepresentationName(SURFACE)
    segmentation.RemoveRepresentation(LABELMAP)
    if not keepReferenceGeometry:
        segmentation.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), "")


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
    assert _segment_statistics(slicer, segNode, a) == (core["voxel_count"], core["volume_mm3"])
    assert (summary["voxel_count"], summary["volume_mm3"]) == (core["voxel_count"], core["volume_mm3"])
    assert arrays.referenceGeometry(volumeNode, segNode) is not None
    assert _logic().sameGrid(_logic().referenceImageGrid(segNode), _geometry(volumeNode, segNode))
