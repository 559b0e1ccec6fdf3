"""Review 40: the Slicer Logic classes on segmentations that are not the plain case (real MRML, slicer-core).

- a segmentation whose source (master) representation is a closed surface (a model imported as a segmentation);
- a segmentation stored on its own grid, not the volume's (oversampled, or made on another volume);
- ``ifssnet.io`` on .seg.nrrd files as other writers leave them;
- running out of memory in the main-thread steps (reading MRML, writing results);
- a volume under a transform, and the slice views (world RAS);
- a labelmap volume given to the Training Logic in place of a segmentation;
- a seed or result .seg.nrrd written by ``ifssnet`` (``seeds``, ``propagate``), opened in Slicer and painted on;
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


def _segmentation_on_own_grid(slicer, segNode, scale, shape, offset=(0.0, 0.0, 0.0)):
    """Give ``segNode`` its own grid: the volume's directions, ``scale`` times its spacing, shifted by ``offset``
    voxels of that grid; returns that grid's geometry."""
    from slicer_nodes import SPACING, _direction, _ijk_to_ras

    m = _ijk_to_ras()
    m[:3, :3] = _direction() @ np.diag([s * scale for s in SPACING])
    m[:3, 3] += m[:3, :3] @ np.asarray(offset)
    gridNode = slicer.util.addVolumeFromArray(np.zeros(shape, np.uint8), m, "grid")
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(gridNode)
    return _arrays_module().referenceGeometry(gridNode, segNode)


def _stored(slicer, segNode, segmentId):
    """(spacing, voxel count) of the labelmap the segmentation stores for a segment, on its own grid."""
    labelmap = slicer.vtkOrientedImageData()
    segNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    from vtk.util import numpy_support

    return labelmap.GetSpacing(), int((numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()) > 0).sum())


def test_a_segmentation_on_its_own_grid_keeps_it_and_its_other_segments(scene_nodes):
    """Propagating one segment of an oversampled segmentation left the other segments of its layer resampled
    onto the volume's coarser grid (840 voxels became 102) and the segmentation's grid changed; now the result
    is resampled onto the segmentation's grid, as an effect's edit is, and the other segments stay as they were."""
    from slicer_nodes import _ellipsoid

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic
    arrays = _arrays_module()

    shape = (44, 52, 60)
    grid = _segmentation_on_own_grid(slicer, segNode, 0.5, shape, (0.3, 0.2, 0.1))
    fine = _ellipsoid(shape)
    painted = np.zeros_like(fine)
    painted[[10, 11, 22, 23, 32, 33]] = fine[[10, 11, 22, 23, 32, 33]]
    other = np.zeros_like(fine)
    other[5:40, 2:6, 2:8] = 1
    segmentation = segNode.GetSegmentation()
    sid = segmentation.AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, sid, painted, grid)
    oid = segmentation.AddEmptySegment("", "Other")
    arrays.writeSegment(segNode, oid, other, grid)
    spacing = _stored(slicer, segNode, oid)[0]

    result = IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_method())
    np.testing.assert_array_equal(arrays.segmentToArray(segNode, oid, grid), other)
    assert _stored(slicer, segNode, oid) == (spacing, int(other.sum()))
    assert _stored(slicer, segNode, sid)[0] == spacing
    assert result["segments"][sid]["voxel_count"] > 4 * painted.sum()  # Segment Statistics' count, on that grid


def test_a_second_run_on_a_coarser_segmentation_grid_takes_the_same_seeds(scene_nodes):
    """The checksums of a run are of what is stored: on a segmentation grid coarser than the volume's, the
    result does not come back voxel for voxel, and the next run took every slice that differed for a slice the
    user had corrected."""
    from slicer_nodes import _ellipsoid

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    shape = (11, 13, 15)
    grid = _segmentation_on_own_grid(slicer, segNode, 2.0, shape)
    coarse = _ellipsoid(shape)
    painted = np.zeros_like(coarse)
    painted[[3, 5, 7]] = coarse[[3, 5, 7]]
    sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
    _arrays_module().writeSegment(segNode, sid, painted, grid)
    L = IFSSNetSegmentationLogic()
    first = L.propagate(volumeNode, segNode, [sid], method=_method())["segments"][sid]
    second = L.propagate(volumeNode, segNode, [sid], method=_method())["segments"][sid]
    assert second["seed_slices"] == first["seed_slices"]
    assert second["voxel_count"] == first["voxel_count"]


