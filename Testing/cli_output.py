"""Shared pieces of the command-line tests (``test_cli.py``, ``test_compare_errors.py``,
``test_train_cli_errors.py``): running a command with its output captured, the one error line a failing command prints, and a progress bar that
is interrupted as Ctrl-C would."""
from __future__ import annotations


def run_cli(capsys, *argv):
    """``ifssnet`` with ``argv`` (each turned into a string): its exit code, stdout and stderr."""
    from ifssnet.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The last stderr line (tqdm may have drawn progress bars before it); it must be the only line
    that is not a progress bar, and there is no traceback."""
    assert "Traceback" not in err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "it/s" not in ln
             and "%|" not in ln and "it [" not in ln]
    assert len(lines) == 1, lines
    return lines[0]


def interrupting_progress(stage: str, at: int = 1, error=KeyboardInterrupt):
    """A stand-in for :class:`ifssnet.progress.TqdmProgress` that raises ``error`` (Ctrl-C's KeyboardInterrupt
    by default) when ``stage`` first reports ``at`` or more done; monkeypatch it over ``ifssnet.progress.TqdmProgress``."""

    class Interrupting:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, stage_now, done, total):
            if stage_now == stage and done >= at:
                raise error

        def close(self):
            pass

    return Interrupting


def recording_progress(seen: list, counts: bool = False):
    """A stand-in for :class:`ifssnet.progress.TqdmProgress` that appends each report to ``seen``: its stage, or
    ``(stage, done, total)`` with ``counts``; monkeypatch it over ``ifssnet.progress.TqdmProgress``."""

    class Recording:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, stage, done, total):
            seen.append((stage, done, total) if counts else stage)

        def close(self):
            pass

    return Recording
