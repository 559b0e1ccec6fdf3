"""A validated run that collapses to empty masks says so, and which file to use instead: the command line once per
collapse, Slicer's status line when the run ends (ifssnet.validation.collapse_note)."""
import numpy as np

from ifssnet.validation import ValidationScore, collapse_note

from test_train import _case, one_thread  # noqa: F401 (a fixture)
from test_validation import ScriptedValidator, phantoms  # noqa: F401 (a fixture)


def _scores(*dice):
    return [ValidationScore(25 * (i + 1), d, 50.0, 1.0) for i, d in enumerate(dice)]


def test_a_fall_to_zero_after_a_better_score_is_a_collapse():
    note = collapse_note(_scores(0.1, 0.25, 0.0), "m.best.pt")
    assert "fell to 0.000 at step 75, from 0.250 at step 50" in note and "Use m.best.pt (step 50)" in note
    assert "--seed" in note
    assert collapse_note(_scores(0.1, 0.25, 0.2)) == ""          # worse, not collapsed
    assert collapse_note(_scores(0.0, 0.0)) == ""                # never above: nothing better to point to
    assert collapse_note(_scores(0.3, 0.0, 0.4)) == ""           # it came back
    assert collapse_note(_scores(0.3, float("nan"))) == ""       # no score is no collapse
    assert collapse_note([]) == ""


def test_train_cli_warns_once_per_collapse(tmp_path, phantoms, monkeypatch, capsys, one_thread):  # noqa: F811
    from ifssnet import train_cli
    from ifssnet.cli import main

    monkeypatch.setattr(train_cli, "_validator", lambda *a, **k: ScriptedValidator([0.3, 0.0, 0.0, 0.5, 0.0]))
    args = [str(phantoms / "case0"), "--val", str(phantoms / "case1"), "--val-every", "1", "--epochs", "1",
            "--steps", "5", "--size", "32", "--width-mult", "0.25", "--run-length", "8"]
    assert main(["train", *args, "--out", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("Warning: Validation Dice fell")]
    assert len(warnings) == 2                                     # steps 2 (not 3 again) and 5
    assert "at step 2, from 0.300 at step 1" in warnings[0] and "Use m.best.pt (step 1)" in warnings[0]
    assert "at step 5, from 0.500 at step 4" in warnings[1]


def test_the_summary_names_the_area_error_of_held_out_groups():
    from ifssnet.held_out_groups import PROTOCOL

    rows = [{"muscle": "GM", "protocol": PROTOCOL, "dice": 0.5, "volume_error_pct": 20.0, "error": ""}]
    from ifssnet.validation import Validator

    score = Validator.score(rows, 3, 1.0)
    assert score.per_protocol == {PROTOCOL: (0.5, 20.0)}
    assert "area error on the held-out painted slices 20.0 %" in score.summary()
    assert ValidationScore.from_log_record(score.log_record()) == score
    full = Validator.score([{**rows[0], "protocol": "3-seeds"}], 3, 1.0)
    assert full.per_protocol == {} and "volume error 20.0 %" in full.summary()
    both = Validator.score([rows[0], {**rows[0], "protocol": "3-seeds", "dice": 0.7}], 3, 1.0)
    assert "volume error" in both.summary() and np.isclose(both.dice, 0.6)
