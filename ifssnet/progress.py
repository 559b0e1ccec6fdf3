"""Progress reporting and cancellation, shared by every long operation.

A long operation takes ``progress`` (a callable ``progress(stage: str, done: int, total: int)``)
and ``cancel`` (a :class:`CancelToken`, a ``threading.Event``, or any object with ``is_set()``, or a
zero-argument callable returning ``bool``). It calls :func:`check_cancel` between units of work
(windows, slices, steps) and leaves its inputs and outputs unchanged when it stops.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional, Protocol, Union

from .errors import Cancelled

ProgressFn = Callable[[str, int, int], None]


class _HasIsSet(Protocol):
    def is_set(self) -> bool: ...


CancelLike = Union["CancelToken", _HasIsSet, Callable[[], bool], None]


class CancelToken:
    """A thread-safe cancel flag. ``cancel()`` from any thread; the worker calls ``check()``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    cancelled = property(is_set)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


def is_cancelled(cancel: CancelLike) -> bool:
    """True if ``cancel`` (token, event, callable or None) asks to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    raise TypeError(f"cancel must be a CancelToken, an Event, a callable or None, not {type(cancel).__name__}")


def check_cancel(cancel: CancelLike) -> None:
    """Raise :class:`~ifssnet.errors.Cancelled` if ``cancel`` is set."""
    if is_cancelled(cancel):
        raise Cancelled()


def report(progress: Optional[ProgressFn], stage: str, done: int, total: int) -> None:
    """Call ``progress`` if given. A progress callback never breaks the work it reports on."""
    if progress is not None:
        progress(stage, int(done), int(total))


class TqdmProgress:
    """A ``progress`` callable for the CLI: one tqdm bar per named stage."""

    def __init__(self, disable: bool = False) -> None:
        self._bar = None
        self._stage = None
        self._disable = disable

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            # disable is passed only when set, so that tqdm's own TQDM_DISABLE=1 (logs, batch jobs) applies.
            extra = {"disable": True} if self._disable else {}
            # initial: a bar opened part way (training again after a validation's bar, a resumed run) counts its
            # rate and time left from there, not as if the steps done so far took no time.
            self._bar = tqdm(total=total, initial=done, desc=stage, unit="it", leave=False, **extra)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stage = None        # a stage reported after close() opens a new bar (it showed none)
