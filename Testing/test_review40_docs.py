"""Review 40 (documentation audit): the command line does what README's "The command line" and "Messages" say."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from cli_output import error_line, run_cli  # noqa: E402


def test_train_run_longer_than_the_sweep_names_the_run_length(tmp_path, capsys):
    """A run (--run-length + --reach) longer than any stretch from an annotated group to the sweep's end was
    refused as 'No training case has 3 consecutive annotated slices', with the hint to paint groups or give
    --fill-gap, neither of which helps: the message now says the run does not fit and which options make it shorter.
    (Since c28f721 few-shot keeps a group at each muscle's largest cross-section, so the run is longer than the
    whole 120-slice sweep: --reach 96 fitted from that group.)"""
    code, _, err = run_cli(capsys, "phantom", tmp_path / "p", "--seed", 1000, "--shape", 120, 64, 64)
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", tmp_path / "p", "--mode", "fewshot", "--reach", 120, "--out",
                           tmp_path / "m.pt", "--epochs", 1, "--steps", 1, "--size", 32, "--width-mult", 0.15,
                           "--run-length", 6)
    line = error_line(err)
    assert code == 2, line
    assert "126 slices" in line and "--reach 120" in line and "--run-length 6" in line, line
    assert "--fill-gap" not in line, line
    assert not (tmp_path / "m.pt").exists()
