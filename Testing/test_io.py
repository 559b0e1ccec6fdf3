"""IO round trips keep every voxel and the geometry; failures leave nothing behind."""
import os

import numpy as np
import pytest
import SimpleITK as sitk

from ifssnet.errors import InputError, ResourceError, VolumeError
from ifssnet.io import (AnnotatedSlices, Geometry, Image, Segment, Segmentation, read_segmentation,
                        read_volume, write_segmentation, write_volume)

OBLIQUE = Geometry(spacing=(0.3, 0.4, 0.5), origin=(-12.5, 3.0, 100.25),
                   direction=tuple(np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]]).ravel()))


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii", ".mha", ".mhd"])
def test_volume_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(7, 9, 11), dtype=np.uint8)
    path = write_volume(Image(arr, OBLIQUE), tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, arr)
    assert back.geometry.same_as(OBLIQUE, tol=1e-5)
    assert not [p for p in os.listdir(tmp_path) if ".partial" in p]


def _seg(shape=(6, 8, 10)):
    rng = np.random.default_rng(1)
    a = (rng.random(shape) > 0.6).astype(np.uint8)
    b = (rng.random(shape) > 0.7).astype(np.uint8)  # overlaps a: needs a second layer
    return Segmentation([Segment("GM", a, (1.0, 0.0, 0.5), AnnotatedSlices(0, (1, 2, 5))),
                         Segment("SOL", b, (0.2, 0.3, 0.9))], OBLIQUE)


def test_segmentation_round_trip_slicerio_and_sitk(tmp_path):
    seg = _seg()
    path = write_segmentation(seg, tmp_path / "s.seg.nrrd")
    back = read_segmentation(path)
    assert back.names == ["GM", "SOL"]
    for s, t in zip(seg.segments, back.segments):
        np.testing.assert_array_equal(s.mask, t.mask)
        assert np.allclose(s.color, t.color)
    assert back.get("GM").annotated == AnnotatedSlices(0, (1, 2, 5))
    assert back.get("SOL").annotated is None
    assert back.geometry.same_as(OBLIQUE, tol=1e-5)
    # SimpleITK reads the same file with the same geometry (4-D when layers overlap: check the grid).
    img = sitk.ReadImage(str(path))
    assert np.allclose(img.GetSpacing()[:3], OBLIQUE.spacing)
    assert np.allclose(img.GetOrigin()[:3], OBLIQUE.origin)


def test_segments_are_laid_into_layers_as_slicerio_lays_them(tmp_path):
    """io.add_to_layers (our own, on the (K, J, I) masks' bounding boxes) gives the layers, label values and extents
    of slicerio.add_segment (Slicer's way): overlapping segments go to further layers, an empty one takes the next
    label of the first layer; and the file written reads back mask for mask, with the layers and the extents."""
    import slicerio

    from ifssnet.io import Segment, Segmentation, add_to_layers

    rng = np.random.default_rng(3)
    shape = (9, 11, 13)
    masks = []
    for n in range(7):
        m = np.zeros(shape, bool)
        k, j, i = rng.integers(0, 6, 3)
        m[k:k + 3 + n % 3, j:j + 4, i:i + 5] = rng.random((3 + n % 3, 4, 5)) > 0.3
        masks.append(m)
    masks.insert(3, np.zeros(shape, bool))                      # an empty segment
    masks.append(masks[0].copy())                              # the same voxels as another one
    theirs = slicerio.create_segmentation(shape[::-1], np.eye(4), dtype="uint8")
    layers, ours = [], []
    for n, m in enumerate(masks):
        info = {"id": f"S{n}"}
        want = slicerio.add_segment(theirs, m.transpose(2, 1, 0), info)
        got = add_to_layers(layers, ours, m)
        ours.append(got)
        assert got == {k: want[k] for k in ("labelValue", "layer", "extent")}, n
    assert len(layers) > 1                                      # the overlaps made layers
    their_voxels = np.asarray(theirs["voxels"])
    np.testing.assert_array_equal(np.stack(layers).transpose(0, 3, 2, 1), their_voxels)
    seg = Segmentation([Segment(f"S{n}", m.astype(np.uint8)) for n, m in enumerate(masks)], OBLIQUE)
    back = read_segmentation(write_segmentation(seg, tmp_path / "l.seg.nrrd"))
    for a, b in zip(seg.segments, back.segments):
        np.testing.assert_array_equal(a.mask, b.mask)
    raw = slicerio.read_segmentation(str(tmp_path / "l.seg.nrrd"))
    assert [(x["layer"], x["labelValue"], list(x["extent"])) for x in raw["segments"]] == \
        [(x["layer"], x["labelValue"], x["extent"]) for x in ours]


