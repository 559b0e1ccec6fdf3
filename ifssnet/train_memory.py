"""Memory needed by a training run, and a check that refuses one that cannot fit before any case is read.

:func:`estimate_training_bytes` counts what ``ifssnet train`` (and the Training module's Logic) holds at its
peak (``--arch pgnet|unet3d``: :func:`estimate_baseline_training_bytes`, below), from the cases' shapes alone
(:func:`case_shape`: the files' headers, :func:`ifssnet.io.read_header`).
A case of shape (K, J, I) with N = K J I voxels of b bytes, ``n`` trained segments (``n_file`` in its
annotation, all of which are read), P = max(J, I) and the network's working size S (float32 = 4 bytes):

=========================================  ===========================================================
each case, kept for the whole run           ``2 K S^2`` (float16 image) + ``n (K S^2 + K)`` (uint8 masks, bool
                                           known) (:class:`ifssnet.dataset.Case`); twice for a case the
                                           network's slice spacing thins (the thinned copy beside it) and,
                                           in few-shot mode with added labels, its masks twice
reading one case, beyond those             the volume ``b N`` and the annotation's masks ``n_file N``, plus the
                                           image reader's own buffer (``b N``), the annotation reader's (its
                                           voxel array twice and 2 masks of the file's grid; where its grid
                                           differs, its masks before resampling, one more, and 2 masks of the
                                           volume's size), and the conversion to the working grid
                                           (:func:`ifssnet.dataset.case_from_arrays`: the float32 copies of
                                           ``CHUNK`` slices of a mask (:func:`ifssnet.dataset.work_mask`) or of
                                           the image, or the intensity statistics' sample, whichever is largest,
                                           times ``HEAP_SLACK``; and the case being built). These add
                                           up: the readers' freed buffers stay in the heap. Counted for the
                                           largest case, with every other case kept
the network's training working memory      ``TRAINING_CHANNELS x width_mult`` float32 maps of (w, S, S) per slice
                                           of the run and per run of the batch (the windows' graph that TBPTT
                                           backpropagates through); twice with ``--cycle`` (out and back);
                                           ``--mode image`` trains the encoder on ``--batch`` single windows,
                                           counted as runs of one slice (measured, S 128 / 64, width 0.5, batch
                                           16 / 64: 1078 / 1061 MiB against 1814 / 1814 estimated)
weights, gradients, Adam's two moments,    ``WEIGHT_COPIES x 4`` bytes per weight (about ``PARAMETERS x
an EMA copy                                width_mult^2`` weights)
validation, one case at a time             its volume and masks, read again at each validation (:mod:`ifssnet.validation`),
                                           :func:`ifssnet.memory.estimate_propagation_bytes` of one segment
                                           (:func:`ifssnet.compare.compare` propagates them one by one),
                                           the reference's copies and the larger of that propagation and the
                                           surface-distance scoring that follows it (``SCORE_BYTES`` per voxel of
                                           the muscle's box, at most :data:`ifssnet.metrics.EDT_MAX_VOXELS`,
                                           and 4 bool masks), and ``VALIDATION_FIRST_BYTES`` (the first
                                           validation's imports and first inference; a fine-tune validates
                                           before its first step)
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

The learned baselines (``ifssnet train --arch pgnet|unet3d``, :func:`estimate_baseline_training_bytes`) read
their cases as IFSS-Net does (:func:`ifssnet.dataset.load_case` onto the working grid, all kept for the whole
run), so the cases' share and reading them are counted the same way (:func:`cases_bytes`): PG-Net keeps a
thinned copy of a case finer than its slice spacing, the 3-D U-Net thins none. They have no validation. Their
step (:func:`baseline_step_bytes`; a batch of 2, which ``--arch`` does not change; ``width`` the first level's
channels, ``max(4, round(16 width_mult))``, 16 by default):

=========  =================================================================================================
PG-Net     2 runs of ``--run-length`` slices, of which a chain of 6 is propagated with the graph kept (the
           reference slice's encoding besides): ``PGNET_CHANNELS x width`` float32 (S, S) maps per slice of
           the chain plus one, per run; and the runs' float32 images and masks
3-D U-Net  2 patches of (``--run-length``, S, S) voxels (the whole slice in-plane):
           ``UNET3D_CHANNELS x width + UNET3D_LOSS_MAPS x segments`` float32 maps per voxel, per patch
both       ``WEIGHT_COPIES x 4`` bytes per weight (weights, gradients, Adam's two moments; no EMA: one spare),
           ``BASELINE_PARAMETERS[arch] x width^2`` weights
=========  =================================================================================================

Measured as IFSS-Net's (``OMP_NUM_THREADS=1 python benchmarks/training_memory.py --arch pgnet --sizes 128``), each
row in a fresh process (so torch's first allocations, about 150 MiB, are in it), 2 steps, batch 2, one segment
for PG-Net, against :func:`baseline_step_bytes`, and against it plus the fixed overhead:

=======  ===  =====  ==========  ========  ============  ==========  ========  ===============
arch     S    width  run length  segments  measured MiB  estimated   measured  measured /
                                                         MiB         / est.    (est. + 300 MiB)
=======  ===  =====  ==========  ========  ============  ==========  ========  ===============
pgnet    256  16     32          1         2011          2882        0.70      0.63
pgnet    128  16     32          1         616           746         0.83      0.59
pgnet    128  8      32          1         361           370         0.97      0.54
pgnet    64   16     32          1         232           212         1.10      0.45
unet3d   128  16     32          3         1646          2139        0.77      0.67
unet3d   128  8      32          3         1056          1159        0.91      0.72
unet3d   128  16     16          1         920           1019        0.90      0.70
unet3d   96   16     32          3         1034          1215        0.85      0.68
unet3d   64   16     32          3         552           555         0.99      0.65
=======  ===  =====  ==========  ========  ============  ==========  ========  ===============

At the defaults (S = 128, width 16) the step is 0.77-0.83 of its estimate; at smaller sizes torch's first
allocations dominate, which the fixed overhead covers. PG-Net's step hardly depends on ``--run-length`` (its
chain is 6 slices); the U-Net's grows with it (the patch depth). A 3-D U-Net at the defaults needs about 2 GB for
its steps on a CPU, PG-Net about 0.75 GB.

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
#: by +-10 % from run to run); a full-size phantom (``ifssnet phantom DIR --seed 1000``: 1400 x 512 x 512 uint8, 3
#: segments), S = 128: 2096 MiB measured against 3871 MiB estimated (0.54; session 39, since the masks are
#: converted 64 slices at a time: 4966 MiB before, when each went to float32 whole). Command:
#: ``python benchmarks/case_memory.py DIR/volume.nrrd DIR/reference.seg.nrrd`` (it also measures a validation).
HEAP_SLACK = 1.5
#: segments assumed for a plain labelmap, whose labels are known only from its voxels (the paper's 3 muscles).
LABELMAP_SEGMENTS = 3
#: bytes per voxel of the surface-distance scoring's box (the int32 feature transform (3, box) and its buffers).
SCORE_BYTES = 16
#: what a validation holds beyond its arrays: the first one of a run imports the scoring modules
#: (:mod:`ifssnet.compare`, :mod:`ifssnet.metrics`, scipy.ndimage: 21 MiB) and makes torch's first inference
#: allocations (20 MiB more than later forward passes, the shipped network, batch 2); a fine-tune's comes before
#: any training step. The first validation of a 60 x 64 x 64 phantom (3 segments) measured 144-184 MiB in 6 fresh
#: processes, later ones 99-139 MiB (the heap its segments leave varies from call to call), against 118 MiB
#: estimated without this and 214 with it (``python benchmarks/case_memory.py`` on ``ifssnet phantom DIR --seed 1
#: --shape 60 64 64``; ``Testing/test_review42_training.py``).
VALIDATION_FIRST_BYTES = 96 * 2 ** 20

TODO = ("Train on fewer or smaller cases (crop the volumes to the muscles: Crop Volume module), with a smaller "
        "--size, --batch or --run-length, or close other programs. If this computer has more memory free than "
        "that (a container can report it wrongly), set IFSSNET_AVAILABLE_MEMORY to it, e.g. 16G.")
#: the same for ``ifssnet train --arch pgnet|unet3d``, which take no --batch (theirs is 2).
BASELINE_TODO = ("Train on fewer or smaller cases (crop the volumes to the muscles: Crop Volume module), with a "
                 "smaller --size, --width-mult or --run-length (the 3-D U-Net's patch depth), on a GPU (--device "
                 "cuda), or close other programs. If this computer has more memory free than that (a container can "
                 "report it wrongly), set IFSSNET_AVAILABLE_MEMORY to it, e.g. 16G.")


@dataclass(frozen=True)
class CaseShape:
    """What the estimate needs of one case, known before its voxels are read.

    ``shape_kji``: the volume's (K, J, I); ``itemsize``: its bytes per voxel; ``segments``: segments trained (or
    validated); ``annotation_segments``: segments its annotation holds, all of which are read (default
    ``segments``); ``read_bytes``: what the annotation's reader holds at once besides the masks (bytes);
    ``resampled_bytes``: what resampling the annotation onto the volume's grid holds beyond the masks it makes
    there (its masks on its own grid, and the volume's grid and one segment on it: :func:`case_shape`; 0 when the
    grids match); ``slice_spacing_mm``: along the sweep (None: unknown).
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


