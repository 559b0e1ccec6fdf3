"""The best network by validation while a run goes: it is the run's own file beside its checkpoint
(``OUT.ckpt.best.pt``, :func:`ifssnet.train.checkpoint_best_path`) and becomes ``OUT.best.pt`` only where the run
writes ``OUT.pt``. Before, a new run to an output replaced the earlier run's ``OUT.best.pt`` at its first
validation, so a cancelled or killed run left ``OUT.pt`` the earlier model and ``OUT.best.pt`` its own: the earlier
run's best network was lost."""
import pytest

from ifssnet.errors import Cancelled, InputError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, checkpoint_best_path, checkpoint_path, train
from ifssnet.validation import ValidationScore, best_model_path, best_score

from test_train import TINY, _case, one_thread  # noqa: F401 (a fixture)


class _Dice:
    """A validator that scores the given Dice in turn and records the steps it is called at."""

    def __init__(self, *dice):
        self.dice, self.steps = list(dice), []

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        self.steps.append(step)
        d = self.dice[len(self.steps) - 1]
        return ValidationScore(step, d, 10.0, 0.0, {"A": d})


def _cfg(steps=4, checkpoint_every=1):
    return TrainConfig(epochs=1, steps_per_epoch=steps, run_length=8, checkpoint_every=checkpoint_every, lr=1e-3)


def _cancel_at(token, at):
    """A progress callback that cancels once training reports step ``at`` (the run stops before step at + 1)."""
    return lambda stage, done, total: stage == "training" and done == at and token.cancel()


def _earlier_run(out):
    """A finished run with validation to ``out``: the bytes of OUT.pt and OUT.best.pt it left."""
    train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(2), validator=_Dice(0.9, 0.8), val_every=1)
    assert not checkpoint_best_path(out).exists()                 # a finished run leaves no private best file
    return out.read_bytes(), best_model_path(out).read_bytes()


def _score(path):
    s = best_score(path)
    return s.step, s.dice


def test_a_cancelled_new_run_leaves_the_earlier_runs_model_and_best_model_as_they_were(tmp_path, one_thread):
    """A new run with validation to the same output, cancelled after two validations that wrote a best and a
    checkpoint: OUT.pt and OUT.best.pt are the earlier run's byte for byte; the run's best so far is beside its
    checkpoint. Before the fix OUT.best.pt was the cancelled run's step-2 network."""
    out = tmp_path / "m.pt"
    model, best = _earlier_run(out)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(1)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=_Dice(0.3, 0.5),
              val_every=1, progress=_cancel_at(token, 2), cancel=token)
    assert out.read_bytes() == model and best_model_path(out).read_bytes() == best
    assert _score(best_model_path(out)) == (1, 0.9)
    assert _score(checkpoint_best_path(out)) == (2, 0.5)
    assert checkpoint_best_path(out).name == "m.ckpt.best.pt"
    assert load_checkpoint(checkpoint_path(out))[2]["training"]["step"] == 2


def test_a_run_cancelled_before_its_first_checkpoint_leaves_no_best_file(tmp_path, one_thread):
    """Before its first checkpoint a cancelled run cannot be resumed: its best so far goes with it, and the earlier
    run's files stay as they were."""
    out = tmp_path / "m.pt"
    model, best = _earlier_run(out)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(1)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4, checkpoint_every=2),
              validator=_Dice(0.3), val_every=1, progress=_cancel_at(token, 1), cancel=token)
    assert out.read_bytes() == model and best_model_path(out).read_bytes() == best
    assert not checkpoint_best_path(out).exists()
    assert load_checkpoint(checkpoint_path(out))[2]["training"]["step"] == 2     # the earlier, finished run's


@pytest.mark.parametrize("later, expected", [((0.4, 0.6), (4, 0.6)), ((0.1, 0.2), (2, 0.5))])
def test_a_cancelled_run_resumed_to_its_end_keeps_the_best_of_the_whole_run(tmp_path, one_thread, later, expected):
    """Resumed to its end, the run's best over all its steps becomes OUT.best.pt (a later step's, or the one from
    before the cancel that the private file carried over), and no private file is left."""
    out = tmp_path / "m.pt"
    _earlier_run(out)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(1)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=_Dice(0.3, 0.5),
              val_every=1, progress=_cancel_at(token, 2), cancel=token)
    kept = checkpoint_best_path(out).read_bytes()
    resumed = _Dice(*later)
    train([_case(1)], out, resume=checkpoint_path(out), validator=resumed)
    assert resumed.steps == [3, 4]
    assert _score(best_model_path(out)) == expected
    if expected[0] == 2:
        assert best_model_path(out).read_bytes() == kept
    assert not checkpoint_best_path(out).exists()
    history = load_checkpoint(out)[2]["training"]["validation"]["history"]
    assert [(h["step"], h["dice"]) for h in history] == [(1, 0.3), (2, 0.5), (3, later[0]), (4, later[1])]


