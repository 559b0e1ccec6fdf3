"""The expected wall time of a propagation, shown by the Slicer effect before a run.

``expected_seconds(shape, ...)`` times one network step and one window's image encoding on this machine
(cached per network, device, batch and preset) and scales them by the windows a propagation of that
shape would run, plus the resampling in and out per voxel. An upper bound: it assumes every run goes
to the volume's end.
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from .preprocess import InPlaneGrid
from .network_runner import ENCODE_BATCH, ENCODE_BATCH_GPU, autocast, has_feature_api, prepare_device
from .propagate import (_model_window_and_size, default_model_path, frames_for, load_model, resolve_device,
                        resolve_preset)

#: network -> {(device, batch, GPU autocast): calibration}. Weakly keyed on the network itself: keyed on
#: ``id(net)``, a network loaded later at a freed address would get an older network's timings.
_CALIBRATION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _calibrate(net, dev: str, batch: int, settings: dict) -> dict:
    """Seconds of one sequential step (batch ``batch``), of encoding one window, and per voxel of the
    input/output resampling, measured once per (network, device, batch, GPU autocast) on this machine."""
    import torch

    w, S = _model_window_and_size(net)
    key = (str(dev), int(batch), settings.get("gpu_autocast") if str(dev).startswith("cuda") else None)
    cached = _CALIBRATION.setdefault(net, {})
    if key in cached:
        return cached[key]
    prepare_device(net, dev)

    def timed(fn, reps=3):
        """Minimum over ``reps`` timed calls after one warm-up (allocators, kernel selection): the
        least disturbed figure on a shared machine."""
        fn()
        best = float("inf")
        for _ in range(reps):
            if str(dev).startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if str(dev).startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return best

    amp = settings.get("gpu_autocast")
    x = torch.rand(batch, 1, w, S, S, device=dev)
    with torch.inference_mode():
        if has_feature_api(net):
            nb = ENCODE_BATCH_GPU if str(dev).startswith("cuda") else ENCODE_BATCH
            xe = torch.rand(nb, 1, w, S, S, device=dev)
            with autocast(dev, amp):
                enc = timed(lambda: net.encode_image(xe)) / nb
                feats = net.encode_image(x)
                step = timed(lambda: net.forward_from_features(feats, x, None, 0))
        else:
            enc = 0.0
            step = timed(lambda: net(x, x))
    # resampling in and out: 4 slices of 4S x 4S -> S x S and back, per voxel
    sl = torch.rand(4, 4 * S, 4 * S)
    grid = InPlaneGrid((4 * S, 4 * S), S)
    vin = timed(lambda: grid.to_work(sl), reps=2) / sl.numel()
    small = torch.rand(4, S, S)
    vout = timed(lambda: grid.to_volume(small) > 0.5, reps=2) / sl.numel()
    cal = {"step_s": step, "encode_window_s": enc, "in_voxel_s": vin, "out_voxel_s": vout}
    cached[key] = cal
    return cal


#: Networks loaded by :func:`expected_seconds` from a model file: (file, device) -> (its mtime and size, network). The
#: calibration is cached per network object (:data:`_CALIBRATION`, weak keys), so a file loaded anew
#: for every estimate would be timed anew every time (about 1.5 s on 2 cores); the Slicer panel asks for an
#: estimate at every change of model, device or preset. These copies are only timed, never propagated with.
_ESTIMATION_NETWORKS: Dict[Tuple[str, str], Tuple[tuple, Any]] = {}


def _estimation_network(model, dev: str):
    """:func:`load_model` for :func:`expected_seconds`: a model file (``None`` = the shipped one) is loaded
    once per file version and device; a loaded network is used as given."""
    path = default_model_path() if model is None else model
    if not isinstance(path, (str, Path)):
        return load_model(model, dev)
    try:
        stat = Path(path).stat()
    except OSError:
        return load_model(model, dev)      # a missing file: load_model says what to do
    key, version = (str(Path(path).resolve()), str(dev)), (stat.st_mtime_ns, stat.st_size)
    cached = _ESTIMATION_NETWORKS.get(key)
    if cached is None or cached[0] != version:   # new, or the file was rewritten (a fine-tuned model)
        cached = _ESTIMATION_NETWORKS[key] = (version, load_model(path, dev))
    return cached[1]


def expected_seconds(shape: Sequence[int], n_segments: int = 1, preset: str = "balanced", device: str = "auto",
                     model=None, *, seed_groups: int = 1, slice_spacing_mm: Optional[float] = None) -> float:
    """Estimated wall time (s) of :func:`propagate` on a volume of ``shape`` (K, J, I).

    Calibrated by a quick measured forward of the network on this machine (cached per network,
    device, batch and preset; the first call takes about two network steps). Assumes every run goes
    to the volume's end (``stop_at_end`` usually ends runs earlier, so the estimate is an upper
    bound) and ``seed_groups`` groups of painted slices per segment, two runs each, all in lock-step.
    ``model``: as for :func:`propagate` (None = the shipped network), or a loaded network.
    ``slice_spacing_mm``: as for :func:`propagate` (a finer sweep runs on fewer frames).
    """
    K, J, I = (int(v) for v in shape)
    dev = resolve_device(device)
    net = _estimation_network(model, dev)
    frames = len(frames_for(K, slice_spacing_mm, net, True, {}).frames)
    w, S = _model_window_and_size(net)
    settings = resolve_preset(preset, w)
    stride = settings["stride"]
    n_runs = 2 * max(1, int(seed_groups)) * max(1, int(n_segments))
    batch = min(32, n_runs)
    cal = _calibrate(net, dev, batch, settings)
    per_run_slices = max(1, frames // (2 * max(1, int(seed_groups))))
    steps = -(-per_run_slices // stride) * -(-n_runs // batch)
    windows = -(-per_run_slices // stride) * n_runs
    net_s = steps * cal["step_s"] + windows * cal["encode_window_s"]   # the image stream runs either way
    io_s = K * J * I * (cal["in_voxel_s"] + max(1, int(n_segments)) * cal["out_voxel_s"])
    return float(net_s + io_s)
