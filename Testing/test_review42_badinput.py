"""Session 42, the bad-input rule end to end: bad input gets one clear line that says what to do, and loses
nothing (no output written, half-written, or replaced; the user's segmentation as it was).

Each test here failed before its fix. The matrix audited (session 42): the commands propagate, seeds, compare,
compare-set, evaluate, train, demo and phantom, and the Segmentation, Comparison and Training Logic classes on real
slicer-core nodes, against a missing path, a PNG, a segmentation given as the volume, 2-D, 4-D and vector volumes,
NaN / inf / all-NaN / constant / uint16 full-range volumes, 2 seed slices, an empty segment, a wrong --axis, a
segment name not in the file, a missing output folder, an output equal to an input, corrupt or missing weights, too
little memory, Ctrl-C, a full disk (simulated, and a real 64 kB tmpfs) and a cancel. Fixed here: an image volume
given where a segmentation is asked for, a demo with a corrupt model or a bad shape, ``train --log`` that is a
folder, seeds whose paint lies outside the volume, a volume of tiny values, a Training pair without a volume, the
folder left by Ctrl-C, a full disk, ``phantom --montage`` onto an input; after the audit: ``seeds --count`` covering
the volume, a case given twice to compare-set, a corrupt base model in the Training Logic, and files too large to
read in compare, compare-set, seeds and evaluate.
"""
from pathlib import Path

import numpy as np
import pytest

from cli_output import error_line, run_cli
from fake_models import CopyModel
from ifssnet.io import (AnnotatedSlices, Geometry, Image, read_segmentation, segmentation_from_masks,
                        write_segmentation, write_volume)

K, J, I = 24, 32, 32
GEOMETRY = Geometry(spacing=(0.5, 0.4, 0.4), origin=(1.0, -2.0, 3.0))


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 8:22, 10:24] = 1
    return m


def _case(folder: Path, geometry=GEOMETRY):
    """A speckle volume (every grey level, as an ultrasound sweep has), its reference and 3 seed slices."""
    vol = np.random.default_rng(0).integers(0, 256, (K, J, I)).astype(np.uint8)
    write_volume(Image(vol, geometry), folder / "volume.nrrd")
    m = _muscle()
    write_segmentation(segmentation_from_masks({"GM": m}, geometry), folder / "reference.seg.nrrd")
    seeds = np.zeros_like(m)
    seeds[10:13] = m[10:13]
    write_segmentation(segmentation_from_masks({"GM": seeds}, geometry, {"GM": AnnotatedSlices(0, (10, 11, 12))}),
                       folder / "seeds.seg.nrrd")
    return folder / "volume.nrrd", folder / "reference.seg.nrrd", folder / "seeds.seg.nrrd"


@pytest.fixture
def copy_net(monkeypatch):
    import ifssnet.propagate as prop

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))


def _files(folder: Path):
    return sorted(p.name for p in folder.rglob("*"))


# ------------------------------------------------------------ an image volume where a segmentation is asked for
@pytest.mark.parametrize("command", ["seeds", "evaluate", "propagate", "compare", "train"])
def test_an_image_volume_given_as_the_segmentation_is_refused_and_nothing_is_written(tmp_path, capsys, copy_net,
                                                                                      command):
    """Before: `seeds` cut seeds from 255 'segments' (one per grey level) and wrote them, `propagate` listed 255
    names or spoke of strokes painted in two views, `train` of an axis, `evaluate` of '(none)' segments."""
    vol, ref, seeds = _case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    argv = {"seeds": ["seeds", vol, "-o", out / "s.seg.nrrd"],
            "evaluate": ["evaluate", ref, vol],
            "propagate": ["propagate", vol, vol, "-o", out / "r.seg.nrrd"],
            "compare": ["compare", vol, seeds, vol, "--methods", "fbs"],
            "train": ["train", f"{vol}:{vol}", "--out", out / "m.pt", "--steps", "1", "--size", "32",
                      "--width-mult", "0.25"]}[command]
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    line = error_line(err)
    assert code == 2, line
    assert "looks like an image volume, not a segmentation" in line and "the volume first" in line
    assert _files(tmp_path) == before