def test_a_resumed_run_cancelled_again_keeps_its_best_beside_the_checkpoint(tmp_path, one_thread):
    """A run stopped by --time-limit moved its best to OUT.best.pt with OUT.pt; resumed and cancelled, OUT.best.pt
    stays the stopped run's, and the resumed run's best so far is beside the checkpoint."""
    out = tmp_path / "m.pt"
    train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=_Dice(0.5), val_every=1,
          time_limit_s=0.0)
    assert _score(best_model_path(out)) == (1, 0.5) and not checkpoint_best_path(out).exists()
    model, best = out.read_bytes(), best_model_path(out).read_bytes()
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], out, resume=checkpoint_path(out), validator=_Dice(0.7), progress=_cancel_at(token, 2),
              cancel=token)
    assert out.read_bytes() == model and best_model_path(out).read_bytes() == best
    assert _score(checkpoint_best_path(out)) == (2, 0.7)
    train([_case(0)], out, resume=checkpoint_path(out), validator=_Dice(0.6, 0.65))
    assert _score(best_model_path(out)) == (2, 0.7) and not checkpoint_best_path(out).exists()


def test_a_new_run_is_refused_over_a_stopped_run_naming_its_best_file(tmp_path, one_thread):
    """The best file beside a stopped run's checkpoint is that run's: a new run to the output is refused, and the
    message names both files to delete to start again."""
    out = tmp_path / "m.pt"
    token = CancelToken()
    with pytest.raises(Cancelled):
        train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=_Dice(0.3, 0.5),
              val_every=1, progress=_cancel_at(token, 2), cancel=token)
    kept = checkpoint_best_path(out).read_bytes()
    with pytest.raises(InputError) as err:
        train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=_Dice(0.9), val_every=1)
    assert str(checkpoint_best_path(out)) in str(err.value)
    assert checkpoint_best_path(out).read_bytes() == kept


def test_the_cli_keeps_the_earlier_best_on_ctrl_c_names_the_runs_best_file_and_resumes_to_it(tmp_path, capsys,
                                                                                             monkeypatch):
    """``ifssnet train --val``: Ctrl-C after a validation and a checkpoint leaves the earlier run's OUT.pt and
    OUT.best.pt byte for byte, and the line names the run's best file and what it becomes; ``--resume`` to the end
    makes OUT.best.pt the run's best and removes the private file."""
    import ifssnet.progress
    from cli_output import interrupting_progress, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case, held_out = cli_case(tmp_path / "c"), cli_case(tmp_path / "v")
    out = tmp_path / "m.pt"
    start = ["train", case, "--out", out, "--val", held_out, "--val-every", "1", "--epochs", "1", "--steps", "3",
             "--checkpoint-every", "1", *CLI_TINY]
    code, stdout, _ = run_cli(capsys, *start)
    assert code == 0 and f": {best_model_path(out)}" in stdout
    assert not checkpoint_best_path(out).exists()
    model, best = out.read_bytes(), best_model_path(out).read_bytes()
    with monkeypatch.context() as m:
        m.setattr(ifssnet.progress, "TqdmProgress", interrupting_progress("training", 2))
        code, _, err = run_cli(capsys, *start)
    line = err.strip().splitlines()[-1]                     # after the validation's summary line
    assert code == 130 and line.startswith("ifssnet: Interrupted (Ctrl-C)."), err
    assert out.read_bytes() == model and best_model_path(out).read_bytes() == best
    assert checkpoint_best_path(out).exists()
    assert f"kept in {checkpoint_best_path(out)}" in line, line
    assert f"becomes {best_model_path(out)} when the run is resumed to its end (the earlier one is as it was)" in line
    code, stdout, err = run_cli(capsys, *start, "--resume", checkpoint_path(out))
    assert code == 0, err
    assert not checkpoint_best_path(out).exists()
    history = load_checkpoint(out)[2]["training"]["validation"]["history"]
    top = max(history, key=lambda h: h["dice"])            # the first of equals: best_of keeps the earlier step
    assert [h["step"] for h in history] == [1, 2, 3]
    assert best_score(best_model_path(out)).step == top["step"]
    assert f"at step {top['step']}: {best_model_path(out)}" in stdout
