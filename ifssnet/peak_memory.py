"""How much memory a call takes: peak resident memory (MiB) of this process, and torch's peak GPU memory.

Used by the comparison runner (``ifssnet.compare``) and the benchmark (``ifssnet.bench``) around each
method call:

    gpu_reset()
    with PeakMemory() as mem:
        ...
    mem.peak_mb, mem.source, gpu_peak_mb()

On Linux the kernel's high-water mark is reset before the block (``/proc/self/clear_refs`` = 5) and
``VmHWM`` read after it, so every allocation counts (numpy, ITK's C++ buffers, torch's CPU tensors);
elsewhere it is tracemalloc's peak, numpy and Python allocations only (``source`` says which). torch is
never imported here: the GPU figures are read only where torch is loaded and CUDA is in use.
"""
from __future__ import annotations

import gc
import math
import sys
import tracemalloc


def malloc_trim() -> None:
    """Hand the freed heap back to the OS (glibc ``malloc_trim``); nothing elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class PeakMemory:
    """Peak RSS above the baseline during a block (Linux VmHWM reset), else tracemalloc's peak."""

    def __init__(self) -> None:
        self.peak_mb = math.nan
        self.source = "rss"
        self._base = 0

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status", "r", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise OSError(field)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        malloc_trim()  # give freed heap back to the OS, so an earlier method's leftovers do not hide this peak
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # reset the peak-RSS high-water mark to the current RSS
            self._base = self._status_kb("VmRSS")
        except OSError:
            self.source = "tracemalloc"
            tracemalloc.start()
            tracemalloc.reset_peak()
        return self

    def __exit__(self, *exc) -> None:
        if self.source == "rss":
            try:
                self.peak_mb = max(0, self._status_kb("VmHWM") - self._base) / 1024.0
            except OSError:
                self.peak_mb = math.nan
        else:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.peak_mb = peak / 2**20


def gpu_reset() -> bool:
    """Reset torch's CUDA peak-memory counter where CUDA is in use; True if it was reset."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
            return True
    except Exception:  # noqa: BLE001 (a broken CUDA must not break the comparison)
        pass
    return False


def gpu_peak_mb() -> float:
    """torch's peak CUDA memory allocated since :func:`gpu_reset`, MiB (NaN without CUDA in use)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        pass
    return math.nan
