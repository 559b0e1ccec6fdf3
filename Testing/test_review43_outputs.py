"""Session 43: every file the command line writes loses nothing of the user's, and the messages on unusual voxel types
are true.

The rule (``ifssnet.io``): an output named on the command line (``-o``, ``--csv``, ``--plot``, ``--montage``,
``--out``, ``--log``, ``--json``, ``--md``, ``--profile``) replaces a file of that name, as asked, but never an input
and never another output of the same run (:func:`~ifssnet.io.check_output_files`); files a command writes into a
folder under fixed names (``ifssnet phantom DIR``, ``ifssnet demo DIR``) replace nothing without ``--force``
(:func:`~ifssnet.io.refuse_replacing`). Each is checked before any work. Each test here failed before its fix.
"""
from pathlib import Path

import numpy as np
import pytest

from cli_output import error_line, run_cli

SHAPE = ("--shape", "24", "32", "32")


def _snapshot(folder: Path) -> dict:
    """name -> bytes of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ phantom and demo into a folder that is in use
@pytest.mark.parametrize("command,name", [("phantom", "volume.nrrd"), ("phantom", "reference.seg.nrrd"),
                                          ("demo", "volume.nrrd"), ("demo", "result.seg.nrrd"),
                                          ("demo", "demo.png")])
def test_phantom_and_demo_refuse_to_replace_a_file_of_the_folder_and_name_it(tmp_path, capsys, command, name):
    """Before: `ifssnet phantom DIR` / `ifssnet demo DIR` replaced DIR/volume.nrrd (the user's own sweep, say)
    without a word."""
    (tmp_path / name).write_bytes(b"the user's own " + name.encode())
    (tmp_path / "notes.txt").write_text("kept")
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, command, tmp_path, *SHAPE)
    line = error_line(err)
    assert code == 2, line
    assert f"already holds {name}" in line and f"`ifssnet {command}` would replace it" in line, line
    assert "--force" in line and "new or empty folder" in line, line
    assert _snapshot(tmp_path) == before


def test_phantom_with_force_replaces_its_files_and_keeps_the_others(tmp_path, capsys):
    (tmp_path / "volume.nrrd").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE, "--force")
    assert code == 0, err
    from ifssnet.io import read_volume

    assert read_volume(tmp_path / "volume.nrrd").array.shape == (24, 32, 32)
    assert (tmp_path / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ifssnet-made.json", "notes.txt", "reference.seg.nrrd",
                                                          "volume.nrrd"]


def test_phantom_and_demo_write_into_a_folder_that_holds_other_files(tmp_path, capsys):
    """A folder in use for other things is fine: only the command's own file names are refused."""
    (tmp_path / "notes.txt").write_text("kept")
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE)
    assert code == 0, err
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_demo_names_every_file_it_would_replace_and_force_replaces_them(tmp_path, capsys):
    for name in ("seeds.seg.nrrd", "result.confidence.json"):
        (tmp_path / name).write_text("old")
    code, _, err = run_cli(capsys, "demo", tmp_path, *SHAPE, "--device", "cpu")
    line = error_line(err)
    assert code == 2 and "already holds seeds.seg.nrrd, result.confidence.json" in line and "them" in line, line
    assert (tmp_path / "seeds.seg.nrrd").read_text() == "old"
    code, _, err = run_cli(capsys, "demo", tmp_path, *SHAPE, "--device", "cpu", "--force")
    assert code == 0, err
    assert (tmp_path / "result.confidence.json").read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["volume.nrrd", "reference.seg.nrrd", "seeds.seg.nrrd", "result.seg.nrrd", "result.confidence.json",
         "demo.png", ".ifssnet-made.json"])


def test_the_phantom_file_that_is_a_folder_is_refused_before_the_rendering_even_with_force(tmp_path, capsys,
                                                                                               monkeypatch):
    """Before: the phantom was rendered (minutes at full size), then writing it failed."""
    import ifssnet.phantom as phantom

    (tmp_path / "volume.nrrd").mkdir()
    monkeypatch.setattr(phantom, "make_phantom", lambda *a, **k: pytest.fail("rendered"))
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE, "--force")
    line = error_line(err)
    assert code == 2 and "volume.nrrd' is a folder" in line, line


def test_the_help_says_what_phantom_and_demo_do_with_a_folder_in_use(capsys):
    from ifssnet.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("phantom", "demo"):
        text = " ".join(sub.choices[command].format_help().split())
        assert "nothing is written unless --force" in text, command


