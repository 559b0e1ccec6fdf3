"""Review 41b: files and formats on the command line (``ifssnet.io``, ``ifssnet propagate | seeds | evaluate``).

Each test pins one bug found on a file as Slicer 5.x (slicer-core's real ``vtkMRMLSegmentationStorageNode``) or an
older Slicer leaves it, or as a user passes it on the command line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_fixture import available, slicer_app  # noqa: F401  (fixture)
from slicer_nodes import _ijk_to_ras, _save_segmentation

from ifssnet import io
from ifssnet.cli import main

def needs_slicer(test):
    """A test on files slicer-core's storage node writes or reads (marked ``slicer``; skipped without slicer-core)."""
    return pytest.mark.slicer(pytest.mark.skipif(not available(),
                                                 reason="slicer-core is not installed (pip install slicer-core)")(test))

SHAPE = (12, 10, 14)   # (k, j, i)
RAS = _ijk_to_ras()                              # oblique, 0.7 x 0.9 x 1.6 mm
GEOMETRY = io.Geometry.from_ijk_to_lps(np.diag([-1.0, -1.0, 1.0, 1.0]) @ RAS)


def _masks():
    a = np.zeros(SHAPE, np.uint8)
    a[3:6, 2:5, 3:8] = 1
    b = np.zeros(SHAPE, np.uint8)
    b[4:9, 3:7, 5:10] = 1                        # overlaps a: a second layer
    return {"GM": a, "SOL": b}


def _slicer_file(slicer, path, masks, tags=None, crop=False):
    """Save ``masks`` (name -> (K, J, I), or (name, mask) pairs) on ``GEOMETRY``'s volume as Slicer 5.x saves a segmentation; ``crop``:
    with 'crop to minimum extent', which writes Segmentation_ReferenceImageExtentOffset."""
    import slicer.util

    vol = slicer.util.addVolumeFromArray(np.zeros(SHAPE, np.int16), RAS, "US")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(vol)
    for name, mask in (masks.items() if isinstance(masks, dict) else masks):
        sid = seg.GetSegmentation().AddEmptySegment("", name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, seg, sid, vol)
        for key, value in (tags or {}).get(name, {}).items():
            seg.GetSegmentation().GetSegment(sid).SetTag(key, value)
    return _save_segmentation(slicer, seg, path, crop)


@needs_slicer
def test_a_seed_file_slicer_saved_cropped_keeps_its_annotated_slices_where_they_were_painted(slicer_app, tmp_path):
    """Slicer's 'crop to minimum extent' saves the segments' bounding box and Segmentation_ReferenceImageExtentOffset;
    the segment tags (written by the Slicer module on the volume's grid) are not changed. ``read_segmentation`` took
    the tag's slices for slices of the cropped file and shifted them by the crop onto the volume's grid: painted on
    3, 4, 5 with 'no muscle here' on 7, the seeds came back as 6, 7, 8, 10 (propagation then started from empty
    slices). The tag is read on the grid of the file's reference image (its extent offset)."""
    import nrrd

    masks = _masks()
    path = _slicer_file(slicer_app, tmp_path / "seeds.seg.nrrd", masks,
                        {"GM": {io.ANNOTATED_TAG: "0:3,4,5,7"}}, crop=True)
    assert nrrd.read_header(str(path))["Segmentation_ReferenceImageExtentOffset"] != "0 0 0"
    seg = io.read_segmentation(path, reference=GEOMETRY, reference_shape=SHAPE)
    assert seg.get("GM").annotated == io.AnnotatedSlices(0, (3, 4, 5, 7))
    for name, mask in masks.items():
        np.testing.assert_array_equal(seg.mask(name), mask)
    # without a volume: on the grid of the file's reference image (the volume's), the same
    own = io.read_segmentation(path)
    assert own.shape == SHAPE and own.get("GM").annotated == io.AnnotatedSlices(0, (3, 4, 5, 7))


def _slicer_reads(slicer, path):
    """{name: voxel count} of each segment of ``path`` as slicer-core's storage node reads it."""
    from slicer_nodes import slicer_reads

    return {name: read[-1] for name, read in slicer_reads(slicer, path).items()}


