"""Training cases on the network's working grid, and the random runs of slices the trainer samples.

A case is a volume and an annotation (.seg.nrrd or labelmap). The annotation may be complete or
sparse: a segment whose ``annotated`` field lists slices is known only there (few-shot). Every
case is normalised per volume and resampled in-plane once (:mod:`ifssnet.preprocess`), then kept
in memory as float16 (image) and uint8 (masks): a 1400-slice case at 128 x 128 is about 70 MB.

Sampling follows the authors' prototype: a random run of consecutive slices of one segment, in a
random direction, that starts on a slice where the segment is known and present.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .io import Segmentation, read_segmentation, read_volume, require_annotation_overlaps
from .preprocess import InPlaneGrid, check_volume, normalized_work_volume


@dataclass
class Case:
    """One training case on the working grid.

    ``image``: float16 (K, S, S), z-scored. ``masks``: name -> uint8 (K, S, S) (1 inside).
    ``known``: name -> bool (K,), the slices whose annotation is real (all True when complete).
    ``slice_spacing_mm``: distance between its slices along the sweep (mm), None if unknown.
    ``painted``: name -> bool (K,), the slices of ``known`` that were painted, where labels were added to a
    sparse annotation (:func:`ifssnet.fill_gaps.fill_gaps`, :func:`ifssnet.past_ends.empty_past_ends`); None
    when every known slice was painted. ``--anchor painted`` re-anchors the mask input on these alone.
    ``held``: the names of every segment of the case's annotation, those not trained (``--segments``) included.
    """

    name: str
    image: np.ndarray
    masks: Dict[str, np.ndarray]
    known: Dict[str, np.ndarray]
    slice_spacing_mm: Optional[float] = None
    painted: Optional[Dict[str, np.ndarray]] = None
    held: Tuple[str, ...] = ()

    def painted_slices(self, name: str) -> np.ndarray:
        """bool (K,): the painted slices of segment ``name`` (its known ones unless labels were added)."""
        return self.known[name] if self.painted is None else self.painted[name]

    def known_present(self, name: str) -> np.ndarray:
        """bool (K,): the known slices of segment ``name`` that hold it, where a training run may start
        (:func:`sample_run`)."""
        mask = self.masks[name]
        return self.known[name] & mask.reshape(mask.shape[0], -1).any(axis=1)

    def with_labels(self, added: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> "Case":
        """This case with labels added to some segments: ``added`` maps a segment to its new ``(mask, known)``
        (uint8 (K, S, S), bool (K,)); the painted slices stay this case's. Nothing added: the case itself."""
        if not added:
            return self
        painted = {n: self.painted_slices(n) for n in self.known}
        masks = {**self.masks, **{n: m for n, (m, _) in added.items()}}
        known = {**self.known, **{n: k for n, (_, k) in added.items()}}
        return replace(self, masks=masks, known=known, painted=painted)

    @property
    def n_slices(self) -> int:
        return self.image.shape[0]


def load_case(volume_path, annotation_path, size: int, segments: Optional[Sequence[str]] = None,
              name: Optional[str] = None) -> Case:
    """Read a volume and its annotation and put both on the ``size`` x ``size`` working grid. ``name`` (for
    messages and the model file's data description): by default the volume's folder, as ``ifssnet phantom``
    lays a case out (``FOLDER/volume.nrrd``), else the folder and the file's stem (``FOLDER/leg2``), so that
    pairs kept in one folder are told apart."""
    img = read_volume(volume_path)
    check_volume(img.array)
    require_annotation_overlaps(annotation_path, img.geometry, img.array.shape, f"the volume '{volume_path}'")
    seg = read_segmentation(annotation_path, reference=img.geometry, reference_shape=img.array.shape)
    return case_from_arrays(img.array, seg, size, segments, name or case_name(volume_path),
                            slice_spacing_mm=img.geometry.spacing_kji[0])


def case_name(volume_path) -> str:
    """:func:`load_case`'s default name of the case whose volume is ``volume_path``."""
    path = Path(volume_path)
    stem = path.name.split(".")[0]
    return path.parent.name if stem == "volume" else f"{path.parent.name}/{stem}"


