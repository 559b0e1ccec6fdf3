"""Few-shot labels past a muscle's ends: the slices beyond a painted empty slice are empty (``--empty-past-ends``).

A muscle's slices along a sweep are one run: it starts on one slice and ends on another. So where a segment is
painted present on slice ``p`` and painted empty on a slice ``e`` beyond it (``e > p``, with no slice painted
present beyond ``e``), the muscle ends between them, and every slice from ``e`` to the end of the sweep is empty;
the same holds before the first slice painted present. :func:`empty_past_ends` makes those slices known, empty,
from the paint alone: the painted share of the slices is unchanged. Without it, few-shot mode scores those slices
against the network's own previous prediction (a sequential pseudo-label), which a mask that runs on past the
muscle's end satisfies; measured on the phantoms, few-shot networks ran on past the ends by 0.5 to 2.6 times the
muscle's volume (model card).

The rule assumes one run of slices per segment, as for the lower-limb muscles; a segment with slices painted
present on both sides of a painted empty one has no end between them (two pieces), and nothing is added there.
This is an option where the paper is silent (its prototype uses the network's own predictions past the last
painted slice); the model card measures it.
"""
from __future__ import annotations

import numpy as np

from .dataset import Case


def empty_slices_past_ends(known: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """bool (K,): the slices that lie past a painted empty slice beyond the segment's painted extent, at either
    end, painted ones included. ``known``: bool (K,), the painted slices; ``mask``: uint8 (K, S, S).
    All False where no slice is painted present, or none is painted empty beyond them."""
    known = np.asarray(known, bool)
    present = np.asarray(mask).reshape(known.size, -1).any(axis=1) & known
    out = np.zeros(known.size, bool)
    if not present.any():
        return out
    first, last = np.flatnonzero(present)[[0, -1]]
    empty = np.flatnonzero(known & ~present)
    after, before = empty[empty > last], empty[empty < first]
    if after.size:
        out[after[0]:] = True
    if before.size:
        out[:before[-1] + 1] = True
    return out


def empty_past_ends(case: Case) -> Case:
    """``case`` with the slices past each segment's ends (:func:`empty_slices_past_ends`) known and empty.
    A segment known on every slice is left as it is, and a case without such slices is returned itself; the
    ``painted`` slices stay the input's.
    Masks are the case's working grid, uint8 (K, S, S), along axis 0."""
    added = {}
    for name, k in case.known.items():
        if k.all():
            continue
        past = empty_slices_past_ends(case.painted_slices(name), case.masks[name]) & ~k
        if past.any():
            m = case.masks[name].copy()
            m[past] = 0
            added[name] = (m, k | past)
    return case.with_labels(added)