def case_shape(volume_path, annotation_path, segments: Optional[Sequence[str]] = None, *,
               training: bool = False) -> CaseShape:
    """The :class:`CaseShape` of a case on disk from its two files' headers (:func:`ifssnet.io.read_header`);
    ``segments``: the names to train (None: every segment of the annotation). A file that cannot be read raises
    the error its read would. ``training``: a training case, whose annotation must lie on its volume
    (:func:`ifssnet.io.require_annotation_overlaps`: refused here, before any voxel is read); a comparison may
    score a prediction that lies elsewhere."""
    import numpy as np

    from .io import read_header, require_annotation_overlaps

    vol = read_header(volume_path)
    ann = read_header(annotation_path)
    if training and vol.geometry is not None:    # an annotation outside its volume: said before any voxel is read
        require_annotation_overlaps(annotation_path, vol.geometry, vol.shape_kji, f"the volume '{volume_path}'")
    held = ann.segments if ann.segments is not None else LABELMAP_SEGMENTS
    trained = len(segments) if segments else held
    Na = ann.voxels
    raw = ann.layers * ann.itemsize * Na
    read = 2 * raw + 2 * Na + (8 * Na if ann.segments is None else 0)     # a labelmap may be cast to int64
    # the file's grid differs (a .seg.nrrd that Slicer saved cropped, a finer one): besides its masks on its own
    # grid, ifssnet.io.resample_segmentation holds a copy of one of them for SimpleITK, the volume's grid and one
    # segment resampled onto it (the volume's size, however small the file is). Same shape and spacing with
    # another origin or other directions resamples too (read_segmentation compares the whole grid).
    differs = (tuple(ann.shape_kji) != tuple(vol.shape_kji)
               or not np.allclose(ann.spacing_kji, vol.spacing_kji, rtol=1e-6, atol=0.0)
               or (ann.geometry is not None and vol.geometry is not None and not ann.geometry.same_as(vol.geometry)))
    resampled = (held + 1) * Na + 2 * vol.voxels if differs else 0
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
    masks = 4 * min(K, CHUNK) * (J * I + 2 * P * P) + 6 * min(K, CHUNK) * S * S    # work_mask's chunks
    convert = int(HEAP_SLACK * max(stats, normalize, masks)) + case_store_bytes(K, S, case.segments)
    return kept + case.itemsize * N + case.read_bytes + case.resampled_bytes + convert


