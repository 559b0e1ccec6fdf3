"""Seed annotations: the few painted slices that propagation starts from.

Masks are numpy arrays indexed (k, j, i), shape (K, J, I); the core propagates along axis 0, so
"slice" means an index along axis 0 unless an ``axis`` is given. A seed set knows *which* slices
were annotated: an annotated slice with no foreground means "no muscle here", which differs from an
unannotated slice ("unknown").

Protocols for cutting seeds out of a complete reference (benchmarks, the CLI ``ifssnet seeds``):

- ``"3-seeds"``: ``count`` consecutive slices centred on the largest cross-section
  (:func:`largest_slices`), the interactive use case.
- ``"paper"``: groups of ``count`` consecutive slices every ``every`` slices (the paper's few-shot
  protocol: 3 every 100). The groups are laid out over the segment's extent along axis 0 (first to
  last non-empty slice) as many as fit, and the pattern is **centred in the extent**, so the gaps
  left before the first and after the last group are equal (each under ``every / 2``, about
  ``every / 2`` on long muscles). Every group lies inside the extent, so no annotated slice is empty,
  and the tips of the muscle are not annotated, as with a clinician who annotates at regular
  intervals along the muscle.
- ``"3-seeds+ends"``: ``"3-seeds"`` plus the first slice past each end of the segment's extent,
  annotated empty ("no muscle here"), where that slice is inside the volume: a clinician who paints
  three slices and marks where the muscle ends (:func:`end_slices`). Propagation does not run past an
  annotated slice, so the mask cannot leak on past the muscle's ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, SeedError

__all__ = ["SeedSet", "seed_groups", "largest_slices", "protocol_slices", "cut_seeds", "find_axis",
           "annotated_slices", "slice_extent", "end_slices", "validate_seeds", "check_slice_count", "painted_count",
           "make_seed_segmentation", "PROTOCOLS", "PAINT_TODO"]

PROTOCOLS = ("3-seeds", "paper", "3-seeds+ends")
PAINT_TODO = "Paint the muscle on at least {n} slices (consecutive or far apart), then Propagate again."

#: In :func:`find_axis`: the runner-up axis may collect at most this share of the winner's votes,
AXIS_VOTE_RATIO = 0.5
#: and at most this share of the painted voxels may lie on strokes that cross the winner's slices.
AXIS_FOREIGN_SHARE = 0.01


def _as_mask3d(mask, what: str = "The mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"{what} is {mask.ndim}-D; seeds are 3-D masks (K, J, I).",
                         "Pass one binary mask per segment on the volume's grid.")
    return mask


def _nonempty_rows(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Indices along ``axis`` of the slices of ``mask`` that hold a non-zero voxel, ascending (int64)."""
    m = np.moveaxis(mask, axis, 0)
    return np.flatnonzero(m.reshape(m.shape[0], int(np.prod(m.shape[1:]))).any(axis=1))


SPARSE_FILL = 0.75
"""Below this share of painted slices between a segment's first and last, :func:`sparse_painted_slices` takes a
segment without a painted-slice tag for paint on some slices, not a complete annotation."""


def sparse_painted_slices(mask: np.ndarray) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """``(axis, slices)`` when ``mask`` (K, J, I) looks painted on some slices only, else None.

    A complete annotation of a muscle has paint on (nearly) every slice between its first and last along
    each axis. Paint on slices of one view leaves gaps along that axis alone. So the paint is taken as
    sparse when exactly one axis has paint on fewer than :data:`SPARSE_FILL` of the slices of its extent
    (and at least two painted slices). A complete annotation that misses a few slices stays complete; a
    single run of consecutive painted slices cannot be told from a short muscle and stays complete too.
    """
    lab = _as_mask3d(mask, "The segment")
    sparse = []
    for axis in range(3):
        rows = _nonempty_rows(lab, axis)
        if len(rows) >= 2 and len(rows) < SPARSE_FILL * (rows[-1] - rows[0] + 1):
            sparse.append((axis, tuple(int(r) for r in rows)))
    return sparse[0] if len(sparse) == 1 else None


