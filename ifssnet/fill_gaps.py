"""Few-shot labels between painted groups: Fill between slices where the groups are close (``--fill-gap N``).

With the paper's decremental schedule the first few-shot cases hold many groups of painted slices (70 %, 35 %,
17.5 %, ... of their slices over 40 cases), a few slices apart, and the last ones a single group. In few-shot mode
every slice between two groups is scored against the network's own previous prediction (sequential pseudo-label),
which a stable mask satisfies whether it fits the muscle or has grown past it (:mod:`ifssnet.cycle`). Where two
painted groups are only a few slices apart, the shape between them is known much better than that: Slicer's
Fill between slices (ITK's morphological contour interpolation, :mod:`ifssnet.baselines.fbs`) draws it from the
painted outlines alone. :func:`fill_gaps` makes those slices known, with the interpolated masks as their labels,
so the network is trained on them as on painted slices; gaps longer than ``max_gap`` slices keep the sequential
pseudo-labels. The painted share of the slices is unchanged (the interpolation reads nothing but the paint).

A gap is filled only between two groups whose every slice holds the segment: where a group has an empty slice
the segment ends (or starts) near it, and the interpolation cannot say where. This is an option where the paper is
silent (its prototype uses the network's own predictions between groups); the model card measures it.
"""
from __future__ import annotations

import numpy as np

from .dataset import Case
from .seeds import cut_seeds, seed_groups


def gap_slices(known: np.ndarray, mask: np.ndarray, max_gap: int) -> np.ndarray:
    """The slices (int array) in gaps of 1..``max_gap`` unknown slices between two groups of ``known``
    (bool (K,)) whose every slice holds ``mask`` (uint8 (K, S, S)) foreground."""
    present = mask.reshape(mask.shape[0], -1).any(axis=1)
    groups = seed_groups(np.flatnonzero(known).tolist())
    out = []
    for g1, g2 in zip(groups[:-1], groups[1:]):
        a, b = g1[-1], g2[0]
        if 1 <= b - a - 1 <= max_gap and present[list(g1)].all() and present[list(g2)].all():
            out.extend(range(a + 1, b))
    return np.asarray(out, dtype=np.int64)


def fill_gaps(case: Case, max_gap: int) -> Case:
    """``case`` with every gap of up to ``max_gap`` slices between two painted groups (see :func:`gap_slices`)
    filled by Slicer's Fill between slices and marked known (the filled slices of a segment are its ``known`` and
    not the input's; its ``painted`` slices stay the input's). Segments already known on every slice, and a ``max_gap`` below 1, leave the case as it is.
    Masks are the case's working grid, uint8 (K, S, S); the interpolation runs in voxels along axis 0."""
    from .baselines.fbs import fill_between_slices

    if max_gap < 1:
        return case
    added = {}
    for name, k in case.known.items():
        if k.all():
            continue
        m = case.masks[name]
        todo = gap_slices(k, m, max_gap)
        if not todo.size:
            continue
        seeds = cut_seeds(m, np.flatnonzero(k))
        interp = fill_between_slices(m, seeds, (1.0, 1.0, 1.0))
        m = m.copy()
        m[todo] = interp[todo]
        k = k.copy()
        k[todo] = True
        added[name] = (m, k)
    return case.with_labels(added)