def network_training_bytes(size: int, width_mult: float = 1.0, batch: int = 1, run_length: int = 32,
                           window: int = 3, cycle: bool = False) -> int:
    """Bytes of one training step's working memory and the weights' copies (module table)."""
    width = max(float(width_mult), MIN_WIDTH)
    S = int(size)
    graph = int(batch) * int(run_length) * (2 if cycle else 1) * int(TRAINING_CHANNELS * width) * window * S * S * 4
    return graph + WEIGHT_COPIES * 4 * int(PARAMETERS * width ** 2)


#: PG-Net (:mod:`ifssnet.baselines.pgnet`): float32 maps of (S, S) per channel of its first level (``width``), per
#: slice of the chain and per run of the batch, that the backward pass keeps (the encoder and the refinement
#: decoder, mostly at full resolution; fitted to the baselines' table above); the reference slice counts
#: as one more slice of the chain.
PGNET_CHANNELS = 50
#: the 3-D U-Net (:mod:`ifssnet.baselines.unet3d`): float32 maps per voxel of the patch and per channel of its
#: first level (``width``) that the backward pass keeps, and per output channel (segment) for the loss and the
#: rest (fitted to the baselines' table above).
UNET3D_CHANNELS = 30
UNET3D_LOSS_MAPS = 16
#: weights of each baseline per ``width^2`` (PG-Net 1.75 million at width 16, the U-Net 1.39 million).
BASELINE_PARAMETERS = {"pgnet": 6900, "unet3d": 5500}
#: a baseline's batch (:class:`ifssnet.baselines.learned_common.BaselineTrainConfig`; ``ifssnet train --arch``
#: takes no --batch) and PG-Net's chain (:class:`ifssnet.baselines.pgnet.PGNetTrainConfig`).
BASELINE_BATCH = 2
PGNET_CHAIN = 6


