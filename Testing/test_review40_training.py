"""Review 40 (training): resume, TBPTT and checkpoint bookkeeping bugs, each found and fixed with a test."""
import numpy as np
import pytest
import torch

from ifssnet.errors import Cancelled
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, train
from ifssnet.validation import ValidationScore

from test_train import TINY, _case, one_thread  # noqa: F401 (a fixture)


class _Scripted:
    """A validator that records the steps it is called at and scores them step / 100."""

    def __init__(self):
        self.steps = []

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        self.steps.append(step)
        return ValidationScore(step, step / 100, 10.0, 0.0, {"A": step / 100})


def test_resume_keeps_the_validation_schedule_of_the_run_it_continues(tmp_path, one_thread):
    """A run validated every step and checkpointed every 2 steps, killed during step 4, resumed without
    repeating --val-every: it validates at step 3 and 4 as the uninterrupted run does (before the fix the
    resumed run fell back to --checkpoint-every and validated at step 4 only)."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=2, lr=1e-3)
    whole = _Scripted()
    train([_case(0)], tmp_path / "w.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, validator=whole, val_every=1)
    assert whole.steps == [1, 2, 3, 4]
    token = CancelToken()
    first = _Scripted()
    with pytest.raises(Cancelled):
        train([_case(0)], tmp_path / "r.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, validator=first,
              val_every=1, progress=lambda stage, done, total: done == 3 and token.cancel(), cancel=token)
    assert first.steps == [1, 2, 3]
    second = _Scripted()
    train([_case(0)], tmp_path / "r.pt", resume=tmp_path / "r.ckpt.pt", validator=second)
    assert second.steps == [3, 4]
    history = load_checkpoint(tmp_path / "r.pt")[2]["training"]["validation"]["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]


class _SpyLoss(torch.nn.Module):
    """ParametricTversky that records each window's (target, weight)."""

    def __init__(self):
        super().__init__()
        from ifssnet.loss import ParametricTversky

        self.inner = ParametricTversky()
        self.seen = []

    def forward(self, prob, target, weight=None, from_logits=True):
        self.seen.append((target.detach().clone(), weight.detach().clone()))
        return self.inner(prob, target, weight, from_logits=from_logits)


@pytest.mark.parametrize("mode", ["full", "fewshot"])
def test_tbptt_halves_give_every_window_the_input_and_targets_of_the_unbroken_run(mode):
    """The second TBPTT half continues the run: its windows get the mask inputs (the truth re-fed every
    refeed_every windows of the run) and the targets (few-shot pseudo-labels from the window before) that the
    same windows get in one unbroken pass. Before the fix the second half counted re-feeds from its own start
    (full mode: truth at windows 14 and 18 of the run instead of 12, 16, 20) and its first window had no
    pseudo-labels (few-shot: its unannotated slices were left out of the loss)."""
    from ifssnet.tbptt import train_step, windows_loss
    from test_train import _Recorder, _numbered_run

    img, msk, kn = _numbered_run(24)
    msk = msk.clone()
    msk[:, 12:] = 0
    msk[:, 12:, 10:18, 10:20] = 1                       # a change of shape, so re-fed truth differs from a prediction
    if mode == "fewshot":
        kn = torch.zeros_like(kn)
        kn[:, 0:3] = True
        kn[:, 18:21] = True
    cfg = TrainConfig(mode=mode, refeed_every=4, grad_clip=0.0)
    results = []
    for split in (False, True):
        model = _Recorder().eval()                      # no dropout: both passes compute the same predictions
        loss_fn = _SpyLoss()
        if split:
            opt = torch.optim.SGD(list(model.parameters()) + list(loss_fn.parameters()), lr=0.0)
            train_step(model, loss_fn, opt, img, msk, kn, cfg)
        else:
            windows_loss(model, loss_fn, img, msk, kn, cfg)
        results.append(([c[1] for c in model.calls], loss_fn.seen))
    (inputs, seen), (split_inputs, split_seen) = results
    assert len(inputs) == len(split_inputs) == 21
    for i, (a, b) in enumerate(zip(inputs, split_inputs)):
        assert torch.allclose(a, b, atol=1e-5), f"mask input of window {i + 1}"
    for i, ((ta, wa), (tb, wb)) in enumerate(zip(seen, split_seen)):
        assert torch.equal(wa, wb) and torch.allclose(ta, tb, atol=1e-5), f"targets of window {i + 1}"


def _sparse_case(seed=0, K=40):
    """A case painted on two groups of slices only (a seeds file): known there, unknown elsewhere."""
    c = _case(seed, K)
    known = np.zeros(K, bool)
    known[2:8] = True
    known[25:31] = True
    return type(c)(c.name, c.image, c.masks, {"A": known})


