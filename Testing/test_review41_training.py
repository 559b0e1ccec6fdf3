"""Review 41 (training): the run's best file beside its checkpoint (``OUT.ckpt.best.pt``) after a killed new run and
after a resumed run cancelled between a new best and its next checkpoint, and ``ifssnet train --resume``'s refusal
of options typed at the parser's default; each found and fixed with a test."""
import os
import subprocess
import sys
import textwrap

import pytest

from ifssnet.errors import Cancelled
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, checkpoint_best_path, checkpoint_path, train
from ifssnet.validation import ValidationScore, best_model_path, best_of, best_score

from test_train import TINY, _case, one_thread  # noqa: F401 (a fixture)
from test_train_best_file import _Dice

HERE = os.path.dirname(os.path.abspath(__file__))


def _cfg(steps=4, checkpoint_every=1, seed=0):
    return TrainConfig(epochs=1, steps_per_epoch=steps, run_length=8, checkpoint_every=checkpoint_every, lr=1e-3,
                       seed=seed)


def _cancel_at(token, at):
    """A progress callback that cancels once training reports step ``at`` (the run stops before step at + 1)."""
    return lambda stage, done, total: stage == "training" and done == at and token.cancel()


def _score(path):
    s = best_score(path)
    return s.step, s.dice


def _killed_new_run(out, dice=0.9):
    """A new run to ``out`` with validation every step and no checkpoint before its last step (4), killed (SIGKILL,
    as Slicer's Cancel terminates its process) during step 2's validation, after step 1's validation wrote its best
    file: no except clause runs, so the file stays. Trains case 1 with seed 1 (not the runs of the tests' own)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {HERE!r})
        import torch
        torch.set_num_threads(1)
        from ifssnet.model import IFSSNetConfig
        from ifssnet.train import TrainConfig, train
        from ifssnet.validation import ValidationScore
        from test_train import TINY, _case

        def validator(model, step, rank=0, world=1, cancel=None):
            if step == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return ValidationScore(step, {dice!r}, 10.0, 0.0, {{"A": {dice!r}}})

        train([_case(1)], {str(out)!r}, model_config=IFSSNetConfig(**TINY), validator=validator, val_every=1,
              cfg=TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=50, lr=1e-3, seed=1))
        """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert _score(checkpoint_best_path(out)) == (1, dice)
    return checkpoint_best_path(out).read_bytes()


# ---- 1. a killed new run's best file -------------------------------------------------------------------------------

@pytest.mark.parametrize("validated", [False, True])
def test_a_new_run_does_not_keep_the_best_file_a_killed_run_left(tmp_path, one_thread, validated):
    """A new run killed before its first checkpoint left OUT.ckpt.best.pt, which belongs to no run that can be
    resumed. The next new run to the output kept it until its first validation; one without validation (or cancelled
    before its first) kept it for good, beside a model it is not the best of. Now a new run that may start removes
    it first; OUT.pt and OUT.best.pt of the earlier, finished run are untouched by the killed run."""
    out = tmp_path / "m.pt"
    train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(2), validator=_Dice(0.9, 0.8), val_every=1)
    model, best = out.read_bytes(), best_model_path(out).read_bytes()
    _killed_new_run(out)
    assert out.read_bytes() == model and best_model_path(out).read_bytes() == best
    if validated:                             # cancelled before its first validation
        token = CancelToken()
        with pytest.raises(Cancelled):
            train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4, checkpoint_every=2),
                  validator=_Dice(0.3), val_every=2, progress=_cancel_at(token, 1), cancel=token)
        assert out.read_bytes() == model
        assert best_model_path(out).read_bytes() == best
    else:                                     # no validation, to its end: the earlier run's best is not the new one's
        train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(2))
        assert not best_model_path(out).exists()
    assert not checkpoint_best_path(out).exists()


