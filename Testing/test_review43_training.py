"""Review 43 (training bookkeeping): the ``--log`` of a resumed run, annotations on another grid than their volume's,
per-case data keyed by name, and what a resume may change; each found and fixed with a test."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import scene_nodes  # noqa: F401  (a fixture)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: F401  (fixtures)
from cli_output import error_line, run_cli
from test_train_cli_errors import TINY, _case

HERE = os.path.dirname(os.path.abspath(__file__))


def _records(log):
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def _killed_cli_run(argv, at_step, loop="ifssnet.train_cli:train"):
    """``ifssnet train`` with ``argv`` in a child process, killed (SIGKILL, as Slicer's Cancel ends its process) just
    after it logged step ``at_step``: no except or finally clause runs. ``loop``: ``module:function`` that the
    command calls with its ``on_step`` (IFSS-Net's train, or a learned baseline's fit)."""
    module, function = loop.split(":")
    script = textwrap.dedent(f"""
        import os, signal, sys
        import torch
        torch.set_num_threads(1)
        import importlib
        C = importlib.import_module({module!r})
        real = getattr(C, {function!r})

        def killing(*args, on_step=None, **kwargs):
            def step(log):
                on_step(log)
                if log.step == {at_step}:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, on_step=step, **kwargs)

        setattr(C, {function!r}, killing)
        from ifssnet.cli import main
        sys.exit(main({[str(a) for a in argv]!r}))
        """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr


# ---- 1. the log of a resumed run ------------------------------------------------------------------------------------

def test_a_resumed_runs_log_reads_as_if_the_run_had_never_stopped(tmp_path, capsys):
    """``ifssnet train --log LOG`` killed at step 3 (checkpoint at step 2), then resumed with the same ``--log``:
    the resumed run logs steps 3 and 4 again after the killed run's step 3, so step 3 was in the log twice. Now the
    records past the checkpoint are dropped before the resumed run appends: steps 1-4 once each, as the log of a
    run that never stopped, and an earlier run's records above them in the same log are kept."""
    case = _case(tmp_path / "c")
    out, log = tmp_path / "m.pt", tmp_path / "log.jsonl"
    log.write_text(json.dumps({"step": 7, "loss": 0.5, "note": "an earlier run"}) + "\n")
    argv = ["train", case, "--out", out, "--log", log, "--epochs", "1", "--steps", "4", "--checkpoint-every", "2",
            *TINY]
    _killed_cli_run(argv, at_step=3)
    assert [r["step"] for r in _records(log)] == [7, 1, 2, 3]
    code, _, err = run_cli(capsys, *argv, "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err
    records = _records(log)
    assert [r["step"] for r in records] == [7, 1, 2, 3, 4]
    assert records[0].get("note") == "an earlier run"


def test_a_resumed_baselines_log_reads_as_if_the_run_had_never_stopped(tmp_path, capsys):
    """``ifssnet train --arch pgnet --log LOG --resume`` appended to the log as IFSS-Net's run did: the steps past the
    checkpoint were logged twice. It now drops them first, as ``ifssnet train`` does."""
    case = _case(tmp_path / "c")
    out, log = tmp_path / "m.pt", tmp_path / "log.jsonl"
    argv = ["train", case, "--arch", "pgnet", "--out", out, "--log", log, "--epochs", "1", "--steps", "4",
            "--checkpoint-every", "2", "--size", "32", "--width-mult", "0.25", "--run-length", "6"]
    _killed_cli_run(argv, at_step=3, loop="ifssnet.baselines.pgnet:fit")
    assert [r["step"] for r in _records(log)] == [1, 2, 3]
    code, _, err = run_cli(capsys, *argv, "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err
    assert [r["step"] for r in _records(log)] == [1, 2, 3, 4]


def test_a_baselines_resume_on_other_cases_is_refused(tmp_path, capsys, monkeypatch):
    """``ifssnet train --arch pgnet --resume`` took any cases, as IFSS-Net's resume did: now refused the same way."""
    from cli_output import interrupting_progress

    a, b = _case(tmp_path / "a" / "leg"), _case(tmp_path / "b" / "leg")
    out = tmp_path / "m.pt"
    argv = ["--arch", "pgnet", "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", "--size", "32",
            "--width-mult", "0.25", "--run-length", "6"]
    monkeypatch.setattr("ifssnet.progress.TqdmProgress", interrupting_progress("training", at=2))
    code, _, err = run_cli(capsys, "train", a, b, *argv)
    assert code == 130, err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "train", b, *argv, "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and "trained on a/leg, b/leg; the cases given now are leg." in line, line
    assert not out.exists()


def test_trim_log_drops_a_line_cut_short_and_keeps_what_is_not_a_record(tmp_path):
    """A kill during a write leaves a last line without its newline: it is dropped, not joined to the resumed run's
    first record. A line that is not a record, above the run's records, is not the log's to judge: kept."""
    from ifssnet.train_cli import trim_log

    log = tmp_path / "log.jsonl"
    log.write_text('a note\n{"step": 1, "loss": 1}\n{"step": 2, "loss": 1}\n{"step": 2, "val_dice": 0.5}\n'
                   '{"step": 3, "loss": 1}\n{"step": 4, "lo')
    assert trim_log(log, 2) == 2
    assert log.read_text() == 'a note\n{"step": 1, "loss": 1}\n{"step": 2, "loss": 1}\n{"step": 2, "val_dice": 0.5}\n'
    before = log.stat().st_mtime_ns
    assert trim_log(log, 2) == 0 and log.stat().st_mtime_ns == before       # nothing past: not rewritten
    assert trim_log(tmp_path / "none.jsonl", 2) == 0 and not (tmp_path / "none.jsonl").exists()


# ---- 2. an annotation on another grid than its volume's ------------------------------------------------------------

def _moved_annotation(tmp_path, shift_mm, name="moved.seg.nrrd"):
    """The annotation of ``_case(tmp_path / 'c')`` saved with its grid moved by ``shift_mm`` (x, y, z mm, LPS):
    the same shape and spacing, another origin. Returns (volume, annotation)."""
    from ifssnet.io import Geometry, read_segmentation, write_segmentation

    volume, annotation = (Path(p) for p in _case(tmp_path / "c").split(":"))
    seg = read_segmentation(annotation)
    g = seg.geometry
    seg.geometry = Geometry(g.spacing, tuple(np.add(g.origin, shift_mm)), g.direction)
    write_segmentation(seg, tmp_path / name)
    return volume, tmp_path / name


def test_reading_an_annotation_moved_by_whole_voxels_is_counted_as_resampled(tmp_path):
    """case_shape compared the annotation's shape and spacing with the volume's, not its origin: an annotation of the
    same shape moved by two slices is resampled onto the volume's grid when read (and read there, shifted by those
    two slices), but the memory estimate counted no resampling."""
    from ifssnet.dataset import load_case
    from ifssnet.train_memory import case_shape

    volume, moved = _moved_annotation(tmp_path, (0.0, 0.0, 2.0))          # 2 slices of 1 mm along k
    assert case_shape(volume, moved).resampled_bytes > 0
    assert case_shape(volume, volume.parent / "annotation.seg.nrrd").resampled_bytes == 0
    here, there = (load_case(volume, a, 32) for a in (volume.parent / "annotation.seg.nrrd", moved))
    assert np.array_equal(there.masks["GM"][2:], here.masks["GM"][:-2]) and not there.masks["GM"][:2].any()


def test_a_ras_headers_grid_is_read_as_slicerio_reads_the_file(tmp_path):
    """read_header's grid of a .seg.nrrd written in RAS (``space: right-anterior-superior``) is the LPS grid that
    slicerio (read_segmentation) reads from it."""
    import nrrd

    from ifssnet.io import read_header, read_segmentation

    volume, annotation = (Path(p) for p in _case(tmp_path / "c").split(":"))
    data, header = nrrd.read(str(annotation))
    header["space"] = "right-anterior-superior"
    header["space directions"] = np.asarray(header["space directions"], float) * [-1, -1, 1]
    header["space origin"] = np.asarray(header["space origin"], float) * [-1, -1, 1]
    nrrd.write(str(tmp_path / "ras.seg.nrrd"), data, header)
    lps = read_header(annotation).geometry
    assert read_header(tmp_path / "ras.seg.nrrd").geometry.same_as(lps)
    assert read_segmentation(tmp_path / "ras.seg.nrrd").geometry.same_as(lps)


def test_an_annotation_outside_its_volume_is_refused_naming_it_before_anything_is_read(tmp_path, capsys):
    """An annotation whose grid lies wholly outside the volume (another sweep's segmentation, or one moved by a
    transform) was read onto the volume's grid as empty, and training said its segment was 'empty (no voxel on its
    annotated slices)'. Now ``ifssnet train`` says the annotation lies outside the volume, with both extents, before
    any case is read and before anything is written; load_case and the validation cases say the same."""
    from ifssnet.dataset import load_case
    from ifssnet.errors import InputError
    from ifssnet.validation import Validator

    volume, far = _moved_annotation(tmp_path, (0.0, 0.0, 500.0), "far.seg.nrrd")
    out = tmp_path / "out" / "m.pt"
    code, _, err = run_cli(capsys, "train", f"{volume}:{far}", "--out", out, "--log", tmp_path / "out" / "log.jsonl",
                           "--epochs", "1", "--steps", "1", *TINY)
    line = error_line(err)
    assert code == 2 and "far.seg.nrrd' lies outside the volume" in line and "Pair the volume" in line, line
    assert not out.parent.exists()
    with pytest.raises(InputError, match="lies outside the volume"):
        load_case(volume, far, 32)
    with pytest.raises(InputError, match="lies outside the validation volume"):
        Validator([(volume, far)])
    near, _ = _moved_annotation(tmp_path, (0.0, 0.0, 5.0), "near.seg.nrrd")   # partly inside: read, not refused
    assert load_case(volume, tmp_path / "near.seg.nrrd", 32).masks["GM"].any()


# ---- 3. per-case data keyed by the case's name ---------------------------------------------------------------------

def test_two_cases_of_one_name_keep_their_own_slice_spacing(tmp_path, monkeypatch):
    """train() kept each case's sweep spacing (for ``--fill-gap``, which counts the sweep's slices) and slice count
    in dicts keyed by the case's name: two cases of one name, as ``a/leg/volume.nrrd`` and ``b/leg/volume.nrrd``
    (both 'leg') or two volume nodes named alike in Slicer, took the last one's. Here a 0.25 mm sweep then a 1 mm
    sweep, both 'leg': the fine sweep's gap of 40 slices was counted as 40 frames (its spacing taken for 1 mm), not
    the 10 frames those 40 slices of 0.25 mm span. Now keyed by the case's place in the list."""
    import ifssnet.train as T
    from ifssnet.dataset import Case
    from ifssnet.model import IFSSNetConfig
    from ifssnet.train import TrainConfig, train

    K = 161
    img = np.random.default_rng(0).normal(size=(K, 32, 32)).astype(np.float16)
    m = np.zeros((K, 32, 32), np.uint8)
    m[:, 8:20, 6:22] = 1
    known = np.isin(np.arange(K), [20, 21, 22, 100, 101, 102])
    base = train([Case("b", img[:40], {"A": m[:40]}, {"A": np.ones(40, bool)}, 1.0)], tmp_path / "base.pt",
                 model_config=IFSSNetConfig(size=32, width_mult=0.15),
                 cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=6))
    asked = []
    real = T.fill_gaps
    monkeypatch.setattr(T, "fill_gaps", lambda case, gap: asked.append(gap) or real(case, gap))
    fine = Case("leg", img, {"A": m * known[:, None, None]}, {"A": known}, 0.25)
    coarse = Case("leg", img[:40], {"A": m[:40]}, {"A": np.ones(40, bool)}, 1.0)
    train([fine, coarse], tmp_path / "ft.pt", base_model=base,
          cfg=TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=1, run_length=8, fill_gap=40))
    assert len(asked) == 2 and 9 <= asked[0] <= 12 and asked[1] == 40, asked


