"""Segments that do not overlap: GM, GL and SOL are separate muscles, so a voxel belongs to one at most.

Propagated one at a time, two muscles can both claim the voxels along their shared boundary (on the
validation phantoms, up to a third of GM's false positives lay inside SOL). When
several segments are propagated together, :func:`compete` gives a voxel that several claim to the one
painted nearer to its slice (:func:`painted_distance`; the more probable at equal distance), on the
network's working grid before the probabilities go back to the volume grid, and
:func:`yield_to_painted` gives every painted voxel to the segment that was painted there. This is
what Slicer's Segment Editor does by default ("Overwrite other segments: all segments").

A segment that the user has not painted on a slice never takes voxels the user painted for
another; painted slices themselves come out exactly as painted, even where two painted masks overlap.
Chosen on validation phantoms 500-505 (``3-seeds+ends``, shipped weights): apart not enforced, Dice 0.730
and volume error 20.7 %; the more probable wins, 0.712 / 15.8 % (SOL is often the more probable inside
GM); the one painted nearer wins, 0.752 / 16.0 %. Held-out: 0.720 / 19.6 % to 0.732 / 16.8 %. On by
default in ``propagate`` (README, "Muscles that do not overlap").
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np


def compete(probs: Mapping[str, "object"], threshold: float = 0.5,
            priority: Optional[Mapping[str, "object"]] = None) -> None:
    """In place: each voxel claimed (``p > threshold``) by several segments goes to one of them, the winner.

    ``probs``: name -> float tensor (K, S, S), probabilities in [0, 1], all the same shape.
    ``priority``: name -> float tensor broadcastable to (K, S, S), e.g. (K, 1, 1) per slice; the claimer
    with the highest priority wins, and the more probable between equal priorities (priorities that differ
    should differ by 1 or more). ``None``: the most probable claimer wins. A tie goes to the segment listed first.

    The winner's probability is left as it is; every other segment's becomes ``min(p, threshold - s)``,
    where ``s = p_winner - threshold > 0``. So where no other segment claims a voxel its claimer's mask is
    unchanged, and a lone segment is not touched at all. For any two segments afterwards
    ``(p_a - threshold) + (p_b - threshold) <= 0``; a convex combination of samples keeps that, so the
    masks stay apart after the probabilities go back to the volume's grid (bilinear in-plane, linear
    between kept frames), and the boundary between two muscles falls between their voxels.
    Extra memory: two float (K, S, S) arrays and one int8.
    """
    import torch

    names = list(probs)
    if len(names) < 2:
        return
    first = probs[names[0]]
    best = arg = None
    for i, name in enumerate(names):
        p = probs[name]
        if p.shape != first.shape:
            raise ValueError(f"Segment {name!r} has probabilities of shape {tuple(p.shape)}, "
                             f"{names[0]!r} of {tuple(first.shape)}.")
        key = p if priority is None else p + 2.0 * torch.as_tensor(priority[name], dtype=p.dtype, device=p.device)
        key = torch.where(p > threshold, key, torch.full_like(p, -math.inf))
        if best is None:
            best, arg = key, torch.zeros(p.shape, dtype=torch.int8, device=p.device)
        else:
            better = key > best
            best = torch.where(better, key, best)
            arg[better] = i
    claimed = best > -math.inf
    del best
    strength = torch.zeros_like(first)                    # the winner's p - threshold where claimed, else 0
    for i, name in enumerate(names):
        mine = claimed & (arg == i)
        strength[mine] = probs[name][mine] - threshold
    ceiling = threshold - strength
    for i, name in enumerate(names):
        lose = claimed & (arg != i)
        probs[name][lose] = torch.minimum(probs[name][lose], ceiling[lose])


def painted_distance(n_frames: int, painted: Sequence[int]):
    """(K, 1, 1) float: minus the distance, in frames, from each frame to the nearest of ``painted``
    (a priority for :func:`compete`: the segment painted nearer wins)."""
    import torch

    k = torch.arange(n_frames, dtype=torch.float32)
    if len(painted) == 0:
        return torch.full((n_frames, 1, 1), -float(n_frames + 1))
    d = (k[:, None] - torch.as_tensor(list(painted), dtype=torch.float32)[None, :]).abs().amin(dim=1)
    return (-d)[:, None, None]


def nearer_painted(frames, seeds: Mapping[str, "object"]) -> Dict[str, "object"]:
    """The priority for :func:`compete` that both networks use: per segment, :func:`painted_distance` over
    the kept ``frames`` (:class:`ifssnet.slice_spacing.FrameSelection`) to its painted slices that hold
    the muscle (a "no muscle here" mark claims nothing). ``seeds``: name -> SeedSet."""
    out = {}
    for name, s in seeds.items():
        slices = [int(k) for k in s.slices]
        painted = [j for j, n in frames.anchors(slices).items() if np.asarray(s.mask[slices[n]]).any()]
        out[name] = painted_distance(len(frames.frames), painted)
    return out


def yield_to_painted(masks: Dict[str, np.ndarray], painted: Mapping[str, "object"]) -> None:
    """In place: clear each mask ``masks[n]`` (K, J, I) where another segment m was painted, on the
    slices where n itself was not annotated.

    ``painted``: name -> :class:`ifssnet.seeds.SeedSet` (mask (K, J, I), annotated ``slices``). The
    slices a segment was annotated on (painted, or marked "no muscle here") stay as they are.
    """
    for name, out in masks.items():
        own = {int(k) for k in painted[name].slices}
        for other, s in painted.items():
            if other == name:
                continue
            for k in (int(k) for k in s.slices):
                if k not in own:
                    out[k][np.asarray(s.mask[k]) > 0] = 0


def overlap_voxels(masks: Mapping[str, np.ndarray]) -> int:
    """Voxels claimed by two or more of ``masks`` (name -> (K, J, I))."""
    stack = [np.asarray(m) > 0 for m in masks.values()]
    return int((np.sum(stack, axis=0) > 1).sum()) if len(stack) > 1 else 0
