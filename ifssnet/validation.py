"""Validation during training: propagate held-out annotated volumes with the network being trained.

A run's checkpoints differ a lot in quality (model card: one run scored volume error 27.5 % at step
400 and 129.5 % at step 600 on the same validation phantoms), and the loss of a training step does
not show it: propagation feeds each prediction into the next window for hundreds of slices, and
training runs are 8-32 slices. So ``ifssnet train --val CASES`` scores the network every
``--val-every`` steps the way a user runs it: seeds cut from each validation case's full annotation
by a protocol of :mod:`ifssnet.compare` (``3-seeds`` by default: 3 slices at the largest
cross-section), propagation through the whole volume, Dice and volume error over the reference's
extent with the seed slices left out (:func:`ifssnet.compare.score`). The best network by mean Dice
is kept next to the model (``MODEL.best.pt``). Several protocols (``--val-protocol both``) score every
case under each, and the means run over all of those rows: a network that stops at a muscle's end but
shrinks every mask can win under ``3-seeds`` and lose under ``paper`` (model card, session 18).

A validation segment painted on some slices only (an ``IFSSNet.AnnotatedSlices`` tag, or paint on some
slices of one view, read as training reads it) is scored by its held-out groups
(:mod:`ifssnet.held_out_groups`): propagated from its largest painted group and scored on its other painted
slices, so that a few-shot run on sparsely painted sweeps can be validated, and a collapse caught, without a fully
annotated sweep. Its rows carry the protocol ``held-out-groups``. Validation cases must not be training cases.
Volumes are read again at each validation, so that a long run does not hold them in memory.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .held_out_groups import PROTOCOL as HELD_OUT, SparseReference, held_out_rows, is_sparse, split_groups
from .progress import CancelLike, ProgressFn, check_cancel, report

#: The progress stage of a validation, one step per case.
STAGE = "validating"
#: What ``ifssnet train --val-protocol`` (and Slicer's Training panel) offers: the issue's protocol, the
#: paper's, or both (each case under each; the best network by the mean over all of those rows).
VALIDATION_CHOICES = ("3-seeds", "paper", "both")

#: One validation case: (volume path, annotation path), or (volume (K, J, I), {name: mask (K, J, I)} or an
#: :class:`ifssnet.io.Segmentation` on the volume's grid (whose tags say which slices are painted), spacing
#: (sz, sy, sx) mm) already in memory (Slicer's nodes).
ValidationCase = Tuple


@dataclass
class ValidationScore:
    """The network's scores on the validation cases at one training step.

    ``dice``: mean over (case, segment) of Dice, seed slices excluded (a segment whose propagation
    failed counts 0). ``volume_error_pct``: mean of |V - V_ref| / V_ref x 100 over the same rows.
    ``per_segment``: segment name -> mean Dice. ``seconds``: wall time of the validation.
    ``per_protocol``: protocol -> (mean Dice, mean volume error %) when more than one was scored, or held-out
    groups alone (:mod:`ifssnet.held_out_groups`: its error is the area error on the held-out painted slices).
    """

    step: int
    dice: float
    volume_error_pct: float
    seconds: float
    per_segment: Dict[str, float] = field(default_factory=dict)
    per_protocol: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    def better_than(self, other: Optional["ValidationScore"]) -> bool:
        """Higher mean Dice wins; the first score beats none."""
        return other is None or (not math.isnan(self.dice) and (math.isnan(other.dice) or self.dice > other.dice))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ValidationScore":
        return cls(int(d["step"]), float(d["dice"]), float(d["volume_error_pct"]), float(d["seconds"]),
                   {str(k): float(v) for k, v in dict(d.get("per_segment", {})).items()},
                   {str(k): (float(v[0]), float(v[1])) for k, v in dict(d.get("per_protocol", {})).items()})

    @classmethod
    def from_log_record(cls, r: dict) -> "ValidationScore":
        """The score of a :meth:`log_record` line read back (Slicer's Training module reads the log); keys it
        lacks are NaN or empty."""
        return cls(int(r["step"]), float(r["val_dice"]), float(r.get("val_volume_error_pct", math.nan)),
                   float(r.get("val_seconds", math.nan)),
                   {str(k): float(v) for k, v in dict(r.get("val_per_segment", {})).items()},
                   {str(k): (float(v[0]), float(v[1])) for k, v in dict(r.get("val_per_protocol", {})).items()})

    def log_record(self) -> dict:
        """The JSON line ``ifssnet train --log`` writes (keys ``val_*``, so step records stay apart)."""
        record = {"step": self.step, "val_dice": self.dice, "val_volume_error_pct": self.volume_error_pct,
                  "val_seconds": self.seconds, "val_per_segment": self.per_segment}
        if self.per_protocol:
            record["val_per_protocol"] = {k: list(v) for k, v in self.per_protocol.items()}
        return record

    @property
    def error_name(self) -> str:
        """What ``volume_error_pct`` is: the volume error, or, for held-out groups alone, the area error on the
        held-out painted slices (:mod:`ifssnet.held_out_groups`)."""
        return "area error on the held-out painted slices" if list(self.per_protocol) == [HELD_OUT] else "volume error"

    def summary(self) -> str:
        parts = ", ".join(f"{n} {d:.3f}" for n, d in self.per_segment.items())
        text = (f"step {self.step}: validation Dice {self.dice:.3f} ({parts}), "
                f"{self.error_name} {self.volume_error_pct:.1f} %")
        if len(self.per_protocol) > 1:
            text += "; " + ", ".join(f"{k} {d:.3f} / {v:.1f} %" for k, (d, v) in self.per_protocol.items())
        return text


class Validator:
    """Scores a network on held-out cases; ``validator(model, step) -> ValidationScore``.

    ``cases``: :data:`ValidationCase` items. ``protocol``: ``3-seeds`` | ``paper`` (see
    :func:`ifssnet.compare.protocol_seeds`; ``count`` and ``every`` as there), several of them as a
    sequence or comma-separated, or ``both`` (each case is propagated once per protocol). ``segments``: the
    segment names to score (default: every segment of each case); a case is scored on those it has, as a training
    case trains them (:func:`ifssnet.dataset.require_segments`), and one with none of them is refused. ``device``:
    where to propagate (default: where the network's weights are, so validation never moves a network being
    trained). A segment painted on some slices only is scored by its held-out groups, whatever ``protocol`` says
    (:mod:`ifssnet.held_out_groups`). Files are checked here, before any training: a missing file, a case with none
    of the named segments, an empty segment to score, or a sparse one with no painted group left over to score
    raises :class:`InputError`.
    """

    def __init__(self, cases: Sequence[ValidationCase], protocol="3-seeds",
                 segments: Optional[Sequence[str]] = None, device: Optional[str] = None, count: int = 3,
                 every: int = 100):
        from .compare import PROTOCOLS

        if not cases:
            raise InputError("No validation case given.", "Give one or more annotated volumes that are not "
                                                          "training cases, or leave validation off.")
        self.protocols = validation_protocols(protocol)
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise InputError(f"Unknown validation protocol {protocol!r}.",
                             f"Choose one or more of: {', '.join(PROTOCOLS)}, or both.")
        self.cases = list(cases)
        self.count, self.every = int(count), int(every)
        self.segments = list(segments) if segments else None
        self.device = device
        # id(case) -> {segment: its annotated slices, None where complete}: read once, when the case is checked
        self._annotated: Dict[int, Dict[str, Optional[Tuple[int, ...]]]] = {}
        for case in self.cases:
            self._check(case)

    def description(self) -> dict:
        """What the scores are of, as a checkpoint records it (:func:`ifssnet.train.train`): the protocols and the
        cases' names (:func:`ifssnet.dataset.case_names` of their volumes; None for a case in memory). Scores of
        other protocols or cases do not compare, so the best network of a run must be chosen on one."""
        from .dataset import case_names

        files = [i for i, c in enumerate(self.cases) if self._is_paths(c)]
        named = dict(zip(files, case_names([self.cases[i][0] for i in files])))
        sparse = any(a is not None for case in self._annotated.values() for a in case.values())
        protocols = list(self.protocols) + ([HELD_OUT] if sparse else [])
        return {"protocols": protocols, "cases": [named.get(i) for i in range(len(self.cases))]}

    @staticmethod
    def _is_paths(case) -> bool:
        return len(case) == 2

    def _check(self, case) -> None:
        if not self._is_paths(case):
            where = "in-memory case"
            segments, n_slices = self._segments(case[1], where), np.shape(case[0])[0]
        else:
            from .io import read_header, read_segmentation, require_annotation_overlaps

            vol, ann = Path(case[0]), Path(case[1])
            for p in (vol, ann):
                if not p.is_file():
                    raise InputError(f"Validation file {p} does not exist.", "Give VOLUME:ANNOTATION pairs or "
                                     "phantom folders (volume.nrrd + reference.seg.nrrd).")
            where = str(ann)
            head = read_header(vol)
            if head.geometry is not None:   # every validation would score it 0: said before training starts
                require_annotation_overlaps(ann, head.geometry, head.shape_kji, f"the validation volume '{vol}'")
            seg = read_segmentation(ann, reference=head.geometry, reference_shape=head.shape_kji)
            segments, n_slices = self._segments(seg, where), head.shape_kji[0]
        from .dataset import annotated_slices_of

        self._annotated[id(case)] = {n: annotated_slices_of(s, n_slices, f"validation case {where}")
                                     for n, s in segments.items()}
        refs = self._references(segments, case)
        _require_painted({n: r for n, r in refs.items() if not is_sparse(r)}, where)
        for name, ref in refs.items():
            if is_sparse(ref):
                split_groups(ref, name, where)     # painted slices left over to score, or refused now

    def _segments(self, refs, where: str) -> dict:
        """``{name: Segment}`` of the segments to score (:meth:`_select`) of a case's annotation: an
        :class:`~ifssnet.io.Segmentation`, or ``{name: mask}`` held in memory."""
        from .io import Segment

        segments = refs.segments if hasattr(refs, "segments") else [Segment(n, m) for n, m in dict(refs).items()]
        return self._select({s.name: s for s in segments}, where)

    def _references(self, segments: dict, case) -> dict:
        """``{name: mask}`` for a complete segment of ``segments`` (:meth:`_segments` of ``case``), ``{name:
        SparseReference}`` for one painted on some slices, by the slices :meth:`_check` read
        (:func:`ifssnet.dataset.annotated_slices_of`)."""
        annotated = self._annotated[id(case)]
        return {n: s.mask if annotated[n] is None else SparseReference(s.mask, annotated[n])
                for n, s in segments.items()}

    def _select(self, refs: dict, where: str) -> dict:
        if not self.segments:
            if not refs:
                raise InputError(f"Validation case {where} has no segments.", "Give an annotated volume.")
            return refs
        chosen = {s: refs[s] for s in self.segments if s in refs}   # the named ones it has, as a training case
        if not chosen:
            raise InputError(f"Validation case {where} has no segment named {', '.join(self.segments)}.",
                             f"It has: {', '.join(refs) or 'none'}.")
        return chosen

    def _load(self, case):
        if not self._is_paths(case):
            volume, refs, spacing = case
            return np.asarray(volume), self._references(self._segments(refs, "in-memory case"), case), tuple(spacing)
        from .io import read_segmentation, read_volume

        image = read_volume(case[0])
        ref = read_segmentation(case[1], reference=image.geometry, reference_shape=image.array.shape)
        refs = self._references(self._segments(ref, str(case[1])), case)
        return image.array, refs, tuple(image.geometry.spacing_kji)

    def rows(self, model, cases: Optional[Sequence[ValidationCase]] = None, cancel: CancelLike = None,
             progress: Optional[ProgressFn] = None) -> List[dict]:
        """One :func:`ifssnet.compare.compare` row per (case, segment) of ``cases`` (default: all);
        leaves ``model`` in eval mode. ``cancel`` is checked before each case and during its propagation
        (:class:`~ifssnet.errors.Cancelled`); ``progress`` gets :data:`STAGE` once per case (reading one and
        propagating its segments takes minutes at full size)."""
        from .compare import compare

        device = self.device or str(next(model.parameters()).device)
        rows: List[dict] = []
        todo = list(self.cases if cases is None else cases)
        for n, case in enumerate(todo):
            report(progress, STAGE, n, len(todo))
            check_cancel(cancel)
            volume, refs, spacing = self._load(case)
            complete = {n: r for n, r in refs.items() if not is_sparse(r)}
            for protocol in self.protocols if complete else ():
                rows += compare(volume, complete, spacing, ["ifssnet"], protocol, count=self.count, every=self.every,
                                cancel=cancel, method_options={"ifssnet": {"model": model, "device": device}})
            sparse = {n: r for n, r in refs.items() if is_sparse(r)}
            if sparse:
                rows += held_out_rows(volume, sparse, spacing, model, device=device, cancel=cancel,
                                      where=str(case[1]) if self._is_paths(case) else "in-memory case")
            del volume, refs, complete, sparse
        report(progress, STAGE, len(todo), len(todo))
        return rows

    def __call__(self, model, step: int, rank: int = 0, world: int = 1, cancel: CancelLike = None,
                 progress: Optional[ProgressFn] = None) -> ValidationScore:
        """The score of ``model`` at training step ``step``; ``cancel`` stops it between cases and during a
        propagation (:class:`~ifssnet.errors.Cancelled`); ``progress``: :meth:`rows`' (each rank its own cases).

        In a distributed run (``world`` > 1, process group initialised) every rank must call it: rank r
        propagates cases r, r + world, ..., and the rows are gathered in case order, so every rank gets
        the same score as one process would, and no rank waits idle in the next all-reduce while another
        validates alone (gloo's default timeout is 30 minutes). A cancel there must reach every rank.
        """
        t0 = time.perf_counter()
        if world > 1:
            import torch.distributed as dist

            todo, mine = self.cases[rank::world], []
            for n, case in enumerate(todo):       # rows case by case: they are gathered in case order
                report(progress, STAGE, n, len(todo))
                mine.append(self.rows(model, [case], cancel))
            report(progress, STAGE, len(todo), len(todo))
            gathered: List = [None] * world
            dist.all_gather_object(gathered, mine)
            # case i is rank (i % world)'s (i // world)-th
            rows = [r for i in range(len(self.cases)) for r in gathered[i % world][i // world]]
        else:
            rows = self.rows(model, cancel=cancel, progress=progress)
        return self.score(rows, step, time.perf_counter() - t0)

    @staticmethod
    def score(rows: Sequence[dict], step: int, seconds: float) -> ValidationScore:
        """Mean Dice (a failed or empty row counts 0), mean volume error and Dice per segment of ``rows``;
        with rows of more than one protocol, or of held-out groups alone (whose error is an area error), each
        protocol's means too."""
        per: Dict[str, List[float]] = {}
        for r in rows:
            per.setdefault(r["muscle"], []).append(_row_dice(r))
        protocols = list(dict.fromkeys(r.get("protocol") for r in rows))
        per_protocol = {p: _means([r for r in rows if r.get("protocol") == p]) for p in protocols} \
            if len(protocols) > 1 or protocols == [HELD_OUT] else {}
        return ValidationScore(int(step), *_means(rows), seconds, {n: float(np.mean(v)) for n, v in per.items()},
                               per_protocol)


def _require_painted(refs: Dict[str, np.ndarray], where: str) -> None:
    """Refuse a validation reference with an empty segment to score: no seed slices can be cut from it, and
    training would stop at its first validation."""
    for name, mask in refs.items():
        if not np.asarray(mask).any():
            raise InputError(f"Segment '{name}' of validation case {where} is empty, so no seed slices can be cut "
                             "from it.", "Validate on a volume whose annotation holds that muscle, or leave the "
                             "segment out (--segments; in Slicer, delete the empty segment in Segment Editor).")


def _row_dice(row: dict) -> float:
    """A row's Dice; a failed or empty propagation counts 0."""
    return 0.0 if row["error"] or math.isnan(row["dice"]) else float(row["dice"])


def _means(rows: Sequence[dict]) -> Tuple[float, float]:
    """(mean Dice, mean volume error %) of compare rows; the volume error over the rows that did not fail."""
    verr = [float(r["volume_error_pct"]) for r in rows if not r["error"]]
    return float(np.mean([_row_dice(r) for r in rows])), float(np.mean(verr)) if verr else math.nan


def validation_protocols(protocol) -> List[str]:
    """``'3-seeds'``, ``'3-seeds,paper'``, ``'both'`` (those two: the issue's and the paper's) or a sequence
    of names -> the list of protocol names."""
    if isinstance(protocol, str):
        protocol = ["3-seeds", "paper"] if protocol == "both" else protocol.split(",")
    return [str(p).strip() for p in protocol if str(p).strip()]


def best_of(scores: Sequence[ValidationScore]) -> Optional[ValidationScore]:
    """The score that training keeps as ``MODEL.best.pt`` among ``scores`` (in step order): the first that
    no later one beats (:meth:`ValidationScore.better_than`); None for none."""
    best = None
    for score in scores:
        if score.better_than(best):
            best = score
    return best


#: Below this validation Dice a network counts as collapsed to empty masks (:func:`collapse_note`).
COLLAPSED_DICE = 0.01


def collapse_note(scores: Sequence[ValidationScore], best_name: str = "MODEL.best.pt") -> str:
    """What to tell the user where the last of ``scores`` (in step order) shows a collapsed network, Dice below
    :data:`COLLAPSED_DICE` after an earlier one above it: few-shot runs can end in empty masks past the seed slices,
    which agree with their own pseudo-labels, and none measured came back (model card, sessions 44-46). ``""``
    otherwise. ``best_name``: the file that keeps the best network (``MODEL.best.pt``, Slicer's ``<name>.best``)."""
    if not scores or not scores[-1].dice < COLLAPSED_DICE:
        return ""
    best = best_of(scores)
    if best is None or not best.dice >= COLLAPSED_DICE:
        return ""
    last = scores[-1]
    return (f"Validation Dice fell to {last.dice:.3f} at step {last.step}, from {best.dice:.3f} at step {best.step}: "
            "the network's masks vanish past the seed slices, a collapse few-shot runs have not come back from. "
            f"Use {best_name} (step {best.step}), or train again with another --seed.")


def best_model_path(out_path) -> Path:
    """Where training keeps the best network by validation Dice: ``MODEL.best.pt`` next to ``MODEL.pt``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".best" + (out_path.suffix or ".pt"))


def best_score(best_path) -> ValidationScore:
    """The validation score stored in a ``MODEL.best.pt`` (its own step's score)."""
    from .model.checkpoint import read_meta

    return recorded_best(read_meta(best_path))


def recorded_history(meta: Optional[dict]) -> List[ValidationScore]:
    """The validation scores, in step order, that a model file's or checkpoint's metadata ``meta`` records; [] where
    it records none."""
    history = (((meta or {}).get("training") or {}).get("validation") or {}).get("history") or []
    return [ValidationScore.from_dict(v) for v in history]


def recorded_best(meta: dict) -> ValidationScore:
    """The best validation score a model file's metadata ``meta`` records (KeyError / TypeError where none)."""
    return ValidationScore.from_dict(meta["training"]["validation"]["best"])