def case_names(volume_paths: Sequence) -> List[str]:
    """:func:`case_name` of each volume, made longer where two would be the same: the folders above are prefixed
    one at a time until the names differ (``a/leg`` and ``b/leg`` for ``a/leg/volume.nrrd`` and
    ``b/leg/volume.nrrd``, both 'leg'), so that messages and the model file's data description tell the cases
    apart. The same file given twice keeps one name."""
    import os

    paths = [Path(os.path.abspath(p)) for p in volume_paths]
    names = [case_name(p) for p in paths]
    above = [0] * len(paths)
    while True:
        files = {}                                   # name -> the files of that name
        for n, p in zip(names, paths):
            files.setdefault(n, set()).add(p)
        grow = [i for i, n in enumerate(names)
                if len(files[n]) > 1 and above[i] < len(paths[i].parent.parent.parts) - 1]
        if not grow:
            return names
        for i in grow:
            above[i] += 1
            parts = paths[i].parent.parent.parts[-above[i]:]
            names[i] = "/".join((*parts, case_name(paths[i])))


def case_from_arrays(volume: np.ndarray, seg: Segmentation, size: int,
                     segments: Optional[Sequence[str]] = None, name: str = "case",
                     slice_spacing_mm: Optional[float] = None) -> Case:
    """Like :func:`load_case`, from an array (K, J, I) and a :class:`~ifssnet.io.Segmentation` on its grid;
    ``slice_spacing_mm``: the spacing along axis 0 (mm), None if unknown. The volume is checked as
    :func:`load_case` checks a file's (:func:`ifssnet.preprocess.check_volume`: a volume one slice thick, as
    Slicer holds a 2-D image, is refused as a 2-D image)."""
    import torch

    check_volume(volume)
    grid = InPlaneGrid(volume.shape[1:], size)
    image = normalized_work_volume(volume, grid).to(torch.float16).numpy()
    masks, known = {}, {}
    names = [n for n in segments if n in seg.names] if segments else seg.names
    if segments and not names:
        raise InputError(f"The annotation of case '{name}' has none of the segments {', '.join(segments)} to train "
                         f"(it has: {', '.join(seg.names) or 'none'}).",
                         "Pair this volume with the segmentation that holds the muscles, name the segments as in "
                         "the other cases, or leave the case out.")
    if not names:
        raise InputError(f"The annotation of case '{name}' has no segments.", "Give a segmentation with at least one segment.")
    for n in names:
        s = seg.get(n)
        masks[n] = work_mask(s.mask, grid)
        K = volume.shape[0]
        slices = annotated_slices_of(s, K, f"case '{name}'")
        known[n] = np.ones(K, bool) if slices is None else np.isin(np.arange(K), slices)
    return Case(name, image, masks, known, slice_spacing_mm, held=tuple(seg.names))


def annotated_slices_of(segment, n_slices: int, where: str) -> Optional[Tuple[int, ...]]:
    """The slices (axis 0, sorted) on which ``segment`` (an :class:`~ifssnet.io.Segment`) is annotated: its
    ``IFSSNet.AnnotatedSlices`` tag, else the slices it is painted on where that paint lies on some slices of one
    view with gaps between (:func:`_untagged_annotation`); None for a complete annotation, known on every slice.
    The one rule by which training (:func:`case_from_arrays`) and validation (:class:`ifssnet.validation.Validator`) read
    a sparse annotation. ``n_slices``: the volume's K. Raises :class:`InputError` for slices annotated across
    another axis than the sweep's (axis 0) or outside the volume; ``where`` names the case in the message
    (``"case 'leg2'"``)."""
    annotated = segment.annotated if segment.annotated is not None else _untagged_annotation(segment.mask)
    if annotated is None:
        return None
    n = segment.name
    if annotated.axis != 0:
        raise InputError(
            f"Segment '{n}' of {where} is annotated across axis {annotated.axis}; training follows "
            "the sweep along the volume's k axis (axis 0).",
            "In Slicer, paint the training slices in the slice view whose slider steps through the "
            "volume's k index (the Data Probe shows it), and if the sweep runs along another axis, make it "
            "the k axis first (Orient Scalar Volume module); on the command line, re-cut the annotation "
            "with `ifssnet seeds`.")
    outside = [int(i) for i in annotated.slices if not 0 <= int(i) < n_slices]
    if outside:
        raise InputError(
            f"Segment '{n}' of {where} is marked painted on slices {outside[:5]}"
            f"{' ...' if len(outside) > 5 else ''}, outside the volume's {n_slices} slices.",
            "Check that this segmentation belongs to this volume (it may have been painted on a longer or "
            "uncropped one); re-cut its seeds with `ifssnet seeds`, or paint the slices again in Slicer.")
    return tuple(sorted({int(i) for i in annotated.slices}))


