"""Run one module-level function on numpy arrays in a child Python process that Cancel can kill.

Why: an ITK filter's ``Update()`` is one C++ call. FastGrowCut has no progress events, and the ITK
Python wrapping holds the GIL for the whole call (measured: another thread ticking every 10 ms ran 8
times during a 7.9 s FastGrowCut), so in-process a cancel flag is only seen before and after, and every
other Python thread (in Slicer, the main thread's Python, the Cancel button's handler included) waits
too. A child process is killed at once, and a crash in ITK's static/thread-local teardown cannot reach
the caller.

How: the inputs are saved as ``.npy`` files in a private temporary folder, with ``call.json`` naming
the function (module and name) and its JSON keyword arguments. The child (``sys.executable``, or
Slicer's ``PythonSlicer`` inside the Slicer application: :func:`python_executable`) loads them, calls
the function, writes its array result (renamed into place when complete) and leaves through ``os._exit``. The parent polls every
``poll_s`` seconds: cancel -> kill -> :class:`~ifssnet.errors.Cancelled`; past ``timeout_s`` -> kill ->
:class:`~ifssnet.errors.ResourceError` with what to do; a non-zero exit or no result ->
:class:`~ifssnet.errors.IFSSNetError` with the tail of the child's stderr. Ctrl-C in the parent kills
the child too. The temporary folder goes in every case.

Cost: a fresh interpreter plus the function's imports, on each call. Measured on 2 shared cores (load
2-3) on the phantom of ``ifssnet phantom /tmp/ph --seed 1000 --shape 400 128 128``: an isolated Grow from
seeds took 3.7-7.8 s longer than in-process (3-seeds crops of 0.15 M voxels: 0.06-0.14 s -> 3.8-6.2 s;
paper crops of 2-4 M voxels: 1.9-6.2 s -> 6.0-12.6 s), an isolated Fill between slices about 12 s longer
(2.3 s -> 14.7 s on a 10 M-voxel crop): loading ITK's wrapping in the child.

``isolate="auto"`` (:func:`wants_child`) therefore isolates only an input of at least the method's
``min_voxels``, chosen where an in-process run takes about as long as the child's start-up (Grow from
seeds: 4 M voxels, FastGrowCut doing 0.6-1 M voxels/s there; Fill between slices: 40 M, the contour
interpolator about 4 M voxels/s). A smaller input runs in this process: Cancel then waits at most about
as long as a child would take to start.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import Cancelled, DependencyError, IFSSNetError, InputError, ResourceError
from ..progress import is_cancelled

POLL_S = 0.05
_STDERR_TAIL = 500  # characters of the child's stderr quoted in a failure


def check_isolate(value, method: str = "gfs") -> None:
    """Raise InputError unless ``value`` is true, false or ``"auto"`` (the ``isolate`` option)."""
    if not (value in (False, True) or value == "auto"):  # 0 and 1 (``isolate=1`` on the command line) too
        raise InputError(f"Option isolate={value!r} of {method!r} is not true, false or auto.",
                         f"Write e.g. --option {method}.isolate=true (auto: only for large inputs).")


def wants_child(isolate, voxels: int, min_voxels: int) -> bool:
    """Whether to run a filter in a child process: ``isolate`` True/False as given; ``"auto"``: when its
    input holds at least ``min_voxels`` ``voxels``."""
    check_isolate(isolate)
    return bool(voxels >= min_voxels) if isolate == "auto" else bool(isolate)


#: Baselines whose ITK filter can run in a child process that Cancel kills (their ``isolate`` option).
ISOLATABLE = ("fbs", "gfs")


def cancellable_options(methods: Sequence, method_options: Optional[Mapping] = None) -> dict:
    """``method_options`` (method -> its options) with ``isolate="auto"`` for each of :data:`ISOLATABLE` in
    ``methods`` that does not set it: what the Slicer Logics run on their worker thread with a Cancel button,
    where an in-process FastGrowCut would hold the GIL (and Slicer's Python) for its whole run. A copy; the
    argument is not changed."""
    options = {name: dict(opts) for name, opts in (method_options or {}).items()}
    for name in methods:
        if isinstance(name, str) and name in ISOLATABLE:
            options.setdefault(name, {}).setdefault("isolate", "auto")
    return options


def python_executable() -> str:
    """The interpreter for the child: ``sys.executable`` when it is a Python. Inside the Slicer application
    ``sys.executable`` is Slicer itself: there Slicer's ``PythonSlicer``, on the PATH that Slicer sets
    (or beside Slicer's executable)."""
    exe = Path(sys.executable)
    if "python" in exe.name.lower():
        return sys.executable
    found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=str(exe.parent))
    if not found:
        raise DependencyError(f"No Python interpreter was found to run a baseline in its own process ({exe.name} "
                              "is not one, and Slicer's PythonSlicer is not on the PATH).",
                              "Run the method in this process instead (option isolate off).")
    return found


def run_in_child(func: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], kwargs: Optional[Mapping] = None, *,
                 what: str, cancel=None, timeout_s: Optional[float] = None,
                 timeout_todo: str = "Crop the volume and try again.", poll_s: float = POLL_S) -> np.ndarray:
    """``func(*arrays, **kwargs)`` in a child Python process; returns its array result.

    func: a module-level function (found again in the child by module and name) returning an array.
    arrays: its positional numpy arguments (any shape and dtype; copied through ``.npy`` files).
    kwargs: its keyword arguments, JSON values only (tuples arrive as lists).
    what: the step's name in messages ("Grow from seeds"). cancel: polled every ``poll_s`` s.
    timeout_s: seconds (wall clock, child start-up included) before the child is killed; None = no limit.
    Raises Cancelled, ResourceError (timeout, saying ``timeout_todo``) or IFSSNetError (the child failed).
    """
    module, name = func.__module__, func.__qualname__
    if "." in name or "<" in name or module == "__main__":
        raise TypeError(f"run_in_child needs a module-level function, not {module}.{name}")
    with tempfile.TemporaryDirectory(prefix="ifssnet-child-") as tmp:
        folder = Path(tmp)
        for i, array in enumerate(arrays):
            np.save(folder / f"in{i}.npy", np.asarray(array))
        (folder / "call.json").write_text(json.dumps({"module": module, "function": name, "inputs": len(arrays),
                                                      "kwargs": dict(kwargs or {})}))
        code = "import sys; from ifssnet.baselines.child_process import _child_main; _child_main(sys.argv[1])"
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the ifssnet package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(folder / "stderr.txt", "wb") as stderr:  # a file, not a pipe: a chatty child cannot block
            proc = subprocess.Popen([python_executable(), "-c", code, tmp], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                _wait(proc, what, cancel, timeout_s, timeout_todo, poll_s)
            finally:
                if proc.poll() is None:  # Cancelled, timeout, Ctrl-C (KeyboardInterrupt) or any other exit
                    proc.kill()
                    proc.wait()
        result = folder / "out.npy"
        if proc.returncode != 0 or not result.exists():
            err = (folder / "stderr.txt").read_text(errors="replace").strip()
            raise IFSSNetError(f"{what} failed in its worker process (exit code {proc.returncode}).",
                               f"Details: {err[-_STDERR_TAIL:] or 'none'}")
        return np.load(result)


def _wait(proc: subprocess.Popen, what: str, cancel, timeout_s, timeout_todo: str, poll_s: float) -> None:
    start = time.monotonic()
    while proc.poll() is None:
        if is_cancelled(cancel):
            raise Cancelled()
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise ResourceError(f"{what} did not finish within {timeout_s:.0f} s.", timeout_todo)
        time.sleep(poll_s)


def _child_main(folder: str) -> None:  # pragma: no cover (runs in the child)
    """The child: call the function named in ``folder/call.json``, write ``out.npy``, leave through os._exit."""
    code = 0
    try:
        import importlib

        base = Path(folder)
        call = json.loads((base / "call.json").read_text())
        func = getattr(importlib.import_module(call["module"]), call["function"])
        arrays = [np.load(base / f"in{i}.npy") for i in range(call["inputs"])]
        result = np.asarray(func(*arrays, **call["kwargs"]))
        part = base / "out.part.npy"
        np.save(part, result)
        os.replace(part, base / "out.npy")
    except BaseException as exc:  # report and leave without running ITK's teardown
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        code = 1
    sys.stderr.flush()
    os._exit(code)