def test_read_header_takes_a_4d_seg_nrrd_without_kinds_as_layers(tmp_path):
    """A .seg.nrrd with two layers and no ``kinds`` field (slicerio and ``read_segmentation`` read it) was refused
    by ``read_header`` as a 4-D volume, so training refused a file it can read."""
    import nrrd

    from ifssnet import io

    a = np.zeros((6, 7, 8), np.uint8)
    a[1:4, 2:5, 2:6] = 1
    b = np.zeros_like(a)
    b[2:5, 3:6, 3:7] = 1                       # overlaps a: a second layer
    geometry = io.Geometry((0.5, 0.6, 0.7), (1.0, 2.0, 3.0))
    path = tmp_path / "layers.seg.nrrd"
    io.write_segmentation(io.segmentation_from_masks({"A": a, "B": b}, geometry), path)
    data, header = nrrd.read(str(path))
    assert data.ndim == 4
    header.pop("kinds")
    bare = tmp_path / "nokinds.seg.nrrd"
    nrrd.write(str(bare), data, header)

    read = io.read_segmentation(bare)
    np.testing.assert_array_equal(read.mask("B"), b)
    found = io.read_header(bare)
    assert (found.shape_kji, found.layers, found.segments) == ((6, 7, 8), 2, 2)
    assert found.spacing_kji == pytest.approx((0.7, 0.6, 0.5))


def test_running_out_of_memory_reading_or_writing_says_what_to_do_and_changes_nothing(scene_nodes, monkeypatch):
    """A volume too large to copy, or to write back, raised a bare MemoryError (an empty message: the panel showed
    'Propagation failed: .'); now a ResourceError that says what to do, with the segmentation as it was."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    from ifssnet.errors import ResourceError

    arrays = _arrays_module()
    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    before = _state(segNode, volumeNode)

    def noMemory(*args, **kwargs):
        raise MemoryError()

    L = IFSSNetSegmentationLogic()
    with monkeypatch.context() as m:
        m.setattr(arrays, "volumeToArray", noMemory)
        with pytest.raises(ResourceError, match="out of memory") as err:
            L.propagate(volumeNode, segNode, [sid], method=_method())
        assert "crop the volume" in err.value.todo
        with pytest.raises(ResourceError, match="out of memory"):
            IFSSNetComparisonLogic().prepare(volumeNode, None, segNode, ["fbs"], "3-seeds")
    _assert_same(before, _state(segNode, volumeNode))
    with monkeypatch.context() as m:
        m.setattr(arrays, "writeSegment", noMemory)
        with pytest.raises(ResourceError, match="out of memory"):
            L.propagate(volumeNode, segNode, [sid], method=_method())
        with pytest.raises(ResourceError, match="out of memory"):
            L.markNoMuscle(volumeNode, segNode, sid, 19)
    _assert_same(before, _state(segNode, volumeNode))


def test_slice_positions_of_a_transformed_volume_are_in_world_coordinates(scene_nodes):
    """sliceCenterRAS (where the panel's slice list jumps to) and sliceIndexAt (which slice 'No muscle here'
    marks) used the volume's IJK-to-RAS without its parent transform, while slice views show world RAS: for a
    volume under a transform, the jump went elsewhere and the view showing slice 8 was 'not across the axis'."""
    import vtk

    from slicer_nodes import _ijk_to_ras

    slicer, volumeNode, segNode, truth = scene_nodes
    arrays = _arrays_module()
    transform = vtk.vtkTransform()
    transform.RotateZ(30)
    transform.Translate(7.3, 2.0, -4.1)
    transformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Moved")
    transformNode.SetMatrixTransformToParent(transform.GetMatrix())
    volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())

    toWorld = np.array([[transform.GetMatrix().GetElement(r, c) for c in range(4)] for r in range(4)])
    ijkToWorld = toWorld @ _ijk_to_ras()
    centre = np.array([(SHAPE[2] - 1) / 2, (SHAPE[1] - 1) / 2, 8, 1.0])
    np.testing.assert_allclose(arrays.sliceCenterRAS(volumeNode, 0, 8), (ijkToWorld @ centre)[:3], atol=1e-6)

    normal = ijkToWorld[:3, 2] / np.linalg.norm(ijkToWorld[:3, 2])     # a view across k, at slice 8
    x = ijkToWorld[:3, 0] / np.linalg.norm(ijkToWorld[:3, 0])
    sliceToRas = np.eye(4)
    sliceToRas[:3, 0], sliceToRas[:3, 1], sliceToRas[:3, 2] = x, np.cross(normal, x), normal
    sliceToRas[:3, 3] = (ijkToWorld @ centre)[:3]
    assert arrays.sliceIndexAt(volumeNode, sliceToRas, 0) == 8


@pytest.mark.parametrize("tag", ["5:5,11,16", "-1:5,11,16", "0:-2,5,11"])
def test_a_seed_tag_with_an_impossible_axis_or_slice_is_refused_with_what_to_do(scene_nodes, tag):
    """A tag naming axis 5 (hand-edited, another tool) crashed Propagate with IndexError, and axis -1 with a
    message about the spacing; now the tag is refused as not 'axis:slice,...', with what to do."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic

    from ifssnet.errors import InputError

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    segNode.GetSegmentation().GetSegment(sid).SetTag(logic.ANNOTATED_TAG, tag)
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="remove the tag"):
        logic.IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_method())
    _assert_same(before, _state(segNode, volumeNode))