def test_cases_of_one_folder_name_are_told_apart_in_the_model_file_and_a_resume_on_other_cases_is_refused(
        tmp_path, capsys, monkeypatch):
    """Two cases ``a/leg`` and ``b/leg`` were both named 'leg': the model file's data description read 'leg, leg'.
    Now the folders above tell them apart. And ``--resume`` with other cases than its run's (here the same two in
    the other order, which draws other runs at each step) trained on without a word; now refused, naming both."""
    from cli_output import interrupting_progress
    from ifssnet.model.checkpoint import read_meta

    a, b = _case(tmp_path / "a" / "leg"), _case(tmp_path / "b" / "leg")
    out = tmp_path / "m.pt"
    argv = ["train", "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", *TINY]
    monkeypatch.setattr("ifssnet.progress.TqdmProgress", interrupting_progress("training", at=2))
    code, _, err = run_cli(capsys, *argv[:1], a, b, *argv[1:])
    assert code == 130, err
    assert read_meta(tmp_path / "m.ckpt.pt")["data"] == "a/leg, b/leg"
    monkeypatch.undo()
    ckpt = (tmp_path / "m.ckpt.pt").read_bytes()
    code, _, err = run_cli(capsys, *argv[:1], b, a, *argv[1:], "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and "trained on a/leg, b/leg; the cases given now are b/leg, a/leg" in line, line
    assert (tmp_path / "m.ckpt.pt").read_bytes() == ckpt and not out.exists()
    code, _, err = run_cli(capsys, *argv[:1], a, b, *argv[1:], "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err
    assert read_meta(out)["data"] == "a/leg, b/leg"


def test_case_names_grow_only_where_two_files_share_one():
    from ifssnet.dataset import case_names

    assert case_names(["/x/a/leg/volume.nrrd", "/x/b/leg/volume.nrrd", "/y/s1/volume.nrrd", "/y/s1/leg2.nrrd",
                       "/x/a/leg/volume.nrrd"]) == ["a/leg", "b/leg", "s1", "s1/leg2", "a/leg"]
    assert case_names(["/p/x/c/volume.nrrd", "/q/x/c/volume.nrrd"]) == ["p/x/c", "q/x/c"]


@pytest.mark.slicer
@pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")
def test_two_volume_nodes_of_one_name_are_two_cases_in_the_model_file(scene_nodes, tmp_path):
    """The Training Logic named a node pair's case after its volume node: two nodes named alike (two sweeps loaded
    from s1/volume.nrrd and s2/volume.nrrd are both 'volume') were one name twice in the model file's data
    description and card. Now the second gets '-1', as exportPairs names its folder."""
    pytest.importorskip("torch")
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic
    from ifssnet.model.checkpoint import read_meta
    from slicer_nodes import _ijk_to_ras, _reference_segmentation

    slicer, volumeNode, _, truth = scene_nodes
    other = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "US")
    assert other.GetName() == volumeNode.GetName() == "US"
    pairs = [(node, _reference_segmentation(slicer, node, {"GM": truth}, f"Reference {n}"))
             for n, node in enumerate((volumeNode, other))]
    out = IFSSNetTrainingLogic().train(pairs, "full", 1, outputPath=str(tmp_path / "m.pt"), stepsPerEpoch=1,
                                       runLength=6, size=32, widthMult=0.15)
    assert read_meta(out)["data"] == "US, US-1"
    assert "Training cases: US, US-1" in (tmp_path / "m.md").read_text()


def test_a_resume_given_another_base_model_is_refused(tmp_path, capsys, monkeypatch):
    """``--from X --resume CKPT`` continued the checkpoint's own network and ignored X without a word (``--from`` is
    not a recipe option). Now refused where X is not the model the run started from (the checkpoint's ``base``);
    the command that started a fine-tune, repeated with ``--resume``, is accepted."""
    import shutil

    from cli_output import interrupting_progress

    case = _case(tmp_path / "c")
    code, _, err = run_cli(capsys, "train", case, "--out", tmp_path / "base.pt", "--epochs", "1", "--steps", "1",
                           *TINY)
    assert code == 0, err
    shutil.copyfile(tmp_path / "base.pt", tmp_path / "other.pt")
    argv = ["train", case, "--out", tmp_path / "m.pt", "--epochs", "1", "--steps", "3", "--checkpoint-every", "1",
            "--run-length", "6"]
    monkeypatch.setattr("ifssnet.progress.TqdmProgress", interrupting_progress("training", at=2))
    code, _, err = run_cli(capsys, *argv, "--from", tmp_path / "base.pt")
    assert code == 130, err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, *argv, "--from", tmp_path / "other.pt", "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and f"--from {tmp_path / 'other.pt'} (the run's: base.pt)" in line, line
    code, _, err = run_cli(capsys, *argv, "--from", tmp_path / "base.pt", "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err


def test_train_refuses_a_resume_given_another_base_model(tmp_path):
    """train(resume=..., base_model=...) (the Training Logic's resume with a base model chosen) went on from the
    checkpoint's network and ignored the base model given; now refused as the command line refuses it, and the
    checkpoint is as it was."""
    from ifssnet.errors import Cancelled, InputError
    from ifssnet.model import IFSSNetConfig
    from ifssnet.progress import CancelToken
    from ifssnet.train import TrainConfig, train
    from test_train import _case as _array_case

    base = train([_array_case(0)], tmp_path / "base.pt", model_config=IFSSNetConfig(size=32, width_mult=0.25),
                 cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=8))
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_array_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(size=32, width_mult=0.25),
              cfg=TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=1), cancel=token,
              progress=lambda stage, done, total: done == 2 and token.cancel())
    ckpt = (tmp_path / "m.ckpt.pt").read_bytes()
    with pytest.raises(InputError, match="which started from a new network, not from"):
        train([_array_case(0)], tmp_path / "m.pt", resume=tmp_path / "m.ckpt.pt", base_model=base)
    assert (tmp_path / "m.ckpt.pt").read_bytes() == ckpt and not (tmp_path / "m.pt").exists()