# ------------------------------------------------------------------------------------------------------ propagate
def test_propagate_refuses_a_confidence_file_that_is_a_folder_before_it_runs(tmp_path, capsys, monkeypatch):
    """OUT.confidence.json, written beside OUT.seg.nrrd: a folder of that name failed the run once the propagation was
    done (minutes on a full sweep), with "Could not write 'out.confidence.json': Is a directory. Free some disk
    space ..."."""
    import ifssnet.propagate as prop
    from fake_models import CopyModel

    from ifssnet.io import AnnotatedSlices, Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))
    volume = np.random.default_rng(0).integers(0, 256, (24, 32, 32)).astype(np.uint8)
    write_volume(Image(volume, Geometry()), tmp_path / "v.nrrd")
    m = np.zeros(volume.shape, np.uint8)
    m[10:13, 8:20, 8:20] = 1
    write_segmentation(segmentation_from_masks({"GM": m}, Geometry(), {"GM": AnnotatedSlices(0, (10, 11, 12))}),
                       tmp_path / "s.seg.nrrd")
    (tmp_path / "out.confidence.json").mkdir()
    monkeypatch.setattr(prop, "propagate", lambda *a, **k: pytest.fail("propagated"))
    code, _, err = run_cli(capsys, "propagate", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd",
                           "-o", tmp_path / "out.seg.nrrd", "--device", "cpu")
    line = error_line(err)
    assert code == 2 and "out.confidence.json' is a folder" in line, line
    assert not (tmp_path / "out.seg.nrrd").exists()


# ------------------------------------------------------------------------------------------------------ bench
@pytest.mark.parametrize("option", ["--json", "--md", "--profile"])
def test_bench_refuses_an_output_that_is_the_model_before_it_runs(tmp_path, capsys, monkeypatch, option):
    """Before: `ifssnet bench --model m.pt --json m.pt` ran the benchmark (minutes) then replaced the model with the
    JSON."""
    import ifssnet.bench as bench

    model = tmp_path / "m.pt"
    model.write_bytes(b"the user's model")
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("ran"))
    monkeypatch.setattr(bench, "profile_propagation", lambda *a, **k: pytest.fail("ran"))
    code, _, err = run_cli(capsys, "bench", "--model", model, option, model)
    line = error_line(err)
    assert code == 2 and "one of the input files" in line, line
    assert model.read_bytes() == b"the user's model"


def test_bench_refuses_json_and_md_on_one_file_before_it_runs(tmp_path, capsys, monkeypatch):
    """Before: the markdown table replaced the JSON, and the run said nothing."""
    import ifssnet.bench as bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("ran"))
    out = tmp_path / "new" / "bench.txt"      # a folder bench makes: still one file for both
    code, _, err = run_cli(capsys, "bench", "--json", out, "--md", out)
    line = error_line(err)
    assert code == 2 and "--json and --md name one file" in line and "a file name each" in line, line
    assert not (tmp_path / "new").exists()


def test_bench_refuses_an_output_that_is_a_folder_before_it_runs(tmp_path, capsys, monkeypatch):
    """Before: the benchmark ran, then writing into the folder's name failed."""
    import ifssnet.bench as bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("ran"))
    code, _, err = run_cli(capsys, "bench", "--md", tmp_path)
    line = error_line(err)
    assert code == 2 and "is a folder" in line, line


# ------------------------------------------------------------------------------------------------------ train
@pytest.mark.parametrize("log_name", ["m.pt", "m.ckpt.pt", "m.best.pt", "resume"])
def test_train_refuses_a_log_that_the_run_would_save_over_or_spoil(tmp_path, capsys, log_name):
    """Before: `--log m.pt --out m.pt` appended the log to m.pt, which the model then replaced (every line gone); a log
    on the --resume checkpoint appended text to it."""
    from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

    vol = np.random.default_rng(0).integers(0, 256, (24, 32, 32)).astype(np.uint8)
    mask = np.zeros(vol.shape, np.uint8)
    mask[:, 8:20, 8:20] = 1
    geometry = Geometry(spacing=(1.0, 1.0, 1.0))
    write_volume(Image(vol, geometry), tmp_path / "volume.nrrd")
    write_segmentation(segmentation_from_masks({"GM": mask}, geometry), tmp_path / "reference.seg.nrrd")
    out = tmp_path / "m.pt"
    extra = []
    if log_name == "resume":
        ckpt = tmp_path / "other.ckpt.pt"
        ckpt.write_bytes(b"a checkpoint")
        extra, log = ["--resume", ckpt], ckpt
    else:
        log = tmp_path / log_name
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", tmp_path, "--out", out, "--log", log, *extra, "--steps", "1",
                           "--size", "32", "--width-mult", "0.25")
    line = error_line(err)
    assert code == 2 and f"--log {log}" in line and "a file name of its own" in line, line
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- voxel types float32 cannot hold
K, J, I = 24, 32, 32