def test_a_segment_removed_during_the_run_is_named_and_nothing_is_written(scene_nodes):
    """A segment deleted while the worker computed made apply say 'Slicer could not write the result ... check
    that the segmentation is editable (not locked)'; now it says the segment was removed, and writes nothing."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    from ifssnet.errors import InputError

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    other, _ = _paint(slicer, volumeNode, segNode, np.roll(truth, 2, axis=1), 0, (5, 11, 16), "SOL")
    L = IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [sid, other], method=_method()))
    segNode.GetSegmentation().RemoveSegment(other)
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="'SOL' was removed during the run"):
        L.apply(job, segNode)
    _assert_same(before, _state(segNode, volumeNode))


def test_training_on_a_labelmap_instead_of_a_segmentation_says_how_to_convert_it(scene_nodes, tmp_path):
    """A labelmap volume paired with the volume crashed train / exportPairs / validator with AttributeError
    ('... has no attribute CreateBinaryLabelmapRepresentation'); now an InputError that says how to convert it."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from slicer_nodes import _ijk_to_ras

    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import InputError

    labels = slicer.util.addVolumeFromArray(truth, _ijk_to_ras(), "labels", nodeClassName="vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="'labels' is a labelmap volume.*Convert labelmap to segmentation"):
        IFSSNetTrainingLogic().train([(volumeNode, labels)], "full", 1, stepsPerEpoch=1, size=32,
                                     outputPath=str(tmp_path / "m.pt"))
    with pytest.raises(InputError, match="labelmap volume"):
        IFSSNetTrainingLogic.exportPairs([(volumeNode, labels)], str(tmp_path / "export"))
    with pytest.raises(InputError, match="labelmap volume"):
        IFSSNetTrainingLogic.validator([(volumeNode, labels)])
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("axis", [0, 2])
def test_a_slice_painted_on_an_ifssnet_seed_file_in_slicer_joins_the_seeds(scene_nodes, tmp_path, axis):
    """A .seg.nrrd from ``ifssnet seeds`` or ``ifssnet propagate`` has the annotated-slices tag but had no slice
    checksums, so a slice the user then painted (or corrected) in Slicer was not a seed: Propagate ignored it and
    wrote over it. ``ifssnet.io`` now writes the checksums with the annotated slices, as the Logic does."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from slicer_nodes import _ijk_to_ras

    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    from ifssnet import io
    from ifssnet.seeds import cut_seeds

    arrays = _arrays_module()
    seeded = (5, 11, 16) if axis == 0 else (8, 14, 21)
    moved = np.moveaxis(truth, axis, 0)
    seeds = cut_seeds(moved, seeded)
    geometry = io.Geometry.from_ijk_to_lps(np.diag([-1.0, -1.0, 1.0, 1.0]) @ _ijk_to_ras())
    path = tmp_path / "seeds.seg.nrrd"
    segment = io.Segment("GM", np.moveaxis(seeds.mask, 0, axis), (1.0, 0.0, 0.0), io.AnnotatedSlices(axis, seeded))
    io.write_segmentation(io.Segmentation([segment], geometry), path)

    loaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    loaded.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(loaded)
    sid = loaded.GetSegmentation().GetSegmentIdBySegmentName("GM")
    grid = arrays.referenceGeometry(volumeNode, loaded)
    painted = arrays.segmentToArray(loaded, sid, grid)
    extra = seeded[0] + 3
    np.moveaxis(painted, axis, 0)[extra] = moved[extra]               # the user paints one more slice in Slicer
    arrays.writeSegment(loaded, sid, painted, grid)

    result = IFSSNetSegmentationLogic().propagate(volumeNode, loaded, [sid], method=_method())
    assert result["segments"][sid]["seed_slices"] == sorted(seeded + (extra,))
    out = arrays.segmentToArray(loaded, sid, grid)
    np.testing.assert_array_equal(np.take(out, extra, axis), np.take(painted, extra, axis))


def test_a_volume_resized_during_the_run_is_refused_and_nothing_is_written(scene_nodes):
    """A volume whose voxels were replaced by a smaller array while the worker computed (Crop Volume or Resample in
    place) got the old-sized result poured into the new grid row by row: a garbled segment, written silently."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    from ifssnet.errors import IFSSNetError, InputError

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    L = IFSSNetSegmentationLogic()
    job = L.compute(L.prepare(volumeNode, segNode, [sid], method=_method()))
    voxels = slicer.util.arrayFromVolume(volumeNode)
    slicer.util.updateVolumeFromArray(volumeNode, voxels[:, :20, :25].copy())
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="changed size during the run"):
        L.apply(job, segNode)
    _assert_same(before, _state(segNode, volumeNode))
    with pytest.raises(IFSSNetError, match="does not fit the grid"):   # the write itself refuses a misfit
        _arrays_module().writeSegment(segNode, sid, job.segments[0].result,
                                      _arrays_module().referenceGeometry(volumeNode, segNode))


