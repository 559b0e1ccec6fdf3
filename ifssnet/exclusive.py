"""Segments that do not overlap: GM, GL and SOL are separate muscles, so a voxel belongs to one at most.

Propagated one at a time, two muscles can both claim the voxels along their shared boundary (on the
validation phantoms, up to a third of GM's false positives lay inside SOL). When
several segments are propagated together, :func:`compete` lets the most probable one keep a voxel,
on the network's working grid before the probabilities go back to the volume grid, and
:func:`yield_to_painted` gives every painted voxel to the segment that was painted there. This is
what Slicer's Segment Editor does by default ("Overwrite other segments: all segments").

A segment that the user has not painted on a slice never takes voxels the user painted for
another; painted slices themselves come out exactly as painted, even where two painted masks overlap.
``propagate(exclusive=...)`` is off by default: with the shipped weights it costs 0.016 Dice on the
held-out phantoms (SOL is often the more probable inside GM; README, "Muscles that do not overlap").
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence

import numpy as np

#: How far above the threshold the first of several tied segments stays (float32 resolves 6e-8 at 0.5).
TIE_MARGIN = 1e-6


def compete(probs: Mapping[str, "object"], threshold: float = 0.5) -> None:
    """In place: ``p_n -= max(0, max_{m != n} p_m - threshold)`` for each segment n.

    ``probs``: name -> float tensor (K, S, S), probabilities in [0, 1], all the same shape.
    Afterwards ``p_n > threshold`` exactly where ``p_n > threshold`` and ``p_n > p_m`` for every other
    segment m; a tie (saturated probabilities, say) goes to the segment listed first. Where no other
    segment is above the threshold nothing changes, so a lone segment's mask, and any segment's mask
    away from the others, stays the same. It runs before the probabilities go back to the volume's grid
    (bilinear in-plane, linear between kept frames), and the masks stay apart there too: for any two
    segments, ``(p_a - threshold) + (p_b - threshold) <= 0`` after it (up to :data:`TIE_MARGIN`), and a
    convex combination of samples keeps that, so both cannot exceed the threshold at one voxel.
    Extra memory: two float (K, S, S) arrays and one int8.
    """
    import torch

    names = list(probs)
    if len(names) < 2:
        return
    first = probs[names[0]]
    top1 = first.clone()
    top2 = torch.full_like(first, -1.0)
    arg1 = torch.zeros(first.shape, dtype=torch.int8, device=first.device)
    for i, name in enumerate(names[1:], start=1):
        p = probs[name]
        if p.shape != first.shape:
            raise ValueError(f"Segment {name!r} has probabilities of shape {tuple(p.shape)}, "
                             f"{names[0]!r} of {tuple(first.shape)}.")
        better = p > top1
        top2 = torch.where(better, top1, torch.maximum(top2, p))
        top1 = torch.where(better, p, top1)
        arg1[better] = i
    for i, name in enumerate(names):
        mine = arg1 == i
        other = torch.where(mine, top2, top1)               # the best of the other segments
        take = (other - threshold).clamp_(min=0)
        take[mine & (take > 0)] -= TIE_MARGIN               # a tie goes to the segment listed first
        probs[name].sub_(take)


def yield_to_painted(masks: Dict[str, np.ndarray], painted: Mapping[str, "object"]) -> None:
    """In place: clear each mask ``masks[n]`` (K, J, I) where another segment m was painted, on the
    slices where n itself was not annotated.

    ``painted``: name -> :class:`ifssnet.seeds.SeedSet` (mask (K, J, I), annotated ``slices``). The
    slices a segment was annotated on (painted, or marked "no muscle here") stay as they are.
    """
    for name, out in masks.items():
        own = {int(k) for k in painted[name].slices} if name in painted else set()
        for other, s in painted.items():
            if other == name:
                continue
            for k in (int(k) for k in s.slices):
                if k not in own:
                    out[k][np.asarray(s.mask[k]) > 0] = 0


def overlap_voxels(masks: Mapping[str, np.ndarray], names: Sequence[str] = ()) -> int:
    """Voxels claimed by two or more of ``masks`` (name -> (K, J, I)); all of them without ``names``."""
    names = list(names) or list(masks)
    if len(names) < 2:
        return 0
    count = np.zeros(np.shape(masks[names[0]]), dtype=np.uint8)
    for n in names:
        count += (np.asarray(masks[n]) > 0)
    return int((count > 1).sum())