@needs_slicer
def test_a_seg_nrrd_with_one_segment_per_component_and_no_layer_fields_reads_each_segment_from_its_own(
        slicer_app, tmp_path):
    """A .seg.nrrd of Slicer before 4.11 (still opened by Slicer 5) holds one segment per component of a 4-D file,
    with no Segment<N>_Layer and no Segment<N>_LabelValue. Every segment was read from layer 0: the second segment
    came back as a copy of the first, silently. Slicer reads segment N from component N."""
    import nrrd

    a = np.zeros((2, 6, 5, 4), np.uint8)          # (component, i, j, k)
    a[0, 1:3, 1:3, 1:3] = 1
    a[1, 2:5, 2:4, 0:4] = 1
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [0.5, 0, 0], [0, 0.5, 0], [0, 0, 2.0]]),
              "space origin": np.zeros(3), "Segmentation_MasterRepresentation": "Binary labelmap",
              "Segmentation_ContainedRepresentationNames": "Binary labelmap|"}
    for n, name in enumerate(("GM", "SOL")):
        header.update({f"Segment{n}_ID": name, f"Segment{n}_Name": name, f"Segment{n}_Color": "1 0 0",
                       f"Segment{n}_Extent": "0 5 0 4 0 3"})
    path = tmp_path / "old.seg.nrrd"
    nrrd.write(str(path), a, header)
    assert _slicer_reads(slicer_app, path) == {"GM": 8, "SOL": 24}
    seg = io.read_segmentation(path)
    for n, name in enumerate(("GM", "SOL")):
        np.testing.assert_array_equal(seg.mask(name), a[n].transpose(2, 1, 0))