# ---------------------------------------------------------------------------------- seed set
@dataclass(frozen=True, eq=False)
class SeedSet:
    """The target segment on its annotated slices.

    ``mask``: uint8 (K, J, I), 1 inside the segment on annotated slices, 0 everywhere else.
    ``slices``: the annotated slice indices along axis 0, sorted and unique. An annotated slice may
    be empty ("no muscle here"). Raises :class:`SeedError` if the mask has foreground on a slice
    that is not annotated, or a slice index falls outside 0..K-1.
    """

    mask: np.ndarray
    slices: Tuple[int, ...]

    def __post_init__(self) -> None:
        mask = _as_mask3d(self.mask, "The seed mask")
        if mask.dtype != np.uint8 or (mask.size and mask.max() > 1):
            mask = (mask != 0).astype(np.uint8)
        slices = tuple(sorted({int(s) for s in self.slices}))
        k = mask.shape[0]
        if slices and (slices[0] < 0 or slices[-1] >= k):
            raise SeedError(f"Annotated slices {[s for s in slices if not 0 <= s < k]} fall outside 0..{k - 1}.",
                            "Give slice indices along axis 0 of the volume.")
        off = np.setdiff1d(_nonempty_rows(mask), np.asarray(slices, dtype=np.int64))
        if off.size:
            listed = ", ".join(map(str, off[:10].tolist())) + (", ..." if off.size > 10 else "")
            raise SeedError(f"The seed mask has foreground on slices that are not annotated ({listed}).",
                            "Keep the seed mask on the annotated slices only (use ifssnet.seeds.cut_seeds).")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "slices", slices)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.mask.shape)  # type: ignore[return-value]

    @property
    def groups(self) -> List[Tuple[int, ...]]:
        """Runs of consecutive annotated slices (see :func:`seed_groups`)."""
        return seed_groups(self.slices)

    @property
    def empty_slices(self) -> Tuple[int, ...]:
        """Annotated slices with no foreground ("no muscle here")."""
        full = set(_nonempty_rows(self.mask).tolist())
        return tuple(s for s in self.slices if s not in full)

    def with_empty(self, slices: Iterable[int]) -> "SeedSet":
        """This seed set with ``slices`` (axis 0) also annotated, empty: "no muscle here", as a
        clinician marks where a muscle ends. Propagation does not run past an annotated slice, so the
        mask cannot leak on beyond it. Raises :class:`SeedError` for a slice outside the volume or one
        painted with foreground (erase it first: an empty mark would contradict the paint)."""
        extra = sorted({int(k) for k in slices})
        K = self.mask.shape[0]
        outside = [k for k in extra if not 0 <= k < K]
        if outside:
            raise SeedError(f"Slices {outside} fall outside the volume (0..{K - 1}).",
                            "Mark 'no muscle here' on slices inside the volume, along the painted axis.")
        painted = sorted(set(extra) & set(_nonempty_rows(self.mask).tolist()))
        if painted:
            raise SeedError(f"Slices {painted} are painted, so they cannot be marked 'no muscle here'.",
                            "Erase the muscle on those slices first, or mark other slices.")
        return SeedSet(self.mask, tuple(self.slices) + tuple(extra))


def seed_groups(slices: Iterable[int]) -> List[Tuple[int, ...]]:
    """Runs of consecutive slice indices: ``(5, 3, 4, 10, 12, 11, 40) -> [(3, 4, 5), (10, 11, 12), (40,)]``.

    Input in any order, duplicates ignored; output sorted.
    """
    s = sorted({int(x) for x in slices})
    groups: List[Tuple[int, ...]] = []
    start = 0
    for n in range(1, len(s) + 1):
        if n == len(s) or s[n] != s[n - 1] + 1:
            groups.append(tuple(s[start:n]))
            start = n
    return groups


# ----------------------------------------------------------------------------------- protocols
def _check_count(count: int) -> int:
    if int(count) != count or count < 1:
        raise InputError(f"count={count!r}: the number of consecutive slices per group must be 1 or more.",
                         "Use --count 3, as in the paper.")
    return int(count)


