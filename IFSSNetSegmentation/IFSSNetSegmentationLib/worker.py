"""One persistent worker thread that runs the modules' long jobs (the GUI polls it from a Qt timer; no Qt here)."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, List, Optional, Tuple


class BackgroundWorker:
    """Runs submitted functions one after another in one persistent daemon thread.

    torch keeps its per-thread state (CUDA context, thread pools) on one thread, and the Qt main loop
    stays free. The GUI calls :meth:`poll` from a ``qt.QTimer`` in the main thread and applies results
    there, so MRML is only touched from the main thread. ``progress`` returns a thread-safe callable
    whose latest value :meth:`latestProgress` reports.
    """

    def __init__(self) -> None:
        self._tasks: "queue.Queue" = queue.Queue()
        self._done: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()
        self._progress: Optional[Tuple[str, int, int]] = None
        self._busy = 0
        self._nextTicket = 0
        self._thread = threading.Thread(target=self._loop, name="IFSSNetWorker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            ticket, fn, args, kwargs = self._tasks.get()
            if fn is None:
                return
            try:
                self._done.put((ticket, fn(*args, **kwargs), None))
            except BaseException as exc:  # handed to the main thread, which shows it
                self._done.put((ticket, None, exc))
            finally:
                # let go of the task (the job: volume-sized arrays) while waiting for the next one
                del ticket, fn, args, kwargs
                with self._lock:
                    self._busy -= 1

    def submit(self, fn: Callable, *args, **kwargs) -> int:
        with self._lock:
            self._nextTicket += 1
            self._busy += 1
            ticket = self._nextTicket
        self._tasks.put((ticket, fn, args, kwargs))
        return ticket

    def startJob(self, compute: Callable, job: Any) -> Tuple[int, Any]:
        """Run ``compute(job, progress=..., cancel=token)``, the modules' long jobs, with fresh progress
        and a new ``ifssnet.progress.CancelToken``; returns ``(ticket, token)``. The Cancel button calls
        ``token.cancel()``, and ``compute`` stops at its next check and raises ``Cancelled``."""
        from ifssnet.progress import CancelToken

        token = CancelToken()
        self.resetProgress()
        return self.submit(compute, job, progress=self.progress, cancel=token), token

    def poll(self) -> List[Tuple[int, Any, Optional[BaseException]]]:
        """Finished tasks since the last call: (ticket, result, error)."""
        out = []
        while not self._done.empty():
            out.append(self._done.get_nowait())
        return out

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    def progress(self, stage: str, done: int, total: int) -> None:
        """A ``progress`` callback for the core (called from the worker thread)."""
        with self._lock:
            self._progress = (stage, int(done), int(total))

    def resetProgress(self) -> None:
        with self._lock:
            self._progress = None

    def latestProgress(self) -> Optional[Tuple[str, int, int]]:
        with self._lock:
            return self._progress

    def stop(self) -> None:
        self._tasks.put((0, None, (), {}))