def require_segments(cases: Sequence[Case], segments: Optional[Sequence[str]]) -> List[str]:
    """``segments`` (``--segments``, the Training Logic's ``segmentNames``) chooses among each case's segments: a
    case trains the ones it has (:func:`case_from_arrays`; a sweep may miss a muscle that others hold), as every
    case trains its own without them. Refuse a named segment that no case has (a misspelt name), naming the
    segments the cases hold. Returns what to tell the user: one line per case that lacks some of them (a name
    spelt otherwise in one case would be left out of it), [] when none does or ``segments`` is None."""
    if not segments:
        return []
    unknown = [s for s in segments if not any(s in c.masks for c in cases)]
    if unknown:
        held = list(dict.fromkeys(n for c in cases for n in (*c.masks, *c.held)))
        raise InputError(f"No training case has a segment named {', '.join(map(repr, unknown))}.",
                         f"Check the names given to train (--segments); the cases hold: {', '.join(held) or 'none'}.")
    return [f"Note: case {c.name} has no segment {', '.join(s for s in segments if s not in c.masks)}: it trains "
            f"{', '.join(c.masks)} alone." for c in cases if any(s not in c.masks for s in segments)]


def work_mask(mask: np.ndarray, grid: InPlaneGrid, chunk: int = 64) -> np.ndarray:
    """A mask (K, J, I) on the working grid: uint8 (K, S, S), 1 where the resized mask is above 0.5. Converted
    ``chunk`` slices at a time, as :func:`ifssnet.preprocess.normalized_work_volume` does the image, so that its
    float32 copies stay (chunk, P, P): on a 1400 x 512 x 512 case the whole mask in float32 and padded took
    about 3 GB at once."""
    import torch

    out = np.empty((mask.shape[0], grid.size, grid.size), np.uint8)
    for k0 in range(0, mask.shape[0], chunk):
        part = torch.from_numpy(np.asarray(mask[k0:k0 + chunk], dtype=np.float32))
        out[k0:k0 + chunk] = (grid.to_work(part) > 0.5).numpy()
    return out


def _untagged_annotation(mask: np.ndarray):
    """The painted slices of a segment without a painted-slice tag, as an :class:`~ifssnet.io.AnnotatedSlices`,
    where the paint lies on slices of one view with gaps between (:func:`ifssnet.seeds.sparse_painted_slices`):
    a user who paints some slices in Slicer and trains on them without propagating first. None: a complete
    annotation, known on every slice. Without this, full mode took the gaps for "no muscle here" and few-shot mode
    had no unannotated slice to pseudo-label."""
    from .io import AnnotatedSlices
    from .seeds import sparse_painted_slices

    found = sparse_painted_slices(mask)
    return None if found is None else AnnotatedSlices(*found)


def require_painted(cases: Sequence[Case]) -> None:
    """Refuse a case in which a segment to train is empty: no voxel on any of its known (annotated) slices, on
    the working grid; for a complete segment (no painted-slice tag), no voxel at all. Training never draws a run
    from such a segment (a run starts on slices where it is present), so it would be left out without a word.
    :func:`ifssnet.train.train` checks it before anything else (a fine-tune's step-0 validation included), and
    ``ifssnet train`` once the cases are read, before it opens ``--log``.

    The rule is the same however the segments were chosen (``--segments``, the Training Logic's
    ``segmentNames``, or every segment of each annotation): every segment trained must be painted in every case
    that has it. One that is empty in one case among several is refused too, naming it and the case: the
    likely cause is a wrong segmentation paired with that volume, and training on would hide it."""
    for case in cases:
        for name, mask in case.masks.items():
            if not mask[case.known[name]].any():
                raise InputError(
                    f"Segment '{name}' of case '{case.name}' is empty (no voxel on its annotated slices), so there "
                    "is nothing to train it on.",
                    "Check that this is the segmentation of this volume; then paint the muscle in it, or leave the "
                    "segment out (--segments with the others; in Slicer, delete the empty segment in Segment "
                    "Editor, or pair the volume with the segmentation that holds the muscle).")


