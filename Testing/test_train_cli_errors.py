"""``ifssnet train`` under bad input and Ctrl-C: one line on stderr with what to do, the error's exit code,
and nothing lost: no model file, no checkpoint, no log where the run never started, and an earlier model
file of the same name byte for byte as it was."""
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_output import error_line as _error_line, interrupting_progress, recording_progress, run_cli  # noqa: E402
from ifssnet.cli import main
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

K, J, I = 12, 30, 30
GEOMETRY = Geometry(spacing=(0.5, 0.5, 1.0), origin=(-3.0, 2.0, 10.0))
TINY = ["--size", "32", "--width-mult", "0.15", "--run-length", "6"]


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 8:20, 6:22] = 1
    return m


def _case(folder: Path, masks=None, volume=None):
    """volume.nrrd and annotation.seg.nrrd in ``folder``; the CASE argument for them."""
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.random.default_rng(0).integers(0, 60, (K, J, I)).astype(np.uint8)
    vol[_muscle() > 0] += 80
    write_volume(Image(vol if volume is None else volume, GEOMETRY), folder / "volume.nrrd")
    write_segmentation(segmentation_from_masks(masks or {"GM": _muscle()}, GEOMETRY), folder / "annotation.seg.nrrd")
    return f"{folder / 'volume.nrrd'}:{folder / 'annotation.seg.nrrd'}"


@pytest.fixture
def outputs(tmp_path):
    """OUT (out/m.pt) and LOG (out/log.jsonl) in a new folder ``out``."""
    (tmp_path / "out").mkdir()
    return tmp_path / "out" / "m.pt", tmp_path / "out" / "log.jsonl"


def _train(capsys, cases, out, log, *extra):
    """One short ``ifssnet train`` of ``cases`` (a list); its exit code and error line."""
    code, _, err = run_cli(capsys, "train", *cases, "--out", out, "--log", log, "--epochs", "1", "--steps", "1",
                           *TINY, *extra)
    return code, _error_line(err)


def _nothing_written(out: Path, log: Path) -> None:
    assert not out.exists() and not out.with_name(out.stem + ".ckpt.pt").exists()
    assert not out.with_name(out.stem + ".best.pt").exists() and not log.exists()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("kind", ["2-D file", "one-slice 3-D file"])
def test_a_2d_volume_is_refused_and_nothing_is_written(tmp_path, outputs, capsys, kind):
    case = _case(tmp_path / "c")
    if kind == "2-D file":
        sitk.WriteImage(sitk.Image([I, J], sitk.sitkUInt8), str(tmp_path / "c" / "volume.nrrd"))
    else:                                      # a single frame saved as a 3-D file, as Slicer holds a 2-D image
        case = _case(tmp_path / "c", {"GM": _muscle()[:1]}, np.zeros((1, J, I), np.uint8))
    out, log = outputs
    code, line = _train(capsys, [case], out, log)
    assert code == 2 and "2-D image" in line and "Load the reconstructed 3-D ultrasound volume" in line
    _nothing_written(out, log)


def test_a_corrupt_base_model_is_refused_and_nothing_is_written(tmp_path, outputs, tiny_model, capsys):
    case = _case(tmp_path / "c")
    half = tmp_path / "half.pt"
    half.write_bytes(Path(tiny_model).read_bytes()[:5000])
    out, log = outputs
    code, line = _train(capsys, [case], out, log, "--from", half)
    assert code == 3 and "corrupt or truncated" in line and "half.pt" in line
    _nothing_written(out, log)


def test_an_empty_segment_is_refused_by_name_before_the_log_is_opened(tmp_path, outputs, capsys):
    """An annotation whose only segment is empty, and a segment named with --segments that is empty in one case of
    two: refused before any training (no log file either), naming the segment and the case, with what to do."""
    out, log = outputs
    empty = _case(tmp_path / "empty", {"GM": np.zeros((K, J, I), np.uint8)})
    code, line = _train(capsys, [empty], out, log)
    assert code == 2 and "Segment 'GM' of case 'empty' is empty" in line and "paint" in line
    _nothing_written(out, log)
    good = _case(tmp_path / "good", {"GM": _muscle(), "SOL": _muscle()})
    wrong = _case(tmp_path / "wrong", {"GM": _muscle(), "SOL": np.zeros((K, J, I), np.uint8)})
    code, line = _train(capsys, [good, wrong], out, log, "--segments", "SOL")
    assert code == 2 and "Segment 'SOL' of case 'wrong' is empty" in line and "--segments" in line
    _nothing_written(out, log)