def _speckle():
    return np.random.default_rng(0).integers(0, 256, (K, J, I))


def _write(path: Path, array: np.ndarray, vector: bool = False) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


def _seeds(folder: Path) -> Path:
    from ifssnet.io import AnnotatedSlices, Geometry, segmentation_from_masks, write_segmentation

    m = np.zeros((K, J, I), np.uint8)
    m[10:13, 8:22, 10:24] = 1
    path = folder / "seeds.seg.nrrd"
    write_segmentation(segmentation_from_masks({"GM": m}, Geometry(), {"GM": AnnotatedSlices(0, (10, 11, 12))}), path)
    return path


@pytest.fixture
def bright_net(monkeypatch):
    """A network that finds the muscle where the z-scored image is above 1.5: what it propagates shows the intensity
    normalisation."""
    import ifssnet.propagate as prop
    from fake_models import BrightModel

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": BrightModel(size=32))


@pytest.mark.parametrize("kind", ["float64 1e300", "float64 1e-300", "float64 1e12 + speckle", "int64 2e9 + 1"])
def test_a_volume_of_values_float32_cannot_hold_propagates_as_its_uint8_copy(tmp_path, capsys, bright_net, kind):
    """Before: "The volume is constant (every voxel has the same value)" for all four (float32 made 1e300 inf and
    1e-300 0, and rounded 1e12 + 0..255 and 2e9 + 0..255 together); they are normalised in float64 now."""
    from ifssnet.io import read_segmentation

    speckle = _speckle()
    array = {"float64 1e300": speckle * 1e300, "float64 1e-300": speckle * 1e-300,
             "float64 1e12 + speckle": speckle + 1e12, "int64 2e9 + 1": speckle * 2 + 2_000_000_000}[kind]
    seeds = _seeds(tmp_path)
    masks = []
    for name, volume in (("plain", speckle.astype(np.uint8)), ("wide", array)):
        code, _, err = run_cli(capsys, "propagate", _write(tmp_path / f"{name}.nrrd", volume), seeds,
                               "-o", tmp_path / f"{name}.seg.nrrd", "--device", "cpu")
        assert code == 0, err
        masks.append(read_segmentation(tmp_path / f"{name}.seg.nrrd").mask("GM"))
    assert masks[0].sum() > 1000      # the bright voxels of the whole sweep: the normalisation, not the seeds
    np.testing.assert_array_equal(masks[1], masks[0])


def test_int64_values_that_float64_rounds_together_say_so_and_what_to_do(tmp_path, capsys, bright_net):
    """2**62 + 0..255 is one float64 value: before, "The volume is constant (every voxel has the same value)", which
    it is not. A volume that is constant still says so."""
    seeds = _seeds(tmp_path)
    huge = _write(tmp_path / "huge.nrrd", (_speckle() + 2 ** 62).astype(np.int64))
    code, _, err = run_cli(capsys, "propagate", huge, seeds, "-o", tmp_path / "out.seg.nrrd", "--device", "cpu")
    line = error_line(err)
    assert code == 2 and "values differ by at most 255 around 4.61e+18" in line, line
    assert "Subtract their common offset" in line and "constant (every voxel" not in line, line
    flat = _write(tmp_path / "flat.nrrd", np.full((K, J, I), 2 ** 62, np.int64))
    code, _, err = run_cli(capsys, "propagate", flat, seeds, "-o", tmp_path / "out.seg.nrrd", "--device", "cpu")
    assert code == 2 and "The volume is constant (every voxel has the same value)" in error_line(err)
    assert not (tmp_path / "out.seg.nrrd").exists()


def test_a_complex_volume_is_called_complex_not_rgb(tmp_path, capsys):
    """Before: "has 2 components per voxel (RGB or vector) ... Vector to Scalar Volume module"."""
    from ifssnet.errors import VolumeError
    from ifssnet.io import read_header

    speckle = _speckle()
    path = _write(tmp_path / "complex.nrrd", (speckle + 1j * speckle).astype(np.complex64))
    code, _, err = run_cli(capsys, "propagate", path, _seeds(tmp_path), "-o", tmp_path / "o.seg.nrrd")
    line = error_line(err)
    assert code == 2 and "holds complex numbers" in line and "magnitude" in line and "RGB" not in line, line
    with pytest.raises(VolumeError, match="holds complex numbers"):
        read_header(path)