def test_plain_labelmap(tmp_path):
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1, 1:3, 1:3] = 2
    lab[2, 2:4, 2:5] = 5
    write_volume(Image(lab, OBLIQUE), tmp_path / "lab.nii.gz")
    seg = read_segmentation(tmp_path / "lab.nii.gz")
    assert seg.names == ["Label_2", "Label_5"]
    np.testing.assert_array_equal(seg.mask("Label_5"), (lab == 5).astype(np.uint8))


def test_resample_onto_reference(tmp_path):
    seg = _seg((4, 4, 4))
    write_segmentation(seg, tmp_path / "s.seg.nrrd")
    ref = Geometry(spacing=(0.15, 0.2, 0.25), origin=OBLIQUE.origin, direction=OBLIQUE.direction)
    back = read_segmentation(tmp_path / "s.seg.nrrd", reference=ref, reference_shape=(8, 8, 8))
    assert back.shape == (8, 8, 8)
    np.testing.assert_array_equal(back.mask("GM")[::2, ::2, ::2], seg.mask("GM"))


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing.nrrd")
    sitk.WriteImage(sitk.Image([5, 5], sitk.sitkUInt8), str(tmp_path / "flat.nrrd"))
    with pytest.raises(VolumeError, match="2-D"):
        read_volume(tmp_path / "flat.nrrd")
    sitk.WriteImage(sitk.Image([5, 5, 5], sitk.sitkVectorUInt8, 3), str(tmp_path / "rgb.nrrd"))
    with pytest.raises(VolumeError, match="components"):
        read_volume(tmp_path / "rgb.nrrd")
    (tmp_path / "trunc.nrrd").write_bytes(b"NRRD0004\ntype: uint8\n")
    with pytest.raises(InputError):
        read_volume(tmp_path / "trunc.nrrd")


def test_failed_write_keeps_existing_file(tmp_path):
    target = tmp_path / "v.nrrd"
    write_volume(Image(np.ones((2, 2, 2), np.uint8), Geometry()), target)
    before = target.read_bytes()

    class Boom(Exception):
        pass

    from ifssnet import io as io_mod
    with pytest.raises(Boom):
        io_mod.atomic_write(target, lambda tmp: (open(tmp, "wb").write(b"partial"), (_ for _ in ()).throw(Boom())))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["v.nrrd"]
    with pytest.raises(ResourceError, match="does not exist"):
        write_volume(Image(np.ones((2, 2, 2), np.uint8)), tmp_path / "nope" / "v.nrrd")


def test_atomic_write_can_make_its_folder_and_reports_a_folder_it_cannot_make(tmp_path):
    from ifssnet import io as io_mod

    target = tmp_path / "a" / "b" / "x.txt"
    io_mod.atomic_write(target, lambda tmp: open(tmp, "w").write("ok"), make_folder=True)
    assert target.read_text() == "ok"
    (tmp_path / "file").write_text("")
    with pytest.raises(ResourceError, match="Could not create the folder"):
        io_mod.atomic_write(tmp_path / "file" / "sub" / "x.txt", lambda tmp: None, make_folder=True)


def _cancelling_at(stage, at):
    """(progress, token, seen): the callback records each report and sets the token when ``stage`` reports ``at``."""
    from ifssnet.progress import CancelToken

    token, seen = CancelToken(), []

    def progress(name, done, total):
        seen.append((name, done, total))
        if name == stage and done >= at:
            token.cancel()

    return progress, token, seen


