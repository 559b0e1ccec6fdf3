"""Review 43 (files and geometry end to end): ``ifssnet propagate | seeds | evaluate`` on the files researchers have:
volumes as .nrrd, .nii.gz, .mha and .nhdr with oblique, flipped and anisotropic grids, seed files as Slicer 5.x saves
them (slicer-core's real ``vtkMRMLSegmentationStorageNode``: cropped, several segments, terminology, IDs), and NIfTI
labelmaps. Propagations run the shipped model on small phantoms (24 x 48 x 48)."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import _save_segmentation, slicer_reads, slicer_test  # noqa: F401
from slicer_fixture import slicer_app  # noqa: E402,F401  (fixture)
from cli_output import run_cli as _cli  # noqa: E402

from ifssnet import io

SHAPE = (24, 48, 48)      # (k, j, i)
TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
               "~SCT^91727004^Muscle~^^~Anatomic codes - DICOM master list~SCT^53840002^Gastrocnemius muscle"
               "~SCT^24028007^Right")


def _rotation():
    """An oblique direction matrix (about 25 degrees around a tilted axis), with its first axis flipped."""
    axis = np.array([1.0, -2.0, 0.7]) / np.linalg.norm([1.0, -2.0, 0.7])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(25)
    return (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k) @ np.diag([-1.0, 1.0, 1.0])


#: an oblique, flipped and anisotropic grid: 0.28 x 0.28 mm in-plane, 1 mm between slices
GEOMETRY = io.Geometry((0.28, 0.28, 1.0), (12.5, -30.25, 7.0), tuple(_rotation().ravel()))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """(volume array (K, J, I), reference :class:`~ifssnet.io.Segmentation` on ``GEOMETRY``)."""
    from ifssnet.phantom import make_phantom

    ph = make_phantom(shape=SHAPE, seed=5)
    return ph.volume, io.segmentation_from_masks(dict(ph.labels), GEOMETRY)


def _slicer_seeds(slicer, volume, masks, path, slices=(5, 6, 7)):
    """Save seeds (``masks``: name -> (K, J, I), painted on ``slices`` only) as Slicer 5.x saves a segmentation of the
    volume: cropped to the minimum extent, IDs Segment_5, Segment_6 ..., red-ish colours and a terminology each, no
    IFSSNet tags (fresh paint). Returns (path, {name: (ID, colour, label value)} as saved)."""
    import slicer.util

    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ GEOMETRY.ijk_to_lps
    volumeNode = slicer.util.addVolumeFromArray(volume.astype(np.int16), ras, "US")
    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
    segNode.CreateDefaultDisplayNodes()
    segNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    keep = np.zeros(SHAPE[0], bool)
    keep[list(slices)] = True
    for n, (name, mask) in enumerate(masks.items()):
        sid = segNode.GetSegmentation().AddEmptySegment(f"Segment_{n + 5}", name, [1.0, 0.1 * n, 0.05])
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask * keep[:, None, None], segNode, sid, volumeNode)
        segNode.GetSegmentation().GetSegment(sid).SetTag("TerminologyEntry", TERMINOLOGY)
    _save_segmentation(slicer, segNode, path, crop=True)
    return path, {s["name"]: (s["id"], s["color"], s["labelValue"]) for s in _slicerio(path)["segments"]}


def _slicerio(path):
    import slicerio

    return slicerio.read_segmentation(str(path))


def _overlays_in_slicer(slicer, volume_path, seg_path):
    """Slicer loads the volume (its volume storage node) and the segmentation (its segmentation storage node): every
    segment's labelmap voxels lie on voxels of the volume, inside it. (Slicer flips a left-handed volume, as
    ``GEOMETRY`` is, along k when it loads it, the same voxels at the same points: the labelmap's index-to-volume-index
    map is then a flip, whole voxels and no rotation.)"""
    import vtk

    def matrix(get):
        m = vtk.vtkMatrix4x4()
        get(m)
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])

    volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(volume_path))
    volumeNode.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(volumeNode)
    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(seg_path))
    segNode.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(segNode)
    whole = np.array(volumeNode.GetImageData().GetExtent()).reshape(3, 2)
    for n in range(segNode.GetSegmentation().GetNumberOfSegments()):
        image = slicer.vtkOrientedImageData()
        segNode.GetBinaryLabelmapRepresentation(segNode.GetSegmentation().GetNthSegmentID(n), image)
        to_volume = np.linalg.solve(matrix(volumeNode.GetIJKToRASMatrix), matrix(image.GetImageToWorldMatrix))
        np.testing.assert_allclose(np.abs(to_volume[:3, :3]) @ np.ones(3), np.ones(3), atol=1e-6)   # a signed
        np.testing.assert_allclose(to_volume, np.round(to_volume), atol=1e-6)                       # permutation
        extent = np.array(image.GetExtent()).reshape(3, 2)
        corners = to_volume @ np.array([[extent[0, a], extent[1, b], extent[2, c], 1.0]
                                        for a in (0, 1) for b in (0, 1) for c in (0, 1)]).T
        assert np.all(corners[:3].min(axis=1) >= whole[:, 0] - 1e-6)
        assert np.all(corners[:3].max(axis=1) <= whole[:, 1] + 1e-6)


def _same_physical_grid(a_path, b_path):
    """Voxel (i, j, k) of one file is at the physical point (LPS mm) of the same voxel of the other, at every corner."""
    import SimpleITK as sitk

    a, b = sitk.ReadImage(str(a_path)), sitk.ReadImage(str(b_path))
    assert a.GetSize()[:3] == b.GetSize()[:3]
    for corner in np.ndindex(2, 2, 2):
        ijk = [int(c * (s - 1)) for c, s in zip(corner, a.GetSize()[:3])]
        np.testing.assert_allclose(a.TransformIndexToPhysicalPoint(ijk), b.TransformIndexToPhysicalPoint(ijk),
                                   atol=1e-4)


@slicer_test
def test_propagate_keeps_each_seed_segments_id_colour_terminology_and_label_value(slicer_app, phantom, tmp_path,
                                                                                 capsys):
    """Seeds painted in Slicer (IDs Segment_5.., red colours, a terminology each, saved cropped) on an oblique,
    flipped 0.28 x 0.28 x 1 mm .nii.gz volume: the result kept the names but wrote every segment with the default
    muscle colours, IDs Segment_1.. (by its place) and no terminology, and SOL propagated alone got label value 1
    (3 in the seeds); anything keyed on them (a colour legend, a script that finds Segment_7, a labelmap export by
    label value, Slicer's terminology-based display) lost them. Now each keeps its seed's. The result lies on the
    volume's physical grid, and the volume it prints is its voxel count times the spacing product."""
    volume, ref = phantom
    vol_path = io.write_volume(io.Image(volume, GEOMETRY), tmp_path / "us.nii.gz")
    seeds_path, seeded = _slicer_seeds(slicer_app, volume, {s.name: s.mask for s in ref.segments},
                                       tmp_path / "seeds.seg.nrrd")
    assert seeded["SOL"] == ("Segment_7", [1.0, 0.2, 0.05], 3)
    out_path = tmp_path / "out.seg.nrrd"
    code, out, err = _cli(capsys, "propagate", vol_path, seeds_path, "-o", out_path, "--segment", "SOL,GM")
    assert code == 0, err

    written = {s["name"]: s for s in _slicerio(out_path)["segments"]}
    assert set(written) == {"SOL", "GM"}
    for name, segment in written.items():
        assert (segment["id"], segment["color"], segment["labelValue"]) == seeded[name]
        assert segment["terminology"] == _slicerio(seeds_path)["segments"][0]["terminology"]
    read = slicer_reads(slicer_app, out_path)                # and as Slicer reads it
    result = io.read_segmentation(out_path)
    for name in ("SOL", "GM"):
        assert read[name][:4] == (seeded[name][0], tuple(round(c, 4) for c in seeded[name][1]), TERMINOLOGY,
                                  seeded[name][2])
        assert read[name][4] == int(result.mask(name).sum()) > 0
        cm3 = result.mask(name).sum() * np.prod(GEOMETRY.spacing) / 1000
        assert f"{name}: {int(result.mask(name).sum())} voxels, {cm3:.2f} cm3" in out
    _same_physical_grid(out_path, vol_path)
    assert result.geometry.same_as(io.read_volume(vol_path).geometry) and result.shape == SHAPE
    _overlays_in_slicer(slicer_app, vol_path, out_path)


def test_seeds_cut_from_a_reference_keep_its_segment_ids_terminology_and_label_values(phantom, tmp_path, capsys):
    """``ifssnet seeds`` kept a reference's names and colours but wrote IDs Segment_1.. by place, no terminology and
    label values 1.. by place: GL alone (Segment_2, label 2 in the reference) became Segment_1 with label 1."""
    import slicerio

    _, ref = phantom
    io.write_segmentation(ref, tmp_path / "plain.seg.nrrd")
    raw = slicerio.read_segmentation(str(tmp_path / "plain.seg.nrrd"))      # one layer, labels 1, 2, 3
    voxels = raw["voxels"].copy()
    for n, s in enumerate(raw["segments"]):
        voxels[raw["voxels"] == s["labelValue"]] = 10 + n
        s.update({"id": f"Segment_{n + 5}", "labelValue": 10 + n, "terminology": _slicer_terminology(),
                  "tags": {"Owner": "me"}})
    raw["voxels"] = voxels
    slicerio.write_segmentation(str(tmp_path / "ref.seg.nrrd"), raw)
    code, out, err = _cli(capsys, "seeds", tmp_path / "ref.seg.nrrd", "--segment", "GL", "-o", tmp_path / "s.seg.nrrd")
    assert code == 0, err
    (gl,) = _slicerio(tmp_path / "s.seg.nrrd")["segments"]
    assert (gl["name"], gl["id"], gl["labelValue"], gl["terminology"]) == ("GL", "Segment_6", 11, _slicer_terminology())
    assert gl["tags"]["Owner"] == "me" and io.ANNOTATED_TAG in gl["tags"]


def _slicer_terminology():
    import slicerio

    return slicerio.segmentation.terminology_entry_from_string(TERMINOLOGY)


def test_propagate_from_a_nifti_labelmap_keeps_its_label_values(phantom, tmp_path, capsys):
    """Seeds given as a NIfTI labelmap (GM 3, GL 5, SOL 7, on a 2x coarser in-plane grid than the .mha volume, so
    they are resampled onto it): the segments are Label_3, Label_5, Label_7, but the result stored them with label
    values 1, 2, 3, so a labelmap exported from it (slicerio, Slicer's Export to labelmap) no longer matched the
    labelmap the user gave. Now each keeps its label value."""
    import SimpleITK as sitk

    volume, ref = phantom
    vol_path = io.write_volume(io.Image(volume, GEOMETRY), tmp_path / "us.mha")
    labels = np.zeros(SHAPE, np.uint8)
    for value, s in zip((3, 5, 7), ref.segments):
        labels[5:8][s.mask[5:8] > 0] = value
    coarse = io.Geometry((0.56, 0.56, 1.0), GEOMETRY.origin, GEOMETRY.direction)
    image = sitk.GetImageFromArray(labels)
    GEOMETRY.apply_to(image)
    grid = sitk.Image([SHAPE[2] // 2, SHAPE[1] // 2, SHAPE[0]], sitk.sitkUInt8)
    coarse.apply_to(grid)
    sitk.WriteImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor), str(tmp_path / "l.nii.gz"))
    code, out, err = _cli(capsys, "propagate", vol_path, tmp_path / "l.nii.gz", "-o", tmp_path / "out.seg.nrrd")
    assert code == 0, err
    raw = _slicerio(tmp_path / "out.seg.nrrd")
    assert {s["name"]: s["labelValue"] for s in raw["segments"]} == {"Label_3": 3, "Label_5": 5, "Label_7": 7}
    _same_physical_grid(tmp_path / "out.seg.nrrd", vol_path)
    # the file's labelmap (one layer: the segments do not overlap) holds 7 where Label_7 is, as the user's did
    assert raw["voxels"].ndim == 3
    result = io.read_segmentation(tmp_path / "out.seg.nrrd")
    np.testing.assert_array_equal(raw["voxels"].transpose(2, 1, 0) == 7, result.mask("Label_7") > 0)


def test_segment_ids_read_twice_or_missing_are_written_unique():
    """Two segments read with one ID (a file another tool wrote) and one without: every written ID is unique, the
    one read once is kept."""
    masks = [np.zeros((2, 3, 4), np.uint8) for _ in range(4)]
    segs = [io.Segment(name, m, fields=fields) for name, m, fields in
            zip("ABCD", masks, ({"id": "X"}, {"id": "X"}, {}, {"id": "Segment_1"}))]
    assert io.segment_ids(segs) == ["Segment_2", "Segment_3", "Segment_4", "Segment_1"]


def _sweep_along_i(a):
    """(K, J, I) -> (I, J, K): the sweep's slices lie across i."""
    return np.ascontiguousarray(np.transpose(a, (2, 1, 0)))


@pytest.mark.parametrize("tagged", [True, False])
def test_compare_runs_along_the_axis_the_seeds_lie_across_as_propagate_does(phantom, tmp_path, capsys, tagged):
    """A sweep along i (.nhdr + .raw, 1 x 0.28 x 0.28 mm) with seeds painted across i: ``ifssnet propagate`` runs
    along i, but ``ifssnet compare`` refused tagged seeds ("the comparison propagates along axis 0 ... paint the seeds
    across the K axis", which is across the sweep's length) and took untagged paint for seeds on every k slice it
    touched. It now reads the seeds as propagate does and compares along their axis: the same scores as the same sweep
    stored along k."""
    import json

    from ifssnet.seeds import make_seed_segmentation

    volume, ref = phantom
    flat = io.Geometry((0.28, 0.28, 1.0))
    seeds = make_seed_segmentation(io.Segmentation(ref.segments, flat), ["SOL"], at=8, count=3, every=8)
    along_i = io.Geometry((1.0, 0.28, 0.28))
    rows = {}
    for name, geometry, turn, axis in (("k", flat, lambda a: a, 0), ("i", along_i, _sweep_along_i, 2)):
        vol = io.write_volume(io.Image(turn(volume), geometry), tmp_path / f"{name}.nhdr")
        io.write_segmentation(io.Segmentation([io.Segment(s.name, turn(s.mask), s.color) for s in ref.segments],
                                              geometry), tmp_path / f"{name}_ref.seg.nrrd")
        io.write_segmentation(io.Segmentation([io.Segment("SOL", turn(seeds.mask("SOL")), annotated=io.AnnotatedSlices(
            axis, seeds.get("SOL").annotated.slices) if tagged else None)], geometry), tmp_path / f"{name}_s.seg.nrrd")
        code, out, err = _cli(capsys, "compare", vol, tmp_path / f"{name}_s.seg.nrrd",
                              tmp_path / f"{name}_ref.seg.nrrd",
                              "--methods", "fbs", "--segment", "SOL", "--json")
        assert code == 0, err
        (rows[name],) = json.loads(out)
    assert rows["i"]["seed_slices"] == rows["k"]["seed_slices"] == [8, 9, 10, 16, 17, 18]
    assert rows["i"]["dice"] == pytest.approx(rows["k"]["dice"]) and rows["k"]["dice"] > 0.3
    assert rows["i"]["volume_cm3"] == pytest.approx(rows["k"]["volume_cm3"])


def test_seeds_are_cut_across_the_axis_given_for_a_sweep_along_i(phantom, tmp_path, capsys):
    """``ifssnet seeds`` cut slices across k only: on a reference of a sweep along i, its seeds lay across the sweep's
    length, and ``ifssnet propagate`` then ran along k. ``--axis 2`` cuts them across i (tagged axis 2), the same
    seeds as on the sweep stored along k; the default stays k."""
    volume, ref = phantom
    along_i = io.Geometry((1.0, 0.28, 0.28), GEOMETRY.origin, GEOMETRY.direction)
    io.write_segmentation(io.Segmentation([io.Segment(s.name, _sweep_along_i(s.mask), s.color) for s in ref.segments],
                                          along_i), tmp_path / "ref_i.seg.nrrd")
    io.write_segmentation(ref, tmp_path / "ref_k.seg.nrrd")
    for name, extra in (("i", ["--axis", "2"]), ("k", [])):
        code, out, err = _cli(capsys, "seeds", tmp_path / f"ref_{name}.seg.nrrd", "--at", 8, "--every", 8, "--ends",
                              "-o", tmp_path / f"s_{name}.seg.nrrd", *extra)
        assert code == 0, err
    along, across = io.read_segmentation(tmp_path / "s_i.seg.nrrd"), io.read_segmentation(tmp_path / "s_k.seg.nrrd")
    for s in across.segments:
        assert along.get(s.name).annotated == io.AnnotatedSlices(2, s.annotated.slices)
        assert s.annotated.axis == 0 and 8 in s.annotated.slices
        np.testing.assert_array_equal(along.mask(s.name), _sweep_along_i(s.mask))


@slicer_test
def test_a_labelmap_saved_as_seg_nrrd_reads_as_slicer_reads_it(slicer_app, phantom, tmp_path, capsys):
    """A plain labelmap that a script saved with the .seg.nrrd suffix (SimpleITK, ITK: no segment fields) opens in
    Slicer as one segment per label value (Segment_1, Segment_3 ...), but ``ifssnet`` read no segment: 'holds no
    segment' from propagate, seeds and evaluate. It is read as Slicer reads it, on its own (oblique) grid."""
    import SimpleITK as sitk

    _, ref = phantom
    labels = np.zeros(SHAPE, np.uint8)
    for value, s in zip((1, 3, 4), ref.segments):
        labels[s.mask > 0] = value
    image = sitk.GetImageFromArray(labels)
    GEOMETRY.apply_to(image)
    path = tmp_path / "labels.seg.nrrd"
    sitk.WriteImage(image, str(path), True)
    slicer_read = slicer_reads(slicer_app, path)
    seg = io.read_segmentation(path)
    assert seg.names == list(slicer_read) == ["Segment_1", "Segment_3", "Segment_4"]
    assert seg.geometry.same_as(GEOMETRY) and seg.shape == SHAPE
    for value, name in zip((1, 3, 4), seg.names):
        assert slicer_read[name][0] == name and slicer_read[name][3] == value
        assert slicer_read[name][4] == int(seg.mask(name).sum()) == int((labels == value).sum())
    assert io.read_header(path).segments is None          # known from its voxels only, as a plain labelmap's
    code, out, err = _cli(capsys, "seeds", path, "--segment", "Segment_3", "-o", tmp_path / "s.seg.nrrd")
    assert code == 0, err
    (cut,) = _slicerio(tmp_path / "s.seg.nrrd")["segments"]
    assert (cut["name"], cut["id"], cut["labelValue"]) == ("Segment_3", "Segment_3", 3)


def test_evaluate_against_a_labelmap_with_no_segment_of_the_same_name_lists_both_files_segments(phantom, tmp_path,
                                                                                               capsys):
    """A result (GM, GL, SOL) scored against a NIfTI labelmap reference (labels 1, 2, 3: segments Label_1 ...) said
    'Segment(s) (none) are not in both files. Both files have: no segment of the same name': neither which names
    each file has nor what to do. It now lists both and says that segments are matched by name."""
    _, ref = phantom
    labels = np.zeros(SHAPE, np.uint8)
    for value, s in enumerate(ref.segments, start=1):
        labels[s.mask > 0] = value
    io.write_volume(io.Image(labels, GEOMETRY), tmp_path / "ref.nii.gz")
    io.write_segmentation(ref, tmp_path / "pred.seg.nrrd")
    code, out, err = _cli(capsys, "evaluate", tmp_path / "pred.seg.nrrd", tmp_path / "ref.nii.gz")
    assert code == 2 and not out
    assert "has GM, GL, SOL" in err and "has Label_1, Label_2, Label_3" in err and "matched by name" in err
    assert "(none)" not in err


def test_compare_cuts_protocol_seeds_across_the_axis_given(phantom, tmp_path, capsys):
    """``ifssnet compare VOLUME - REF`` cut the protocol's seeds across k only: on a sweep along i they lay across the
    sweep's length. ``--axis 2`` compares along i: the same rows as the same sweep stored along k; a seed file whose
    seeds lie across another axis than --axis is refused."""
    import json

    volume, ref = phantom
    rows = {}
    for name, geometry, turn, extra in (("k", io.Geometry((0.28, 0.28, 1.0)), lambda a: a, []),
                                        ("i", io.Geometry((1.0, 0.28, 0.28)), _sweep_along_i, ["--axis", "2"])):
        vol = io.write_volume(io.Image(turn(volume), geometry), tmp_path / f"{name}.mha")
        io.write_segmentation(io.Segmentation([io.Segment(s.name, turn(s.mask), s.color) for s in ref.segments],
                                              geometry), tmp_path / f"{name}_ref.seg.nrrd")
        code, out, err = _cli(capsys, "compare", vol, "-", tmp_path / f"{name}_ref.seg.nrrd", "--methods", "fbs",
                              "--segment", "SOL", "--protocol", "paper", "--every", 8, "--json", *extra)
        assert code == 0, err
        (rows[name],) = json.loads(out)
    assert rows["i"]["seed_slices"] == rows["k"]["seed_slices"]
    assert rows["i"]["ref_volume_cm3"] == pytest.approx(rows["k"]["ref_volume_cm3"])
    # (Fill between slices is not exactly the same on slices turned in-plane: 0.617 and 0.625 here)
    assert rows["i"]["dice"] == pytest.approx(rows["k"]["dice"], abs=0.03) and rows["k"]["dice"] > 0.3
    across_k = _seeds_across_k(ref)
    assert across_k.get("SOL").annotated.axis == 0
    io.write_segmentation(across_k, tmp_path / "k_seeds.seg.nrrd")
    code, out, err = _cli(capsys, "compare", tmp_path / "k.mha", tmp_path / "k_seeds.seg.nrrd",
                          tmp_path / "k_ref.seg.nrrd",
                          "--methods", "fbs", "--segment", "SOL", "--axis", "2")
    assert code == 2 and "--axis 2 was given, but the seeds" in err and "give --axis 0" in err


def _seeds_across_k(ref):
    from ifssnet.seeds import make_seed_segmentation

    return make_seed_segmentation(io.Segmentation(ref.segments, io.Geometry((0.28, 0.28, 1.0))), ["SOL"], at=8,
                                  count=3, every=8)


@slicer_test
def test_written_segments_names_and_colours_are_not_auto_generated_unless_their_seed_said_so(slicer_app, phantom,
                                                                                            tmp_path):
    """Slicer reads a segment without ``SegmentN_NameAutoGenerated`` / ``ColorAutoGenerated`` as auto-generated, and then
    replaces its name and colour with a terminology's when the user picks one: GM, GL and SOL, named and coloured on
    purpose (the phantom, a result), would be renamed. They are written as not auto-generated; a seed segment whose file
    said auto-generated keeps that."""
    slicer = slicer_app
    _, reference = phantom
    path = io.write_segmentation(reference, tmp_path / "reference.seg.nrrd")
    segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(segNode)
    segmentation = segNode.GetSegmentation()
    segments = [segmentation.GetSegment(segmentation.GetNthSegmentID(n)) for n in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == reference.names
    assert not any(s.GetNameAutoGenerated() or s.GetColorAutoGenerated() for s in segments)

    auto = io.Segment("Segment_1", reference.segments[0].mask, fields={"nameAutoGenerated": True,
                                                                      "colorAutoGenerated": True})
    written = io.write_segmentation(io.Segmentation([auto], reference.geometry), tmp_path / "auto.seg.nrrd")
    info = _slicerio(written)["segments"][0]
    assert info["nameAutoGenerated"] is True and info["colorAutoGenerated"] is True


def test_compare_set_runs_along_the_axis_given_for_cases_swept_along_i(phantom, tmp_path, capsys):
    """``ifssnet compare-set DIR... --axis 2``: cases whose sweep runs along i score as the same cases stored along k
    (before, compare-set had no --axis: protocol seeds lay across k, along the sweep's length)."""
    import csv

    volume, ref = phantom
    for name, geometry, turn in (("k", io.Geometry((0.28, 0.28, 1.0)), lambda a: a),
                                 ("i", io.Geometry((1.0, 0.28, 0.28)), _sweep_along_i)):
        case = tmp_path / name
        case.mkdir()
        io.write_volume(io.Image(turn(volume), geometry), case / "volume.nrrd")
        io.write_segmentation(io.Segmentation([io.Segment(s.name, turn(s.mask), s.color) for s in ref.segments],
                                              geometry), case / "reference.seg.nrrd")
    rows = {}
    for name, extra in (("k", []), ("i", ["--axis", "2"]), ("i-without", [])):
        out = tmp_path / f"{name}.csv"
        code, _, err = _cli(capsys, "compare-set", tmp_path / name.split("-")[0], "--methods", "fbs", "--segment",
                            "SOL", "--protocol", "paper", "--every", 8, "--csv", out, *extra)
        assert code == 0, err
        (rows[name],) = list(csv.DictReader(out.open()))
    assert rows["i"]["seed_slices_n"] == rows["k"]["seed_slices_n"]
    assert float(rows["i"]["dice"]) == pytest.approx(float(rows["k"]["dice"]), abs=0.03)
    assert float(rows["k"]["dice"]) > 0.3
    assert rows["i-without"]["seed_slices_n"] != rows["k"]["seed_slices_n"]     # across k: another cut