@pytest.mark.parametrize("shape", ["blocks", "outlines"])
def test_a_labelmap_with_many_labels_is_still_read_as_segments(tmp_path, shape):
    """The check is for images: a labelmap of 40 labels (regions or thin outlines, not speckle) reads as 40
    segments."""
    arr = np.zeros((K, J, I), np.uint16)
    j, i = np.mgrid[:J, :I]
    ring = np.abs(np.hypot(j - J / 2, i - I / 2) - 10) < 0.5        # one voxel wide, 4-connected
    for n in range(40):
        if shape == "blocks":
            arr[n % K, (n // K) * 16:(n // K) * 16 + 12, 4:28] = n + 1
        else:
            arr[n % K][ring & ((i < I / 2) if n >= K else True)] = n + 1
    write_volume(Image(arr, GEOMETRY), tmp_path / "labels.nrrd")
    seg = read_segmentation(tmp_path / "labels.nrrd")
    assert len(seg.segments) == 40 and seg.get("Label_40").mask.any()


# ------------------------------------------------------------------------------------------------------ demo
@pytest.mark.parametrize("bad", ["corrupt model", "missing model", "shape"])
def test_demo_with_a_bad_model_or_shape_makes_no_folder_and_writes_nothing(tmp_path, capsys, bad):
    """Before: a corrupt or missing --model was found after the phantom and its seeds were written (and a bad
    --shape after the output folder was made)."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file" * 10)
    argv = {"corrupt model": ["--model", corrupt, "--shape", "24", "32", "32"],
            "missing model": ["--model", tmp_path / "nope.pt", "--shape", "24", "32", "32"],
            "shape": ["--shape", "2", "8", "8"]}[bad]
    code, _, err = run_cli(capsys, "demo", tmp_path / "demo", *argv)
    line = error_line(err)
    assert code == (2 if bad == "shape" else 3), line
    assert not (tmp_path / "demo").exists()


# ---------------------------------------------------------------------------------------------- train --log
def test_train_log_that_cannot_be_written_is_refused_before_the_cases_are_read(tmp_path, capsys, monkeypatch):
    """Before: `open(--log)` failed after the cases were read, an internal error (exit 70) with a traceback's
    exception name. (A --log in a folder that does not exist yet is made, as --out's folder is:
    test_review42_training.)"""
    import ifssnet.train_cli as train_cli

    def never(*a, **k):
        raise AssertionError("the cases were read")

    monkeypatch.setattr(train_cli, "_read_cases", never)
    _case(tmp_path)
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, "train", tmp_path, "--out", tmp_path / "m.pt", "--steps", "1", "--log", tmp_path)
    line = error_line(err)
    assert code == 2, line
    assert "is a folder" in line and "internal error" not in line
    assert _files(tmp_path) == before


# ------------------------------------------------------------------------------- seeds made on another volume
@pytest.mark.parametrize("command", ["propagate", "compare"])
def test_seeds_painted_outside_the_volume_say_where_the_paint_is(tmp_path, capsys, copy_net, command):
    """Before: "Nothing is painted in this segment" (propagate) and "'GM' has no annotated slice" (compare) for a
    seed file that holds paint, on another volume's grid (here 100 mm away)."""
    _case(tmp_path)
    far = tmp_path / "far"
    far.mkdir()
    _case(far, Geometry(spacing=GEOMETRY.spacing, origin=(101.0, -2.0, 3.0)))
    before = _files(tmp_path)
    tail = {"propagate": ["-o", tmp_path / "r.seg.nrrd"],
            "compare": [tmp_path / "reference.seg.nrrd", "--methods", "fbs", "--csv", tmp_path / "r.csv"]}[command]
    code, _, err = run_cli(capsys, command, tmp_path / "volume.nrrd", far / "seeds.seg.nrrd", *tail)
    line = error_line(err)
    assert code == 2, line
    assert "The paint of GM" in line and "lies outside the volume" in line and "made on another volume" in line
    assert "Give the volume the seeds were painted on" in line
    assert _files(tmp_path) == before


# ------------------------------------------------------------------------- a volume in units of tiny values
@pytest.mark.parametrize("scale", [1e-9, 1e-30])
def test_a_volume_of_tiny_values_is_not_taken_for_a_constant_one(scale):
    """Before: "The volume is constant" for any volume whose spread was under 1e-6 (a float volume in another unit),
    and for values under about 1e-19 (their float32 squares are 0). A constant volume is refused at every scale."""
    from ifssnet.errors import VolumeError
    from ifssnet.preprocess import intensity_stats

    volume = np.random.default_rng(0).integers(0, 256, (K, J, I)).astype(np.float64)
    mean, std = intensity_stats(volume)
    tiny = (volume * scale).astype(np.float32)
    assert intensity_stats(tiny) == pytest.approx((mean * scale, std * scale), rel=1e-5)
    for value in (0.0, scale, 5.0):
        with pytest.raises(VolumeError, match="constant.*Check that the right volume is selected"):
            intensity_stats(np.full((K, J, I), value, np.float32))


# -------------------------------------------------------------------------------------- Slicer Logic classes
# fixtures (nodes: scene_nodes, skipped without slicer-core); slicer_nodes puts the module folders on sys.path
from slicer_nodes import nodes, scene_nodes  # noqa: E402,F401
from slicer_fixture import slicer_app, slicer_scene  # noqa: E402,F401


@pytest.mark.slicer
def test_propagate_in_slicer_on_a_volume_of_tiny_values_runs_and_keeps_the_painted_slices(nodes):
    """The Segmentation Logic refused such a volume as constant (the network's intensity statistics)."""
    pytest.importorskip("torch")
    from slicer_nodes import _ijk_to_ras, _painted_gm

    slicer, volumeNode, segNode, truth, arrays, g, a, painted, L = _painted_gm(nodes)
    voxels = slicer.util.arrayFromVolume(volumeNode).astype(np.float32) * np.float32(1e-9)
    tiny = slicer.util.addVolumeFromArray(voxels, _ijk_to_ras(), "US in another unit")
    L.propagate(tiny, segNode, [a], device="cpu", preset="fast")      # the shipped network
    out = arrays.segmentToArray(segNode, a, arrays.referenceGeometry(tiny, segNode))
    np.testing.assert_array_equal(out[[5, 11, 16]], painted[[5, 11, 16]])


@pytest.mark.slicer
def test_a_training_pair_without_its_volume_says_so_and_writes_nothing(nodes, tmp_path):
    """Before: AttributeError ('NoneType' object has no attribute 'GetParentTransformNode'), an internal error."""
    from slicer_nodes import _assert_same, _paint, _state

    from ifssnet.errors import InputError
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    slicer, volumeNode, segNode, truth = nodes
    _paint(slicer, volumeNode, segNode, truth, 0, (10, 11, 12), name="GM")
    before = _state(segNode, volumeNode)
    with pytest.raises(InputError, match="'Seg' has no volume.*Pair every segmentation with the volume"):
        IFSSNetTrainingLogic().train([(None, segNode)], mode="fewshot", epochs=1, stepsPerEpoch=1, size=32,
                                     widthMult=0.25, outputPath=str(tmp_path / "m.pt"))
    _assert_same(before, _state(segNode, volumeNode))
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------ Ctrl-C while a phantom is made
@pytest.mark.parametrize("command", ["phantom", "demo"])
@pytest.mark.parametrize("stage", ["Phantom", "Writing volume"])
def test_ctrl_c_while_a_phantom_is_made_leaves_no_empty_folder(tmp_path, capsys, monkeypatch, command, stage):
    """Before: the output folder was made before the rendering, and stayed, empty, after Ctrl-C ("Nothing was
    written") or a failure such as running out of memory. A folder that was there already stays."""
    import ifssnet.cli_data as cli_data
    import ifssnet.progress as progress
    from cli_output import interrupting_progress

    for module in (cli_data, progress):
        monkeypatch.setattr(module, "TqdmProgress", interrupting_progress(stage))
    for out in (tmp_path / "new" / "case", tmp_path):
        code, _, err = run_cli(capsys, command, out, "--shape", "24", "32", "32")
        line = error_line(err)
        assert code == 130 and "Interrupted (Ctrl-C)" in line
        assert "Nothing was written" in line or (command == "demo" and out == tmp_path), line
    assert _files(tmp_path) == ["new"]          # the parent made on the way stays; the folder asked for does not


@pytest.mark.slicer
def test_propagate_in_slicer_from_a_segment_painted_outside_the_volume_says_so(nodes):
    """Before: "Segment 'GM' is empty: no painted slices" for a segment painted on another volume, away from this
    one. A segment that is empty everywhere keeps that message."""
    from slicer_nodes import _assert_same, _paint, _state, far_annotation

    from ifssnet.errors import SeedError
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

    slicer, volumeNode, segNode, truth = nodes
    other, seeds = far_annotation(slicer, volumeNode, "Seeds of the other sweep")
    a, _ = _paint(slicer, other, seeds, truth, 0, (10, 11, 12), name="GM")
    empty = seeds.GetSegmentation().AddEmptySegment("", "SOL")
    before = _state(seeds, other)
    L = IFSSNetSegmentationLogic()
    with pytest.raises(SeedError, match="'GM' is painted, but outside the selected volume.*Select the volume it was "
                                        "painted on"):
        L.propagate(volumeNode, seeds, [a])
    with pytest.raises(SeedError, match="'SOL' is empty: no painted slices"):
        L.propagate(volumeNode, seeds, [empty])
    _assert_same(before, _state(seeds, other))
    # the Comparison reads seeds as Propagate does, and says what to do in its own words
    from slicer_nodes import _reference_segmentation
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    seeds.GetSegmentation().RemoveSegment(empty)
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    with pytest.raises(SeedError, match="outside the selected volume") as err:
        IFSSNetComparisonLogic().prepare(volumeNode, seeds, ref, ["fbs"], "seeds")
    assert "then compare again" in err.value.todo and "propagate" not in err.value.todo


# ------------------------------------------------------------------------------------- a disk that fills up
@pytest.mark.parametrize("command", ["phantom", "compare"])
def test_a_full_disk_names_the_file_asked_for_not_a_hidden_temporary_one(tmp_path, capsys, monkeypatch, command):
    """Before: "Could not write 'out/.reference.seg.nrrd.t9cenug0.partial/reference.seg.nrrd'" (a writer that writes
    atomically itself, inside write_together), a folder that is gone by the time the message is read."""
    import errno
    import os

    import matplotlib.figure
    import slicerio

    def full(path, *a, **k):
        Path(path).write_bytes(b"partial")                 # a partial file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    vol, ref, _ = _case(tmp_path)
    if command == "phantom":
        monkeypatch.setattr(slicerio, "write_segmentation", full)
        argv, named = ["phantom", tmp_path / "ph", "--shape", "24", "32", "32"], tmp_path / "ph" / "reference.seg.nrrd"
    else:
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, fname, *a, **k: full(fname))
        argv = ["compare", vol, "-", ref, "--methods", "fbs", "--csv", tmp_path / "c.csv", "--plot", tmp_path / "c.png"]
        named = tmp_path / "c.png"
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    line = error_line(err)
    assert code == 4, line
    assert f"Could not write '{named}': No space left on device" in line and ".partial" not in line
    assert "nothing was written" in line
    assert _files(tmp_path) == before


@pytest.mark.parametrize("command", ["phantom", "train"])
def test_a_full_disk_that_simpleitk_or_torch_report_as_runtime_error_is_a_resource_error(tmp_path, capsys,
                                                                                          monkeypatch, command):
    """SimpleITK's writers and torch.save report a full disk as RuntimeError, not OSError (found on a 64 kB tmpfs):
    it was an internal error (exit 70). Now exit 4 and what to do, where the folder has (almost) no space left; a
    RuntimeError with space to spare is still an internal error."""
    import shutil
    from collections import namedtuple

    import SimpleITK as sitk
    import torch

    def full(image_or_obj, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: itkNrrdImageIO.cxx:1349:")

    Usage = namedtuple("Usage", "total used free")
    free = {"bytes": 0}
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(*real_usage(p)[:2], free["bytes"]))
    _case(tmp_path)
    if command == "phantom":
        monkeypatch.setattr(sitk, "WriteImage", full)
        argv, named = ["phantom", tmp_path / "ph", "--shape", "24", "32", "32"], tmp_path / "ph" / "volume.nrrd"
    else:
        monkeypatch.setattr(torch, "save", full)
        argv = ["train", tmp_path, "--out", tmp_path / "m.pt", "--steps", "1", "--size", "32", "--width-mult", "0.25"]
        named = tmp_path / "m.ckpt.pt"
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    line = error_line(err)
    assert code == 4, line
    assert f"Could not write '{named}': No space left on device (0 kB free)" in line and "nothing was written" in line
    assert _files(tmp_path) == before
    free["bytes"] = 10 << 30
    code, _, err = run_cli(capsys, *argv)
    assert code == 70 and "internal error" in error_line(err)
    assert _files(tmp_path) == before


def test_a_disk_that_fills_up_under_the_training_log_is_a_resource_error(tmp_path, capsys, monkeypatch):
    """`train --log` appends as it goes: a full disk there (found on a 64 kB tmpfs) was an internal error (exit 70),
    'OSError: [Errno 28]'. An earlier model of that name stays as it was."""
    import errno
    import os

    import ifssnet.train_cli as train_cli

    class FullLog:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        flush = close = lambda self: None

    monkeypatch.setattr(train_cli, "open", lambda *a, **k: FullLog(), raising=False)
    _case(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"an earlier model")
    code, _, err = run_cli(capsys, "train", tmp_path, "--out", tmp_path / "m.pt", "--steps", "2", "--size", "32",
                           "--width-mult", "0.25", "--log", tmp_path / "run.log")
    line = error_line(err)
    assert code == 4, line
    assert "The disk is full (No space left on device). Free some disk space" in line
    assert (tmp_path / "m.pt").read_bytes() == b"an earlier model"


def test_a_disk_that_fills_up_under_the_demo_figure_leaves_no_partial_png(tmp_path, capsys, monkeypatch, copy_net):
    """The demo's figure was written in place: a full disk left a partial demo.png (and an internal error)."""
    import errno
    import os

    import matplotlib.figure

    def full(self, fname, *a, **k):
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code, _, err = run_cli(capsys, "demo", tmp_path / "demo", "--shape", "24", "32", "32")
    line = error_line(err)
    assert code == 4 and f"Could not write '{tmp_path / 'demo' / 'demo.png'}': No space left on device" in line
    assert not (tmp_path / "demo" / "demo.png").exists() and not [p for p in _files(tmp_path) if ".partial" in p]


@pytest.mark.parametrize("montage", ["volume.nrrd", "folder"])
def test_a_phantom_montage_matplotlib_cannot_write_is_refused_before_the_phantom_is_made(tmp_path, capsys, montage):
    """Before: an internal error (ValueError: Format 'nrrd' is not supported) once the phantom was written."""
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli(capsys, "phantom", tmp_path / "ph", "--shape", "24", "32", "32",
                           "--montage", tmp_path / montage)
    line = error_line(err)
    assert code == 2 and ("End the name in .png" in line or "is a folder" in line), line
    assert _files(tmp_path) == ["folder"]


# ------------------------------------------------------------------------------- left by the matrix, fixed after
def test_seeds_with_a_count_that_covers_the_volume_is_refused_and_writes_nothing(tmp_path, capsys):
    """``ifssnet seeds --count 100`` on a 40-slice volume wrote every slice as a seed: nothing left to propagate."""
    from ifssnet import io

    mask = np.zeros((40, 12, 12), np.uint8)
    mask[5:35, 3:9, 3:9] = 1
    io.write_segmentation(io.Segmentation([io.Segment("GM", mask)], io.Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))),
                          tmp_path / "ref.seg.nrrd")
    code, _, err = run_cli(capsys, "seeds", tmp_path / "ref.seg.nrrd", "-o", tmp_path / "s.seg.nrrd", "--count", "100")
    assert code == 2 and "--count 100" in error_line(err) and "Give --count 3" in error_line(err)
    assert not (tmp_path / "s.seg.nrrd").exists()
    code, _, err = run_cli(capsys, "seeds", tmp_path / "ref.seg.nrrd", "-o", tmp_path / "s.seg.nrrd", "--count", "5")
    assert code == 0, err