def test_a_fewshot_run_on_sparse_annotations_resumes_without_repeating_its_options(tmp_path, one_thread):
    """--resume continues the checkpoint's own run: its mode decides which annotations it accepts. Before the fix
    the checks ran on the caller's config (TrainConfig() / the command line's default --mode full), so a few-shot
    run on painted seeds could not be resumed ('annotated on 12 of 40 slices ... Train with --mode fewshot')."""
    cases = [_sparse_case(0), _sparse_case(1)]
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=2, lr=1e-3)
    train(cases, tmp_path / "whole.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train(cases, tmp_path / "r.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg,
              progress=lambda stage, done, total: done == 3 and token.cancel(), cancel=token)
    train(cases, tmp_path / "r.pt", resume=tmp_path / "r.ckpt.pt")
    a, b = load_checkpoint(tmp_path / "whole.pt")[0], load_checkpoint(tmp_path / "r.pt")[0]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_refuses_options_that_would_change_the_run_instead_of_ignoring_them(tmp_path, capsys):
    """``ifssnet train --resume CKPT --epochs 3 --lr 0.5`` used to finish the run at its own epochs and rate without
    a word. Now the options that differ from the run are refused, naming both values, and nothing is written; the
    command that started the run, repeated with --resume, continues it."""
    from cli_output import error_line, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case = cli_case(tmp_path / "c")
    out, ckpt = tmp_path / "m.pt", tmp_path / "m.ckpt.pt"
    start = ["train", case, "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", *CLI_TINY]
    code, _, _ = run_cli(capsys, *start, "--time-limit", "0")
    assert code == 0 and load_checkpoint(ckpt)[2]["training"]["step"] == 1
    kept = ckpt.read_bytes()
    code, _, err = run_cli(capsys, *start, "--resume", ckpt, "--epochs", "3", "--lr", "0.5", "--width-mult", "0.25")
    line = error_line(err)
    assert code == 2, line
    assert "--epochs 3 (the run's: 1)" in line and "--lr 0.5 (the run's: 0.0001)" in line, line
    assert "--width-mult 0.25 (the run's: 0.15)" in line and "--steps" not in line, line
    assert ckpt.read_bytes() == kept
    code, _, _ = run_cli(capsys, *start, "--resume", ckpt)
    assert code == 0 and load_checkpoint(out)[2]["training"]["step"] == 3


def test_a_fine_tune_refuses_network_options_it_would_ignore(tmp_path, capsys):
    """``ifssnet train --from BASE --size 64 --width-mult 0.5`` trained BASE's own 32 x 32, width 0.15 network
    without a word; now the options that differ from the base network are refused, and the same values pass."""
    from cli_output import error_line, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case = cli_case(tmp_path / "c")
    common = ["--epochs", "1", "--steps", "1"]
    assert run_cli(capsys, "train", case, "--out", tmp_path / "base.pt", *common, *CLI_TINY)[0] == 0
    code, _, err = run_cli(capsys, "train", case, "--out", tmp_path / "ft.pt", "--from", tmp_path / "base.pt",
                           *common, "--size", "64", "--width-mult", "0.5")
    line = error_line(err)
    assert code == 2 and "--size 64 (the base network's: 32)" in line and "--width-mult 0.5" in line, line
    assert not (tmp_path / "ft.pt").exists()
    assert run_cli(capsys, "train", case, "--out", tmp_path / "ft.pt", "--from", tmp_path / "base.pt", *common,
                   *CLI_TINY)[0] == 0