def _empty_segment(what: str = "The segment") -> SeedError:
    return SeedError(f"{what} is empty: there is nothing to cut seeds from.",
                     "Choose a segment that holds the muscle.")


def largest_slices(mask: np.ndarray, count: int = 3) -> Tuple[int, ...]:
    """The ``count`` consecutive slices (axis 0) centred on the largest cross-section.

    mask: (K, J, I), non-zero = inside. The largest cross-section is the slice with the most voxels
    (the first one on ties). The run starts ``(count - 1) // 2`` slices before it and is shifted to
    stay inside the muscle's first to last slice, so that every seed is painted muscle where the muscle
    spans ``count`` slices (a muscle largest at its first slice gave a seed on the empty slice before it),
    and inside 0..K-1 where it spans fewer (a volume with fewer than ``count`` slices gives all of them).
    Raises :class:`SeedError` if the mask is empty.
    """
    mask = _as_mask3d(mask)
    count = _check_count(count)
    k = mask.shape[0]
    areas = np.count_nonzero(mask.reshape(k, -1), axis=1)
    if k == 0 or not areas.any():
        raise _empty_segment()
    if k <= count:
        return tuple(range(k))
    present = np.flatnonzero(areas)
    first, last = int(present[0]), int(present[-1])
    if last - first + 1 < count:            # a muscle shorter than the run: the run covers it, inside the volume
        first, last = 0, k - 1
    start = int(np.argmax(areas)) - (count - 1) // 2
    start = min(max(start, first), last - count + 1)
    return tuple(range(start, start + count))


