"""Per-slice confidence of a propagated mask, and where a clinician should look or paint next.

``slice_confidence`` turns propagation's blended probabilities into a score per slice in [0, 1]: the
entropy near the predicted boundary, the disagreement between runs and, on slices with foreground, the
distance to the nearest painted slice (``distance_confidence``), which is what tells the slices a network
gets wrong on the validation phantoms (``docs/confidence.md``). ``least_confident_slices`` lists the
places to look at, ``next_slice_to_paint`` the one slice to paint next. Only numpy at import (torch
inside ``slice_confidence``), so Slicer's panel can use the last two without loading torch.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

#: (a, b) of the distance term ``sigmoid(a - b * d / n)`` of :func:`distance_confidence`: a logistic fit
#: of "slice Dice >= 0.5" on the shipped weights' propagations of validation phantoms 500-505
#: (``3-seeds``; ``python benchmarks/confidence_vs_error.py .data/val/s50{0,1,2,3,4,5} --fit``).
DISTANCE_LOGIT = (3.5, 11.4)


def painted_extent(present, painted: Sequence[int]):
    """``(covered, marks)``: ``covered`` (K,) bool, the slices of ``present`` (K,) bool or painted;
    ``marks``, the painted slices within the volume, sorted."""
    covered = np.asarray(present, bool).copy()
    marks = sorted(set(int(k) for k in painted if 0 <= int(k) < covered.shape[0]))
    covered[marks] = True
    return covered, marks


def distance_confidence(present, painted: Sequence[int]) -> np.ndarray:
    """(K,) float32 in (0, 1): ``sigmoid(a - b * d / n)`` (:data:`DISTANCE_LOGIT`), where ``d`` is the
    number of slices to the nearest painted slice and ``n`` the number of slices the segment covers
    (``present`` (K,) bool, predicted foreground, or painted: :func:`painted_extent`). Dimensionless,
    so it carries over to other slice spacings and sweep lengths.

    Why: each window is fed the previous prediction, so errors add up with the distance from what the
    clinician painted, and a mask that has drifted onto another structure, or runs on past the
    muscle's end, is as sharp as a right one. On the validation phantoms the boundary entropy ranked
    the wrong slices below chance (AUROC 0.35-0.37) and the distance ranked them well (0.89-0.93;
    ``docs/confidence.md``).
    """
    covered, marks = painted_extent(present, painted)
    if not marks:
        return np.ones(covered.shape[0], np.float32)
    d = np.abs(np.arange(covered.shape[0])[:, None] - np.asarray(marks)[None, :]).min(axis=1)
    from scipy.special import expit  # the logistic without exp's overflow where a collapsed mask makes d / n large

    a, b = DISTANCE_LOGIT
    return expit(a - b * d / int(covered.sum())).astype(np.float32)


def least_confident_slices(confidence, count: int = 5, exclude: Sequence[int] = (),
                           min_gap: Optional[int] = None) -> List[int]:
    """The ``count`` slices of lowest ``confidence`` (K,), lowest first, at least ``min_gap`` slices
    apart (default K // 50, at least 1), ``exclude`` (the painted slices) left out.

    Neighbouring slices have nearly the same confidence, so without the gap the list would name one
    place five times; with it, it names the five places a clinician should look at.
    """
    conf = np.asarray(confidence)
    gap = max(1, len(conf) // 50) if min_gap is None else max(1, int(min_gap))
    skip = set(int(k) for k in exclude)
    chosen: List[int] = []
    for k in np.argsort(conf, kind="stable"):
        k = int(k)
        if k in skip or any(abs(k - c) < gap for c in chosen):
            continue
        chosen.append(k)
        if len(chosen) == count:
            break
    return chosen


def next_slice_to_paint(present, painted: Sequence[int]) -> Optional[int]:
    """Where one more painted slice should help most: the middle of the longest stretch of the segment
    that no painted slice anchors. ``present`` (K,) bool: slices with foreground in the result.

    The stretches run from each end of the segment's extent (``present`` or painted) to the nearest
    painted slice, and between consecutive painted slices. Errors add up with the distance from a
    painted slice, so a stretch between two painted slices counts half its length (runs come in from
    both sides). None where no stretch is 2 slices or longer.

    Measured on held-out phantoms 1000-1004 from ``3-seeds`` (``benchmarks/paint_next.py``;
    ``docs/confidence.md``): one slice painted here per muscle raised the mean Dice from 0.719 to
    0.742 and cut the volume error from 31.5 % to 22.9 %. One painted at the least confident slice
    gave 0.724 / 32.0 %: that slice is mostly the far end of a leak, past the muscle's end.
    """
    covered, marks = painted_extent(present, painted)
    if not marks:
        return None
    ext = np.flatnonzero(covered)
    lo, hi = int(ext[0]), int(ext[-1])
    # (effective length, middle slice) of each unanchored stretch
    stretches = [(marks[0] - lo, (lo + marks[0] - 1) // 2), (hi - marks[-1], (marks[-1] + 1 + hi) // 2)]
    stretches += [((b - a - 1) / 2, (a + b) // 2) for a, b in zip(marks[:-1], marks[1:])]
    length, middle = max(stretches, key=lambda t: t[0])
    return int(middle) if length >= 2 else None


def between_painted_muscle(n: int, painted: Sequence[int], muscle: Sequence[int]) -> np.ndarray:
    """(n,) bool: the slices between two consecutive ``painted`` slices that both hold the muscle
    (``muscle``, a subset of ``painted``). A muscle's slices along a sweep are one run, so it is there
    on each of them; a painted slice with no muscle ("no muscle here") between two breaks the span."""
    inside = np.zeros(int(n), bool)
    held = {int(k) for k in muscle}
    marks = sorted({int(k) for k in painted if 0 <= int(k) < n})
    for a, b in zip(marks[:-1], marks[1:]):
        if a in held and b in held:
            inside[a:b + 1] = True
    return inside


def slice_confidence(mean_p, var_p, band: int = 2, painted: Sequence[int] = (),
                     muscle: Sequence[int] = ()) -> np.ndarray:
    """Per-slice confidence (K,) in [0, 1] from blended probabilities ``mean_p`` (K, S, S) and the
    variance between runs ``var_p`` (K, S, S).

    In a band of ``band`` pixels around the predicted boundary: 1 - mean binary entropy (bits) of
    ``mean_p``, times 1 - mean of 4 x ``var_p`` (runs that disagree). A slice with no foreground and
    no probability above 0.1 scores 1. With ``painted`` (slice indices), slices with foreground are
    also multiplied by :func:`distance_confidence`, and so are those between two painted slices that
    hold the muscle (``muscle``, :func:`between_painted_muscle`): the muscle is there, so an empty
    prediction on them is wrong.
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
    conf = conf.clamp(0, 1).numpy().astype(np.float32)
    if len(painted):
        present = fg[:, 0].flatten(1).any(dim=1).numpy() | between_painted_muscle(len(conf), painted, muscle)
        covered, _ = painted_extent(present, painted)
        conf[covered] *= distance_confidence(covered, painted)[covered]
    return conf
