"""``ifssnet.peak_memory``: the peak memory a block takes, as the comparison table and the benchmark report it."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from ifssnet import peak_memory
from ifssnet.peak_memory import PeakMemory, gpu_peak_mb, gpu_reset

MIB = 2**20


def _touch(mib: int) -> float:
    block = np.ones(mib * MIB, np.uint8)  # written, so the pages are resident
    return float(block[::4096].sum())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_rss_counts_the_block_and_resets_between_blocks():
    with PeakMemory() as big:
        _touch(96)
    with PeakMemory() as small:
        _touch(4)
    assert big.source == small.source == "rss"
    assert 80 <= big.peak_mb < 400
    assert small.peak_mb < 40          # the first block's peak does not carry over


def test_without_proc_it_falls_back_to_tracemalloc(monkeypatch):
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(peak_memory, "open", no_proc, raising=False)
    with PeakMemory() as mem:
        _touch(48)
    assert mem.source == "tracemalloc"
    assert 40 <= mem.peak_mb < 200


def test_gpu_figures_without_cuda_in_use():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        pytest.skip("CUDA is in use in this process")
    assert gpu_reset() is False
    assert math.isnan(gpu_peak_mb())