def baseline_width(width_mult: float) -> int:
    """A new baseline's first-level channels for ``--width-mult`` (16 at 1, as ``ifssnet train --arch`` builds it)."""
    return max(4, int(round(16 * float(width_mult))))


def baseline_step_bytes(arch: str, size: int, width: int, *, batch: int = BASELINE_BATCH, run_length: int = 32,
                        chain: int = PGNET_CHAIN, patch: Optional[Sequence[int]] = None, segments: int = 1) -> int:
    """Bytes of one training step of a learned baseline (``arch`` ``pgnet`` or ``unet3d``, first-level ``width``
    channels) and its weights' copies (module table). PG-Net: ``batch`` runs of ``run_length`` slices, ``chain``
    of them propagated with the graph kept; the U-Net: ``batch`` patches of ``patch`` (k, j, i) voxels (default
    (run_length, S, S)) and ``segments`` output channels."""
    S, w = int(size), int(width)
    if arch == "pgnet":
        graph = int(batch) * (min(int(chain), max(1, int(run_length) - 1)) + 1) * PGNET_CHANNELS * w * S * S * 4
        graph += int(batch) * int(run_length) * S * S * 4 * 3      # the runs' float32 images and masks, a copy
    elif arch == "unet3d":
        k, j, i = (int(v) for v in (patch or (run_length, S, S)))
        graph = int(batch) * k * j * i * 4 * (UNET3D_CHANNELS * w + UNET3D_LOSS_MAPS * int(segments))
    else:
        raise ValueError(f"unknown baseline {arch!r}")
    return graph + WEIGHT_COPIES * 4 * BASELINE_PARAMETERS[arch] * w * w


def validation_bytes(case: CaseShape, size: int, width_mult: float = 1.0, window: int = 3, runs: int = 2) -> int:
    """Peak bytes of validating on one case (module table); ``runs``: propagation runs per segment (2 per seed
    group: the ``paper`` protocol's groups every 100 slices, ``3-seeds``' one)."""
    from .metrics import EDT_MAX_VOXELS      # boxes above it are scored with a k-d tree instead

    N = case.voxels
    kept = case.itemsize * N + case.file_segments * N
    one = estimate_propagation_bytes(case.shape_kji, 1, size, window=window, runs=runs,
                                     width_mult=width_mult) - OVERHEAD_BYTES
    score = SCORE_BYTES * min(N, EDT_MAX_VOXELS) + 4 * N
    # a segment is propagated, then scored: the two peaks come one after the other, not together. Measured on a
    # full-size phantom (1400 x 512 x 512, 3 segments, the shipped network): 3065 MiB against 4524 estimated
    # (6247 when the two were added; session 39; 4620 with VALIDATION_FIRST_BYTES, session 42).
    return (kept + max(case.itemsize * N, case.read_bytes + case.resampled_bytes, 2 * N + max(one, score))
            + VALIDATION_FIRST_BYTES)


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
    if not cases:
        return OVERHEAD_BYTES
    stores, reading = cases_bytes(cases, size, network_mm=network_mm, added_labels=added_labels)
    step = network_training_bytes(size, width_mult, 0 if on_gpu else batch, run_length, window, cycle)
    validating = max((validation_bytes(v, size, width_mult, window, validation_runs(v, paper_protocol))
                      for v in validation), default=0)
    training = stores + max(step, validating + network_training_bytes(size, width_mult, 0, 0, window))
    return int(max(reading, training) + OVERHEAD_BYTES)


