"""Validation on sparsely painted cases: propagate from one painted group of slices, score on the others.

Researchers who fine-tune on their own sweeps rarely have a fully annotated sweep to spare for validation (one
takes hours to paint at 1400 slices), but they paint a few groups of slices on every sweep they train on. Few-shot
runs need validation most: a run can collapse to empty masks, which agree with their own pseudo-labels (model
card, session 45: 1 of 4 runs drawn by painted slices), and only a score of propagation through the sweep shows it.

So a validation case whose segment is painted on some slices only (tagged ``IFSSNet.AnnotatedSlices``, or painted
on some slices of one view without the tag: :func:`ifssnet.dataset.annotated_slices_of`, the rule training reads
it by) is scored with its painted slices alone (:func:`split_groups`, :func:`held_out_rows`):

- the annotated slices that hold the segment form groups of consecutive slices (:func:`ifssnet.seeds.seed_groups`);
- the seeds are the group with the most painted slices (ties: the one with the largest cross-section), joined by
  the groups nearest to it until they hold 3 painted slices, the least Propagate takes;
- the network propagates from them through the whole volume, as a user runs it;
- Dice is scored on the other annotated slices alone: the painted ones, and those marked "no muscle here", where any
  predicted voxel is a false positive. The area error, ``|A - A_ref| / A_ref x 100`` with the areas summed over the
  same slices, stands in for the volume error, which an annotation known on some slices cannot give.

A segment needs painted slices left over for scoring: one painted group of 3 slices is refused when the
:class:`~ifssnet.validation.Validator` is made, before any training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Mapping, Sequence, Tuple

import numpy as np

from .errors import Cancelled, DependencyError, IFSSNetError, InputError
from .progress import CancelLike
from .seeds import seed_groups

#: The protocol name of the rows and scores of a sparsely painted validation case.
PROTOCOL = "held-out-groups"
#: The painted slices Propagate needs (:func:`ifssnet.seeds.check_slice_count`).
MIN_SEED_SLICES = 3


@dataclass(frozen=True)
class SparseReference:
    """A validation segment known on some slices: ``mask`` uint8 (K, J, I), zero off ``annotated``; ``annotated``:
    the slices (axis 0, sorted) on which it was painted or marked "no muscle here"."""

    mask: np.ndarray
    annotated: Tuple[int, ...]


@dataclass(frozen=True)
class GroupSplit:
    """``seeds``: the painted slices (axis 0) a validation propagates from; ``scored``: the annotated slices it is
    scored on (every annotated slice outside the seeds' groups)."""

    seeds: Tuple[int, ...]
    scored: Tuple[int, ...]


def split_groups(ref: SparseReference, name: str, where: str) -> GroupSplit:
    """Which painted slices of ``ref`` seed the validation and which are scored (module docstring). Raises
    :class:`InputError` naming segment ``name`` of case ``where`` where no painted slice would be left to score."""
    mask = np.asarray(ref.mask)
    areas = {int(k): int(np.count_nonzero(mask[int(k)])) for k in ref.annotated}
    painted = [k for k, a in areas.items() if a]
    groups = seed_groups(painted)
    todo = ("Paint the muscle on at least one more group of slices, away from the first (validation propagates "
            "from the largest painted group and scores the others), or validate on a fully annotated volume.")
    if len(groups) < 2:
        raise InputError(f"Segment '{name}' of validation case {where} is painted on some slices only, in "
                         f"{'one group' if groups else 'no group'} of consecutive slices, so nothing would be left "
                         "to score after propagating from it.", todo)
    first = max(groups, key=lambda g: (len(g), max(areas[k] for k in g)))
    chosen = [first]
    rest = [g for g in groups if g is not first]
    while sum(map(len, chosen)) < MIN_SEED_SLICES and rest:
        near = min(rest, key=lambda g: min(abs(a - b) for a in g for c in chosen for b in c))
        chosen.append(near)
        rest.remove(near)
    seeds = sorted(k for g in chosen for k in g)
    if len(seeds) < MIN_SEED_SLICES or not rest:
        raise InputError(f"Segment '{name}' of validation case {where} is painted on {len(painted)} slices in "
                         f"{len(groups)} groups: propagating from {MIN_SEED_SLICES} of them would leave "
                         f"{'none' if len(seeds) >= MIN_SEED_SLICES else 'too few'} to score.", todo)
    seeded = set(seeds)
    return GroupSplit(tuple(seeds), tuple(k for k in ref.annotated if k not in seeded))


def held_out_scores(pred: np.ndarray, ref: np.ndarray, scored: Sequence[int]) -> Tuple[float, float]:
    """(Dice, area error %) of ``pred`` against ``ref`` (both (K, J, I), non-zero inside) over the slices ``scored``
    (axis 0) alone. An empty prediction scores Dice 0 and area error 100 %."""
    idx = np.asarray(sorted(scored), dtype=np.int64)
    p, r = np.asarray(pred)[idx] != 0, np.asarray(ref)[idx] != 0
    a_p, a_r = int(p.sum()), int(r.sum())
    both = a_p + a_r
    dice = 2.0 * int(np.logical_and(p, r).sum()) / both if both else 1.0
    error = abs(a_p - a_r) / a_r * 100.0 if a_r else float("nan")
    return float(dice), float(error)


def held_out_rows(volume: np.ndarray, refs: Mapping[str, SparseReference], spacing_kji, model, *,
                  device: str = "cpu", where: str = "", cancel: CancelLike = None) -> List[dict]:
    """One validation row per segment of ``refs``: ``model`` (a loaded network) propagates each segment from its
    seed groups through ``volume`` (K, J, I) and is scored on its other annotated slices (:func:`split_groups`,
    :func:`held_out_scores`). Rows carry ``muscle``, ``protocol`` (:data:`PROTOCOL`), ``dice``,
    ``volume_error_pct`` (the area error), ``seed_slices_n``, ``scored_slices_n``, ``time_s`` and ``error`` (the
    message of a propagation that failed, whose Dice counts 0). The network runs as :func:`ifssnet.compare.compare`
    runs it (the registry's ``ifssnet`` method), and, as there, :class:`~ifssnet.errors.Cancelled` and
    :class:`~ifssnet.errors.DependencyError` propagate."""
    from .baselines.registry import get
    from .seeds import cut_seeds

    network = get("ifssnet")

    rows: List[dict] = []
    for name, ref in refs.items():
        split = split_groups(ref, name, where)
        t0 = time.perf_counter()
        row = {"muscle": name, "method": "ifssnet", "protocol": PROTOCOL, "seed_slices_n": len(split.seeds),
               "scored_slices_n": len(split.scored), "error": ""}
        try:
            pred = network(volume, cut_seeds(ref.mask, split.seeds), spacing_kji, model=model, device=device,
                           cancel=cancel)
            row["dice"], row["volume_error_pct"] = held_out_scores(pred, ref.mask, split.scored)
        except (Cancelled, DependencyError):
            raise
        except IFSSNetError as exc:
            row.update(dice=float("nan"), volume_error_pct=float("nan"), error=str(exc))
        row["time_s"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def is_sparse(ref) -> bool:
    """Whether a validation reference is a :class:`SparseReference` (else a complete mask)."""
    return isinstance(ref, SparseReference)