def test_writing_a_segmentation_reports_each_segment_and_a_cancel_keeps_the_old_file(tmp_path):
    """Laying a full-size segment into the layers takes 8-20 s: each is a step, and Cancel between them writes nothing."""
    from ifssnet.errors import Cancelled
    from ifssnet.io import STAGE_WRITING

    seen = []
    write_segmentation(_seg(), tmp_path / "s.seg.nrrd", progress=lambda *a: seen.append(a))
    assert seen[0] == (STAGE_WRITING, 0, 3) and seen[-1] == (STAGE_WRITING, 3, 3)
    target = tmp_path / "old.seg.nrrd"
    target.write_bytes(b"the previous segmentation")
    for at in (1, 2):        # after the first segment, and after the last one, before the file is written
        progress, token, _ = _cancelling_at(STAGE_WRITING, at)
        with pytest.raises(Cancelled):
            write_segmentation(_seg(), target, progress=progress, cancel=token)
        assert target.read_bytes() == b"the previous segmentation"
        assert not [p for p in os.listdir(tmp_path) if ".partial" in p]


def test_reading_and_resampling_a_segmentation_report_each_segment_and_stop_on_cancel(tmp_path):
    from ifssnet.errors import Cancelled
    from ifssnet.io import STAGE_READING

    path = write_segmentation(_seg(), tmp_path / "s.seg.nrrd")
    seen = []
    read_segmentation(path, reference=Geometry(spacing=(0.6, 0.8, 1.0)), reference_shape=(3, 4, 5),
                      progress=lambda *a: seen.append(a))
    assert [a for a in seen if a[0] == STAGE_READING] == [(STAGE_READING, n, 2) for n in range(3)]
    assert seen[-1] == ("Resampling segmentation", 2, 2)
    for stage in (STAGE_READING, "Resampling segmentation"):
        progress, token, seen = _cancelling_at(stage, 1)
        with pytest.raises(Cancelled):
            read_segmentation(path, reference=Geometry(spacing=(0.6, 0.8, 1.0)), reference_shape=(3, 4, 5),
                              progress=progress, cancel=token)
        assert seen[-1] == (stage, 1, 2)


def test_a_seed_file_saved_cropped_keeps_its_annotated_slices_on_the_volumes_grid(tmp_path):
    """A seed file saved cropped (Slicer's 'crop to minimum extent', or cut by another tool) lies on the volume's
    grid shifted by whole voxels. Its annotated slices, "no muscle here" marks included, used to be dropped when
    it was read onto the volume's grid; they now follow the shift. A grid that is not a whole-voxel shift still
    drops them (slices do not map one to one)."""
    geometry = Geometry(spacing=(0.5, 0.5, 2.0), origin=(10.0, -4.0, 3.0), direction=OBLIQUE.direction)
    full = np.zeros((12, 6, 7), np.uint8)
    full[[3, 4, 9], 1:4, 2:5] = 1            # painted on 3, 4 and 9; slice 10 marked "no muscle here"
    crop = full[2:11, 1:5, 2:6]               # k from 2, j from 1, i from 2
    shifted = Geometry(spacing=geometry.spacing, direction=geometry.direction,
                       origin=tuple(geometry.ijk_to_lps[:3, :3] @ np.array([2.0, 1.0, 2.0]) + geometry.origin))
    write_segmentation(Segmentation([Segment("GM", crop, (1.0, 0.0, 0.5), AnnotatedSlices(0, (1, 2, 7, 8)))],
                                    shifted), tmp_path / "crop.seg.nrrd")
    back = read_segmentation(tmp_path / "crop.seg.nrrd", reference=geometry, reference_shape=full.shape)
    assert back.get("GM").annotated == AnnotatedSlices(0, (3, 4, 9, 10))
    np.testing.assert_array_equal(back.mask("GM"), full)
    half = Geometry(spacing=geometry.spacing, direction=geometry.direction,
                    origin=tuple(geometry.ijk_to_lps[:3, :3] @ np.array([2.0, 1.0, 2.5]) + geometry.origin))
    write_segmentation(Segmentation([Segment("GM", crop, (1.0, 0.0, 0.5), AnnotatedSlices(0, (1, 2, 7, 8)))],
                                    half), tmp_path / "half.seg.nrrd")
    assert read_segmentation(tmp_path / "half.seg.nrrd", reference=geometry,
                             reference_shape=full.shape).get("GM").annotated is None
