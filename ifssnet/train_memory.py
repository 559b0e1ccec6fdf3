"""Memory needed by a training run, and a check that refuses one that cannot fit before any case is read.

:func:`estimate_training_bytes` counts what ``ifssnet train`` (and the Training module's Logic) holds at its
peak, from the cases' shapes alone (:func:`case_shape`: the files' headers, :func:`ifssnet.io.read_header`).
A case of shape (K, J, I) with N = K J I voxels of b bytes, ``n`` trained segments (``n_file`` in its
annotation, all of which are read), P = max(J, I) and the network's working size S (float32 = 4 bytes):

=========================================  ===========================================================
each case, kept for the whole run           ``2 K S^2`` (float16 image) + ``n (K S^2 + K)`` (uint8 masks, bool
                                           known) (:class:`ifssnet.dataset.Case`); twice for a case the
                                           network's slice spacing thins (the thinned copy beside it) and,
                                           in few-shot mode with added labels, its masks twice
reading one case, beyond those             the volume ``b N`` and the annotation's masks ``n_file N``, plus the
                                           image reader's own buffer (``b N``), the annotation reader's (its
                                           voxel array twice and 2 masks of the file's grid; the masks before
                                           resampling where its grid differs), and the conversion to the working
                                           grid (:func:`ifssnet.dataset.case_from_arrays`: one segment's float32
                                           copy ``4 N``, padded ``4 K P^2``, resized and thresholded ``6 K S^2``,
                                           or the intensity statistics' or the normalisation's float32 copies
                                           if larger, times ``HEAP_SLACK``; and the case being built). These add
                                           up: the readers' freed buffers stay in the heap. Counted for the
                                           largest case, with every other case kept
the network's training working memory      ``TRAINING_CHANNELS x width_mult`` float32 maps of (w, S, S) per slice
                                           of the run and per run of the batch (the windows' graph that TBPTT
                                           backpropagates through); twice with ``--cycle`` (out and back)
weights, gradients, Adam's two moments,    ``WEIGHT_COPIES x 4`` bytes per weight (about ``PARAMETERS x
an EMA copy                                width_mult^2`` weights)
validation, one case at a time             its volume and masks, read again at each validation (:mod:`ifssnet.validation`),
                                           :func:`ifssnet.memory.estimate_propagation_bytes` of one segment
                                           (:func:`ifssnet.compare.compare` propagates them one by one),
                                           the reference's copies and the surface-distance scoring (``SCORE_BYTES``
                                           per voxel of the muscle's box, at most ``EDT_MAX_VOXELS``, and 4 bool masks)
fixed overhead                             :data:`ifssnet.memory.OVERHEAD_BYTES` (the torch runtime's buffers)
=========================================  ===========================================================

The peak is the larger of the reading phase (the cases kept so far + reading the largest) and the training
phase (the cases, the weights, and the larger of a step's working memory and one validation: a validation
runs between steps, when the step's graph is freed).

The network's share is measured: the peak resident memory of 1-2 training steps of a new network at the default
recipe (batch 1, run length 32, window 3, stride 1) on one CPU thread (``OMP_NUM_THREADS=1 python
benchmarks/training_memory.py``), in MiB beyond the process before the call, against
:func:`network_training_bytes` (the cases' share and the fixed overhead left out):

====  ==========  =====  ==========  ============  ==========
S     width_mult  batch  run length  measured MiB  estimated
====  ==========  =====  ==========  ============  ==========
128   1.0         1      32          6120          7257
128   0.5         1      32          3122          3614
96    0.5         1      16          914           1027
64    1.0         1      16          843           957
64    0.5         2      16          800           914
64    0.5         1      32          896           914
64    0.5         1      16          457           464
32    0.5         1      16          213           127
32    0.15        1      6           114           25
====  ==========  =====  ==========  ============  ==========

It grows with S^2, the run length, the batch and width_mult, as the estimate does; at small sizes the torch
runtime's fixed share dominates, which the fixed overhead (300 MiB) covers: with it, the measured peaks are
0.35-0.81 of the estimate (0.8 at S = 128). Note how much that is: a new network at the default size and width
(S = 128, width_mult 1) needs about 6 GB for its training steps alone on a CPU.

The estimate is meant to be a little pessimistic, as :mod:`ifssnet.memory`'s for a propagation: refusing a run
that would have fitted costs a click; a run that swaps for an hour, or is killed by the system after minutes
of reading, loses the user's time. :func:`check_training_memory` refuses with what is needed, what is free and
what to do (:func:`ifssnet.memory.check_memory`; ``IFSSNET_AVAILABLE_MEMORY`` overrides what the system reports).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .memory import OVERHEAD_BYTES, check_memory, estimate_propagation_bytes

#: float32 maps of (w, S, S) per slice of a training run and per run of the batch, at width_mult 1, that the
#: backward pass keeps (fitted to the table above, with some margin).
TRAINING_CHANNELS = 1200
#: copies of each weight during training: the weights, their gradients, Adam's two moments, an EMA average.
WEIGHT_COPIES = 5
#: weights of the network at width_mult 1 (2.84 million at S = 64; the fusion's kernels grow with S a little).
PARAMETERS = 3_000_000
#: width_mult below this is counted as this (the layers keep a minimum of channels).
MIN_WIDTH = 0.25
#: bytes per voxel of the intensity statistics' sample (up to 2 x CHUNK slices in float32, its finite values,
#: clipped copy and mask; :func:`ifssnet.preprocess.intensity_stats`); measured 5.0-5.8.
STATS_BYTES = 7
#: slices :func:`ifssnet.preprocess.normalized_work_volume` converts at once, and bytes per pixel of their padded
#: (P, P) slices at the peak (float32 copies, the z-scored and the padded one; measured 12.5-18.6).
CHUNK = 64
NORMALIZE_BYTES = 20
#: what reading a case leaves in the heap: the readers' buffers are freed, but the peaks of reading and of the
#: conversion add up (``ifssnet.dataset.load_case`` peaks at about their sum), and the conversion's stages
#: overlap. Measured peak of ``load_case`` against :func:`reading_bytes` with this factor, S = 32 and 128:
#: 0.4-0.8 for 120-400 x 200 x 320 and 60 x 300 x 300, 0.8-0.9 for 200 x 256 x 256 (whose peak varies
#: by +-10 % from run to run).
HEAP_SLACK = 1.5
#: segments assumed for a plain labelmap, whose labels are known only from its voxels (the paper's 3 muscles).
LABELMAP_SEGMENTS = 3
#: bytes per voxel of the surface-distance scoring's box (the int32 feature transform (3, box) and its buffers).
SCORE_BYTES = 16
#: boxes above this many voxels are scored with a k-d tree instead (``ifssnet.metrics.EDT_MAX_VOXELS``).
EDT_MAX_VOXELS = 2 ** 26

TODO = ("Train on fewer or smaller cases (crop the volumes to the muscles: Crop Volume module), with a smaller "
        "--size, --batch or --run-length, or close other programs. If this computer has more memory free than "
        "that (a container can report it wrongly), set IFSSNET_AVAILABLE_MEMORY to it, e.g. 16G.")


@dataclass(frozen=True)
class CaseShape:
    """What the estimate needs of one case, known before its voxels are read.

    ``shape_kji``: the volume's (K, J, I); ``itemsize``: its bytes per voxel; ``segments``: segments trained (or
    validated); ``annotation_segments``: segments its annotation holds, all of which are read (default
    ``segments``); ``read_bytes``: what the annotation's reader holds at once besides the masks (bytes);
    ``resampled_bytes``: the annotation's masks on its own grid while they are resampled onto the volume's (0
    when the grids match); ``slice_spacing_mm``: along the sweep (None: unknown).
    """

    shape_kji: Sequence[int]
    itemsize: int = 1
    segments: int = 1
    annotation_segments: Optional[int] = None
    read_bytes: int = 0
    resampled_bytes: int = 0
    slice_spacing_mm: Optional[float] = None

    @property
    def voxels(self) -> int:
        K, J, I = (int(v) for v in self.shape_kji)
        return K * J * I

    @property
    def file_segments(self) -> int:
        return max(self.segments, self.annotation_segments or 0)


def case_shape(volume_path, annotation_path, segments: Optional[Sequence[str]] = None) -> CaseShape:
    """The :class:`CaseShape` of a case on disk from its two files' headers (:func:`ifssnet.io.read_header`);
    ``segments``: the names to train (None: every segment of the annotation). A file that cannot be read raises
    the error its read would."""
    from .io import read_header

    vol = read_header(volume_path)
    ann = read_header(annotation_path)
    held = ann.segments if ann.segments is not None else LABELMAP_SEGMENTS
    trained = len(segments) if segments else held
    Na = ann.voxels
    raw = ann.layers * ann.itemsize * Na
    read = 2 * raw + 2 * Na + (8 * Na if ann.segments is None else 0)     # a labelmap may be cast to int64
    resampled = held * Na if tuple(ann.shape_kji) != tuple(vol.shape_kji) else 0
    return CaseShape(vol.shape_kji, vol.itemsize, max(1, trained), max(1, held), read, resampled,
                     vol.spacing_kji[0])


def case_store_bytes(n_slices: int, size: int, segments: int) -> int:
    """Bytes a :class:`ifssnet.dataset.Case` of ``n_slices`` slices keeps: float16 (K, S, S) image, uint8
    (K, S, S) mask and bool (K,) known per segment."""
    K, S = int(n_slices), int(size)
    return 2 * K * S * S + int(segments) * (K * S * S + K)


def reading_bytes(case: CaseShape, size: int) -> int:
    """Peak bytes of reading one case onto the working grid, beyond the cases already kept (module table)."""
    K, J, I = (int(v) for v in case.shape_kji)
    S, P, N = int(size), max(J, I), case.voxels
    kept = case.itemsize * N + case.file_segments * N
    stats = STATS_BYTES * min(K, 2 * CHUNK) * J * I
    normalize = NORMALIZE_BYTES * min(K, CHUNK) * P * P + 4 * K * S * S
    masks = 4 * N + 4 * K * P * P + 6 * K * S * S
    convert = int(HEAP_SLACK * max(stats, normalize, masks)) + case_store_bytes(K, S, case.segments)
    return kept + case.itemsize * N + case.read_bytes + case.resampled_bytes + convert


def network_training_bytes(size: int, width_mult: float = 1.0, batch: int = 1, run_length: int = 32,
                           window: int = 3, cycle: bool = False) -> int:
    """Bytes of one training step's working memory and the weights' copies (module table)."""
    width = max(float(width_mult), MIN_WIDTH)
    S = int(size)
    graph = int(batch) * int(run_length) * (2 if cycle else 1) * int(TRAINING_CHANNELS * width) * window * S * S * 4
    return graph + WEIGHT_COPIES * 4 * int(PARAMETERS * width ** 2)


def validation_bytes(case: CaseShape, size: int, width_mult: float = 1.0, window: int = 3, runs: int = 2) -> int:
    """Peak bytes of validating on one case (module table); ``runs``: propagation runs per segment (2 per seed
    group: the ``paper`` protocol's groups every 100 slices, ``3-seeds``' one)."""
    N = case.voxels
    kept = case.itemsize * N + case.file_segments * N
    one = estimate_propagation_bytes(case.shape_kji, 1, size, window=window, runs=runs,
                                     width_mult=width_mult) - OVERHEAD_BYTES
    score = SCORE_BYTES * min(N, EDT_MAX_VOXELS) + 4 * N
    return kept + max(case.itemsize * N, case.read_bytes + case.resampled_bytes, one + 2 * N + score)


def validation_runs(case: CaseShape, paper_protocol: bool = False) -> int:
    """Propagation runs per segment when validating on ``case``: 2 per seed group (one each way); one group under
    ``3-seeds``, and under the ``paper`` protocol one every 100 slices (:func:`ifssnet.seeds.protocol_slices`;
    counted over the whole sweep, not only the muscle's extent)."""
    return 2 * (max(1, (int(case.shape_kji[0]) - 3) // 100 + 1) if paper_protocol else 1)


def estimate_training_bytes(cases: Sequence[CaseShape], size: int, *, width_mult: float = 1.0, batch: int = 1,
                            run_length: int = 32, window: int = 3, cycle: bool = False,
                            validation: Sequence[CaseShape] = (), paper_protocol: bool = False,
                            network_mm: Optional[float] = None, added_labels: bool = False,
                            on_gpu: bool = False) -> int:
    """Bytes a training run on ``cases`` needs at its peak (module table), fixed overhead included.

    ``size``, ``width_mult``, ``window``: the network's; ``batch``, ``run_length``, ``cycle``: the recipe's
    (``run_length`` the slices a step trains on); ``validation``: the held-out cases, propagated one at a time
    (:func:`validation_runs`; ``paper_protocol``: ``--val-protocol paper`` or ``both``); ``network_mm``: the
    network's slice spacing (None: the median of the cases' spacings, as a new network takes it;
    :func:`ifssnet.train.match_slice_spacing`), which decides which cases are thinned; ``added_labels``: few-shot mode adds labels (``--fill-gap``, ``--empty-past-ends``);
    ``on_gpu``: the network trains on a GPU, so a step's working memory is not the computer's (only the
    weights' copies on the CPU side and the cases are counted).
    """
    from .slice_spacing import select_frames

    if not cases:
        return OVERHEAD_BYTES
    if network_mm is None:
        known = sorted(float(c.slice_spacing_mm) for c in cases if c.slice_spacing_mm)
        network_mm = (known[(len(known) - 1) // 2] + known[len(known) // 2]) / 2 if known else None
    stores = []
    for c in cases:
        K = int(c.shape_kji[0])
        store = case_store_bytes(K, size, c.segments)
        if select_frames(K, c.slice_spacing_mm, network_mm).thinned:
            store *= 2                              # the thinned copy, beside the original the caller keeps
        if added_labels:
            store += c.segments * K * int(size) ** 2
        stores.append(store)
    # Reading: every other case already kept, the largest one being read.
    reading = sum(stores) + max(reading_bytes(c, size) - s for c, s in zip(cases, stores))
    step = network_training_bytes(size, width_mult, 0 if on_gpu else batch, run_length, window, cycle)
    validating = max((validation_bytes(v, size, width_mult, window, validation_runs(v, paper_protocol))
                      for v in validation), default=0)
    training = sum(stores) + max(step, validating + network_training_bytes(size, width_mult, 0, 0, window))
    return int(max(reading, training) + OVERHEAD_BYTES)


def trains_on_gpu(device) -> bool:
    """Whether a training run given ``device`` (``cpu``, ``cuda[:N]``, ``gpu`` or ``auto``) puts its steps on a GPU,
    so that a step's working memory is not the computer's (``auto`` does where PyTorch sees a GPU)."""
    name = str(device or "auto").lower()
    if name == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return name.startswith("cuda") or name == "gpu"


def check_training_memory(needed_bytes: int, available: Optional[int] = None) -> None:
    """Refuse (:class:`~ifssnet.errors.ResourceError`) a training run that needs ``needed_bytes``
    (:func:`estimate_training_bytes`) when that does not fit in the memory free; ``available``: as
    :func:`ifssnet.memory.check_memory`'s."""
    check_memory(needed_bytes, "This training run", available=available, todo=TODO)
