"""The slice spacing a network works at, and which frames of a finer sweep it sees.

A network learns how much a muscle changes from one frame of a sweep to the next at the slice
spacing of its training sweeps (``IFSSNetConfig.slice_spacing_mm``; the shipped weights: 1.108 mm).
On a sweep with finer frames (the paper's 0.277 mm), each window moves 4x less, the network's mask
has 4x as many windows to drift over, and the stop at a muscle's end (``patience`` quiet slices)
comes 4x sooner in millimetres. So propagation, and training from a network that has a spacing, keep
only the frames nearest to a regular grid at the network's spacing, as in-plane they resample to the
network's working size. They keep whole frames, never blends of neighbouring ones, so the speckle
is what the network learnt, and each painted slice replaces the kept frame nearest to it, so that a
painted mask always sits on its own image. A slice marked "no muscle here" is always a frame of its own: it
replaces the nearest one too, or, where painted slices hold that one, is kept beside it, so a run ends at the
mark and never at (or past) the paint. Propagation's probabilities go back to every frame by linear
interpolation along the sweep before the 0.5 threshold, and painted frames come out as painted.

A sweep that is coarser than the network's spacing is used as it is: interpolated frames would be
blends, which the network has not seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .seeds import seed_groups

#: A sweep is thinned only when its frames are finer than the network's spacing by more than this
#: share: within 10 % the network sees what it was trained on, and every frame is kept.
SPACING_TOLERANCE = 0.1


@dataclass(frozen=True)
class FrameSelection:
    """``frames``: int64 (K',) increasing indices of the kept frames among ``n_slices`` (K).
    ``spacing_mm``: mean distance between kept frames (mm), or None
    when the sweep's spacing is unknown."""

    frames: np.ndarray
    n_slices: int
    spacing_mm: Optional[float] = None

    @property
    def thinned(self) -> bool:
        """True when some frames are left out."""
        return len(self.frames) < self.n_slices

    @property
    def work_frames(self) -> Optional[np.ndarray]:
        """The kept frames when some are left out, else None (every slice): what
        :func:`ifssnet.preprocess.normalized_work_volume` takes as ``frames``."""
        return self.frames if self.thinned else None

    def nearest(self, k: int) -> int:
        """Index (into ``frames``) of the kept frame nearest to slice ``k`` of the sweep."""
        j = int(np.searchsorted(self.frames, k))
        if j == 0:
            return 0
        if j >= len(self.frames):
            return len(self.frames) - 1
        return j if self.frames[j] - k < k - self.frames[j - 1] else j - 1

    def anchors(self, painted: Sequence[int]) -> dict:
        """Painted slices (N,) -> ``{kept-frame index: n}``, the painted slice ``painted[n]`` that anchors that
        frame. Frames chosen with ``keep=painted`` (and ``marks``, ``groups``) are usually the painted slices
        themselves, and always the marked ones; a painted slice that is not kept (it lay next to another
        painted slice) gives itself to the nearest kept frame, unless that frame is annotated itself or the
        slice's group (its run of consecutive slices in ``painted``) has a kept frame already: then it stays
        with that one, and is not moved onto the frame of another segment's paint."""
        kept = {int(f): j for j, f in enumerate(self.frames)}
        out = {kept[int(k)]: n for n, k in enumerate(painted) if int(k) in kept}
        ks = [int(k) for k in painted]
        framed = {k for g in seed_groups(ks) if any(x in kept for x in g) for k in g}
        for n, k in enumerate(ks):
            if k not in framed:
                out.setdefault(self.nearest(k), n)
        return out

    def to_sweep(self, values, k0: int = 0, k1: Optional[int] = None):
        """``values`` (K', ...) on the kept frames -> (k1 - k0, ...) on slices ``k0..k1-1`` of the sweep,
        linear along the sweep between the two nearest kept frames. torch tensors and numpy arrays."""
        k1 = self.n_slices if k1 is None else k1
        if not self.thinned:
            return values[k0:k1]
        k = np.arange(k0, k1)
        j = np.clip(np.searchsorted(self.frames, k, side="right") - 1, 0, len(self.frames) - 2)
        lo, hi = self.frames[j], self.frames[j + 1]
        t = np.clip((k - lo) / (hi - lo), 0.0, 1.0)
        shape = (-1,) + (1,) * (values.ndim - 1)
        if isinstance(values, np.ndarray):
            t = t.reshape(shape)
            return (1 - t) * values[j] + t * values[j + 1]
        import torch

        tt = torch.as_tensor(t, dtype=values.dtype).reshape(shape)
        ji = torch.as_tensor(j)
        return (1 - tt) * values[ji] + tt * values[ji + 1]


def select_frames(n_slices: int, spacing_mm: Optional[float], network_mm: Optional[float],
                  keep: Sequence[int] = (), min_frames: int = 8, marks: Sequence[int] = (),
                  groups: Sequence[Sequence[int]] = ()) -> FrameSelection:
    """The frames of a sweep of ``n_slices`` frames ``spacing_mm`` apart that a network trained at
    ``network_mm`` should see: the frames nearest to ``round((K - 1) * spacing / network) + 1`` evenly
    spaced positions, when the sweep is finer than the network by more than :data:`SPACING_TOLERANCE`
    (and at least ``min_frames`` would be left); every frame otherwise, or when either spacing is
    unknown (None or <= 0). Each slice in ``keep`` (the painted ones) takes the place of the kept
    frame nearest to it; of several slices nearest to one frame, the middle one stays. Each slice in
    ``marks`` ("no muscle here", of any segment; in ``keep`` or not) is kept: it takes the place of the
    frame nearest to it where no painted slice took that frame, and is kept beside it otherwise (one
    frame more), so that neither a mark nor the paint next to it loses its frame to the other.
    ``groups``: the painted groups (consecutive painted slices of one segment each; taken as kept too); a
    group none of whose slices stayed a frame (another segment's paint took it) keeps its middle slice beside
    it, so every painted mask sits on its own image or next to one of its group's. Slice indices are in
    0..n_slices-1; others raise :class:`~ifssnet.errors.InputError`."""
    known = bool(spacing_mm and spacing_mm > 0)
    marked = {int(k) for k in marks}
    groups = [sorted({int(k) for k in g}) for g in groups if len(g)]
    annotated = {int(k) for k in keep} | marked | {k for g in groups for k in g}
    if annotated and (min(annotated) < 0 or max(annotated) >= n_slices):
        from .errors import InputError

        raise InputError(f"Annotated slices {sorted(k for k in annotated if not 0 <= k < n_slices)} fall outside "
                         f"the sweep's 0..{n_slices - 1}.", "Give slice indices along the sweep (axis 0).")
    finer = known and bool(network_mm and network_mm > 0) and spacing_mm < network_mm * (1 - SPACING_TOLERANCE)
    n = int(round((n_slices - 1) * spacing_mm / network_mm)) + 1 if finer else n_slices
    if n >= n_slices or n < min_frames:
        return FrameSelection(np.arange(n_slices, dtype=np.int64), n_slices, float(spacing_mm) if known else None)
    frames = np.unique(np.round(np.linspace(0, n_slices - 1, n)).astype(np.int64))
    grid = FrameSelection(frames.copy(), n_slices)
    claims: dict = {}
    for k in sorted(annotated - marked):
        claims.setdefault(grid.nearest(k), []).append(k)
    for j, ks in claims.items():
        frames[j] = ks[len(ks) // 2]
    beside = []
    for k in sorted(marked):
        j = grid.nearest(k)
        if j in claims:
            beside.append(k)        # painted slices (or another mark) hold that frame: the mark gets one of its own
        else:
            claims[j] = [k]
            frames[j] = k
    held = set(frames.tolist()) | set(beside)
    beside += [g[len(g) // 2] for g in groups if held.isdisjoint(g)]    # its frame went to another segment's paint
    # a frame is at most half a step from its place: the order holds; the slices kept beside slot in
    frames = np.unique(np.concatenate([frames, np.asarray(beside, dtype=np.int64)]))
    return FrameSelection(frames, n_slices, float((n_slices - 1) * spacing_mm / (len(frames) - 1)))