def test_resuming_a_finished_run_is_refused_and_writes_nothing(tmp_path, capsys):
    """``ifssnet train --resume OUT.ckpt.pt`` of a run that took all its steps took none, wrote OUT.pt again and
    recorded one more 'resumed' command in it; the Training module refused it ('nothing to resume'). Now the command
    line refuses it too, and the model file is as it was."""
    case = _case(tmp_path / "c")
    out = tmp_path / "m.pt"
    argv = ["train", case, "--out", out, "--epochs", "1", "--steps", "2", *TINY]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    model = out.read_bytes()
    code, _, err = run_cli(capsys, *argv, "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and "has finished (step 2 of 2): there is nothing to resume" in line, line
    assert out.read_bytes() == model


# ---- 4. the Training panel's reading of a resumed run ---------------------------------------------------------------

@pytest.mark.slicer
@pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")
def test_the_verdict_after_a_resumed_run_names_the_best_the_model_file_keeps(slicer_app, tmp_path):
    """The panel's status line when a run ends (validationVerdict) took the best validation from the process's
    log, which after Resume holds only the validations since the resume: with the best at step 1 (Dice 0.9) before
    a cancel and 0.6, 0.7 after the resume, it said the best was 'Dice 0.700 at step 4' while ``<name>.best.pt``
    held step 1's network. Now the scores are those the model file records, the whole run's."""
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic
    from ifssnet.errors import Cancelled
    from ifssnet.model import IFSSNetConfig
    from ifssnet.progress import CancelToken
    from ifssnet.train import TrainConfig, train
    from ifssnet.validation import ValidationScore, best_model_path, best_score
    from test_train import _case

    dice = {1: 0.9, 2: 0.5, 3: 0.6, 4: 0.7}
    records = []

    def validator(model, step, rank=0, world=1, cancel=None):
        return ValidationScore(step, dice[step], 10.0, 0.0, {"A": dice[step]})

    cfg = TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=1, lr=1e-3)
    out, token = tmp_path / "m.pt", CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], out, model_config=IFSSNetConfig(size=32, width_mult=0.25), cfg=cfg, validator=validator,
              val_every=1, cancel=token, progress=lambda stage, done, total: done == 2 and token.cancel())
    train([_case(0)], out, resume=tmp_path / "m.ckpt.pt", validator=validator,
          on_validation=lambda score: records.append(score.log_record()))
    assert [r["step"] for r in records] == [3, 4] and best_score(best_model_path(out)).step == 1
    verdict = IFSSNetTrainingLogic.validationVerdict(records, str(out))
    assert "(Dice 0.900 at step 1)" in verdict, verdict
    assert "(Dice 0.700 at step 4)" in IFSSNetTrainingLogic.validationVerdict(records)   # no model file: the log's