def test_compare_set_refuses_a_case_given_twice(tmp_path, capsys):
    """``compare-set p1 p1`` ran the case twice and counted it twice (n = 2) in the means and stds."""
    _case(tmp_path)
    (tmp_path / "again").symlink_to(tmp_path, target_is_directory=True)
    for dirs in ((tmp_path, tmp_path), (tmp_path, tmp_path / "again")):
        code, _, err = run_cli(capsys, "compare-set", *dirs, "--methods", "fbs")
        assert code == 2 and "given twice" in error_line(err), err


@pytest.mark.slicer
def test_a_fine_tune_from_a_corrupt_base_model_leaves_no_folder_behind(nodes, tmp_path):
    """The Training Logic made the output's folder before it read the base model: a corrupt base model was refused,
    and an empty folder stayed where the model was to go."""
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic
    from ifssnet.errors import IFSSNetError

    slicer, volumeNode, segNode, truth = nodes
    corrupt = tmp_path / "base.pt"
    corrupt.write_bytes(b"not a torch file" * 10)
    with pytest.raises(IFSSNetError):
        IFSSNetTrainingLogic().train([(volumeNode, segNode)], mode="full", epochs=1, stepsPerEpoch=1, size=32,
                                     baseModel=str(corrupt), outputPath=str(tmp_path / "models" / "m.pt"))
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("command", ["compare", "compare-set", "seeds", "evaluate"])
def test_files_too_large_to_read_are_refused_before_any_voxel_is_read(tmp_path, capsys, monkeypatch, command):
    """``ifssnet propagate`` refused a volume too large to read from its header; compare, compare-set, seeds and
    evaluate read it, and ran out of memory part way (or were killed by the system). Now refused first, exit 4,
    with what to do, writing nothing."""
    vol, ref, seeds = _case(tmp_path)
    argv = {"compare": ("compare", vol, seeds, ref, "--methods", "fbs", "--csv", tmp_path / "o.csv"),
            "compare-set": ("compare-set", tmp_path, "--methods", "fbs", "--csv", tmp_path / "o.csv"),
            "seeds": ("seeds", ref, "-o", tmp_path / "o.seg.nrrd"),
            "evaluate": ("evaluate", seeds, ref)}[command]
    before = _files(tmp_path)
    monkeypatch.setenv("IFSSNET_AVAILABLE_MEMORY", "1K")
    code, _, err = run_cli(capsys, *argv)
    line = error_line(err)
    assert code == 4 and "Reading" in line and "needs about" in line and "crop the volume" in line, line
    assert _files(tmp_path) == before
    monkeypatch.delenv("IFSSNET_AVAILABLE_MEMORY")
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