def cases_bytes(cases: Sequence[CaseShape], size: int, *, network_mm: Optional[float] = None,
                thinned: bool = True, added_labels: bool = False):
    """``(kept, reading)``: the bytes the training cases keep for the whole run (:func:`case_store_bytes`) and the
    peak of reading them (every other case kept, the largest one being read: :func:`reading_bytes`), as
    :func:`ifssnet.dataset.load_case` reads them for ``ifssnet train`` whatever the network.

    ``network_mm``: the network's slice spacing (None: the median of the cases' spacings, as a new network takes
    it); with ``thinned`` a case finer than it keeps a thinned copy beside it (IFSS-Net and PG-Net,
    :func:`ifssnet.train.match_slice_spacing`; the 3-D U-Net thins none); ``added_labels``: each segment's masks
    twice (few-shot mode with added labels)."""
    from .slice_spacing import select_frames

    if not cases:
        return 0, 0
    if network_mm is None:
        known = sorted(float(c.slice_spacing_mm) for c in cases if c.slice_spacing_mm)
        network_mm = (known[(len(known) - 1) // 2] + known[len(known) // 2]) / 2 if known else None
    stores = []
    for c in cases:
        K = int(c.shape_kji[0])
        store = case_store_bytes(K, size, c.segments)
        if thinned and select_frames(K, c.slice_spacing_mm, network_mm).thinned:
            store *= 2                              # the thinned copy, beside the original the caller keeps
        if added_labels:
            store += c.segments * K * int(size) ** 2
        stores.append(store)
    reading = sum(stores) + max(reading_bytes(c, size) - s for c, s in zip(cases, stores))
    return sum(stores), reading


def estimate_baseline_training_bytes(arch: str, cases: Sequence[CaseShape], size: int, width: int, *,
                                     batch: int = BASELINE_BATCH, run_length: int = 32, chain: int = PGNET_CHAIN,
                                     patch: Optional[Sequence[int]] = None, segments: Optional[int] = None,
                                     network_mm: Optional[float] = None, on_gpu: bool = False) -> int:
    """Bytes ``ifssnet train --arch pgnet|unet3d`` needs at its peak (module table), fixed overhead included: the
    cases as :func:`cases_bytes` (read as for IFSS-Net; PG-Net thins a case finer than ``network_mm``, the U-Net
    none), then the cases and one step (:func:`baseline_step_bytes`; ``segments``: the U-Net's output channels,
    default the first case's). No validation: the baselines have none. ``on_gpu``: the steps run on a GPU, so
    only the weights' copies count here."""
    if not cases:
        return OVERHEAD_BYTES
    stores, reading = cases_bytes(cases, size, network_mm=network_mm, thinned=arch == "pgnet")
    step = baseline_step_bytes(arch, size, width, batch=0 if on_gpu else batch, run_length=run_length, chain=chain,
                               patch=patch, segments=segments if segments is not None else cases[0].segments)
    return int(max(reading, stores + step) + OVERHEAD_BYTES)


def trains_on_gpu(device) -> bool:
    """Whether a training run given ``device`` (``cpu``, ``cuda[:N]``, ``gpu`` or ``auto``) puts its steps on a GPU,
    so that a step's working memory is not the computer's (``auto`` does where PyTorch sees a GPU)."""
    name = str(device or "auto").lower()
    if name == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return name.startswith("cuda") or name == "gpu"


def check_training_memory(needed_bytes: int, available: Optional[int] = None, todo: str = TODO) -> None:
    """Refuse (:class:`~ifssnet.errors.ResourceError`) a training run that needs ``needed_bytes``
    (:func:`estimate_training_bytes`, :func:`estimate_baseline_training_bytes`) when that does not fit in the
    memory free; ``available``: as :func:`ifssnet.memory.check_memory`'s; ``todo``: what to do (:data:`TODO`,
    :data:`BASELINE_TODO`)."""
    check_memory(needed_bytes, "This training run", available=available, todo=todo)
