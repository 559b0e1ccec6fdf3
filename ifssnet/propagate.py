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
from :mod:`ifssnet.estimate`. A sweep finer than the network's training sweeps runs on its frames
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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .confidence import least_confident_slices, next_slice_to_paint, slice_confidence
from .exclusive import compete, nearer_painted, yield_to_painted
from .errors import InputError, ModelError, ResourceError, SeedError
from .memory import check_propagation_memory
from .preprocess import InPlaneGrid, check_volume, normalized_work_volume
from .progress import CancelLike, ProgressFn, check_cancel, report
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
#: muscle here" still weighs in by distance, as under ``mean``; ``_Accumulator.max_blend``,
#: ``benchmarks/paper_blend_probe.py``).
BLENDS = ("mean", "max")
#: Upper bound on pre-encoded image features held at once (bytes); see ``_FeatureCache``.
PRE_ENCODE_BYTES = 64 * 2 ** 20
#: Windows per ``encode_image`` call when pre-encoding, on the CPU and on a GPU. On 2 CPU cores a
#: batch of 4-8 windows is already as fast per window as any larger one (measured: 0.045 s/window at
#: batch 4 and 8, 0.059 at 16; size 128, width 0.5), so the CPU batch stays small and few windows
#: are encoded for nothing when a run stops at the muscle's end. A GPU needs large batches.
ENCODE_BATCH = 8
ENCODE_BATCH_GPU = 64
#: Pre-encode on the CPU too. Off: on 2 CPU cores it was not faster, it was about 10 % slower
#: (alternating runs, 120 x 128 x 128, width 0.5, 1 thread: plain 8.7/8.9/13.3 s, pre-encoded
#: 9.7/13.0/15.1 s; medium bench: 69.8 s vs 79.1 s), most likely because features encoded ahead have
#: left the caches when the mask stream reads them, while a batch of 2 windows already keeps the
#: cores busy. On a GPU a batch of 2 windows leaves the device idle, so there it is on.
PRE_ENCODE_ON_CPU = False


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
                             "Reinstall the extension, or give a model file with --model.")
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
# Runs