def test_evaluate_against_a_reference_saved_cropped_counts_the_prediction_outside_its_crop(tmp_path, capsys):
    """``ifssnet evaluate PRED REF`` resampled PRED onto REF's grid. A reference saved cropped to its segments'
    bounding box (by a tool that keeps no reference image geometry; Slicer's own cropped files are now read whole)
    cut off every voxel PRED has outside it: 8 false positives there gave Dice 1.0, precision 1.0 and PRED's volume
    without them. Both are now scored on REF's grid grown to cover PRED's."""
    masks = _masks()
    crop = (slice(4, 9), slice(3, 7), slice(5, 10))                # SOL's bounding box
    shifted = io.Geometry(GEOMETRY.spacing, tuple(GEOMETRY.ijk_to_lps @ np.array([5.0, 3.0, 4.0, 1.0]))[:3],
                          GEOMETRY.direction)
    ref_path = io.write_segmentation(io.Segmentation([io.Segment("SOL", masks["SOL"][crop])], shifted),
                                     tmp_path / "ref.seg.nrrd")
    pred = masks["SOL"].copy()
    pred[0:2, 0:2, 0:2] = 1                      # outside the reference's crop
    io.write_segmentation(io.Segmentation([io.Segment("SOL", pred)], GEOMETRY), tmp_path / "pred.seg.nrrd")
    assert main(["evaluate", str(tmp_path / "pred.seg.nrrd"), str(ref_path), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["SOL"]
    voxel = GEOMETRY.voxel_volume_mm3
    assert scores["volume_mm3"] == pytest.approx(pred.sum() * voxel)
    assert scores["ref_volume_mm3"] == pytest.approx(masks["SOL"].sum() * voxel)
    assert scores["precision"] == pytest.approx(masks["SOL"].sum() / pred.sum())
    assert scores["dice"] < 1.0


@needs_slicer
def test_seeds_from_a_reference_slicer_saved_cropped_are_numbered_and_ended_on_the_volumes_slices(
        slicer_app, tmp_path, capsys):
    """``ifssnet seeds REF --ends`` read a reference Slicer saved cropped on its cropped grid: the slices it printed
    and wrote were numbered from the crop (3 too low here), and the 'no muscle here' marks past a muscle's ends were
    dropped wherever the muscle reached the crop's edge (the crop is the segments' bounding box, so the longest
    muscle always does): SOL got no end marks although the volume has slices 3 and 9. A cropped .seg.nrrd is now
    read on the grid of its reference image (Slicer's 'Reference image geometry' and extent offset)."""
    masks = _masks()
    ref = _slicer_file(slicer_app, tmp_path / "ref.seg.nrrd", masks, crop=True)
    out = tmp_path / "seeds.seg.nrrd"
    assert main(["seeds", str(ref), "--segment", "SOL", "--ends", "-o", str(out)]) == 0
    assert "SOL: slices 3, 4, 5, 6, 9" in capsys.readouterr().out
    seeds = io.read_segmentation(out)
    assert seeds.shape == SHAPE and seeds.geometry.same_as(GEOMETRY, tol=1e-5)
    assert seeds.get("SOL").annotated == io.AnnotatedSlices(0, (3, 4, 5, 6, 9))
    np.testing.assert_array_equal(seeds.mask("SOL")[4:7], masks["SOL"][4:7])


def _empty_seg_nrrd(path):
    """A .seg.nrrd without any segment on ``GEOMETRY``'s grid (Slicer saves one when every segment was deleted)."""
    import slicerio

    raw = slicerio.create_segmentation(SHAPE[::-1], GEOMETRY.ijk_to_lps, dtype="uint8")
    raw["voxels"] = np.zeros(SHAPE[::-1], np.uint8)
    slicerio.write_segmentation(str(path), raw)
    return path


def _error_line(capsys):
    return [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("ifssnet:")]


def test_evaluate_with_a_prediction_without_segments_is_bad_input_not_an_internal_error(tmp_path, capsys):
    """Growing the reference's grid to hold the prediction's (0d050bd) took the grid of a prediction without any
    segment, which has no shape: ValueError, exit 70. It is the input error it was before: no segment in both."""
    masks = _masks()
    io.write_segmentation(io.segmentation_from_masks(masks, GEOMETRY), tmp_path / "ref.seg.nrrd")
    code = main(["evaluate", str(_empty_seg_nrrd(tmp_path / "pred.seg.nrrd")), str(tmp_path / "ref.seg.nrrd")])
    assert code == 2, _error_line(capsys)
    assert "not in both files" in _error_line(capsys)[0]


def test_propagate_from_a_seed_file_without_segments_says_what_to_do_and_writes_nothing(tmp_path, capsys,
                                                                                        monkeypatch):
    """A seed file without any segment (every segment deleted, then saved) crashed ``ifssnet propagate`` with
    KeyError 'pop from an empty set', exit 70; it is now an input error that says to paint the muscle."""
    import ifssnet.propagate as prop
    from fake_models import CopyModel

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))
    volume = io.write_volume(io.Image(np.zeros(SHAPE, np.uint8), GEOMETRY), tmp_path / "volume.nrrd")
    seeds = _empty_seg_nrrd(tmp_path / "seeds.seg.nrrd")
    code = main(["propagate", str(volume), str(seeds), "-o", str(tmp_path / "out.seg.nrrd"), "--device", "cpu"])
    line = _error_line(capsys)
    assert code == 2, line
    assert "holds no segment" in line[0] and "Paint" in line[0]
    assert not (tmp_path / "out.seg.nrrd").exists()


@needs_slicer
def test_two_segments_of_the_same_name_are_refused_not_merged_into_copies_of_the_first(slicer_app, tmp_path, capsys):
    """Slicer lets two segments share a name (the IDs differ). ``ifssnet seeds`` cut both from the first one (the
    second segment came out as a copy of the first, under its name), and ``evaluate`` scored the first one only.
    Both are refused, naming the segment, as is ``propagate`` (which propagated the first only)."""
    masks = _masks()
    path = _slicer_file(slicer_app, tmp_path / "ref.seg.nrrd", [("GM", masks["GM"]), ("GM", masks["SOL"])])
    assert io.read_segmentation(path).names == ["GM", "GM"]
    assert main(["seeds", str(path), "-o", str(tmp_path / "seeds.seg.nrrd")]) == 2
    assert "more than one segment named 'GM'" in _error_line(capsys)[0]
    assert not (tmp_path / "seeds.seg.nrrd").exists()
    assert main(["evaluate", str(path), str(path)]) == 2
    assert "more than one segment named 'GM'" in _error_line(capsys)[0]
    with pytest.raises(io.InputError, match="more than one segment named 'GM'"):
        io.split_names("GM", ["GM", "SOL", "GM"])


