"""Memory needed by a propagation, and a check that refuses to start one that cannot fit.

:func:`estimate_propagation_bytes` counts what :func:`ifssnet.propagate.propagate` allocates for a
volume of shape (K, J, I), ``n_segments`` segments and the network's in-plane working size S
(float32 = 4 bytes). On a sweep finer than the network's slice spacing, the (K, S, S) rows count only
the kept frames (``frames``, :mod:`ifssnet.slice_spacing`); the output masks count every slice:

=========================================  ===========================================================
the volume on the working grid             ``4 K S^2`` (``normalized_work_volume``), once
accumulators per segment                   ``num``, ``num2``, and for the default ``max`` blend ``peak``
                                           and ``num_mark``: ``16 K S^2``; the weights: ``12 K``
output masks per segment                   ``K J I`` (uint8)
final stage, one segment at a time         about ``FINAL_STAGE_ARRAYS`` float32 (K, S, S) temporaries:
                                           the blended mean and variance and their intermediates,
                                           and ``slice_confidence``'s rings, entropy and products
the network's working memory               about ``ACTIVATION_CHANNELS x width_mult`` float32 maps of
                                           (w, S, S) per window, for one batch of runs
                                           (``min(batch_size, runs)``; 2 runs per seed group)
fixed overhead                             ``OVERHEAD_BYTES`` (weights, the torch runtime's buffers)
=========================================  ===========================================================

The input volume and the seed masks are the caller's and are not counted. Checked against the
peak resident memory of a real run (400 x 256 x 256 uint8, 3 segments, S = 128, a stand-in network):
495 MB measured beyond the inputs, 525 MB estimated without the network's share and the overhead; with 800 x 256
x 256, 1189-1202 MiB measured (two runs) and 1660 MiB estimated without the overhead, the network's share
included (``python benchmarks/propagation_memory.py``: a copying stand-in network). A test measures it on every CI run (``Testing/test_reliability.py``: within the
estimate, and growing with the sweep as the estimate's per-slice arrays do). The estimate is meant to
be a little pessimistic: refusing a run that would have fitted costs a click; a run that swaps for an
hour or is killed by the system loses the user's time.

:func:`check_memory` compares a need with the memory the system can give without swapping
(``MemAvailable`` in /proc/meminfo, else psutil, else it cannot tell and lets the run go). The
environment variable ``IFSSNET_AVAILABLE_MEMORY`` (bytes, or with a suffix K/M/G) overrides what the
system reports; tests use it, and so can a user whose container reports memory wrongly.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

from .errors import ResourceError

#: float32 (K, S, S) sums per segment during the propagation (``ifssnet.propagate_runs.Accumulator`` with the
#: default ``max`` blend: num, num2, peak, num_mark; the ``mean`` blend needs the first two only).
ACCUMULATOR_ARRAYS = 4
#: float32 (K, S, S) temporaries alive at the peak of the final stage (blend + confidence).
FINAL_STAGE_ARRAYS = 10
#: float32 feature maps alive at the peak of one window's forward pass, at width_mult 1
#: (two encoder streams' skip features, the atrous branches, the decoder's refinement). Measured:
#: the peak resident memory of one batched forward pass (S = 64, batch 4, width_mult 1) is 287 maps.
ACTIVATION_CHANNELS = 320
#: weights and the torch runtime's own buffers.
OVERHEAD_BYTES = 300 * 2 ** 20
#: never claim more than this share of the available memory (the OS, Slicer and the viewer need some).
USABLE_SHARE = 0.9
ENV_VAR = "IFSSNET_AVAILABLE_MEMORY"

_GB = 1e9


def estimate_propagation_bytes(shape_kji: Sequence[int], n_segments: int, size: int, *, window: int = 3,
                               runs: Optional[int] = None, batch_size: int = 32,
                               width_mult: float = 1.0, frames: Optional[int] = None) -> int:
    """Bytes :func:`ifssnet.propagate.propagate` needs beyond its inputs (see the module table).

    ``shape_kji``: (K, J, I) of the volume, propagation axis first. ``size``: the network's
    in-plane working size S. ``runs``: number of propagation runs (default: 2 per segment, one seed
    group each way). ``frames``: the frames the network runs on (:mod:`ifssnet.slice_spacing`; default
    K): the working-grid arrays hold only those, the output masks every slice.
    """
    K, J, I = (int(v) for v in shape_kji)
    n = max(1, int(n_segments))
    S = int(size)
    Kw = K if frames is None else int(frames)
    plane = 4 * Kw * S * S                                 # one float32 (K', S, S) array
    runs = 2 * n if runs is None else max(1, int(runs))
    batch = min(int(batch_size), runs)
    work = plane
    accumulators = n * (ACCUMULATOR_ARRAYS * plane + 12 * Kw)
    outputs = n * K * J * I
    final_stage = FINAL_STAGE_ARRAYS * plane
    activations = batch * int(ACTIVATION_CHANNELS * max(width_mult, 0.25)) * window * S * S * 4
    return int(work + accumulators + outputs + final_stage + activations + OVERHEAD_BYTES)


def _parse_bytes(text: str) -> int:
    t = text.strip().upper().rstrip("B")
    scale = 1
    for suffix, mult in (("K", 2 ** 10), ("M", 2 ** 20), ("G", 2 ** 30), ("T", 2 ** 40)):
        if t.endswith(suffix):
            t, scale = t[:-1], mult
            break
    try:
        value = float(t) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value):   # not a number, or nan, inf, 1e400 (int() would raise: an internal error)
        raise ResourceError(f"{ENV_VAR}='{text}' is not a number of bytes.",
                            "Set it like 8G or 8000000000, or unset it.")
    if value < 0:
        raise ResourceError(f"{ENV_VAR}='{text}' is negative.", "Set it like 8G, or unset it.")
    return int(value)


def available_bytes() -> Optional[int]:
    """Memory the system can give without swapping, in bytes, or ``None`` if it cannot tell.

    ``$IFSSNET_AVAILABLE_MEMORY`` first, then ``MemAvailable`` from /proc/meminfo (Linux), then
    ``psutil.virtual_memory().available`` (Windows, macOS) when psutil is installed.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return _parse_bytes(env)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no support on this platform
        return None