def test_resuming_into_another_output_does_not_replace_that_outputs_stopped_run(tmp_path):
    """--resume A.ckpt.pt --out B.pt writes B.ckpt.pt as it goes; where B.ckpt.pt holds another run that stopped
    before its end, that run could no longer be resumed. A new run is refused there (refuse_replacing_an_unfinished_run);
    before the fix a resumed run skipped the check whatever its output, and B's checkpoint was overwritten."""
    from ifssnet.errors import InputError

    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, checkpoint_every=50)
    for name in ("a", "b"):
        train([_case(0)], tmp_path / f"{name}.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, time_limit_s=0.0)
    kept = (tmp_path / "b.ckpt.pt").read_bytes()
    with pytest.raises(InputError, match="b.ckpt.pt holds a run to this output that stopped at step 1 of 3"):
        train([_case(0)], tmp_path / "b.pt", resume=tmp_path / "a.ckpt.pt")
    assert (tmp_path / "b.ckpt.pt").read_bytes() == kept
    train([_case(0)], tmp_path / "a.pt", resume=tmp_path / "a.ckpt.pt")          # its own output: continues
    assert load_checkpoint(tmp_path / "a.pt")[2]["training"]["step"] == 3
    train([_case(0)], tmp_path / "c.pt", resume=tmp_path / "b.ckpt.pt")          # a new output: continues there
    assert load_checkpoint(tmp_path / "c.pt")[2]["training"]["step"] == 3


def test_fewshot_runs_are_drawn_from_the_paint_alone_not_the_hidden_truth():
    """sparsify keeps a complete case's masks whole and marks the unpainted slices unknown. sample_run's runs that
    cross a muscle's end were chosen by the last slice where the *whole* mask holds the muscle, so the hidden
    truth told training where the muscle ends; now only known slices count, and a case whose unknown slices are
    blanked gives the same runs."""
    from ifssnet.dataset import Case, sample_run, sparsify

    full = _case(0, K=120)
    full.masks["A"][100:] = 0                            # the muscle ends at slice 99, between painted groups 78-80 and 117-119
    c = sparsify(full, 0.1)
    assert not c.known["A"][81:117].any() and c.known["A"][78:81].all()
    known = c.known["A"]
    blank = c.masks["A"].copy()
    blank[~known] = 0
    hidden = Case(c.name, c.image, {"A": blank}, c.known, c.slice_spacing_mm)
    for seed in range(20):
        a = sample_run(c, np.random.default_rng(seed), 20, augment=False, end_fraction=1.0)
        b = sample_run(hidden, np.random.default_rng(seed), 20, augment=False, end_fraction=1.0)
        assert np.array_equal(a.image, b.image), seed


@pytest.mark.parametrize("bad, option", [({"checkpoint_every": 0}, "--checkpoint-every"), ({"seed": -1}, "--seed"),
                                         ({"jitter_shift": -1, "mask_jitter": 1.0}, "--jitter-shift"),
                                         ({"jitter_radius": -2, "mask_jitter": 1.0}, "--jitter-radius"),
                                         ({"mask_box": -0.5}, "--mask-box"), ({"bce_weight": -1.0}, "--bce-weight")])
def test_out_of_range_options_are_refused_before_training(tmp_path, bad, option):
    """--checkpoint-every 0 stopped at the first step with 'ZeroDivisionError: integer modulo by zero', --seed -1
    with numpy's 'expected non-negative integer' and --jitter-shift -1 with torch's 'random_ expects from < to'
    (each an 'internal error' exit 70); now TrainConfig.validate names the option, and nothing is written."""
    from ifssnet.errors import InputError

    with pytest.raises(InputError, match=option):
        train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY),
              cfg=TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, **bad))
    assert not list(tmp_path.iterdir())


class _Dice:
    """A validator that scores the given Dice in turn."""

    def __init__(self, *dice):
        self.dice, self.n = list(dice), 0

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        self.n += 1
        d = self.dice[self.n - 1]
        return ValidationScore(step, d, 10.0, 0.0, {"A": d})


def test_a_run_resumed_into_another_output_keeps_its_best_network_beside_it(tmp_path, one_thread):
    """The best network by validation travels with --resume: resumed into another output (B), B.best.pt is the
    run's best so far (copied from A.best.pt); before the fix B.best.pt was never written when no later step beat
    it, and ``ifssnet train`` failed after 'wrote B.pt' with 'B.best.pt does not exist'. Where the best network's
    file is gone, the next validation writes one."""
    from ifssnet.validation import best_model_path, best_score

    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, checkpoint_every=1, lr=1e-3)
    train([_case(0)], tmp_path / "a.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, validator=_Dice(0.9),
          val_every=1, time_limit_s=0.0)
    train([_case(0)], tmp_path / "b.pt", resume=tmp_path / "a.ckpt.pt", validator=_Dice(0.2, 0.3))
    best = best_score(best_model_path(tmp_path / "b.pt"))
    assert (best.step, best.dice) == (1, 0.9)
    assert (tmp_path / "b.best.pt").read_bytes() == (tmp_path / "a.best.pt").read_bytes()
    (tmp_path / "a.best.pt").unlink()
    train([_case(0)], tmp_path / "c.pt", resume=tmp_path / "a.ckpt.pt", validator=_Dice(0.2, 0.3))
    best = best_score(best_model_path(tmp_path / "c.pt"))
    assert (best.step, best.dice) == (3, 0.3)


@pytest.mark.parametrize("item, volume, annotation", [
    (r"C:\d\v.nrrd:C:\d\a.seg.nrrd", r"C:\d\v.nrrd", r"C:\d\a.seg.nrrd"),    # Slicer's Training module on Windows
    ("C:/d/v.nrrd:D:/a.seg.nrrd", "C:/d/v.nrrd", "D:/a.seg.nrrd"),
    (r"v.nrrd:D:\a.seg.nrrd", "v.nrrd", r"D:\a.seg.nrrd"),
    ("/x/v.nrrd:/x/a.seg.nrrd", "/x/v.nrrd", "/x/a.seg.nrrd"),
    ("v.nrrd:a.seg.nrrd", "v.nrrd", "a.seg.nrrd")])