@needs_slicer
@pytest.mark.parametrize("name", ["seeds.seg.nhdr", "seeds.nrrd", "seeds.nhdr"])
@pytest.mark.parametrize("overlap", [True, False])
def test_a_segmentation_slicer_saved_as_nhdr_or_plain_nrrd_is_read_as_a_segmentation(slicer_app, tmp_path, name,
                                                                                      overlap):
    """Slicer saves a segmentation as .seg.nrrd, .seg.nhdr, .nrrd or .nhdr (its save dialog offers all four). Only
    .seg.nrrd was read as a segmentation: the others went to SimpleITK as labelmaps, so overlapping segments were
    refused as 'RGB or vector ... Vector to Scalar Volume', and one layer came back as 'Label_1', 'Label_2' with
    the segment names and the annotated-slices tag ('no muscle here' marks) lost. A NRRD file whose header holds
    Slicer's segment fields is now read as a segmentation, whatever its name."""
    masks = _masks()
    if not overlap:
        masks["SOL"] = np.zeros(SHAPE, np.uint8)
        masks["SOL"][9:11, 6:9, 10:13] = 1
    path = _slicer_file(slicer_app, tmp_path / name, masks, {"GM": {io.ANNOTATED_TAG: "0:3,4,5,7"}})
    seg = io.read_segmentation(path)
    assert seg.names == ["GM", "SOL"]
    assert seg.get("GM").annotated == io.AnnotatedSlices(0, (3, 4, 5, 7))
    for n, mask in masks.items():
        np.testing.assert_array_equal(seg.mask(n), mask)
    header = io.read_header(path)
    assert header.shape_kji == SHAPE and header.segments == 2 and header.layers == (2 if overlap else 1)


def test_a_write_protected_output_is_refused_before_the_work_not_replaced(tmp_path, capsys, monkeypatch):
    """An existing output file without write permission (a result the user protected, chmod a-w) was replaced
    without a word: the result goes to a new file that is renamed over it, which the folder's permission allows.
    It is now refused before any work, as ``cp`` would, and left as it was."""
    import ifssnet.propagate as prop
    from fake_models import CopyModel

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))
    noise = np.random.default_rng(0).integers(0, 255, SHAPE).astype(np.uint8)
    volume = io.write_volume(io.Image(noise, GEOMETRY), tmp_path / "volume.nrrd")
    seeds = io.write_segmentation(io.segmentation_from_masks({"GM": _masks()["GM"]}, GEOMETRY,
                                                             {"GM": io.AnnotatedSlices(0, (3, 4, 5))}),
                                  tmp_path / "seeds.seg.nrrd")
    out = tmp_path / "validated.seg.nrrd"
    out.write_bytes(b"a result the user keeps")
    out.chmod(0o444)
    code = main(["propagate", str(volume), str(seeds), "-o", str(out), "--device", "cpu"])
    line = _error_line(capsys)
    assert code == 4, line
    assert "write-protected" in line[0]
    assert out.read_bytes() == b"a result the user keeps"
    code = main(["seeds", str(seeds), "-o", str(out)])
    assert code == 4 and out.read_bytes() == b"a result the user keeps"


def test_a_segment_named_twice_in_segment_is_taken_once(tmp_path, capsys):
    """``ifssnet seeds --segment GM,GM`` wrote two segments 'GM' (the same seeds twice), which Slicer then shows as
    two segments of one name; a name given twice is taken once."""
    ref = io.write_segmentation(io.segmentation_from_masks(_masks(), GEOMETRY), tmp_path / "ref.seg.nrrd")
    assert main(["seeds", str(ref), "--segment", "GM, SOL,GM", "-o", str(tmp_path / "seeds.seg.nrrd")]) == 0
    assert io.read_segmentation(tmp_path / "seeds.seg.nrrd").names == ["GM", "SOL"]
    assert io.split_names("SOL,GM,SOL", ["GM", "SOL"]) == ["SOL", "GM"]