def protocol_slices(mask: np.ndarray, protocol: str, count: int = 3, every: int = 100) -> Tuple[int, ...]:
    """Annotated slices (axis 0) for a seeding protocol: ``"3-seeds"`` or ``"paper"`` (module docstring).

    mask: (K, J, I) complete reference of one segment. ``count``: consecutive slices per group;
    ``every``: distance in slices between the starts of two groups (``"paper"`` only, >= count).
    For ``"paper"``, when the extent is shorter than ``count`` slices, falls back to
    :func:`largest_slices`. Returns sorted slice indices. Raises :class:`SeedError` for an empty mask.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"Unknown seeding protocol '{protocol}'.", f"Use one of: {', '.join(PROTOCOLS)}.")
    mask = _as_mask3d(mask)
    count = _check_count(count)
    if protocol == "3-seeds":
        return largest_slices(mask, count)
    if protocol == "3-seeds+ends":
        return tuple(sorted(set(largest_slices(mask, count)) | set(end_slices(mask))))
    if int(every) != every or every < count:
        raise InputError(f"every={every!r} must be a whole number of slices, at least count={count}.",
                         "Use --every 100, as in the paper.")
    every = int(every)
    rows = _nonempty_rows(mask)
    if rows.size == 0:
        raise _empty_segment()
    first, last = int(rows[0]), int(rows[-1])
    length = last - first + 1
    if length < count:
        return largest_slices(mask, count)
    n_groups = (length - count) // every + 1
    span = (n_groups - 1) * every + count
    start = first + (length - span) // 2
    return tuple(start + g * every + c for g in range(n_groups) for c in range(count))


def slice_extent(mask: np.ndarray, axis: int = 0) -> Optional[Tuple[int, int]]:
    """(first, last) slice across ``axis`` where ``mask`` (3-D) has foreground, or None when it is empty:
    where a propagated mask starts and ends."""
    rows = _nonempty_rows(np.asarray(mask), axis)
    return (int(rows[0]), int(rows[-1])) if rows.size else None


def end_slices(mask: np.ndarray) -> Tuple[int, ...]:
    """The first slice (axis 0) past each end of ``mask``'s (K, J, I) extent, where it is inside the
    volume: 0, 1 or 2 slices on which the segment is empty. Raises :class:`SeedError` for an empty mask."""
    extent = slice_extent(_as_mask3d(mask))
    if extent is None:
        raise _empty_segment()
    K = mask.shape[0]
    return tuple(k for k in (extent[0] - 1, extent[1] + 1) if 0 <= k < K)


def cut_seeds(mask: np.ndarray, slices: Iterable[int]) -> SeedSet:
    """A :class:`SeedSet` holding ``mask`` (K, J, I) on ``slices`` (axis 0) and zero elsewhere (a copy)."""
    mask = _as_mask3d(mask)
    sl = sorted({int(s) for s in slices})
    k = mask.shape[0]
    bad = [s for s in sl if not 0 <= s < k]
    if bad:
        raise SeedError(f"Slices {bad} fall outside the volume (0..{k - 1}).", "Choose slices inside the volume.")
    out = np.zeros(mask.shape, dtype=np.uint8)
    if sl:
        out[sl] = mask[sl] != 0
    return SeedSet(out, tuple(sl))


# ------------------------------------------------------------------------ painted labelmaps
def _run_lengths(coords: np.ndarray, axis: int) -> np.ndarray:
    """For voxels at ``coords`` (N, 3), the length of the run of painted voxels through each one
    along ``axis`` (a line parallel to that axis). Returns int64 (N,), in the order of ``coords``."""
    others = [a for a in range(3) if a != axis]
    order = np.lexsort((coords[:, axis], coords[:, others[1]], coords[:, others[0]]))
    c = coords[order]
    brk = np.ones(len(c), dtype=bool)
    brk[1:] = ((c[1:, others[0]] != c[:-1, others[0]]) | (c[1:, others[1]] != c[:-1, others[1]])
               | (c[1:, axis] != c[:-1, axis] + 1))
    run_id = np.cumsum(brk) - 1
    lengths = np.bincount(run_id)[run_id]
    out = np.empty(len(c), dtype=np.int64)
    out[order] = lengths
    return out


def _longest_painted_group(index: np.ndarray, min_share: float = 0.1) -> int:
    """Longest run of consecutive slices (``index``: each painted voxel's slice index) whose painted
    area is at least ``min_share`` of the largest slice's: a thin stroke from another view crossing
    a few slices adds little area to them, so it does not lengthen the group it crosses."""
    slices, area = np.unique(index, return_counts=True)
    big = slices[area >= min_share * area.max()]
    breaks = np.flatnonzero(np.diff(big) != 1)
    lengths = np.diff(np.r_[-1, breaks, len(big) - 1])
    return int(lengths.max())


def find_axis(labelmap: np.ndarray) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) that the painted slices lie across.

    labelmap: (K, J, I), non-zero = painted; it should hold only the painted slices (seeds), not a
    complete segmentation. Each painted voxel votes for the axis along which its run of painted
    voxels is strictly shortest: a painted slice (or a few consecutive ones) is thin across its axis
    and wide along the two others. The axis with the most votes wins, if

    - the runner-up has at most ``AXIS_VOTE_RATIO`` of its votes (thin tips of a crescent painted on
      many consecutive slices vote for an in-plane axis: they are tolerated up to that share);
    - at most ``AXIS_FOREIGN_SHARE`` of the voxels lie on *foreign strokes*: voxels that vote for
      another axis and whose run across the winner's slices is longer than any painted group
      (a stroke painted in another view runs through many of the winner's slices; "any painted
      group" = the 99th percentile of the winner's voters' runs across its slices);
    - the winner has fewer non-empty slices than each other axis.

    Otherwise raises :class:`SeedError` (painted in two views, or no clear axis); also when nothing
    is painted.
    """
    lab = _as_mask3d(labelmap, "The painted segment")
    coords = np.argwhere(lab)
    if coords.size == 0:
        raise SeedError("Nothing is painted in this segment.", PAINT_TODO.format(n=3))
    runs = np.stack([_run_lengths(coords, a) for a in range(3)], axis=1)  # (N, 3)
    strict = (runs == runs.min(axis=1, keepdims=True)).sum(axis=1) == 1
    vote = np.where(strict, np.argmin(runs, axis=1), -1)
    votes = np.bincount(vote[strict], minlength=3)
    best = int(np.argmax(votes))
    runner_up = int(np.sort(votes)[-2])
    foreign = 0
    if votes[best]:
        # The 99th percentile, not the max: where a foreign stroke crosses a group, a few voxels of
        # the group see a long run across it.
        longest_group = min(float(np.percentile(runs[vote == best, best], 99)),
                            float(_longest_painted_group(coords[:, best])))
        foreign = int(np.count_nonzero((vote >= 0) & (vote != best) & (runs[:, best] > longest_group)))
    n_slices = [len(np.unique(coords[:, a])) for a in range(3)]
    if votes[best] == 0 or runner_up > AXIS_VOTE_RATIO * votes[best] \
            or foreign > AXIS_FOREIGN_SHARE * len(coords) \
            or any(n_slices[a] <= n_slices[best] for a in range(3) if a != best):
        names = ("k", "j", "i")
        raise SeedError("The painted strokes do not lie on slices of one view: they look painted in two views "
                        f"at once, or the axis is unclear (slices with paint along k/j/i: "
                        f"{n_slices[0]}/{n_slices[1]}/{n_slices[2]}; voxel votes {names[0]}/{names[1]}/{names[2]}: "
                        f"{votes[0]}/{votes[1]}/{votes[2]}).",
                        "Erase the strokes painted in the other view and paint only on slices of one view "
                        "(usually the axial, red one), then Propagate again.")
    return best


def annotated_slices(labelmap: np.ndarray, axis: int = 0) -> Tuple[int, ...]:
    """Indices along ``axis`` of the slices of ``labelmap`` (K, J, I) that hold painted voxels.

    A plain labelmap cannot tell an empty annotated slice from an unannotated one; that needs the
    segment's ``annotated`` record (:class:`ifssnet.io.AnnotatedSlices`).
    """
    lab = _as_mask3d(labelmap, "The painted segment")
    if axis not in (0, 1, 2):
        raise InputError(f"axis={axis!r}: an axis is 0 (k), 1 (j) or 2 (i).", "Pass 0, 1 or 2.")
    return tuple(int(s) for s in _nonempty_rows(lab, axis))


def validate_seeds(seeds: SeedSet, min_slices: int = 3, name: Optional[str] = None) -> SeedSet:
    """Check that ``seeds`` can start a propagation; return them unchanged.

    Raises :class:`SeedError` when fewer than ``min_slices`` annotated slices hold paint (consecutive or not; the
    slices marked "no muscle here" do not count: :func:`check_slice_count`).
    """
    if seeds.slices and not seeds.mask.any():
        what = f"'{name}'" if name else "The segment"
        raise SeedError(f"{what} is empty on every painted slice.", PAINT_TODO.format(n=min_slices))
    n = painted_count(seeds.mask, seeds.slices)
    check_slice_count(n, min_slices, name, marks=len(seeds.slices) - n)
    return seeds


def painted_count(mask: np.ndarray, slices: Sequence[int], axis: int = 0) -> int:
    """How many of the annotated ``slices`` across ``axis`` hold paint in ``mask``: the painted slices, without
    the slices marked "no muscle here" (annotated empty)."""
    moved = np.moveaxis(np.asarray(mask), axis, 0)
    return int(sum(bool(moved[int(s)].any()) for s in slices))


def check_slice_count(n: int, min_slices: int = 3, name: Optional[str] = None, marks: int = 0) -> None:
    """Raise :class:`SeedError` when ``n`` painted slices (consecutive or not; :func:`painted_count`) cannot start
    a propagation: fewer than ``min_slices``. Slices marked "no muscle here" (``marks``) do not count: they say where
    the muscle is not, and the network starts from the muscle's paint (DESIGN: "the user has painted at least 3
    slices of the selected segment"). ``name``: the segment's, for the message. The Slicer Logic calls it before
    the run starts; :func:`validate_seeds` (the core) calls it too."""
    what = f"'{name}'" if name else "The segment"
    todo = PAINT_TODO.format(n=min_slices)
    besides = (f" (besides {marks} slice{'s' if marks != 1 else ''} marked 'no muscle here', which do not count)"
               if marks else "")
    if n == 0:
        raise SeedError(f"{what} is not painted on any slice{besides}.", todo)
    if n < min_slices:
        raise SeedError(f"{what} is painted on {n} slice{'s' if n != 1 else ''} only{besides}; "
                        f"IFSS-Net needs at least {min_slices}.", todo)


# ----------------------------------------------------------------------------------------- CLI
def _slices_for(mask: np.ndarray, at: Optional[int], count: int, every: Optional[int]) -> Tuple[int, ...]:
    k = mask.shape[0]
    if at is None:
        if every is None:
            return largest_slices(mask, count)
        return protocol_slices(mask, "paper", count=count, every=every)
    at = int(at)
    if not 0 <= at <= k - count:
        raise InputError(f"--at {at}: a group of {count} slices starting there does not fit in 0..{k - 1}.",
                         f"Choose a first slice between 0 and {k - count}.")
    if every is None:
        return tuple(range(at, at + count))
    if int(every) != every or every < count:
        raise InputError(f"every={every!r} must be a whole number of slices, at least count={count}.",
                         "Use --every 100, as in the paper.")
    starts = range(at, k - count + 1, int(every))
    return tuple(s + c for s in starts for c in range(count))


def make_seed_segmentation(ref_seg, segment_names: Optional[Sequence[str]] = None, at: Optional[int] = None,
                           count: int = 3, every: Optional[int] = None, ends: bool = False, axis: int = 0):
    """Cut seed annotations out of a reference :class:`ifssnet.io.Segmentation`.

    For each named segment (default: all), the annotated slices across ``axis`` (array order: 0 = k, the default;
    1 = j; 2 = i, a sweep along i) keep the reference's labels and every other slice is empty; ``Segment.annotated``
    records ``AnnotatedSlices(axis, slices)`` so that an empty annotated slice stays distinguishable from an
    unannotated one on disk.
    Slices: ``at`` and ``every`` unset -> :func:`largest_slices`; only ``every`` -> the ``"paper"``
    protocol; only ``at`` -> ``count`` slices from ``at``; both -> groups of ``count`` starting at
    ``at``, ``at + every``, ... to the end of the volume (these may be empty: "no muscle here").
    ``ends``: also annotate, empty, the first slice past each end of the segment (:func:`end_slices`:
    where a clinician marks that the muscle has ended).
    Colours, Slicer fields (ID, terminology, label value ...) and geometry are the reference's. Raises
    :class:`InputError` for unknown names or a group outside the volume, :class:`SeedError` for an empty segment
    without ``at``.
    """
    from .io import AnnotatedSlices, Segment, Segmentation

    count = _check_count(count)
    names = list(segment_names) if segment_names else list(ref_seg.names)
    out = []
    for name in names:
        seg = ref_seg.get(name)
        mask = np.moveaxis(_as_mask3d(seg.mask, f"Segment '{name}'"), axis, 0)
        if at is None and not mask.any():
            raise SeedError(f"Segment '{name}' is empty in the reference: there is nothing to cut seeds from.",
                            "Choose a segment that holds the muscle, or give --at.")
        if count >= mask.shape[0]:
            raise InputError(f"--count {count}: a group of {count} slices in a volume of {mask.shape[0]} slices annotates "
                             "every slice, which leaves nothing to propagate or to score.",
                             "Give --count 3, as in the paper (at most the volume's slices less one).")
        seeds = cut_seeds(mask, _slices_for(mask, at, count, every))
        if ends:
            seeds = seeds.with_empty(end_slices(mask))
        out.append(Segment(name, np.ascontiguousarray(np.moveaxis(seeds.mask, 0, axis)), seg.color,
                           AnnotatedSlices(axis, seeds.slices), fields=dict(seg.fields)))
    return Segmentation(out, ref_seg.geometry)