def test_a_resume_into_an_output_does_not_take_a_killed_runs_best_file_for_its_own(tmp_path, one_thread):
    """--resume A.ckpt.pt --out B.pt where a killed new run to B left B.ckpt.best.pt with the same step and Dice as
    A's best: the file was taken for A's best network (only the step and Dice were compared), so B.best.pt became
    the killed run's network. Now the file must be of the run resumed (its command, recipe and validation history),
    and A's best network (A.best.pt) is copied in."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    train([_case(0)], a, model_config=IFSSNetConfig(**TINY), cfg=_cfg(3), validator=_Dice(0.5), val_every=1,
          time_limit_s=0.0)
    assert _score(best_model_path(a)) == (1, 0.5)
    stray = _killed_new_run(b, dice=0.5)
    assert stray != best_model_path(a).read_bytes()
    train([_case(0)], b, resume=checkpoint_path(a), validator=_Dice(0.2, 0.3))
    assert best_model_path(b).read_bytes() == best_model_path(a).read_bytes()
    assert not checkpoint_best_path(b).exists()


# ---- 2. a resumed run cancelled between a new best and its next checkpoint --------------------------------------

@pytest.mark.parametrize("again, expected_history", [
    ((0.2, 0.3), [(1, 0.3), (2, 0.5), (3, 0.7), (3, 0.2), (4, 0.3)]),     # the validation cases changed, say
    ((0.7, 0.6), [(1, 0.3), (2, 0.5), (3, 0.7), (4, 0.6)])])    # the same score again (an exact resume): once
def test_a_resumed_run_cancelled_after_a_new_best_keeps_that_best_when_resumed_again(tmp_path, one_thread, again,
                                                                                   expected_history):
    """A run checkpointed at step 2 (best: step 2, Dice 0.5) is resumed, finds a new best at step 3 (0.7, written
    to OUT.ckpt.best.pt over step 2's) and is cancelled before its step-4 checkpoint. Resumed again, the checkpoint
    recorded step 2's best and the file held step 3's, so the best was forgotten: the next validations wrote
    OUT.best.pt anew (step 4, Dice 0.3) although the history showed 0.5 at step 2, and the Ctrl-C line had said step
    3's network would become OUT.best.pt. Now the file is taken as the run's newer best with its score, its
    validations join the history (a repeat with the same scores is recorded once, one that differs as well), and
    OUT.best.pt, the score OUT.pt records and best_of(history) agree."""
    out = tmp_path / "m.pt"
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4, checkpoint_every=2),
              validator=_Dice(0.3, 0.5), val_every=1, progress=_cancel_at(token, 2), cancel=token)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], out, resume=checkpoint_path(out), validator=_Dice(0.7), progress=_cancel_at(token, 3),
              cancel=token)
    assert load_checkpoint(checkpoint_path(out))[2]["training"]["step"] == 2
    assert _score(checkpoint_best_path(out)) == (3, 0.7)
    newer = checkpoint_best_path(out).read_bytes()
    resumed = _Dice(*again)
    train([_case(0)], out, resume=checkpoint_path(out), validator=resumed)
    assert resumed.steps == [3, 4]
    assert _score(best_model_path(out)) == (3, 0.7)
    assert best_model_path(out).read_bytes() == newer and not checkpoint_best_path(out).exists()
    validation = load_checkpoint(out)[2]["training"]["validation"]
    assert [(h["step"], h["dice"]) for h in validation["history"]] == expected_history
    assert (validation["best"]["step"], validation["best"]["dice"]) == (3, 0.7)
    top = best_of([ValidationScore.from_dict(h) for h in validation["history"]])
    assert (top.step, top.dice) == (3, 0.7)


# ---- 3. ifssnet train --resume: options typed at the parser's default -----------------------------------------------

def test_resume_refuses_an_option_typed_at_the_parsers_default_when_the_run_used_another(tmp_path, capsys):
    """The refusal skipped every option whose value was the parser's default, so a run started with --epochs 1
    --seed 3 --size 32 and resumed with --epochs 10 --seed 0 --size 128 (the defaults, typed) went on with its own
    values without a word. Now every option typed is compared with the run's; the run's own values typed, and the
    options Slicer's Resume passes (cases, --out, --log, --device, --resume), are accepted."""
    from cli_output import error_line, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case = cli_case(tmp_path / "c")
    out, ckpt, log = tmp_path / "m.pt", tmp_path / "m.ckpt.pt", tmp_path / "log.jsonl"
    start = ["train", case, "--out", out, "--epochs", "1", "--steps", "3", "--checkpoint-every", "1", "--seed", "3",
             *CLI_TINY]
    code, _, _ = run_cli(capsys, *start, "--time-limit", "0")
    assert code == 0 and load_checkpoint(ckpt)[2]["training"]["step"] == 1
    kept, model = ckpt.read_bytes(), out.read_bytes()
    code, _, err = run_cli(capsys, "train", case, "--out", out, "--resume", ckpt, "--epochs", "10", "--seed", "0",
                           "--size", "128", "--checkpoint-every", "50", "--mode", "full")
    line = error_line(err)
    assert code == 2, line
    for part in ("--epochs 10 (the run's: 1)", "--seed 0 (the run's: 3)", "--size 128 (the run's: 32)",
                 "--checkpoint-every 50 (the run's: 1)"):
        assert part in line, line
    assert "--mode" not in line and "--steps" not in line, line      # --mode full is the run's own
    assert ckpt.read_bytes() == kept and out.read_bytes() == model
    code, _, err = run_cli(capsys, "train", case, "--out", out, "--log", log, "--device", "cpu", "--resume", ckpt,
                           "--seed", "3", "--epochs", "1")
    assert code == 0, err
    assert load_checkpoint(out)[2]["training"]["step"] == 3


def test_a_fine_tune_refuses_a_network_option_typed_at_the_parsers_default(tmp_path, capsys):
    """The same for --from: --size 128 typed (the parser's default) over a 32 x 32 base network trained the base
    network as it is without a word; now it is refused, and --size 32 passes."""
    from cli_output import error_line, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case = cli_case(tmp_path / "c")
    common = ["--epochs", "1", "--steps", "1"]
    assert run_cli(capsys, "train", case, "--out", tmp_path / "base.pt", *common, *CLI_TINY)[0] == 0
    code, _, err = run_cli(capsys, "train", case, "--out", tmp_path / "ft.pt", "--from", tmp_path / "base.pt",
                           *common, "--size", "128")
    line = error_line(err)
    assert code == 2 and "--size 128 (the base network's: 32)" in line, line
    assert not (tmp_path / "ft.pt").exists()
    assert run_cli(capsys, "train", case, "--out", tmp_path / "ft.pt", "--from", tmp_path / "base.pt", *common,
                   "--size", "32")[0] == 0