def require_complete(cases: Sequence[Case], training: str, fewshot: str) -> None:
    """Refuse a sparse annotation (a segment known on some slices only) for a ``training`` that scores every slice
    against its annotation: its unpainted slices would teach the network that the muscle is absent there.
    ``training``: what the user chose, as the message names it (e.g. ``--mode full``); ``fewshot``: how to train
    on sparse annotations instead (the options, e.g. ``--mode fewshot``)."""
    for case in cases:
        for name, known in case.known.items():
            if not known.all():
                raise InputError(
                    f"Segment '{name}' of case '{case.name}' is annotated on {int(known.sum())} of {known.size} "
                    f"slices, and {training} trains every slice against its annotation: the slices left unpainted "
                    "would teach the network that the muscle is absent there.",
                    f"Train with {fewshot} (painted slices and pseudo-labels; the Training module's mode "
                    "'fewshot'), or annotate the segment on every slice (a segment without painted-slice marks).")


def thin_case(case: Case, network_mm: Optional[float], window: int = 3) -> Case:
    """``case`` on the frames a network trained at ``network_mm`` sees (:func:`ifssnet.slice_spacing.select_frames`):
    the case itself unless its slices are finer. The frames are those propagation runs on for the same paint
    (:func:`ifssnet.propagate.frames_for`): each annotated slice of a partial annotation takes the place of the
    regular frame nearest to it, and a slice annotated empty ("no muscle here") is a frame of its own. A group of
    consecutive annotated slices left on fewer than ``window`` frames (3 slices painted on a sweep 4x finer than
    the network: 1 or 2 frames) keeps its other slices beside them, so that a training run can start on it
    (:func:`sample_run` starts on ``window`` known slices); a longer group is on frames enough, as propagation
    sees it. The regular frames the paint replaces are left out, as propagation leaves them out (kept beside, a
    frame a fine step from the paint gave training steps between frames that propagation never takes)."""
    from .seeds import seed_groups
    from .slice_spacing import select_frames

    partial = {n: k for n, k in case.known.items() if not k.all()}
    painted = sorted({int(i) for k in partial.values() for i in np.flatnonzero(k)})
    marks = sorted({int(i) for n, k in partial.items() for i in np.flatnonzero(k)
                    if not case.masks[n][i].any()})
    groups = [g for n, k in partial.items()
              for g in seed_groups(set(np.flatnonzero(k).tolist()) - set(marks))]
    sel = select_frames(case.n_slices, case.slice_spacing_mm, network_mm, keep=painted, marks=marks, groups=groups)
    if not sel.thinned:
        return case
    on_frames = set(sel.frames.tolist())
    short = [k for g in seed_groups(painted) if len(on_frames.intersection(g)) < window for k in g]
    frames = np.union1d(sel.frames, np.asarray(short, dtype=np.int64))
    spacing = float((case.n_slices - 1) * case.slice_spacing_mm / (len(frames) - 1))
    painted_of = None if case.painted is None else {n: p[frames] for n, p in case.painted.items()}
    return Case(case.name, case.image[frames], {n: m[frames] for n, m in case.masks.items()},
                {n: k[frames] for n, k in case.known.items()}, spacing, painted_of, case.held)


def decremental_fractions(n_cases: int, total: float = 0.035, ratio: float = 0.5) -> List[float]:
    """Annotated share per case for the paper's decremental schedule.

    The share decays geometrically by ``ratio`` from case to case, scaled so that the mean over the
    cases is ``total`` (paper: 3.5 %), and capped at 1. With 29 cases the first gets about half as
    many annotated slices again as the second, and so on (paper: about 230, then 115, ...).
    """
    if n_cases <= 0:
        return []
    raw = np.array([ratio ** i for i in range(n_cases)])
    frac = raw * total * n_cases / raw.sum()
    # Capping at 1 loses share: hand it on to the next cases so the mean stays ``total``.
    for i in range(n_cases):
        if frac[i] > 1.0:
            excess = frac[i] - 1.0
            frac[i] = 1.0
            if i + 1 < n_cases:
                frac[i + 1:] += excess * raw[i + 1:] / raw[i + 1:].sum()
    return [float(f) for f in frac]


def sparsify(case: Case, fraction: float, group: int = 3) -> Case:
    """Keep the annotation of ``case`` on about ``fraction`` of its slices, in groups of ``group``
    consecutive slices spread evenly over the volume (the few-shot protocol). The rest is unknown.
    A segment on which no group lies whole (a muscle that spans part of the sweep, between the groups) keeps one
    more group, at its largest cross-section (:func:`ifssnet.seeds.largest_slices`, where the 3-seeds protocol
    paints): a run starts on known slices where the segment is present, so without it the case taught nothing of
    that segment, and a single such case was refused as having no annotated group."""
    return sparsifier(case, group)(fraction)