@pytest.mark.parametrize("kind", ["rgb", "4-D"])
def test_rgb_and_4d_volumes_keep_their_messages(tmp_path, capsys, kind):
    """Checked in session 43 (no change): each message says what the volume is and what to do."""
    import SimpleITK as sitk

    speckle = _speckle().astype(np.uint8)
    path = tmp_path / f"{kind}.nrrd"
    if kind == "rgb":
        _write(path, np.stack([speckle] * 3, -1), vector=True)
        expected = "has 3 components per voxel (RGB or vector). Convert it to a scalar volume first"
    else:
        image = sitk.GetImageFromArray(speckle)
        sitk.WriteImage(sitk.JoinSeries([image, image]), str(path))
        expected = "has 4 dimensions; IFSS-Net needs a 3-D scalar volume. Extract one 3-D frame first"
    code, _, err = run_cli(capsys, "propagate", path, _seeds(tmp_path), "-o", tmp_path / "o.seg.nrrd")
    assert code == 2 and expected in error_line(err)


def test_the_intensity_statistics_of_wide_types_and_bool():
    """The statistics do not depend on the unit: float64 1e300 and 1e-300 times a volume give its own statistics
    times that factor; a bool volume is 0 and 1."""
    from ifssnet.preprocess import intensity_stats

    speckle = _speckle().astype(np.float64)
    mean, std = intensity_stats(speckle)
    for factor in (1e300, 1e-300):
        assert intensity_stats(speckle * factor) == pytest.approx((mean * factor, std * factor), rel=1e-9)
    assert intensity_stats(speckle > 127) == pytest.approx((0.5, 0.5), abs=0.01)


@pytest.mark.slicer
def test_propagate_in_slicer_on_float64_and_int32_volumes(nodes):
    """The Segmentation Logic: float64 values about 1e300 and int32 values 2**30 + 0..100 propagate (before: "The
    volume is constant"); float64 values 1e17 + 0..100, which float64 itself rounds to multiples of 16, say so and
    leave the segmentation as it was (Slicer holds no int64 volume)."""
    pytest.importorskip("torch")
    from slicer_nodes import _assert_same, _ijk_to_ras, _painted_gm, _state

    from ifssnet.errors import VolumeError

    slicer, volumeNode, segNode, truth, arrays, g, a, painted, L = _painted_gm(nodes)
    voxels = slicer.util.arrayFromVolume(volumeNode)
    for name, wide in (("US times 1e300", voxels.astype(np.float64) * 1e300),
                       ("US plus 2**30", voxels.astype(np.int32) + 2 ** 30)):
        node = slicer.util.addVolumeFromArray(wide, _ijk_to_ras(), name)
        L.propagate(node, segNode, [a], device="cpu", preset="fast")      # the shipped network
        out = arrays.segmentToArray(segNode, a, arrays.referenceGeometry(node, segNode))
        np.testing.assert_array_equal(out[[5, 11, 16]], painted[[5, 11, 16]])
        assert out.sum() > painted.sum(), name
    far = slicer.util.addVolumeFromArray(voxels.astype(np.float64) + 1e17, _ijk_to_ras(), "US plus 1e17")
    before = _state(segNode, far)
    with pytest.raises(VolumeError, match="values differ by at most .* around 1e\\+17.*Subtract their common offset"):
        L.propagate(far, segNode, [a], device="cpu", preset="fast")
    _assert_same(before, _state(segNode, far))


# ------------------------------------------------------------------------ IFSSNetConfig.validate's messages
BAD_CONFIGS = [  # (field, value, what the message says it must be, what the message says sets it)
    ("arch", "pgnet", "must be 'ifssnet'", "IFSSNetConfig(arch=...)"),
    ("window", 0, "must be a positive integer", "IFSSNetConfig(window=...)"),
    ("window", True, "must be a positive integer", "IFSSNetConfig(window=...)"),
    ("size", 48, "must be a multiple of 32, at least 32", "`ifssnet train --size` (the Training Logic's size)"),
    ("widths", (1, 2), "must be 5 positive integers", "IFSSNetConfig(widths=...)"),
    ("widths", ["a"] * 5, "must be 5 positive integers", "IFSSNetConfig(widths=...)"),
    ("width_mult", 0, "must be a number above 0 and at most 8", "`ifssnet train --width-mult`"),
    ("width_mult", "x", "must be a number above 0 and at most 8", "`ifssnet train --width-mult`"),
    ("rates", (), "must be one or more positive integers", "IFSSNetConfig(rates=...)"),
    ("norm", "batch", "must be one of 'group', 'layer', 'instance', 'none'", "IFSSNetConfig(norm=...)"),
    ("norm_groups", "8", "must be a positive integer", "IFSSNetConfig(norm_groups=...)"),
    ("enc_dropout", 1.0, "must be a number from 0 up to (not including) 1", "IFSSNetConfig(enc_dropout=...)"),
    ("lstm_dropout", "x", "must be a number from 0 up to (not including) 1", "IFSSNetConfig(lstm_dropout=...)"),
    ("dec_dropout", -0.1, "must be a number from 0 up to (not including) 1", "IFSSNetConfig(dec_dropout=...)"),
    ("dropout_mode", "x", "must be 'channel' or 'element'", "IFSSNetConfig(dropout_mode=...)"),
    ("lstm_kernel", 2, "must be an odd positive integer", "IFSSNetConfig(lstm_kernel=...)"),
    ("lstm_kernel", None, "must be an odd positive integer", "IFSSNetConfig(lstm_kernel=...)"),
    ("slice_spacing_mm", 0, "must be a positive number of mm, or None", "from the training volumes' slice spacing"),
    ("image_head", ["A", "A"], "must be a list of distinct segment names", "`ifssnet train --image-aux`"),
    ("image_head", "GM", "(not one string)", "`ifssnet train --image-aux`"),
    ("mask_sees_image", "yes", "must be True or False", "`ifssnet train --mask-sees-image`"),
]


