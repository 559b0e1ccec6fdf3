"""Inference: painted seed slices in, a mask for the whole sweep out.

``propagate(volume, seeds, model)`` starts from every group of consecutive painted slices of every
segment and runs in both directions with sliding windows (w slices, stride 1). Each window's
prediction is fed back as the next window's mask input; painted slices always re-anchor it. All
runs of all segments advance in lock-step as one batch on one device.

Shapes: ``volume`` (K, J, I), any real dtype; propagation is along axis 0 (K). Seeds are
:class:`ifssnet.seeds.SeedSet` (mask (K, J, I) on the annotated slices). The network works on an
in-plane grid of S x S (:class:`ifssnet.preprocess.InPlaneGrid`); probabilities are resized back to
(J, I) before thresholding at 0.5.

A run (one seed group, one direction) covers the slices up to the next seed group, or to the end
of the volume. Where runs overlap (between two seed groups), they are blended (``blend``, :data:`BLENDS`):
by default the larger probability of the runs from painted muscle, with a run from a "no muscle here"
mark weighing in by 1 / (1 + distance to its seed); ``blend="mean"`` (before session 21) weighs every
run so. Under the paper's protocol a run that starts from a group near a muscle's tip often loses the
muscle, and the mean let it erase what the other run found: every held-out mask came out small
(README, "Where two runs meet"). With ``stop_at_end``, a run ends after ``patience``
consecutive new slices with (almost) no foreground, so a muscle that ends does not leak on.

Per-slice confidence in [0, 1] comes from :mod:`ifssnet.confidence`; the expected time of a run
from :mod:`ifssnet.estimate`. The runs and their blending are in :mod:`ifssnet.propagate_runs`, the
batched network steps in :mod:`ifssnet.network_runner`, the output to the volume's grid in
:mod:`ifssnet.propagate_output`. A sweep finer than the network's training sweeps runs on its frames
nearest to the network's slice spacing (:mod:`ifssnet.slice_spacing`).

Speed (issue 7; numbers in ``docs/performance.md``). ``preset`` picks a row of :data:`PRESETS`.
Whatever the preset, the work is organised the same way:

* all runs of all segments (both directions of every seed group) advance in lock-step as one batch;
* on a GPU (and on the CPU with ``PRE_ENCODE_ON_CPU``, off: it measured slower there) the image
  stream, which has no recurrence, is encoded ahead of the sequential steps in large batches
  (``net.encode_image``), in chunks bounded by ``PRE_ENCODE_BYTES`` of features; only the mask
  stream, fusion, Bi-ConvLSTM and decoder run per step (``net.forward_from_features``). Backward
  runs encode their windows in reversed slice order, exactly as the plain path does;
* the result goes back to the volume grid only where it can be foreground: slices whose blended
  probability never exceeds 0.5 are not resampled, and with an integer in-plane scale factor only
  the foreground's bounding box (plus a margin) is (bilinear resampling is a convex combination, so
  what is left out would threshold to 0 anyway).

These give the same masks as the straightforward path (``preset="reference"``: one ``net(...)`` call
per step, whole-slice resampling) up to float rounding (tested). The presets differ in the window
stride (``fast`` steps by w slices: a third of the windows; the network still sees every slice) and,
on a GPU only, in reduced-precision autocast. The working size is the one the network was trained at,
in every preset.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import numpy as np

from .confidence import least_confident_slices, next_slice_to_paint, slice_confidence
from .errors import InputError, ModelError, ResourceError, SeedError
from .memory import check_propagation_memory
from .network_runner import (PRE_ENCODE_BYTES, FeatureCache, accepts_carry_index, autocast, index_state, prepare_device,
                             stack_states, uses_pre_encoding)
from .preprocess import InPlaneGrid, check_volume, normalized_work_volume
from .progress import CancelLike, ProgressFn, check_cancel, report
from .propagate_output import finite_logits, masks_from_probabilities, seeds_on_frames
from .propagate_runs import Accumulator, Run, advance, flush, make_runs
from .seeds import SeedSet, seed_groups, validate_seeds
from .slice_spacing import FrameSelection, select_frames

#: The presets: one row each. ``stride``: window stride in slices (``"w"`` = the window length, so
#: windows do not overlap; 1 = every slice is predicted by w windows and their mean is kept).
#: ``pre_encode``: image stream encoded ahead in batches (GPU; CPU only with ``PRE_ENCODE_ON_CPU``). ``sparse_output``: resample only where the
#: result can be foreground. ``gpu_autocast``: dtype of autocast on CUDA (never used on the CPU).
#: ``reference`` is the straightforward path, kept for tests and benchmarks; it is not offered in the GUI.
#: ``stride2`` (benchmark only, not offered) is ``fast`` with a stride of 2: the candidate between
#: ``balanced`` and ``fast`` measured against issue 7's Dice target (docs/performance.md).
PRESETS: Dict[str, dict] = {
    "accurate":  {"stride": 1,   "pre_encode": True,  "sparse_output": True,  "gpu_autocast": None},
    "balanced":  {"stride": 1,   "pre_encode": True,  "sparse_output": True,  "gpu_autocast": "bfloat16"},
    "fast":      {"stride": "w", "pre_encode": True,  "sparse_output": True,  "gpu_autocast": "float16"},
    "reference": {"stride": 1,   "pre_encode": False, "sparse_output": False, "gpu_autocast": None},
    "stride2":   {"stride": 2,   "pre_encode": True,  "sparse_output": True,  "gpu_autocast": "float16"},
}
#: The presets the GUI and the CLI offer, most accurate first.
PRESET_NAMES = ("accurate", "balanced", "fast")
#: How two runs that reach the same slice (between two seed groups) are combined: ``mean`` (their
#: probabilities weighted by 1 / (1 + distance to each run's seed)) or ``max`` (the larger of the runs from
#: painted muscle: a run that has lost the muscle does not veto the other; a run from slices marked "no
#: muscle here" still weighs in by distance, as under ``mean``; :meth:`ifssnet.propagate_runs.Accumulator.max_blend`,
#: ``benchmarks/paper_blend_probe.py``).
BLENDS = ("mean", "max")


@dataclass
class PropagationResult:
    """``masks``: name -> uint8 (K, J, I); ``confidence``: name -> float32 (K,) in [0, 1] (1 on painted
    slices); ``ended``: name -> slices where a run stopped because the muscle ended."""

    masks: Dict[str, np.ndarray]
    confidence: Dict[str, np.ndarray]
    seconds: float = 0.0
    device: str = "cpu"
    ended: Dict[str, List[int]] = field(default_factory=dict)
    preset: str = "balanced"
    windows: int = 0           # network windows run (all runs together)
    timings: Dict[str, float] = field(default_factory=dict)   # seconds per stage (prepare, encode, step, output)
    painted: Dict[str, List[int]] = field(default_factory=dict)  # name -> the seed slices
    frames: int = 0            # frames of the sweep the network ran on (all K unless a finer sweep was thinned)
    frame_spacing_mm: Optional[float] = None   # their spacing along the sweep (None: unknown)

    def least_confident(self, name: str, count: int = 5) -> List[int]:
        """The ``count`` slices of ``name`` with the lowest confidence, lowest first, spread out
        (:func:`least_confident_slices`)."""
        return least_confident_slices(self.confidence[name], count, exclude=self.painted.get(name, ()))

    def paint_next(self, name: str) -> Optional[int]:
        """The slice where one more painted slice of ``name`` should help most (:func:`next_slice_to_paint`)."""
        return next_slice_to_paint(self.masks[name].reshape(self.masks[name].shape[0], -1).any(axis=1),
                                   self.painted.get(name, ()))


# --------------------------------------------------------------------------------------------------
# Models and devices


def default_model_path() -> Path:
    """The shipped weights: ``$IFSSNET_MODEL`` or ``Resources/Models/ifssnet.pt`` beside the package."""
    import os

    env = os.environ.get("IFSSNET_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "Resources" / "Models" / "ifssnet.pt"


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``. Asking for CUDA without one is an error."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") or device == "gpu":
        if not torch.cuda.is_available():
            raise ResourceError("A GPU (CUDA) was requested, but PyTorch sees none on this computer.",
                                "Choose device 'auto' or 'cpu', or install a CUDA build of PyTorch.")
        return "cuda" if device == "gpu" else device
    if device != "cpu":
        raise InputError(f"Unknown device '{device}'.", "Use auto, cpu or cuda.")
    return device


def load_model(model=None, device: str = "cpu"):
    """A ready-to-run network in eval mode: ``None`` (the shipped one), a checkpoint path, or a module."""
    import torch

    if model is None:
        model = default_model_path()
        if not Path(model).exists():
            raise ModelError(f"The shipped model is missing ({model}).",
                             "Reinstall the extension, or choose another model (in Slicer: the Model list; "
                             "on the command line: --model FILE).")
    if isinstance(model, (str, Path)):
        from .model.checkpoint import load_checkpoint, zero_negligible_weights

        model, _, _ = load_checkpoint(model, map_location="cpu")
        zero_negligible_weights(model)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"Expected a model file or a network, not {type(model).__name__}.", "Give a .pt model file.")
    return model.to(device).eval()


def _model_window_and_size(model) -> tuple:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "window", 3)), int(getattr(cfg, "size", 128))


# --------------------------------------------------------------------------------------------------
# The propagation


def resolve_preset(preset: str, window: int) -> dict:
    """The settings of ``preset`` (a name in :data:`PRESETS`) for a network with window ``window``.

    Returns a dict with ``stride`` resolved to an int in 1..window. Raises :class:`InputError` for an
    unknown name.
    """
    key = (preset or "balanced").strip().lower()
    if key not in PRESETS:
        raise InputError(f"Unknown preset {preset!r}.", f"Choose one of: {', '.join(PRESET_NAMES)}.")
    cfg = dict(PRESETS[key])
    stride = window if cfg["stride"] == "w" else int(cfg["stride"])
    cfg["stride"] = max(1, min(int(window), stride))
    cfg["name"] = key
    return cfg


STOP_AREA_FRACTION = 0.1
"""A run ends after ``patience`` slices whose mask is smaller than this share of the seeds' mean area
(:func:`propagate`'s ``min_area_fraction``; ``ifssnet propagate --stop-area``)."""


def propagate(volume: np.ndarray, seeds: Union[SeedSet, Mapping[str, SeedSet]], model=None, *,
              device: str = "auto", preset: str = "balanced", stop_at_end: bool = True,
              between_seeds_only: bool = False, patience: int = 5, min_area_fraction: float = STOP_AREA_FRACTION,
              batch_size: int = 32, slice_spacing_mm: Optional[float] = None, match_slice_spacing: bool = True,
              exclusive: bool = True, blend: str = "max", reserved_bytes: int = 0,
              progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> PropagationResult:
    """Propagate the painted slices of every segment through ``volume`` (K, J, I).

    ``seeds``: one :class:`SeedSet` (returned under the name ``"segment"``) or ``{name: SeedSet}``.
    ``model``: ``None`` for the shipped network, a checkpoint path, or a loaded ``IFSSNet``.
    ``device``: ``auto`` | ``cpu`` | ``cuda``. A CUDA out-of-memory error falls back to the CPU with a warning.
    ``preset``: ``accurate`` | ``balanced`` | ``fast`` (see :data:`PRESETS`; :func:`expected_seconds`
    estimates the time before a run).
    ``stop_at_end``: end a run after ``patience`` new slices whose foreground is below
    ``min_area_fraction`` of the seeds' mean area (painted slices with foreground; an annotated empty
    slice, "no muscle here", does not count). 0.1 was chosen on the validation phantoms (500, 501;
    shipped weights; ``benchmarks/area_along_sweep.py`` shows why): past a muscle's end the network's
    mask fades slowly and can hold 5-15 % of the seeds' area for hundreds of slices, which the former 0.02
    let through. Volume error under ``3-seeds`` 37.4 % at 0.02, 36.9 % at 0.05, 31.3 % at 0.1, 34.4 % at
    0.2 (a run stopped inside a muscle); under ``paper`` 29.1 % at 0.02 and 28.9 % at 0.1. With the weights
    shipped since session 20 it matters less (README, "Where a run stops"): 0.3 costs 0.008 held-out Dice on
    sweeps like the training ones and saves 5.8 points of volume error on sweeps of a finer probe.
    ``between_seeds_only``: do not go past the outermost
    seed groups. ``slice_spacing_mm``: the volume's spacing along axis 0 (mm). With
    ``match_slice_spacing`` and a network that knows its training spacing (``config.slice_spacing_mm``),
    a finer sweep is propagated on its frames nearest to that spacing, and the result comes back to
    every frame (:mod:`ifssnet.slice_spacing`); ``patience`` then counts kept frames. On validation
    phantoms 500-501 swept at 0.316 mm (the training's 1.108 mm / 3.5), ``3-seeds``: Dice 0.658 on every
    frame, 0.721 thinned, at half the time (model card). ``exclusive`` (default): segments propagated
    together do not overlap; a voxel two of them claim goes to the one painted nearer to its slice, and a
    voxel painted for one segment is not given to another (:mod:`ifssnet.exclusive`; held-out phantoms,
    ``3-seeds+ends``, three muscles in one run: Dice 0.732, volume error 16.8 %, against 0.720 / 19.6 %
    without). ``blend``: how runs that meet between two seed groups are combined (:data:`BLENDS`); the
    per-slice confidence comes from their weighted mean and variance either way. ``reserved_bytes``: memory the
    caller will still allocate for the results (bytes), added to the need that is checked before the run
    (:func:`~ifssnet.memory.check_propagation_memory`). Returns :class:`PropagationResult`. Raises
    :class:`~ifssnet.errors.Cancelled` if ``cancel`` is set; nothing is returned or changed then.
    """
    import torch

    t0 = time.perf_counter()
    single = isinstance(seeds, SeedSet)
    seed_map: Dict[str, SeedSet] = {"segment": seeds} if single else dict(seeds)
    volume = np.asarray(volume)
    check_volume(volume)
    _check_seeds(volume, seed_map, named=not single)
    if not 0.0 <= float(min_area_fraction) < 1.0:
        raise InputError(f"The stop area {min_area_fraction} is not a share of the seeds' area in [0, 1).",
                         f"Give a fraction such as {STOP_AREA_FRACTION} (0: stop only where the mask vanishes).")
    progress = _forward_only(progress)
    if int(patience) != patience or patience < 1:
        raise InputError(f"patience={patience!r}: a run ends after this many quiet slices; it must be 1 or more.",
                         "Give a whole number such as 5 (the default), or stop_at_end=False.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}: the runs stepped at once must be 1 or more.",
                         "Give a whole number such as 32 (the default).")
    report(progress, "preparing", 0, 1)
    dev = resolve_device(device)
    net = load_model(model, dev)
    settings = resolve_preset(preset, _model_window_and_size(net)[0])
    if blend not in BLENDS:
        raise InputError(f"Unknown blend {blend!r}.", f"Choose one of: {', '.join(BLENDS)}.")
    settings["blend"] = blend
    extra = PRE_ENCODE_BYTES if uses_pre_encoding(settings, net, dev) else 0
    frames = frames_for(volume.shape[0], slice_spacing_mm, net, match_slice_spacing, seed_map)
    check_propagation_memory(volume.shape, seed_map, net, batch_size, extra_bytes=extra + int(reserved_bytes),
                             frames=len(frames.frames))
    try:
        result = _propagate_on(volume, seed_map, net, dev, stop_at_end, between_seeds_only, patience,
                               min_area_fraction, batch_size, progress, cancel, settings, frames, exclusive)
    except torch.cuda.OutOfMemoryError:
        warnings.warn("The GPU ran out of memory; propagating on the CPU instead (slower).", RuntimeWarning)
        torch.cuda.empty_cache()
        dev = "cpu"
        result = _propagate_on(volume, seed_map, net.to("cpu"), dev, stop_at_end, between_seeds_only, patience,
                               min_area_fraction, batch_size, progress, cancel, settings, frames, exclusive)
    result.seconds = time.perf_counter() - t0
    result.device = dev
    result.preset = settings["name"]
    return result


def _forward_only(progress: Optional[ProgressFn]) -> Optional[ProgressFn]:
    """``progress`` that never goes back: a report of a stage before the latest one, or of a smaller share
    of the latest stage, is dropped. The CPU fallback after a GPU ran out of memory starts again from
    "preparing"; the caller's bar waits until the new try passes where the first one had got to."""
    if progress is None:
        return None
    stages: List[str] = []
    last: List[tuple] = []

    def forward(stage: str, done: int, total: int) -> None:
        if stage not in stages:
            stages.append(stage)
        key = (stages.index(stage), done / total if total > 0 else 1.0)
        if last and key < last[0]:
            return
        last[:] = [key]
        progress(stage, done, total)

    return forward


def frames_for(n_slices: int, slice_spacing_mm: Optional[float], net, match: bool,
               seed_map: Mapping[str, SeedSet]) -> FrameSelection:
    """The frames propagation runs on (:func:`ifssnet.slice_spacing.select_frames`), the painted
    slices among them (each painted group of each segment on a frame of its own) and every slice marked
    "no muscle here" a frame of its own; all of them without
    ``match`` or when the network or the volume does not say its slice spacing."""
    network_mm = getattr(getattr(net, "config", None), "slice_spacing_mm", None) if match else None
    painted = sorted({int(k) for s in seed_map.values() for k in s.slices})
    marks = sorted({int(k) for s in seed_map.values() for k in s.empty_slices})
    groups = [g for s in seed_map.values() for g in seed_groups(set(s.slices) - set(s.empty_slices))]
    return select_frames(n_slices, slice_spacing_mm, network_mm, keep=painted, marks=marks, groups=groups)


def _check_seeds(volume: np.ndarray, seed_map: Mapping[str, SeedSet], named: bool = True) -> None:
    """Shapes and :func:`validate_seeds` for every segment; ``named``: the messages name it (a single
    :class:`SeedSet` has no name of its own, only the placeholder ``"segment"``)."""
    if not seed_map:
        raise SeedError("No segment to propagate.", "Select a segment and paint it on at least 3 slices.")
    for name, s in seed_map.items():
        if s.mask.shape != volume.shape:
            raise InputError(f"The seeds of '{name}' have shape {s.mask.shape}, the volume {volume.shape}.",
                             "Resample the segmentation onto the volume's grid first.")
        validate_seeds(s, name=name if named else None)


def _propagate_on(volume, seed_map, net, dev, stop_at_end, between_only, patience, min_area_fraction,
                  batch_size, progress, cancel, settings, frames: FrameSelection,
                  exclusive: bool = True) -> PropagationResult:
    """The propagation proper, on the kept ``frames`` of ``volume``: K below counts those frames, and
    the result goes back to every frame (``frames.to_sweep``)."""
    import torch

    timings: Dict[str, float] = {}
    t_prep = time.perf_counter()
    K_sweep, J, I = volume.shape
    K = len(frames.frames)
    w, S = _model_window_and_size(net)
    stride = int(settings["stride"])
    grid = InPlaneGrid((J, I), S)

    # The kept frames on the working grid, normalised: (K, S, S) float32, built in chunks.
    work = normalized_work_volume(volume, grid, progress=progress, cancel=cancel, frames=frames.work_frames)
    chunk = 64

    runs: List[Run] = []
    seed_work: Dict[str, Dict[int, torch.Tensor]] = {}
    min_area: Dict[str, float] = {}
    acc: Dict[str, Accumulator] = {}
    painted_work: Dict[str, List[int]] = {}
    for name, s in seed_map.items():
        sl = np.asarray(s.slices)
        masks = grid.to_work(torch.from_numpy(s.mask[sl].astype(np.float32)))
        seed_work[name] = seeds_on_frames(sl, masks, frames)
        painted_work[name] = sorted(seed_work[name])
        areas = masks.sum(dim=(1, 2)).clamp(min=0)
        painted_areas = areas[areas > 0]              # slices marked "no muscle here" do not lower the bar
        area = float(painted_areas.mean()) if len(painted_areas) else 0.0
        # A floor of 2 working pixels keeps a speck from counting as muscle, but never above half the seeds'
        # own area: a muscle painted smaller than 2 pixels (a tip, a coarse grid) would be quiet on every slice.
        min_area[name] = max(min(2.0, 0.5 * area), min_area_fraction * area)
        runs += make_runs(name, painted_work[name], K, between_only)
        acc[name] = Accumulator.zeros(K, S, peak=settings.get("blend") == "max")
    ended: Dict[str, List[int]] = {n: [] for n in seed_map}

    for r in runs:  # first mask input: the seed slices, the earliest repeated where there are fewer than w
        r.stride = stride
        pos = np.clip(np.arange(r.n_seeds - w, r.n_seeds), 0, None)
        r.prev = torch.stack([seed_work[r.segment][int(r.order[p])] for p in pos])
        r.no_muscle = not any(bool(seed_work[r.segment][int(k)].any()) for k in r.order[:r.n_seeds])

    def window_slices(r: Run, step: int):
        t = r.first(w, step)                         # first position of the image window
        pos = np.clip(np.arange(t, t + w), 0, len(r.order) - 1)
        return work[torch.as_tensor(r.order[pos])]

    use_feats = uses_pre_encoding(settings, net, dev)
    carry = stride - 1
    pass_carry = carry != 0 and accepts_carry_index(net)
    prepare_device(net, dev)
    amp = settings.get("gpu_autocast")
    cache = FeatureCache(net, window_slices, dev, amp_dtype=amp) if use_feats else None
    timings["prepare"] = time.perf_counter() - t_prep

    total = sum(r.n_steps for r in runs)
    done_steps = 0
    partial: Dict[int, Dict[int, List[torch.Tensor]]] = {id(r): {} for r in runs}
    state_of: Dict[int, object] = {}
    t_loop = time.perf_counter()
    report(progress, "propagating", 0, total)
    with torch.inference_mode():
        while True:
            active = [r for r in runs if not r.done and r.step < r.n_steps]
            if not active:
                break
            check_cancel(cancel)
            for b0 in range(0, len(active), batch_size):
                batch = active[b0:b0 + batch_size]
                prev = torch.stack([r.prev for r in batch])[:, None].to(dev)
                state = stack_states([state_of.get(id(r)) for r in batch], dev)
                if use_feats:
                    feats = cache.get(batch, active)
                    with autocast(dev, amp):
                        logits, new_state = net.forward_from_features(feats, prev, state, carry)
                else:
                    img = torch.stack([window_slices(r, r.step) for r in batch])[:, None].to(dev)
                    with autocast(dev, amp):
                        logits, new_state = (net(img, prev, state, carry) if pass_carry else net(img, prev, state))
                # Non-finite logits (float16 autocast can overflow): +-inf become the largest finite values, so
                # softmax([0, inf]) is 1, not NaN; NaN becomes 0, an unsure 0.5 (background, low confidence).
                prob = torch.softmax(finite_logits(logits), dim=1)[:, 1].cpu()   # (B, w, S, S)
                for bi, r in enumerate(batch):
                    state_of[id(r)] = index_state(new_state, bi)
                    advance(r, prob[bi], w, seed_work[r.segment], partial[id(r)], acc[r.segment],
                            min_area[r.segment], stop_at_end, patience, ended[r.segment])
                done_steps += len(batch)
            report(progress, "propagating", done_steps, total)
        report(progress, "propagating", total, total)     # runs that stopped at a muscle's end skip their other steps
        for r in runs:
            flush(r, partial[id(r)], acc[r.segment], upto=None)
    timings["encode"] = cache.seconds if cache is not None else 0.0
    timings["step"] = time.perf_counter() - t_loop - timings["encode"]

    t_out = time.perf_counter()
    confidence = {}
    names = list(seed_map)
    blended = {}
    for name in names:   # blended probability (K, S, S) and per-slice confidence, in place of the sums
        check_cancel(cancel)
        a = acc.pop(name)
        mean_p, var_p = a.mean_and_variance()
        muscle = [j for j, mask in seed_work[name].items() if bool(mask.any())]
        confidence[name] = frames.to_sweep(slice_confidence(mean_p, var_p, painted=painted_work[name],
                                                            muscle=muscle)).astype(np.float32)
        blended[name] = a.max_blend() if a.peak is not None else mean_p
        # No run writes on the painted frames: give them their painted masks, as PG-Net does, so the slices
        # between a painted frame and the next kept one (a thinned sweep) interpolate from the paint, not from 0.
        for j, mask in seed_work[name].items():
            blended[name][j] = mask
        del a, var_p
    masks = masks_from_probabilities(blended, seed_map, grid, frames, (K_sweep, J, I), exclusive=exclusive,
                                     sparse=settings["sparse_output"], chunk=chunk, progress=progress, cancel=cancel)
    for name in names:
        confidence[name][np.asarray(seed_map[name].slices)] = 1.0
    timings["output"] = time.perf_counter() - t_out
    ended = {n: [int(frames.frames[k]) for k in ks] for n, ks in ended.items()}     # kept frame -> sweep slice
    return PropagationResult(masks, confidence, ended=ended, windows=done_steps, timings=timings,
                             painted={n: [int(k) for k in seed_map[n].slices] for n in names},
                             frames=K, frame_spacing_mm=frames.spacing_mm)