def sparsifier(case: Case, group: int = 3):
    """:func:`sparsify` of ``case`` as a function of ``fraction`` alone: the masks are read (where each segment is
    present, its largest cross-section) once, not on every call, as a search over schedules calls it many times
    (:func:`ifssnet.train.decremental_cases`)."""
    from .seeds import largest_slices

    K = case.n_slices
    present = {n: case.known_present(n) for n in case.masks}
    largest = {}

    def of(fraction: float) -> Case:
        n_groups = max(1, int(round(fraction * K / group)))
        starts = (np.linspace(0, K - group, n_groups).round().astype(int) if n_groups > 1
                  else np.array([K // 2 - group // 2]))
        known = np.zeros(K, bool)
        for s in starts:
            known[s:s + group] = True
        kept = {}
        for n, mask in case.masks.items():
            kept[n] = known.copy() & case.known[n]
            p = present[n]
            if p.any() and not any(p[max(s, 0):s + group].all() for s in starts):
                if n not in largest:
                    largest[n] = list(largest_slices(mask * p[:, None, None], group))
                kept[n][largest[n]] = True
        return Case(case.name, case.image, case.masks, kept, case.slice_spacing_mm)

    return of


@dataclass
class Run:
    """A sampled training run: ``image`` float32 (L, S, S), ``mask`` float32 (L, S, S),
    ``known`` bool (L,), ``painted`` bool (L,) (the known slices that were painted, :attr:`Case.painted`),
    in run order (already reversed when the direction is backward)."""

    image: np.ndarray
    mask: np.ndarray
    known: np.ndarray
    segment: str
    painted: Optional[np.ndarray] = None


def sample_run(case: Case, rng: np.random.Generator, length: int, window: int = 3,
               augment: bool = True, end_fraction: float = 0.4) -> Optional[Run]:
    """A random run of ``length`` slices of one segment of ``case`` that starts on ``window`` known
    slices where the segment is present; reversed with probability 0.5. ``None`` if no segment fits.

    With probability ``end_fraction`` the run is drawn among those that run past the segment's end
    (in the run's direction), so the network learns to let a mask vanish where the muscle ends:
    uniform sampling shows a muscle's end in only a few per cent of short runs, and a network that
    never saw one carries the mask on through the rest of the sweep."""
    names = list(case.masks)
    for _ in range(8):
        name = names[rng.integers(len(names))]
        known, mask = case.known[name], case.masks[name]
        present = mask.reshape(mask.shape[0], -1).any(axis=1)
        backward = bool(rng.random() < 0.5)
        K = case.n_slices
        if K < length:
            length = K
        idx = np.arange(K)
        if backward:
            idx = idx[::-1]
        ok = np.array([known[idx[p:p + window]].all() and present[idx[p:p + window]].all()
                       for p in range(0, K - length + 1)]) if K - length + 1 > 0 else np.array([], bool)
        starts = np.flatnonzero(ok)
        if starts.size == 0:
            continue
        if rng.random() < end_fraction:
            # Last position in run order known to hold the segment: a sparse case's unknown slices may hold a
            # hidden whole mask (sparsify), which must not tell training where the muscle ends.
            last = int(np.flatnonzero((present & known)[idx])[-1])
            crossing = starts[starts + length - 1 > last + window]
            if crossing.size:
                starts = crossing
        p0 = int(starts[rng.integers(starts.size)])
        sel = idx[p0:p0 + length]
        image = case.image[sel].astype(np.float32)
        m = mask[sel].astype(np.float32)
        if augment:
            image, m = _augment(image, m, rng)
        return Run(image, m, known[sel].copy(), name, case.painted_slices(name)[sel].copy())
    return None


def _augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Intensity (gain, contrast, gamma-like), lateral flip and a small in-plane shift, the same for
    every slice of the run. Masks move with the image."""
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, :, ::-1]
    gain = rng.normal(0.0, 0.2)
    contrast = float(np.exp(rng.normal(0.0, 0.15)))
    image = image * contrast + gain
    if rng.random() < 0.3:
        image = np.sign(image) * np.abs(image) ** float(np.exp(rng.normal(0, 0.1)))
    dy, dx = rng.integers(-4, 5, size=2)
    image = np.roll(image, (int(dy), int(dx)), axis=(1, 2))
    mask = np.roll(mask, (int(dy), int(dx)), axis=(1, 2))
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.float32)