def _gb(n: float) -> str:
    return f"{n / _GB:.1f} GB" if n >= 0.1 * _GB else f"{n / _GB:.2f} GB"


#: what to do about a refused propagation (:func:`check_memory`'s default).
PROPAGATION_TODO = ("Close other programs or crop the volume (Crop Volume module), "
                    "or propagate fewer segments at a time.")


def check_memory(needed_bytes: int, what: str = "This propagation", available: Optional[int] = None,
                 todo: str = PROPAGATION_TODO) -> None:
    """Raise :class:`ResourceError` if ``needed_bytes`` does not fit in the available memory.

    ``available``: bytes, overrides :func:`available_bytes` (tests). When the system cannot tell how
    much is free, nothing is raised. ``todo``: what the message tells the user to do (training's is
    :data:`ifssnet.train_memory.TODO`).
    """
    free = available if available is not None else available_bytes()
    if free is None:
        return
    if needed_bytes > USABLE_SHARE * free:
        raise ResourceError(f"{what} needs about {_gb(needed_bytes)} of memory, {_gb(free)} are free.", todo)


READING_TODO = ("Close other programs, or crop the volume and its segmentations (Crop Volume module, or a smaller "
                "region exported from Slicer).")


def check_reading(volume_path=None, segmentation_paths: Sequence = (), what: str = "") -> None:
    """Raise :class:`ResourceError`, before any voxel is read, where reading the volume at ``volume_path`` and the
    segmentations at ``segmentation_paths`` (onto the volume's grid where a volume is given, else onto the first
    segmentation's) would not fit in the available memory. Counted from the files' headers
    (:func:`ifssnet.io.read_header`): a volume as ``ifssnet propagate`` counts it (its voxels twice), a
    segmentation as training counts reading one (:func:`ifssnet.train_memory.case_shape`: the file's layers, its
    masks, and resampling onto the other grid). ``what``: the reading's name in the message (default: the files)."""
    from .io import read_header
    from .train_memory import case_shape

    paths = [Path(p) for p in segmentation_paths if p is not None]
    grid = volume_path if volume_path is not None else (paths[0] if paths else None)
    if grid is None:
        return
    needed = 0
    if volume_path is not None:
        header = read_header(volume_path)
        needed += 2 * header.itemsize * header.voxels
    for path in paths:
        case = case_shape(grid, path)
        needed += case.read_bytes + case.resampled_bytes + case.file_segments * case.voxels   # + its masks
    names = ([Path(volume_path).name] if volume_path is not None else []) + [p.name for p in paths]
    check_memory(needed, what or f"Reading {' and '.join(names)}", todo=READING_TODO)


def propagation_bytes(shape_kji: Sequence[int], seed_map, net, batch_size: int = 32,
                      frames: Optional[int] = None) -> int:
    """:func:`estimate_propagation_bytes` for ``seed_map`` ({name: SeedSet}) and a loaded network
    (its ``config`` gives window, size and width_mult)."""
    cfg = getattr(net, "config", None)
    runs = sum(2 * len(s.groups) for s in seed_map.values())
    return estimate_propagation_bytes(shape_kji, len(seed_map), int(getattr(cfg, "size", 128)),
                                      window=int(getattr(cfg, "window", 3)), runs=runs, batch_size=batch_size,
                                      width_mult=float(getattr(cfg, "width_mult", 1.0)), frames=frames)


def check_propagation_memory(shape_kji: Sequence[int], seed_map, net, batch_size: int = 32,
                             extra_bytes: int = 0, frames: Optional[int] = None) -> None:
    """Refuse (:class:`ResourceError`) a propagation that cannot fit, before it starts."""
    check_memory(propagation_bytes(shape_kji, seed_map, net, batch_size, frames) + int(extra_bytes),
                 "This propagation")