@pytest.mark.parametrize("field,value,allowed,where", BAD_CONFIGS, ids=[f"{f}={v!r}" for f, v, *_ in BAD_CONFIGS])
def test_each_invalid_network_configuration_says_what_is_allowed_and_what_sets_it(field, value, allowed, where):
    """Before: "Fix the configuration or use a checkpoint made by this version" for every field, which said neither
    what value would do nor where to give it; a string where a number belongs said "'<' not supported between
    instances of 'str' and 'int'", widths ['a', ...] and width_mult 'x' were a ValueError (an internal error, read
    from a model file), window True and image_head 'GM' (segments 'G' and 'M') were taken."""
    from ifssnet.errors import ModelError
    from ifssnet.model.config import IFSSNetConfig

    with pytest.raises(ModelError) as err:
        IFSSNetConfig.from_dict({field: value})
    message, todo = err.value.what, err.value.todo
    assert f"Invalid IFSS-Net configuration: {field} is " in message and allowed in message, message
    assert where in todo and "use another model file" in todo, todo


def test_a_damaged_model_file_configuration_is_a_model_error_with_what_to_do(tmp_path, capsys):
    """A model file whose stored configuration has widths ['a', ...]: before, an internal error (ValueError, exit
    70); now exit 3 and the message above."""
    import json

    import torch

    from ifssnet.model import IFSSNet, IFSSNetConfig
    from ifssnet.model.checkpoint import save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)))
    obj = torch.load(path, weights_only=True)
    config = json.loads(obj["config"])
    config["widths"] = ["a"] * 5
    obj["config"] = json.dumps(config)
    torch.save(obj, path)
    speckle = _speckle().astype(np.uint8)
    volume = _write(tmp_path / "v.nrrd", speckle)
    code, _, err = run_cli(capsys, "propagate", volume, _seeds(tmp_path), "-o", tmp_path / "o.seg.nrrd",
                           "--model", path, "--device", "cpu")
    line = error_line(err)
    assert code == 3 and "widths is ('a', 'a', 'a', 'a', 'a'); it must be 5 positive integers" in line, line
    assert "use another model file" in line


# fixtures (nodes: scene_nodes, skipped without slicer-core); slicer_nodes puts the module folders on sys.path
from slicer_nodes import nodes, scene_nodes  # noqa: E402,F401
from slicer_fixture import slicer_app, slicer_scene  # noqa: E402,F401


def test_phantom_run_again_replaces_its_own_files_but_not_one_changed_since(tmp_path, capsys):
    """Running ``ifssnet phantom DIR`` (or the README's ``ifssnet demo``) a second time needs no --force: the files it
    wrote there are recorded (``io.record_made``). A file of those names changed since (the user's own now) is
    refused as before, and so is a folder where the record's file was replaced."""
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE)
    assert code == 0, err
    first = (tmp_path / "volume.nrrd").read_bytes()
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE, "--seed", "7")
    assert code == 0, err
    assert (tmp_path / "volume.nrrd").read_bytes() != first          # replaced: another seed
    (tmp_path / "reference.seg.nrrd").write_bytes(b"the user's own file")
    code, _, err = run_cli(capsys, "phantom", tmp_path, *SHAPE)
    assert code == 2 and "reference.seg.nrrd" in err and "volume.nrrd" not in err.split("would")[0], err
    assert (tmp_path / "reference.seg.nrrd").read_bytes() == b"the user's own file"