def test_a_labelmap_given_as_the_segmentation_to_propagate_or_compare_says_how_to_convert_it(scene_nodes):
    """The Segmentation and Comparison Logic APIs crashed with AttributeError (no GetSegmentation) on a labelmap
    volume given where a segmentation node is needed."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from slicer_nodes import _ijk_to_ras

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    from ifssnet.errors import InputError

    labels = slicer.util.addVolumeFromArray(truth, _ijk_to_ras(), "labels", nodeClassName="vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="'labels' is a labelmap volume.*Convert labelmap to segmentation"):
        IFSSNetSegmentationLogic().propagate(volumeNode, labels, method=_method())
    with pytest.raises(InputError, match="labelmap volume"):
        IFSSNetSegmentationLogic().markNoMuscle(volumeNode, labels, "1", 3, 0)
    with pytest.raises(InputError, match="The reference 'labels' is a labelmap volume"):
        IFSSNetComparisonLogic().prepare(volumeNode, None, labels, ["fbs"], "3-seeds")


def test_training_to_an_output_path_that_cannot_be_made_is_refused_before_reading_the_cases(scene_nodes, tmp_path,
                                                                                           monkeypatch):
    """An output folder that cannot be created (a file in its path) raised a bare NotADirectoryError, and only
    after every case had been read; now a ResourceError before anything is read."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetTrainingLib import logic as trainingLogic

    from ifssnet.errors import InputError, ResourceError

    _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 16))
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    read = []
    monkeypatch.setattr(trainingLogic, "segmentationFromNodes",
                        lambda *a, **k: read.append(1) or pytest.fail("a case was read"))
    with pytest.raises(ResourceError, match="Could not create the folder"):
        trainingLogic.IFSSNetTrainingLogic().train([(volumeNode, segNode)], "fewshot", 1, stepsPerEpoch=1, size=32,
                                                   outputPath=str(blocker / "models" / "m.pt"))
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        trainingLogic.IFSSNetTrainingLogic().train([(volumeNode, segNode)], "fewshot", 1, stepsPerEpoch=1, size=32,
                                                   outputPath=str(tmp_path / "folder.pt"))
    assert not read


@pytest.mark.parametrize("scale, shift", [(0.5, 10), (1.0, 10), (1.0, 0)])
def test_paint_outside_the_volume_on_a_larger_segmentation_grid_is_kept(scene_nodes, scale, shift):
    """A segmentation on a grid larger than the volume (made on a larger volume) lost the paint outside the
    volume's footprint when one of its segments was propagated: Slicer's MODE_REPLACE replaces the whole segment,
    not only the extent written (also on the volume's own grid with a larger extent: ``shift`` 0)."""
    from slicer_nodes import SPACING, _direction, _ijk_to_ras

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic
    arrays = _arrays_module()

    m = _ijk_to_ras()
    m[:3, :3] = _direction() @ np.diag([s * scale for s in SPACING])
    m[:3, 3] -= m[:3, :3] @ np.array([shift] * 3, float)
    shape = tuple(int(n / scale) + shift + 10 for n in SHAPE)
    big = slicer.util.addVolumeFromArray(np.zeros(shape, np.uint8), m, "big")
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(big)
    grid = arrays.referenceGeometry(big, segNode)
    k, j, i = np.indices(shape)
    centre = [(n - 1) / 2 for n in SHAPE]
    radius = [n * 0.36 for n in SHAPE]
    inVolume = [(k - shift) * scale, (j - shift) * scale, (i - shift) * scale]           # volume voxel coordinates
    ellipsoid = sum(((v - c) / r) ** 2 for v, c, r in zip(inVolume, centre, radius)) <= 1
    painted = np.zeros(shape, np.uint8)
    for s in (5, 11, 16):
        painted[shift + int(s / scale)] = ellipsoid[shift + int(s / scale)]
    far = (slice(shape[0] - 4, shape[0] - 1), slice(shape[1] - 12, shape[1] - 2), slice(shape[2] - 10, shape[2] - 2))
    painted[far] = 1                                            # beyond the volume's footprint
    sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
    arrays.writeSegment(segNode, sid, painted, grid)

    result = IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_method())
    assert result["segments"][sid]["seed_slices"] == [5, 11, 16]
    stored = arrays.segmentToArray(segNode, sid, grid)
    assert stored[far].all()
    assert stored.sum() > painted.sum() + 2 * painted[far].size        # and the propagation was written