@pytest.mark.slicer
@pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")
def test_the_progress_of_a_resumed_run_counts_its_own_steps(slicer_app, tmp_path):
    """Resume runs ``ifssnet train --resume``, which keeps the run's own epochs and steps, but the panel's progress
    bar counted the panel's epochs x steps: a run of 1 x 4 steps resumed with the panel at 10 x 100 read 'training
    step 4/1000' at its end. runTotal gives the checkpoint's."""
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic
    from ifssnet.errors import Cancelled
    from ifssnet.model import IFSSNetConfig
    from ifssnet.progress import CancelToken
    from ifssnet.train import TrainConfig, train
    from test_train import _case

    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(size=32, width_mult=0.25),
              cfg=TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=1), cancel=token,
              progress=lambda stage, done, total: done == 2 and token.cancel())
    resume = IFSSNetTrainingLogic.resumePath(str(tmp_path / "m.pt"))
    assert resume and IFSSNetTrainingLogic.runTotal(resume, 10, 100) == 4
    assert IFSSNetTrainingLogic.runTotal(None, 10, 100) == 1000
    source = Path(HERE, "..", "IFSSNetTraining", "IFSSNetTraining.py").read_text()
    assert "self.total = self.logic.runTotal(resumeFrom, p.epochs, p.stepsPerEpoch)" in source


