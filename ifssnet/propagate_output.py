"""Propagation's output: working-grid probabilities to masks on the volume's grid (IFSS-Net and PG-Net).

Probabilities (K', S, S) on the frames the network ran on go back to every slice of the sweep and to the
volume's (J, I) grid by bilinear resampling, and are thresholded at 0.5; painted slices come out as painted.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from .exclusive import compete, nearer_painted, yield_to_painted
from .preprocess import InPlaneGrid
from .progress import CancelLike, ProgressFn, check_cancel, report
from .seeds import SeedSet
from .slice_spacing import FrameSelection


def finite_logits(logits):
    """``logits`` (a tensor) as float32 with NaN made 0, an unsure 0.5 after a sigmoid or a 2-channel softmax, and
    +-inf the largest finite values (float16 autocast can overflow: softmax([0, inf]) is NaN, not 1). Every
    network's inference takes its probabilities from these (IFSS-Net, PG-Net, 3-D U-Net): a NaN fed back as the
    next mask input made the next output all NaN (PG-Net), and a NaN Dice is argmax's largest (U-Net's channel)."""
    return logits.float().nan_to_num(nan=0.0)


def masks_from_probabilities(probs: Dict[str, Any], seed_map: Mapping[str, SeedSet], grid: InPlaneGrid,
                             frames: FrameSelection, shape_kji, *, exclusive: bool, sparse: bool = True,
                             chunk: int = 64, progress: Optional[ProgressFn] = None,
                             cancel: CancelLike = None) -> Dict[str, np.ndarray]:
    """Working-grid probabilities -> masks on the volume, for IFSS-Net and PG-Net alike.

    ``probs``: name -> float tensor (K', S, S) on the kept ``frames``; emptied as it goes (memory).
    With ``exclusive`` a voxel two segments claim goes first to the one painted nearer to its slice
    (:func:`ifssnet.exclusive.compete`). Each segment then goes back to every slice of the sweep and the
    volume's grid, ``chunk`` slices at a time, and is thresholded at 0.5 (``sparse``: computed only where
    it can be 1, :func:`threshold_to_volume`). Painted slices come out as painted, and with ``exclusive``
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
                threshold_to_volume(grid, p, out[k0:k0 + chunk])
            else:
                out[k0:k0 + chunk] = (grid.to_volume(p) > 0.5).numpy()
            report(progress, "writing result", si * K + min(k0 + chunk, K), len(names) * K)
        sl = np.asarray(seed_map[name].slices)
        out[sl] = (seed_map[name].mask[sl] > 0)
        masks[name] = out
    if exclusive:
        yield_to_painted(masks, seed_map)
    return masks


def seeds_on_frames(slices: np.ndarray, masks, frames: FrameSelection) -> Dict[int, Any]:
    """Painted masks on the working grid (N, S, S) of painted ``slices`` (N,) -> {kept frame: mask}.
    The frames were chosen with the painted slices kept (``select_frames(keep=...)``), so a painted
    slice is usually a kept frame itself. One that is not (it lay next to another painted slice, maybe
    of another segment) gives its mask to the nearest kept frame, unless that frame has its own."""
    return {j: masks[n] for j, n in frames.anchors(slices).items()}


def threshold_to_volume(grid: InPlaneGrid, prob, out: np.ndarray, margin: int = 2) -> None:
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