@pytest.mark.parametrize("at, checkpointed", [(2, True), (1, False)])
def test_ctrl_c_while_training_keeps_the_earlier_model_and_says_what_was_kept(tmp_path, outputs, capsys, monkeypatch,
                                                                             at, checkpointed):
    """Ctrl-C after a checkpoint was saved: exit 130, the earlier OUT.pt is byte for byte as it was, and the line
    says the checkpoint is kept and how to resume (not "Nothing was written"). Before any checkpoint: it says
    that no checkpoint was saved."""
    import ifssnet.progress

    monkeypatch.setattr(ifssnet.progress, "TqdmProgress", interrupting_progress("training", at))
    case = _case(tmp_path / "c")
    out, log = outputs
    out.write_bytes(b"an earlier model, kept as it is")
    code = main(["train", case, "--out", str(out), "--log", str(log), "--epochs", "1", "--steps", "3",
                 "--checkpoint-every", "1", *TINY])
    line = _error_line(capsys.readouterr()[1])
    ckpt = out.with_name("m.ckpt.pt")
    assert code == 130 and line.startswith("ifssnet: Interrupted (Ctrl-C).")
    assert out.read_bytes() == b"an earlier model, kept as it is"
    assert "m.pt was not written" in line and "as it was" in line
    assert ckpt.exists() == checkpointed
    if checkpointed:
        assert "Nothing was written" not in line and f"--resume {ckpt}" in line
    else:
        assert "no checkpoint was saved" in line and "--resume" not in line


def test_running_out_of_memory_while_training_says_what_was_kept(tmp_path, capsys, monkeypatch):
    """A MemoryError after a checkpoint: exit 4, what to do, and the checkpoint to resume from (the command line
    said "nothing was written" before)."""
    import ifssnet.progress

    monkeypatch.setattr(ifssnet.progress, "TqdmProgress", interrupting_progress("training", 2, MemoryError))
    case = _case(tmp_path / "c")
    out = tmp_path / "m.pt"
    code = main(["train", case, "--out", str(out), "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", *TINY])
    line = _error_line(capsys.readouterr()[1])
    assert code == 4 and "ran out of memory while training" in line and "Close other programs" in line
    assert not out.exists() and f"--resume {out.with_name('m.ckpt.pt')}" in line


def test_the_gpu_running_out_of_memory_while_training_says_to_lower_the_batch(tmp_path, capsys, monkeypatch):
    """PyTorch's OutOfMemoryError (a RuntimeError, raised on a GPU) is exit 4 with what to do and what was kept,
    not an internal error; another RuntimeError stays one."""
    import torch

    import ifssnet.progress

    monkeypatch.setattr(ifssnet.progress, "TqdmProgress",
                        interrupting_progress("training", 2, torch.cuda.OutOfMemoryError("CUDA out of memory")))
    case = _case(tmp_path / "c")
    out = tmp_path / "m.pt"
    code = main(["train", case, "--out", str(out), "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", *TINY])
    line = _error_line(capsys.readouterr()[1])
    assert code == 4 and line.startswith("ifssnet: The GPU ran out of memory while training.")
    assert "smaller --batch or --run-length" in line and f"--resume {out.with_name('m.ckpt.pt')}" in line
    # --resume trains with the checkpoint's own recipe, so a smaller --batch given with it would be ignored: say so
    assert "--resume keeps the run's own --batch and --run-length" in line
    monkeypatch.setattr(ifssnet.progress, "TqdmProgress", interrupting_progress("training", 2, RuntimeError("a bug")))
    assert main(["train", case, "--out", str(tmp_path / "n.pt"), "--epochs", "1", "--steps", "3", *TINY]) not in (0, 2, 4)


def test_reading_the_cases_shows_progress_and_ctrl_c_there_writes_nothing(tmp_path, capsys, monkeypatch):
    """ifssnet train shows a "reading cases" bar (a full-size case takes about 10 s); Ctrl-C while it reads exits
    130 and leaves an earlier model file as it was, with no checkpoint or log."""
    import ifssnet.progress
    from ifssnet.train_cli import READING_CASES

    seen = []
    monkeypatch.setattr(ifssnet.progress, "TqdmProgress", recording_progress(seen, counts=True))
    cases = [_case(tmp_path / f"c{n}") for n in range(2)]
    main(["train", *cases, "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--steps", "1", *TINY])
    assert [s for s in seen if s[0] == READING_CASES] == [(READING_CASES, 0, 2), (READING_CASES, 1, 2),
                                                          (READING_CASES, 2, 2)]
    monkeypatch.setattr(ifssnet.progress, "TqdmProgress", interrupting_progress(READING_CASES, 1))
    out = tmp_path / "again" / "m.pt"
    out.parent.mkdir()
    out.write_bytes(b"an earlier model")
    code = main(["train", *cases, "--out", str(out), "--log", str(out.with_name("log.jsonl")), "--epochs", "1",
                 "--steps", "1", *TINY])
    line = _error_line(capsys.readouterr()[1])
    assert code == 130 and "Nothing was written" in line
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt"] and out.read_bytes() == b"an earlier model"
