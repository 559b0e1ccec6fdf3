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
of the volume. Where runs overlap (between two seed groups), their probabilities are blended with
weights 1 / (1 + distance to the run's seed). With ``stop_at_end``, a run ends after ``patience``
consecutive new slices with (almost) no foreground, so a muscle that ends does not leak on.

Per-slice confidence in [0, 1] (:func:`slice_confidence`) combines the entropy of the blended
probabilities in a band around the predicted boundary and the disagreement between runs.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import InputError, ModelError, ResourceError, SeedError
from .memory import check_propagation_memory
from .preprocess import InPlaneGrid, check_volume, intensity_stats, normalized_work_volume
from .progress import CancelLike, ProgressFn, check_cancel, report
from .seeds import SeedSet, seed_groups, validate_seeds


@dataclass
class PropagationResult:
    """``masks``: name -> uint8 (K, J, I); ``confidence``: name -> float32 (K,) in [0, 1] (1 on painted
    slices); ``ended``: name -> slices where a run stopped because the muscle ended."""

    masks: Dict[str, np.ndarray]
    confidence: Dict[str, np.ndarray]
    seconds: float = 0.0
    device: str = "cpu"
    ended: Dict[str, List[int]] = field(default_factory=dict)

    def least_confident(self, name: str, count: int = 5) -> List[int]:
        """The ``count`` slices of ``name`` with the lowest confidence, lowest first."""
        conf = self.confidence[name]
        order = np.argsort(conf, kind="stable")
        return [int(k) for k in order[:count]]


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
        from .model.checkpoint import load_checkpoint

        model, _, _ = load_checkpoint(model, map_location="cpu")
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
    step: int = 0              # windows done
    quiet: int = 0             # consecutive new slices with no foreground
    done: bool = False
    prev: object = None        # torch (w, S, S): the mask input of the next window

    @property
    def n_steps(self) -> int:
        return len(self.order) - self.n_seeds


def _make_runs(name: str, seeds: SeedSet, K: int, between_only: bool) -> List[_Run]:
    groups = seed_groups(seeds.slices)
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


def propagate(volume: np.ndarray, seeds: Union[SeedSet, Mapping[str, SeedSet]], model=None, *,
              device: str = "auto", stop_at_end: bool = True, between_seeds_only: bool = False,
              patience: int = 5, min_area_fraction: float = 0.02, batch_size: int = 32,
              progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> PropagationResult:
    """Propagate the painted slices of every segment through ``volume`` (K, J, I).

    ``seeds``: one :class:`SeedSet` (returned under the name ``"segment"``) or ``{name: SeedSet}``.
    ``model``: ``None`` for the shipped network, a checkpoint path, or a loaded ``IFSSNet``.
    ``device``: ``auto`` | ``cpu`` | ``cuda``. A CUDA out-of-memory error falls back to the CPU with a warning.
    ``stop_at_end``: end a run after ``patience`` new slices whose foreground is below
    ``min_area_fraction`` of the seeds' mean area. ``between_seeds_only``: do not go past the outermost
    seed groups. Returns :class:`PropagationResult`. Raises :class:`~ifssnet.errors.Cancelled` if
    ``cancel`` is set; nothing is returned or changed then.
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
    check_propagation_memory(volume.shape, seed_map, net, batch_size)
    try:
        result = _propagate_on(volume, seed_map, net, dev, stop_at_end, between_seeds_only, patience,
                               min_area_fraction, batch_size, progress, cancel)
    except torch.cuda.OutOfMemoryError:
        warnings.warn("The GPU ran out of memory; propagating on the CPU instead (slower).", RuntimeWarning)
        torch.cuda.empty_cache()
        dev = "cpu"
        result = _propagate_on(volume, seed_map, net.to("cpu"), dev, stop_at_end, between_seeds_only, patience,
                               min_area_fraction, batch_size, progress, cancel)
    result.seconds = time.perf_counter() - t0
    result.device = dev
    return result


def _check_seeds(volume: np.ndarray, seed_map: Mapping[str, SeedSet]) -> None:
    if not seed_map:
        raise SeedError("No segment to propagate.", "Select a segment and paint it on at least 3 slices.")
    for name, s in seed_map.items():
        if s.mask.shape != volume.shape:
            raise InputError(f"The seeds of '{name}' have shape {s.mask.shape}, the volume {volume.shape}.",
                             "Resample the segmentation onto the volume's grid first.")
        validate_seeds(s, name=name)


def _propagate_on(volume, seed_map, net, dev, stop_at_end, between_only, patience, min_area_fraction,
                  batch_size, progress, cancel) -> PropagationResult:
    import torch

    K, J, I = volume.shape
    w, S = _model_window_and_size(net)
    grid = InPlaneGrid((J, I), S)
    mean, std = intensity_stats(volume)

    # The volume on the working grid, normalised: (K, S, S) float32, built in chunks.
    work = normalized_work_volume(volume, grid, mean, std, progress=progress, cancel=cancel)
    chunk = 64

    runs: List[_Run] = []
    seed_work: Dict[str, Dict[int, torch.Tensor]] = {}
    min_area: Dict[str, float] = {}
    num: Dict[str, torch.Tensor] = {}
    num2: Dict[str, torch.Tensor] = {}
    den: Dict[str, torch.Tensor] = {}
    for name, s in seed_map.items():
        sl = np.asarray(s.slices)
        masks = grid.to_work(torch.from_numpy(s.mask[sl].astype(np.float32)))
        seed_work[name] = {int(k): masks[n] for n, k in enumerate(sl)}
        area = float(masks.sum(dim=(1, 2)).clamp(min=0).mean())
        min_area[name] = max(2.0, min_area_fraction * area)
        runs += _make_runs(name, s, K, between_only)
        num[name] = torch.zeros((K, S, S))
        num2[name] = torch.zeros((K, S, S))
        den[name] = torch.zeros(K)
    ended: Dict[str, List[int]] = {n: [] for n in seed_map}

    for r in runs:  # first mask input: the seed slices, the earliest repeated where there are fewer than w
        pos = np.clip(np.arange(r.n_seeds - w, r.n_seeds), 0, None)
        r.prev = torch.stack([seed_work[r.segment][int(r.order[p])] for p in pos])

    total = sum(r.n_steps for r in runs)
    done_steps = 0
    partial: Dict[int, Dict[int, List[torch.Tensor]]] = {id(r): {} for r in runs}
    state_of: Dict[int, object] = {}
    report(progress, "propagating", 0, total)
    with torch.inference_mode():
        while True:
            active = [r for r in runs if not r.done and r.step < r.n_steps]
            if not active:
                break
            check_cancel(cancel)
            for b0 in range(0, len(active), batch_size):
                batch = active[b0:b0 + batch_size]
                imgs, prevs, states = [], [], []
                for r in batch:
                    t = r.n_seeds - w + 1 + r.step              # first position of the image window
                    pos = np.clip(np.arange(t, t + w), 0, len(r.order) - 1)
                    imgs.append(work[torch.as_tensor(r.order[pos])])
                    prevs.append(r.prev)
                    states.append(state_of.get(id(r)))
                img = torch.stack(imgs)[:, None].to(dev)
                prev = torch.stack(prevs)[:, None].to(dev)
                state = _stack_states(states, dev)
                logits, new_state = net(img, prev, state)
                prob = torch.softmax(logits.float(), dim=1)[:, 1].cpu()   # (B, w, S, S)
                for bi, r in enumerate(batch):
                    state_of[id(r)] = _index_state(new_state, bi)
                    _advance(r, prob[bi], w, seed_work[r.segment], partial[id(r)], num[r.segment],
                             num2[r.segment], den[r.segment], min_area[r.segment], stop_at_end, patience,
                             ended[r.segment])
                done_steps += len(batch)
            report(progress, "propagating", done_steps, total)
        for r in runs:
            _flush(r, partial[id(r)], num[r.segment], num2[r.segment], den[r.segment], upto=None)

    masks, confidence = {}, {}
    names = list(seed_map)
    for si, name in enumerate(names):
        check_cancel(cancel)
        s = seed_map[name]
        d = den[name].clamp(min=1e-12)[:, None, None]
        mean_p = num[name] / d
        var_p = (num2[name] / d - mean_p ** 2).clamp(min=0)
        mean_p[den[name] == 0] = 0.0
        conf = slice_confidence(mean_p, var_p)
        out = np.zeros((K, J, I), dtype=np.uint8)
        for k0 in range(0, K, chunk):
            out[k0:k0 + chunk] = (grid.to_volume(mean_p[k0:k0 + chunk]) > 0.5).numpy()
            report(progress, "writing result", si * K + min(k0 + chunk, K), len(names) * K)
        sl = np.asarray(s.slices)
        out[sl] = (s.mask[sl] > 0)
        conf[sl] = 1.0
        masks[name] = out
        confidence[name] = conf
    return PropagationResult(masks, confidence, ended=ended)


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


def _advance(r: _Run, prob, w, seed_masks, partial, num, num2, den, min_area, stop_at_end, patience, ended):
    """Record one window's probabilities ``prob`` (w, S, S) for run ``r`` and prepare its next input."""
    t = r.n_seeds - w + 1 + r.step
    nxt = prob.clone()
    for j in range(w):
        p = t + j
        if p < 0 or p >= len(r.order):
            continue
        k = int(r.order[p])
        if p < r.n_seeds:                      # a painted slice: re-anchor
            nxt[j] = seed_masks[k]
            continue
        partial.setdefault(p, []).append(prob[j])
    r.prev = nxt
    newest = t + w - 1
    r.step += 1
    if stop_at_end and newest >= r.n_seeds:
        area = float((prob[w - 1] > 0.5).sum())
        r.quiet = r.quiet + 1 if area < min_area else 0
        if r.quiet >= patience:
            r.done = True
            ended.append(int(r.order[newest]))
            # The quiet tail is background: drop what was collected for it.
            for p in list(partial):
                if p > newest - patience:
                    del partial[p]
            _flush(r, partial, num, num2, den, upto=None)
            return
    _flush(r, partial, num, num2, den, upto=t)   # positions before t get no more windows


def _flush(r: _Run, partial, num, num2, den, upto) -> None:
    for p in sorted(list(partial)):
        if upto is not None and p >= upto:
            break
        probs = partial.pop(p)
        k = int(r.order[p])
        mean = torch_mean(probs)
        wgt = 1.0 / (1.0 + abs(k - r.weight_origin))
        num[k] += wgt * mean
        num2[k] += wgt * mean * mean
        den[k] += wgt


def torch_mean(tensors):
    import torch

    return torch.stack(tensors).mean(dim=0)


def slice_confidence(mean_p, var_p, band: int = 2) -> np.ndarray:
    """Per-slice confidence in [0, 1] from blended probabilities ``mean_p`` (K, S, S) and the variance
    between runs ``var_p`` (K, S, S).

    In a band of ``band`` pixels around the predicted boundary: 1 - mean binary entropy (bits) of
    ``mean_p``, times 1 - mean of 4 x ``var_p`` (runs that disagree). A slice with no foreground and
    no probability above 0.1 scores 1.
    """
    import torch
    import torch.nn.functional as F

    fg = (mean_p > 0.5).float()[:, None]
    k = 2 * band + 1
    dil = F.max_pool2d(fg, k, 1, band)
    ero = -F.max_pool2d(-fg, k, 1, band)
    ring = (dil - ero)[:, 0] > 0
    ring = ring | ((fg[:, 0] == 0) & (mean_p > 0.1))
    p = mean_p.clamp(1e-6, 1 - 1e-6)
    ent = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    n = ring.sum(dim=(1, 2)).clamp(min=1)
    mean_ent = (ent * ring).sum(dim=(1, 2)) / n
    mean_var = (4 * var_p * ring).sum(dim=(1, 2)) / n
    conf = (1 - mean_ent) * (1 - mean_var.clamp(0, 1))
    conf[ring.sum(dim=(1, 2)) == 0] = 1.0
    return conf.clamp(0, 1).numpy().astype(np.float32)