def test_volume_annotation_pairs_split_at_the_colon_between_them_not_at_a_drive(item, volume, annotation):
    """CASES and --val take VOLUME:ANNOTATION; with Windows paths (IFSSNetTraining's trainingCommand passes
    absolute ones) the pair was split at the drive's colon: volume 'C', annotation '\\d\\v.nrrd:C:\\d\\a.seg.nrrd'."""
    from pathlib import Path

    from ifssnet.train_cli import _case_paths

    assert _case_paths([item]) == [(Path(volume), Path(annotation))]


def test_distributed_training_takes_its_backend_and_gpu_from_the_device(monkeypatch):
    """Under torchrun the group's backend was nccl whenever a GPU was present, so the default --device cpu failed at
    the first all-reduce of CPU tensors; and a bare --device cuda put every rank on GPU 0. Now --device cpu makes a
    gloo group, cuda makes an nccl one, and each rank trains on cuda:LOCAL_RANK."""
    import torch.distributed as dist

    from ifssnet import train_cli

    made = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: made.append(("set_device", str(d))))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **k: made.append(("group", backend)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert train_cli.training_device("cpu") == "cpu"
    assert train_cli._init_distributed("cpu") == (1, 2, True) and made[-1] == ("group", "gloo")
    assert train_cli.training_device("cuda") == "cuda:1" and made[-1] == ("set_device", "cuda:1")
    train_cli._init_distributed("cuda:1")
    assert made[-1] == ("group", "nccl")


def test_an_unknown_or_missing_device_is_refused_with_a_message(monkeypatch):
    """--device foo and --device cuda without a GPU stopped with PyTorch's RuntimeError / AssertionError as an
    'internal error' (exit 70)."""
    from ifssnet import train_cli
    from ifssnet.errors import IFSSNetError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(IFSSNetError, match="Unknown device 'foo'"):
        train_cli.training_device("foo")
    with pytest.raises(IFSSNetError, match="CUDA"):
        train_cli.training_device("cuda")


def test_painted_slices_outside_the_volume_are_refused_with_a_message():
    """A painted-slice tag that lists slices past the volume's end (a segmentation of a longer or uncropped sweep)
    stopped training with 'IndexError: index 30 is out of bounds' as an internal error."""
    from ifssnet.dataset import case_from_arrays
    from ifssnet.errors import InputError
    from ifssnet.io import AnnotatedSlices, Geometry, segmentation_from_masks

    m = np.zeros((12, 30, 30), np.uint8)
    m[:, 8:20, 6:22] = 1
    seg = segmentation_from_masks({"GM": m}, Geometry(spacing=(0.5, 0.5, 1.0), origin=(0, 0, 0)))
    seg.segments[0].annotated = AnnotatedSlices(0, (0, 1, 2, 30, 31, 32))
    with pytest.raises(InputError, match=r"Segment 'GM' of case 'leg' is marked painted on slices \[30, 31, 32\], "
                                         r"outside the volume's 12 slices"):
        case_from_arrays(np.random.default_rng(0).random((12, 30, 30), np.float32), seg, 32, name="leg")


def _uneven_worker(rank, world, init_file, out_dir):
    import datetime
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        # Rank 0 trains on a 40-slice case (runs of 8: two TBPTT updates per step), rank 1 on a 4-slice one (a run
        # of one window: one update), unless the ranks agree on the run's length.
        cfg = TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, lr=1e-2)
        train([_case(0, K=40), _case(1, K=4)], os.path.join(out_dir, "u.pt"), model_config=IFSSNetConfig(**TINY),
              cfg=cfg, rank=rank, world=world)
        dist.barrier()
        mine = torch.cat([p.detach().flatten() for p in load_checkpoint(os.path.join(out_dir, "u.pt"))[0].parameters()])
        gathered = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        ok = all(torch.equal(gathered[0], g) for g in gathered)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.{'same' if ok else 'differ'}"), "w") as f:
        f.write("done")
    os._exit(0)


def test_ranks_with_runs_of_different_lengths_make_the_same_updates(tmp_path):
    """DDP over cases: a rank whose case is shorter drew a shorter run, whose TBPTT step made one update instead
    of two, so its gradient all-reduces paired with another step's on the other rank (weights apart, or a hang
    until gloo's timeout). Now the ranks agree on the run's length, stride and burn-in, and end with the same
    weights."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_uneven_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    try:
        ctx.join(timeout=150)             # False while a rank still waits (a hang): it is killed below
    except (mp.ProcessExitedException, mp.ProcessRaisedException):
        pass
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    assert (tmp_path / "rank0.same").exists() and (tmp_path / "rank1.same").exists(), sorted(
        p.name for p in tmp_path.iterdir())
