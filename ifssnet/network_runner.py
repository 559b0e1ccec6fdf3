"""How propagation runs the network over many runs' windows at once.

On a GPU (and on the CPU with :data:`PRE_ENCODE_ON_CPU`) the image stream, which has no recurrence, is
encoded ahead of the sequential steps in large batches (:class:`FeatureCache`); only the mask stream,
fusion, Bi-ConvLSTM and decoder then run per step. The ConvLSTM states of a batch of runs are stacked
and split per run (:func:`stack_states`, :func:`index_state`); CUDA runs under autocast with the
preset's dtype (:func:`autocast`). Numbers in ``docs/performance.md``.
"""
from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Dict, Optional, Sequence

if TYPE_CHECKING:
    from .propagate_runs import Run

#: Upper bound on pre-encoded image features held at once (bytes); see :class:`FeatureCache`.
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


def uses_pre_encoding(settings: dict, net, dev: str) -> bool:
    return (bool(settings["pre_encode"]) and has_feature_api(net)
            and (str(dev).startswith("cuda") or PRE_ENCODE_ON_CPU))


def has_feature_api(net) -> bool:
    return callable(getattr(net, "encode_image", None)) and callable(getattr(net, "forward_from_features", None))


def accepts_carry_index(net) -> bool:
    import inspect

    try:
        return "carry_index" in inspect.signature(net.forward).parameters
    except (TypeError, ValueError):
        return False


def feature_bytes_per_window(net) -> int:
    """float32 bytes of one window's image-stream features (5 skips + bottleneck)."""
    cfg = net.config
    chans = cfg.channels()
    s = int(cfg.size)
    per_slice = sum(c * (s >> i) ** 2 for i, c in enumerate(chans)) + chans[-1] * (s >> 5) ** 2
    return 4 * int(cfg.window) * per_slice


class FeatureCache:
    """Image-stream features of the next windows of the active runs, encoded ahead in large batches.

    ``get(batch)`` returns :class:`~ifssnet.model.encoder.StreamFeatures` for the current step of each
    run in ``batch``. When a run's current window is not held, the next windows of all ``active``
    runs are encoded (enough steps ahead for one ``encode_batch``, within ``budget`` bytes); the old
    chunk is dropped first, so at most one chunk is alive.
    """

    def __init__(self, net, window_slices, dev, budget: Optional[int] = None, encode_batch: Optional[int] = None,
                 amp_dtype=None):
        self.net, self.window_slices, self.dev = net, window_slices, dev
        self.per_window = feature_bytes_per_window(net)
        gpu = str(dev).startswith("cuda")
        self.budget = PRE_ENCODE_BYTES if budget is None else budget
        self.encode_batch = (ENCODE_BATCH_GPU if gpu else ENCODE_BATCH) if encode_batch is None else encode_batch
        self.amp_dtype = amp_dtype
        self.index: Dict[tuple, int] = {}
        self.feats = None
        self.seconds = 0.0

    def _fill(self, active: Sequence["Run"]) -> None:
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
            with autocast(self.dev, self.amp_dtype):
                parts.append(self.net.encode_image(img))
        self.feats = StreamFeatures.cat(parts)
        self.index = {k: i for i, k in enumerate(keys)}
        self.seconds += time.perf_counter() - t0

    def get(self, batch: Sequence["Run"], active: Sequence["Run"]):
        import torch

        if any((id(r), r.step) not in self.index for r in batch):
            self._fill(active)
        idx = [self.index[(id(r), r.step)] for r in batch]
        f, d = self.feats, self.feats.depth
        if idx == list(range(idx[0], idx[0] + len(idx))):
            return f.select(idx[0], idx[0] + len(idx))
        rows = torch.as_tensor([i * d + j for i in idx for j in range(d)], device=f.bottleneck.device)
        return f.rows(rows, len(idx))


def autocast(dev: str, dtype_name):
    """Autocast on CUDA with ``dtype_name`` ("bfloat16"/"float16"); a no-op context elsewhere."""
    import contextlib

    import torch

    if not dtype_name or not str(dev).startswith("cuda"):
        return contextlib.nullcontext()
    dtype = getattr(torch, dtype_name)
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


def prepare_device(net, dev: str) -> None:
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


def stack_states(states: Sequence, dev):
    """One batched ConvLSTM state from the runs' own: each (h, c) of (C, s, s) -> (B, C, s, s) on ``dev``;
    None when no run has one yet (their first window)."""
    import torch

    if all(s is None for s in states):
        return None
    if any(s is None for s in states):
        raise RuntimeError("internal: runs in one batch must all have a state or none")
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(states).to(dev)
    return type(first)(stack_states([s[i] for s in states], dev) for i in range(len(first)))


def index_state(state, i):
    """Run ``i``'s part of a batched ConvLSTM state: (B, C, s, s) -> (C, s, s) per tensor; None stays None."""
    import torch

    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[i]
    return type(state)(index_state(s, i) for s in state)
