"""Shared pieces of the Slicer Logic tests (``test_slicer_*.py``): an oblique test volume with an
ellipsoid "muscle" in a real MRML scene (the ``scene_nodes`` fixture), painting and reading segments,
and a small propagation method on the registry contract.

Arrays are (k, j, i); ``SPACING`` is (sx, sy, sz) in mm, as Slicer gives it. A test module imports the
fixture by name, next to ``slicer_fixture``'s (``from slicer_nodes import scene_nodes``).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (HERE, ROOT, ROOT / "IFSSNetSegmentation", ROOT / "IFSSNetTraining", ROOT / "IFSSNetComparison"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from ifssnet.progress import check_cancel, report  # noqa: E402

SHAPE = (22, 26, 30)  # (k, j, i)
SPACING = (0.7, 0.9, 1.6)  # (sx, sy, sz) mm
ORIGIN = (-12.5, 30.25, 7.0)


def _direction():
    """An oblique rotation (about 20 degrees around a tilted axis)."""
    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    angle = np.deg2rad(20)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _ijk_to_ras():
    m = np.eye(4)
    m[:3, :3] = _direction() @ np.diag(SPACING)
    m[:3, 3] = ORIGIN
    return m


def _ellipsoid(shape=SHAPE):
    k, j, i = np.indices(shape)
    c = [(s - 1) / 2 for s in shape]
    r = [s * 0.36 for s in shape]
    return ((((k - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((i - c[2]) / r[2]) ** 2) <= 1).astype(np.uint8)


def _nearest_seed_method(volume, seeds, spacing_kji, *, progress=None, cancel=None):
    """Registry-contract test method: every slice between the seeds copies the nearest seed slice."""
    out = np.zeros(volume.shape, np.uint8)
    slices = sorted(seeds.slices)
    lo, hi = slices[0], slices[-1]
    for n, s in enumerate(range(lo, hi + 1)):
        check_cancel(cancel)
        nearest = min(slices, key=lambda t: abs(t - s))
        out[s] = seeds.mask[nearest]
        report(progress, "propagating", n + 1, hi - lo + 1)
    return out


def _method():
    try:
        from ifssnet.baselines import registry

        if "fbs" in registry.available():
            fbs = registry.get("fbs")
            probe = np.zeros((6, 8, 8), np.uint8)
            try:
                from ifssnet.seeds import SeedSet

                mask = probe.copy()
                mask[[1, 2, 4], 2:6, 2:6] = 1
                fbs(probe, SeedSet(mask=mask, slices=(1, 2, 4)), (1.0, 1.0, 1.0))
                return fbs
            except Exception:  # FBS present but its ITK filter missing here: fall back
                pass
    except ImportError:
        pass
    return _nearest_seed_method


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture()
def scene_nodes(slicer_scene):
    import slicer

    volume = (np.random.default_rng(0).random(SHAPE) * 40).astype(np.int16)
    truth = _ellipsoid()
    volume[truth > 0] += 60
    volumeNode = slicer.util.addVolumeFromArray(volume, _ijk_to_ras(), "US")
    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    segNode.CreateDefaultDisplayNodes()
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    return slicer, volumeNode, segNode, truth


def _logic_module():
    from IFSSNetSegmentationLib import logic

    return logic


def _arrays_module():
    from IFSSNetSegmentationLib import mrml_arrays

    return mrml_arrays


def _paint(slicer, volumeNode, segNode, truth, axis, slices, name="GM"):
    arrays = _arrays_module()
    sid = segNode.GetSegmentation().AddEmptySegment("", name)
    painted = np.zeros_like(truth)
    index = [slice(None)] * 3
    index[axis] = list(slices)
    painted[tuple(index)] = truth[tuple(index)]
    geometry = arrays.referenceGeometry(volumeNode, segNode)
    arrays.writeSegment(segNode, sid, painted, geometry)
    return sid, painted


def _geometry(volumeNode, segNode):
    """The volume's grid in the segmentation's frame, as the Logic reads and writes segments."""
    return _arrays_module().referenceGeometry(volumeNode, segNode)


def _painted_gm(scene_nodes):
    """The workflow tests' start: GM painted across k on slices 5, 11 and 16 of the scene's ellipsoid, and a Logic.
    Returns (slicer, volumeNode, segNode, truth, mrml_arrays, geometry, GM's segment ID, its painted mask, Logic)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, painted = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16), name="GM")
    return (slicer, volumeNode, segNode, truth, _arrays_module(), _geometry(volumeNode, segNode), a, painted,
            _logic_module().IFSSNetSegmentationLogic())


def _propagated_gm(scene_nodes, slices=(6, 10, 15)):
    """GM painted across k on ``slices`` of the scene's ellipsoid and propagated by ``_nearest_seed_method``, as the
    tests of corrections and of grids start. Returns (GM's segment ID, the Logic, mrml_arrays, the volume's geometry,
    GM's voxels there as propagated)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, slices, name="GM")
    L = _logic_module().IFSSNetSegmentationLogic()
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    arrays = _arrays_module()
    g = arrays.referenceGeometry(volumeNode, segNode)
    return a, L, arrays, g, arrays.segmentToArray(segNode, a, g)


def _save_segmentation(slicer, segNode, path, crop=False):
    """Save ``segNode`` to ``path`` as Slicer's File > Save does (a segmentation storage node), tags and all;
    ``crop``: with 'crop to minimum extent' (Segmentation_ReferenceImageExtentOffset). Returns ``path``."""
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetCropToMinimumExtent(crop)
    storage.SetFileName(str(path))
    segNode.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.WriteData(segNode)
    return path


def _state(segNode, volumeNode):
    """Everything that must survive a cancelled or failed run: every segment's voxels, names, tags."""
    logic = _logic_module()
    arrays = _arrays_module()
    geometry = arrays.referenceGeometry(volumeNode, segNode)
    seg = segNode.GetSegmentation()
    out = {}
    for sid in seg.GetSegmentIDs():
        s = seg.GetSegment(sid)
        tags = {t: logic.segmentTag(s, t) for t in (logic.ANNOTATED_TAG, logic.RESULT_CRC_TAG)}
        out[sid] = (s.GetName(), arrays.segmentToArray(segNode, sid, geometry).copy(), tags)
    return out


def _assert_same(before, after):
    """Names, voxels and the seed tags (which decide the next run's seeds) as they were."""
    assert before.keys() == after.keys()
    for sid in before:
        assert before[sid][0] == after[sid][0]
        np.testing.assert_array_equal(before[sid][1], after[sid][1])
        assert before[sid][2] == after[sid][2]


def slicer_test(test):
    """Mark ``test`` as a Slicer test: skipped where slicer-core is not installed, SWIG's exit warning ignored."""
    from slicer_fixture import available

    marks = [pytest.mark.slicer,
             pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
             pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]
    for mark in marks:
        test = mark(test)
    return test


@pytest.fixture()
def nearest():
    """``_nearest_seed_method`` registered as the method "test-nearest" for the test (unregistered after)."""
    from ifssnet.baselines import registry

    registry.register("test-nearest", _nearest_seed_method, "Nearest seed slice")
    yield "test-nearest"
    registry.unregister("test-nearest")


def _reference_segmentation(slicer, volumeNode, masks, name):
    arrays = _arrays_module()

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    geometry = arrays.referenceGeometry(volumeNode, node)
    for segName, mask in masks.items():
        sid = node.GetSegmentation().AddEmptySegment("", segName)
        arrays.writeSegment(node, sid, mask, geometry)
    return node


def segment_statistics(slicer, segNode, segmentId):
    """(voxel count, volume mm3) of a segment as Segment Statistics' Labelmap plugin computes them (its VTK pipeline:
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
    return stat.GetVoxelCount(), stat.GetVoxelCount() * math.prod(labelmap.GetSpacing())


@pytest.fixture
def nodes(request):
    """``scene_nodes`` for a test module that also runs without slicer-core: skipped there, not an error."""
    from slicer_fixture import available

    if not available():
        pytest.skip("slicer-core is not installed (pip install slicer-core)")
    return request.getfixturevalue("scene_nodes")


def slicer_reads(slicer, path):
    """{name: (ID, colour, terminology, label value, voxel count)} of each segment of ``path`` as Slicer's storage node
    reads it (the voxel count of the segment's own binary labelmap, which Slicer gives as 0/1)."""
    from vtk.util import numpy_support

    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    segNode.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(segNode)
    out = {}
    segmentation = segNode.GetSegmentation()
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        segment = segmentation.GetSegment(sid)
        image = slicer.vtkOrientedImageData()
        segNode.GetBinaryLabelmapRepresentation(sid, image)
        voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        out[segment.GetName()] = (sid, tuple(round(c, 4) for c in segment.GetColor()),
                                  segment.GetTerminology() or None,
                                  segment.GetLabelValue(), int(np.count_nonzero(voxels)))
    return out


def far_annotation(slicer, volumeNode, name):
    """A copy of ``volumeNode`` 500 mm away ("other sweep") and an empty segmentation ``name`` on its grid, to paint
    on: a segmentation made on another volume, whose paint lies outside ``volumeNode``. Returns (volume, segmentation)."""
    away = _ijk_to_ras()
    away[:3, 3] += 500.0
    other = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), away, "other sweep")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    seg.SetReferenceImageGeometryParameterFromVolumeNode(other)
    return other, seg