def test_a_resume_that_would_train_other_segments_is_refused(tmp_path, capsys, monkeypatch):
    """``--segments`` is not a recipe option, so ``--resume`` took any: a run started on GM alone and resumed without
    ``--segments`` trained GM and GL for the rest of its steps without a word. The checkpoint now records the
    segments the run trains, and a resume that would train others is refused, naming both."""
    from cli_output import interrupting_progress
    from ifssnet.model.checkpoint import read_meta
    from test_train_cli_errors import _muscle

    gl = np.zeros_like(_muscle())
    gl[:, 22:28, 6:22] = 1
    case = _case(tmp_path / "c", masks={"GM": _muscle(), "GL": gl})
    out = tmp_path / "m.pt"
    argv = ["train", case, "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", *TINY]
    monkeypatch.setattr("ifssnet.progress.TqdmProgress", interrupting_progress("training", at=2))
    code, _, err = run_cli(capsys, *argv, "--segments", "GM")
    assert code == 130, err
    monkeypatch.undo()
    assert read_meta(tmp_path / "m.ckpt.pt")["training"]["segments"] == ["GM"]
    code, _, err = run_cli(capsys, *argv, "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and "which trained the segments GM; this run would train GL, GM" in line, line
    assert not out.exists()
    code, _, err = run_cli(capsys, *argv, "--segments", "GM", "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err
    assert read_meta(out)["training"]["segments"] == ["GM"]


def test_a_resume_that_would_validate_otherwise_is_refused(tmp_path, capsys, monkeypatch):
    """The best network of a run is the highest Dice among its validations, but ``--resume`` took any ``--val`` and
    ``--val-protocol``: a run validated under 3-seeds and resumed under paper chose its best among scores that do not
    compare. The checkpoint now records the protocols and the validation cases, and such a resume is refused."""
    from cli_output import interrupting_progress
    from ifssnet.model.checkpoint import read_meta

    case, held = _case(tmp_path / "c"), _case(tmp_path / "v")
    out = tmp_path / "m.pt"
    argv = ["train", case, "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", "--val", held,
            "--val-every", "1", *TINY]
    monkeypatch.setattr("ifssnet.progress.TqdmProgress", interrupting_progress("training", at=2))
    code, _, err = run_cli(capsys, *argv)
    assert code == 130, err
    monkeypatch.undo()
    assert read_meta(tmp_path / "m.ckpt.pt")["training"]["validated_on"] == {"protocols": ["3-seeds"], "cases": ["v"]}
    code, _, err = run_cli(capsys, *argv, "--val-protocol", "paper", "--resume", tmp_path / "m.ckpt.pt")
    line = error_line(err)
    assert code == 2 and "which validated 3-seeds on v; this run would validate paper on v" in line, line
    assert not out.exists()
    code, _, err = run_cli(capsys, *argv, "--resume", tmp_path / "m.ckpt.pt")
    assert code == 0, err


def test_reading_a_segmentation_outside_the_volume_for_a_comparison_is_not_refused(tmp_path):
    """The training check of an annotation outside its volume is training's: reading a segmentation onto a volume
    for a comparison or propagation (ifssnet.memory.check_reading, from the same headers) still counts it."""
    from ifssnet.memory import check_reading
    from ifssnet.train_memory import case_shape

    volume, far = _moved_annotation(tmp_path, (0.0, 0.0, 500.0), "far.seg.nrrd")
    check_reading(volume, [far])
    assert case_shape(volume, far).resampled_bytes > 0