def test_evaluate_segment_list_with_a_trailing_comma_or_spaces_is_read_like_the_other_commands(tmp_path, capsys):
    """``evaluate --segment 'GM,'`` (or 'GM, ,SOL') was refused: 'Segment(s)  are not in both files', naming an
    empty segment; seeds, propagate and compare skip the empty names."""
    ref = io.write_segmentation(io.segmentation_from_masks(_masks(), GEOMETRY), tmp_path / "ref.seg.nrrd")
    assert main(["evaluate", str(ref), str(ref), "--segment", "GM, ,SOL,", "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == ["GM", "SOL"]


@pytest.mark.parametrize("flip_k, swap_ij", [(True, False), (False, True), (True, True)])
def test_annotated_slices_follow_a_grid_flipped_or_with_its_axes_in_another_order(tmp_path, flip_k, swap_ij):
    """A seed file on the volume's voxels stored another way round (the k axis reversed, or i and j swapped: a copy
    reoriented by another tool) maps slice to slice, but its annotated slices, 'no muscle here' marks included,
    were dropped: only a whole-voxel shift kept them. They now follow any such grid, across the axis they lie on."""
    masks = _masks()
    gm = np.zeros(SHAPE, np.uint8)
    gm[[3, 4, 5]] = masks["GM"][[3, 4, 5]]               # painted on 3, 4, 5; slice 8 marked 'no muscle here'
    m = GEOMETRY.ijk_to_lps.copy()
    stored = gm
    if flip_k:                                            # file slice n is volume slice K - 1 - n
        m = m @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, SHAPE[0] - 1], [0, 0, 0, 1.0]])
        stored = stored[::-1]
    if swap_ij:                                           # file (i, j) is volume (j, i)
        m = m @ np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        stored = stored.transpose(0, 2, 1)
    tag = (SHAPE[0] - 1 - 8, SHAPE[0] - 1 - 5, SHAPE[0] - 1 - 4, SHAPE[0] - 1 - 3) if flip_k else (3, 4, 5, 8)
    geometry = io.Geometry.from_ijk_to_lps(m)
    path = io.write_segmentation(io.Segmentation([io.Segment("GM", np.ascontiguousarray(stored), (1.0, 0.0, 0.5),
                                                             io.AnnotatedSlices(0, tag))], geometry),
                                 tmp_path / "seeds.seg.nrrd")
    seg = io.read_segmentation(path, reference=GEOMETRY, reference_shape=SHAPE)
    np.testing.assert_array_equal(seg.mask("GM"), gm)
    assert seg.get("GM").annotated == io.AnnotatedSlices(0, (3, 4, 5, 8))


@pytest.mark.parametrize("layers", [1, 2])
def test_a_segmentation_given_as_the_volume_says_so(tmp_path, capsys, layers):
    """``ifssnet propagate SEEDS VOLUME`` (the two swapped) read the .seg.nrrd as the volume: with overlapping
    segments it was refused as 'RGB or vector ... Vector to Scalar Volume', with one layer its labels were taken
    for an image and the volume's intensities for a labelmap of hundreds of segments (a message about strokes in
    two views, or the memory of one segment per grey level). A segmentation given as a volume is now named as such."""
    masks = _masks()
    if layers == 1:
        del masks["SOL"]
    seeds = io.write_segmentation(io.segmentation_from_masks(masks, GEOMETRY), tmp_path / "seeds.seg.nrrd")
    noise = np.random.default_rng(0).integers(0, 255, SHAPE).astype(np.uint8)
    volume = io.write_volume(io.Image(noise, GEOMETRY), tmp_path / "volume.nrrd")
    assert main(["propagate", str(seeds), str(volume), "-o", str(tmp_path / "out.seg.nrrd")]) == 2
    line = _error_line(capsys)[0]
    assert "is a segmentation, not a volume" in line and "VOLUME SEEDS" in line
    with pytest.raises(io.InputError, match="is a segmentation, not a volume"):
        io.read_volume(seeds)
