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

from cli_output import error_line, run_cli
from test_train_cli_errors import TINY, _case

HERE = os.path.dirname(os.path.abspath(__file__))


def _records(log):
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def _killed_cli_run(argv, at_step):
    """``ifssnet train`` with ``argv`` in a child process, killed (SIGKILL, as Slicer's Cancel ends its process) just
    after it logged step ``at_step``: no except or finally clause runs."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        import torch
        torch.set_num_threads(1)
        import ifssnet.train_cli as C
        real = C.train

        def killing(*args, on_step=None, **kwargs):
            def step(log):
                on_step(log)
                if log.step == {at_step}:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, on_step=step, **kwargs)

        C.train = killing
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