@dataclass
class _Run:
    """One seed group propagated in one direction. ``order``: slice indices, seeds first."""

    segment: str
    order: np.ndarray          # (L,) slice indices along the run, the n seed slices first
    n_seeds: int
    weight_origin: int         # slice of the seed nearest to the run (for blending weights)
    no_muscle: bool = False    # its seed group is painted empty ("no muscle here")
    step: int = 0              # windows done
    quiet: int = 0             # consecutive new slices with no foreground
    done: bool = False
    prev: object = None        # torch (w, S, S): the mask input of the next window
    stride: int = 1            # slices between windows (the window's newest slice moves by this)

    @property
    def n_steps(self) -> int:
        """Windows until the newest slice reaches the run's end: ``ceil(new slices / stride)``."""
        return -(-(len(self.order) - self.n_seeds) // self.stride)

    def first(self, w: int, step: int) -> int:
        """Position (in ``order``) of the first slice of window ``step``; its newest slice is
        ``n_seeds - 1 + (step + 1) * stride`` (clipped to the run's end by the callers)."""
        return self.n_seeds - w + (step + 1) * self.stride


def _make_runs(name: str, painted: Sequence[int], K: int, between_only: bool) -> List[_Run]:
    """The runs of one segment whose painted slices are ``painted`` (indices into K slices)."""
    groups = seed_groups(painted)
    runs = []
    for gi, g in enumerate(groups):
        lo, hi = g[0], g[-1]
        nxt = groups[gi + 1][0] if gi + 1 < len(groups) else K
        prv = groups[gi - 1][-1] if gi > 0 else -1
        if not (between_only and gi + 1 == len(groups)) and nxt > hi + 1:
            runs.append(_Run(name, np.concatenate([np.arange(lo, hi + 1), np.arange(hi + 1, nxt)]), len(g), hi))
        if not (between_only and gi == 0) and prv < lo - 1:
            runs.append(_Run(name, np.concatenate([np.arange(hi, lo - 1, -1), np.arange(lo - 1, prv, -1)]), len(g), lo))
    return runs


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


def propagate(volume: np.ndarray, seeds: Union[SeedSet, Mapping[str, SeedSet]], model=None, *,
              device: str = "auto", preset: str = "balanced", stop_at_end: bool = True,
              between_seeds_only: bool = False, patience: int = 5, min_area_fraction: float = 0.1,
              batch_size: int = 32, slice_spacing_mm: Optional[float] = None, match_slice_spacing: bool = True,
              exclusive: bool = True, blend: str = "max", progress: Optional[ProgressFn] = None,
              cancel: CancelLike = None) -> PropagationResult:
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
    0.2 (a run stopped inside a muscle); under ``paper`` 29.1 % at 0.02 and 28.9 % at 0.1.
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
    per-slice confidence comes from their weighted mean and variance either way. Returns :class:`PropagationResult`. Raises
    :class:`~ifssnet.errors.Cancelled` if ``cancel`` is set; nothing is returned or changed then.
    """
    import torch

    t0 = time.perf_counter()
    single = isinstance(seeds, SeedSet)
    seed_map: Dict[str, SeedSet] = {"segment": seeds} if single else dict(seeds)
    volume = np.asarray(volume)
    check_volume(volume)
    _check_seeds(volume, seed_map)
    report(progress, "preparing", 0, 1)
    dev = resolve_device(device)
    net = load_model(model, dev)
    settings = resolve_preset(preset, _model_window_and_size(net)[0])
    if blend not in BLENDS:
        raise InputError(f"Unknown blend {blend!r}.", f"Choose one of: {', '.join(BLENDS)}.")
    settings["blend"] = blend
    extra = PRE_ENCODE_BYTES if _uses_pre_encoding(settings, net, dev) else 0
    frames = frames_for(volume.shape[0], slice_spacing_mm, net, match_slice_spacing, seed_map)
    check_propagation_memory(volume.shape, seed_map, net, batch_size, extra_bytes=extra, frames=len(frames.frames))
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


def frames_for(n_slices: int, slice_spacing_mm: Optional[float], net, match: bool,
               seed_map: Mapping[str, SeedSet]) -> FrameSelection:
    """The frames propagation runs on (:func:`ifssnet.slice_spacing.select_frames`), the painted
    slices among them; all of them without ``match`` or when the network or the volume does not say
    its slice spacing."""
    network_mm = getattr(getattr(net, "config", None), "slice_spacing_mm", None) if match else None
    painted = sorted({int(k) for s in seed_map.values() for k in s.slices})
    return select_frames(n_slices, slice_spacing_mm, network_mm, keep=painted)


def _check_seeds(volume: np.ndarray, seed_map: Mapping[str, SeedSet]) -> None:
    if not seed_map:
        raise SeedError("No segment to propagate.", "Select a segment and paint it on at least 3 slices.")
    for name, s in seed_map.items():
        if s.mask.shape != volume.shape:
            raise InputError(f"The seeds of '{name}' have shape {s.mask.shape}, the volume {volume.shape}.",
                             "Resample the segmentation onto the volume's grid first.")
        validate_seeds(s, name=name)


def _uses_pre_encoding(settings: dict, net, dev: str) -> bool:
    return (bool(settings["pre_encode"]) and _has_feature_api(net)
            and (str(dev).startswith("cuda") or PRE_ENCODE_ON_CPU))


def _has_feature_api(net) -> bool:
    return callable(getattr(net, "encode_image", None)) and callable(getattr(net, "forward_from_features", None))


def _accepts_carry_index(net) -> bool:
    import inspect

    try:
        return "carry_index" in inspect.signature(net.forward).parameters
    except (TypeError, ValueError):
        return False


def _feature_bytes_per_window(net) -> int:
    """float32 bytes of one window's image-stream features (5 skips + bottleneck)."""
    cfg = net.config
    chans = cfg.channels()
    s = int(cfg.size)
    per_slice = sum(c * (s >> i) ** 2 for i, c in enumerate(chans)) + chans[-1] * (s >> 5) ** 2
    return 4 * int(cfg.window) * per_slice


class _FeatureCache:
    """Image-stream features of the next windows of the active runs, encoded ahead in large batches.

    ``get(batch)`` returns :class:`~ifssnet.model.encoder.StreamFeatures` for the current step of each
    run in ``batch``. When a run's current window is not held, the next windows of all ``active``
    runs are encoded (enough steps ahead for one ``encode_batch``, within ``budget`` bytes); the old
    chunk is dropped first, so at most one chunk is alive.
    """

    def __init__(self, net, window_slices, dev, budget: Optional[int] = None, encode_batch: Optional[int] = None,
                 autocast=None):
        self.net, self.window_slices, self.dev = net, window_slices, dev
        self.per_window = _feature_bytes_per_window(net)
        gpu = str(dev).startswith("cuda")
        self.budget = PRE_ENCODE_BYTES if budget is None else budget
        self.encode_batch = (ENCODE_BATCH_GPU if gpu else ENCODE_BATCH) if encode_batch is None else encode_batch
        self.autocast = autocast
        self.index: Dict[tuple, int] = {}
        self.feats = None
        self.seconds = 0.0

    def _fill(self, active: Sequence[_Run]) -> None:
        import torch

        from .model.encoder import StreamFeatures

        t0 = time.perf_counter()
        self.feats = None
        self.index = {}
        # Steps ahead: enough for one encode batch, within the memory budget (at least one step).
        n = max(1, len(active))
        ahead = max(1, min(-(-self.encode_batch // n), int(self.budget // max(1, self.per_window * n))))
        keys, wins = [], []
        for j in range(ahead):
            for r in active:
                step = r.step + j
                if step < r.n_steps:
                    keys.append((id(r), step))
                    wins.append(self.window_slices(r, step))
        parts = []
        for b0 in range(0, len(wins), self.encode_batch):
            img = torch.stack(wins[b0:b0 + self.encode_batch])[:, None].to(self.dev)
            with _autocast(self.dev, self.autocast):
                parts.append(self.net.encode_image(img))
        self.feats = StreamFeatures.cat(parts)
        self.index = {k: i for i, k in enumerate(keys)}
        self.seconds += time.perf_counter() - t0

    def get(self, batch: Sequence[_Run], active: Sequence[_Run]):
        import torch

        if any((id(r), r.step) not in self.index for r in batch):
            self._fill(active)
        idx = [self.index[(id(r), r.step)] for r in batch]
        f, d = self.feats, self.feats.depth
        if idx == list(range(idx[0], idx[0] + len(idx))):
            return f.select(idx[0], idx[0] + len(idx))
        rows = torch.as_tensor([i * d + j for i in idx for j in range(d)], device=f.bottleneck.device)
        return f.rows(rows, len(idx))


def _autocast(dev: str, dtype_name):
    """Autocast on CUDA with ``dtype_name`` ("bfloat16"/"float16"); a no-op context elsewhere."""
    import contextlib

    import torch

    if not dtype_name or not str(dev).startswith("cuda"):
        return contextlib.nullcontext()
    dtype = getattr(torch, dtype_name)
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _prepare_device(net, dev: str) -> None:
    """GPU settings that do not change results on the CPU: cudnn autotuning, and torch.compile when
    ``IFSSNET_COMPILE=1`` (guarded: any failure leaves the plain module)."""
    import os

    import torch

    if not str(dev).startswith("cuda"):
        return
    torch.backends.cudnn.benchmark = True
    if os.environ.get("IFSSNET_COMPILE") == "1" and not getattr(net, "_ifssnet_compiled", False):
        try:
            net.forward_from_features = torch.compile(net.forward_from_features, dynamic=True)
            net._ifssnet_compiled = True
        except Exception as exc:  # noqa: BLE001 (compile is optional)
            warnings.warn(f"torch.compile is not available ({exc}); running uncompiled.", RuntimeWarning)


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
    work = normalized_work_volume(volume, grid, progress=progress, cancel=cancel,
                                  frames=frames.frames if frames.thinned else None)
    chunk = 64

    runs: List[_Run] = []
    seed_work: Dict[str, Dict[int, torch.Tensor]] = {}
    min_area: Dict[str, float] = {}
    acc: Dict[str, _Accumulator] = {}
    painted_work: Dict[str, List[int]] = {}
    for name, s in seed_map.items():
        sl = np.asarray(s.slices)
        masks = grid.to_work(torch.from_numpy(s.mask[sl].astype(np.float32)))
        seed_work[name] = _seeds_on_frames(sl, masks, frames)
        painted_work[name] = sorted(seed_work[name])
        areas = masks.sum(dim=(1, 2)).clamp(min=0)
        painted_areas = areas[areas > 0]              # slices marked "no muscle here" do not lower the bar
        area = float(painted_areas.mean()) if len(painted_areas) else 0.0
        min_area[name] = max(2.0, min_area_fraction * area)
        runs += _make_runs(name, painted_work[name], K, between_only)
        acc[name] = _Accumulator.zeros(K, S, peak=settings.get("blend") == "max")
    ended: Dict[str, List[int]] = {n: [] for n in seed_map}

    for r in runs:  # first mask input: the seed slices, the earliest repeated where there are fewer than w
        r.stride = stride
        pos = np.clip(np.arange(r.n_seeds - w, r.n_seeds), 0, None)
        r.prev = torch.stack([seed_work[r.segment][int(r.order[p])] for p in pos])
        r.no_muscle = not any(bool(seed_work[r.segment][int(k)].any()) for k in r.order[:r.n_seeds])

    def window_slices(r: _Run, step: int):
        t = r.first(w, step)                         # first position of the image window
        pos = np.clip(np.arange(t, t + w), 0, len(r.order) - 1)
        return work[torch.as_tensor(r.order[pos])]

    use_feats = _uses_pre_encoding(settings, net, dev)
    carry = stride - 1
    pass_carry = carry != 0 and _accepts_carry_index(net)
    _prepare_device(net, dev)
    amp = settings.get("gpu_autocast")
    cache = _FeatureCache(net, window_slices, dev, autocast=amp) if use_feats else None
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
                state = _stack_states([state_of.get(id(r)) for r in batch], dev)
                if use_feats:
                    feats = cache.get(batch, active)
                    with _autocast(dev, amp):
                        logits, new_state = net.forward_from_features(feats, prev, state, carry)
                else:
                    img = torch.stack([window_slices(r, r.step) for r in batch])[:, None].to(dev)
                    with _autocast(dev, amp):
                        logits, new_state = (net(img, prev, state, carry) if pass_carry else net(img, prev, state))
                prob = torch.softmax(logits.float(), dim=1)[:, 1].cpu()   # (B, w, S, S)
                for bi, r in enumerate(batch):
                    state_of[id(r)] = _index_state(new_state, bi)
                    _advance(r, prob[bi], w, seed_work[r.segment], partial[id(r)], acc[r.segment],
                             min_area[r.segment], stop_at_end, patience, ended[r.segment])
                done_steps += len(batch)
            report(progress, "propagating", done_steps, total)
        for r in runs:
            _flush(r, partial[id(r)], acc[r.segment], upto=None)
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
        confidence[name] = frames.to_sweep(slice_confidence(mean_p, var_p, painted=painted_work[name])
                                           ).astype(np.float32)
        blended[name] = a.max_blend() if a.peak is not None else mean_p
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


def masks_from_probabilities(probs: Dict[str, Any], seed_map: Mapping[str, SeedSet], grid: InPlaneGrid,
                             frames: FrameSelection, shape_kji, *, exclusive: bool, sparse: bool = True,
                             chunk: int = 64, progress: Optional[ProgressFn] = None,
                             cancel: CancelLike = None) -> Dict[str, np.ndarray]:
    """Working-grid probabilities -> masks on the volume, for IFSS-Net and PG-Net alike.

    ``probs``: name -> float tensor (K', S, S) on the kept ``frames``; emptied as it goes (memory).
    With ``exclusive`` a voxel two segments claim goes first to the one painted nearer to its slice
    (:func:`ifssnet.exclusive.compete`). Each segment then goes back to every slice of the sweep and the
    volume's grid, ``chunk`` slices at a time, and is thresholded at 0.5 (``sparse``: computed only where
    it can be 1, :func:`_threshold_to_volume`). Painted slices come out as painted, and with ``exclusive``
    no painted voxel goes to another segment. Returns name -> uint8 (K, J, I) for ``shape_kji``.
    """
    if exclusive:
        compete(probs, priority=nearer_painted(frames, seed_map))
    K = int(shape_kji[0])
    names = list(probs)
    masks: Dict[str, np.ndarray] = {}
    for si, name in enumerate(names):
        check_cancel(cancel)
        mean_p = probs.pop(name)
        out = np.zeros(tuple(shape_kji), dtype=np.uint8)
        for k0 in range(0, K, chunk):
            check_cancel(cancel)
            p = frames.to_sweep(mean_p, k0, min(k0 + chunk, K))
            if sparse:
                _threshold_to_volume(grid, p, out[k0:k0 + chunk])
            else:
                out[k0:k0 + chunk] = (grid.to_volume(p) > 0.5).numpy()
            report(progress, "writing result", si * K + min(k0 + chunk, K), len(names) * K)
        sl = np.asarray(seed_map[name].slices)
        out[sl] = (seed_map[name].mask[sl] > 0)
        masks[name] = out
    if exclusive:
        yield_to_painted(masks, seed_map)
    return masks


def _seeds_on_frames(slices: np.ndarray, masks, frames: FrameSelection) -> Dict[int, Any]:
    """Painted masks on the working grid (N, S, S) of painted ``slices`` (N,) -> {kept frame: mask}.
    The frames were chosen with the painted slices kept (``select_frames(keep=...)``), so a painted
    slice is usually a kept frame itself. One that is not (it lay next to another painted slice, maybe
    of another segment) gives its mask to the nearest kept frame, unless that frame has its own."""
    return {j: masks[n] for j, n in frames.anchors(slices).items()}


def _threshold_to_volume(grid: InPlaneGrid, prob, out: np.ndarray, margin: int = 2) -> None:
    """``out[...] = grid.to_volume(prob) > 0.5`` for ``prob`` (N, S, S), computed only where it can be 1.

    Bilinear resampling is a convex combination of neighbouring samples, so a slice whose samples
    are all <= 0.5 resamples to <= 0.5 everywhere: it stays 0 (``out`` must come zeroed). With an
    integer scale factor f = padded / S, a crop of the working grid [a, b) resamples to exactly the
    rows [a f, b f) of the full result except next to the crop's edges; with ``margin`` >= 2 working
    pixels around the foreground's bounding box, those edge rows only mix samples <= 0.5, so they and
    everything outside the crop threshold to 0 either way.
    """
    import torch.nn.functional as F

    hot = (prob > 0.5)
    keep = hot.flatten(1).any(dim=1)
    if not bool(keep.any()):
        return
    ks = keep.nonzero()[:, 0]
    p = prob.index_select(0, ks)
    S, P = grid.size, grid.padded
    j, i = grid.shape_ji
    left, right, top, bottom = grid.pads
    if P == S or P % S != 0:
        res = (grid.to_volume(p) > 0.5).numpy()
        out[ks.numpy()] = res
        return
    f = P // S
    h = hot.index_select(0, ks).any(dim=0)
    rows = h.any(dim=1).nonzero()[:, 0]
    cols = h.any(dim=0).nonzero()[:, 0]
    a0, b0 = max(0, int(rows[0]) - margin), min(S, int(rows[-1]) + 1 + margin)
    a1, b1 = max(0, int(cols[0]) - margin), min(S, int(cols[-1]) + 1 + margin)
    crop = p[:, a0:b0, a1:b1][:, None]
    up = F.interpolate(crop, size=((b0 - a0) * f, (b1 - a1) * f), mode="bilinear", align_corners=False)[:, 0] > 0.5
    # padded-grid rows [a0 f, b0 f) and columns [a1 f, b1 f) -> volume rows/cols (minus the padding), clipped
    r0, r1 = max(a0 * f, top), min(b0 * f, top + j)
    c0, c1 = max(a1 * f, left), min(b1 * f, left + i)
    if r1 <= r0 or c1 <= c0:
        return
    sub = up[:, r0 - a0 * f:r1 - a0 * f, c0 - a1 * f:c1 - a1 * f].numpy()
    out[ks.numpy(), r0 - top:r1 - top, c0 - left:c1 - left] = sub


def _stack_states(states: Sequence, dev):
    import torch

    if all(s is None for s in states):
        return None
    if any(s is None for s in states):
        raise RuntimeError("internal: runs in one batch must all have a state or none")
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(states).to(dev)
    return type(first)(_stack_states([s[i] for s in states], dev) for i in range(len(first)))


def _index_state(state, i):
    import torch

    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[i]
    return type(state)(_index_state(s, i) for s in state)


def _advance(r: _Run, prob, w, seed_masks, partial, acc: "_Accumulator", min_area, stop_at_end, patience, ended):
    """Record one window's probabilities ``prob`` (w, S, S) for run ``r`` and prepare its next input.

    The next window's mask input is this window's prediction (the next window is this one moved by
    ``r.stride`` slices), with painted slices re-anchored to their painted masks.
    """
    t = r.first(w, r.step)
    L = len(r.order)
    nxt = prob.clone()
    for j in range(w):
        p = t + j
        if p < 0 or p >= L:
            continue
        k = int(r.order[p])
        if p < r.n_seeds:                      # a painted slice: re-anchor
            nxt[j] = seed_masks[k]
            continue
        partial.setdefault(p, []).append(prob[j])
    r.prev = nxt
    newest = min(t + w - 1, L - 1)
    r.step += 1
    if stop_at_end:
        for p in range(max(newest - r.stride + 1, r.n_seeds), newest + 1):   # the new slices, in order
            area = float((prob[p - t] > 0.5).sum())
            r.quiet = r.quiet + 1 if area < min_area else 0
            if r.quiet >= patience:
                r.done = True
                ended.append(int(r.order[p]))
                # The quiet tail is background: drop what was collected for it (and anything after it).
                for q in list(partial):
                    if q > p - patience:
                        del partial[q]
                _flush(r, partial, acc, upto=None)
                return
    _flush(r, partial, acc, upto=t)   # positions before t get no more windows


def _flush(r: _Run, partial, acc: "_Accumulator", upto) -> None:
    """Move run ``r``'s finished positions (before ``upto``; all with None) from ``partial`` into ``acc``:
    the mean over the run's windows, weighted 1 / (1 + distance to the run's seed)."""
    for p in sorted(list(partial)):
        if upto is not None and p >= upto:
            break
        k = int(r.order[p])
        acc.add(k, torch_mean(partial.pop(p)), 1.0 / (1.0 + abs(k - r.weight_origin)), r.no_muscle)


@dataclass
class _Accumulator:
    """One segment's probabilities from every run that reached a slice, on the working grid.

    ``num`` (K, S, S): sum of weight x probability; ``num2``: sum of weight x probability^2; ``den`` (K,):
    sum of the weights. For ``blend="max"`` (else None): ``peak`` (K, S, S), the largest probability of
    the runs from painted muscle; ``num_mark`` (K, S, S) and ``den_mark`` (K,), the weighted sums of the
    runs from slices marked "no muscle here" (the runs from muscle weigh ``den - den_mark``).
    """
    num: Any
    num2: Any
    den: Any
    peak: Any = None
    num_mark: Any = None
    den_mark: Any = None

    @classmethod
    def zeros(cls, K: int, S: int, peak: bool = False) -> "_Accumulator":
        import torch

        maps = lambda: torch.zeros((K, S, S))  # noqa: E731
        return cls(maps(), maps(), torch.zeros(K), *((maps(), maps(), torch.zeros(K)) if peak else ()))

    def add(self, k: int, prob, weight: float, no_muscle: bool = False) -> None:
        """One run's probability (S, S) on slice ``k``, with its blending weight; ``no_muscle``: the run
        starts from slices marked "no muscle here"."""
        self.num[k] += weight * prob
        self.num2[k] += weight * prob * prob
        self.den[k] += weight
        if self.peak is None:
            return
        if no_muscle:
            self.num_mark[k] += weight * prob
            self.den_mark[k] += weight
        else:
            self.peak[k].copy_(self.peak[k].maximum(prob))

    def max_blend(self):
        """(K, S, S): the runs from painted muscle as one, by their largest probability, with their summed
        weight; averaged by weight with the runs from "no muscle here" marks, which keep their say near
        the marks as under the mean. Without marks: the largest probability; 0 where no run came."""
        muscle = (self.den - self.den_mark)[:, None, None]
        return self.peak.mul_(muscle).add_(self.num_mark).div_(self.den.clamp(min=1e-12)[:, None, None])

    def mean_and_variance(self):
        """(weighted mean, weighted variance) over the runs, each (K, S, S); 0 where no run came. In place
        of ``num`` and ``num2`` (the sums are gone afterwards)."""
        d = self.den.clamp(min=1e-12)[:, None, None]
        mean_p = self.num.div_(d)
        var_p = self.num2.div_(d).sub_(mean_p ** 2).clamp_(min=0)
        mean_p[self.den == 0] = 0.0
        self.num = self.num2 = None
        return mean_p, var_p


def torch_mean(tensors):
    import torch

    return torch.stack(tensors).mean(dim=0)
