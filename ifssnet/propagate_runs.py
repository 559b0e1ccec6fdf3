"""Propagation's runs: one seed group in one direction, and how the runs of a segment are blended.

A :class:`Run` walks the slices from its seed group (``order``, seeds first) to the next group or the
sweep's end; :func:`advance` records each window's probabilities (w, S, S) and prepares the next mask
input, re-anchored on painted slices, and ends the run where the muscle ends (``stop_at_end``).
Finished slices go into the segment's :class:`Accumulator` (K, S, S) on the working grid, weighted
1 / (1 + distance to the run's seed); ``Accumulator.max_blend`` and ``mean_and_variance`` give the
blended probability and the spread that the per-slice confidence reads (:mod:`ifssnet.propagate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence

import numpy as np

from .seeds import seed_groups


@dataclass
class Run:
    """One seed group propagated in one direction. ``order``: slice indices, seeds first."""

    segment: str
    order: np.ndarray          # (L,) slice indices along the run, the n seed slices first
    n_seeds: int
    weight_origin: int         # slice of the seed nearest to the run (for blending weights)
    no_muscle: bool = False    # its seed group is painted empty ("no muscle here")
    step: int = 0              # windows done
    quiet: int = 0             # consecutive new slices with no foreground
    done: bool = False
    prev: object = None        # torch (w, S, S): the mask input of the next window
    stride: int = 1            # slices between windows (the window's newest slice moves by this)

    @property
    def n_steps(self) -> int:
        """Windows until the newest slice reaches the run's end: ``ceil(new slices / stride)``."""
        return -(-(len(self.order) - self.n_seeds) // self.stride)

    def first(self, w: int, step: int) -> int:
        """Position (in ``order``) of the first slice of window ``step``; its newest slice is
        ``n_seeds - 1 + (step + 1) * stride`` (clipped to the run's end by the callers)."""
        return self.n_seeds - w + (step + 1) * self.stride


def make_runs(name: str, painted: Sequence[int], K: int, between_only: bool) -> List[Run]:
    """The runs of one segment whose painted slices are ``painted`` (indices into K slices)."""
    groups = seed_groups(painted)
    runs = []
    for gi, g in enumerate(groups):
        lo, hi = g[0], g[-1]
        nxt = groups[gi + 1][0] if gi + 1 < len(groups) else K
        prv = groups[gi - 1][-1] if gi > 0 else -1
        if not (between_only and gi + 1 == len(groups)) and nxt > hi + 1:
            runs.append(Run(name, np.concatenate([np.arange(lo, hi + 1), np.arange(hi + 1, nxt)]), len(g), hi))
        if not (between_only and gi == 0) and prv < lo - 1:
            runs.append(Run(name, np.concatenate([np.arange(hi, lo - 1, -1), np.arange(lo - 1, prv, -1)]), len(g), lo))
    return runs


def advance(r: Run, prob, w, seed_masks, partial, acc: "Accumulator", min_area, stop_at_end, patience, ended):
    """Record one window's probabilities ``prob`` (w, S, S) for run ``r`` and prepare its next input.

    The next window's mask input is this window's prediction (the next window is this one moved by
    ``r.stride`` slices), with painted slices re-anchored to their painted masks.
    """
    t = r.first(w, r.step)
    L = len(r.order)
    nxt = prob.clone()
    for j in range(w):
        p = t + j
        if p < 0 or p >= L:
            continue
        k = int(r.order[p])
        if p < r.n_seeds:                      # a painted slice: re-anchor
            nxt[j] = seed_masks[k]
            continue
        partial.setdefault(p, []).append(prob[j])
    r.prev = nxt
    newest = min(t + w - 1, L - 1)
    r.step += 1
    if stop_at_end:
        # The new slices, in order: those after the previous window's newest (t - stride + w - 1). Not
        # ``newest - stride + 1``: where the last window is clipped at the run's end, that counts slices again.
        for p in range(max(t - r.stride + w, r.n_seeds), newest + 1):
            area = float((prob[p - t] > 0.5).sum())
            r.quiet = r.quiet + 1 if area < min_area else 0
            if r.quiet >= patience:
                r.done = True
                ended.append(int(r.order[p]))
                # The quiet tail is background: drop what was collected for it (and anything after it).
                for q in list(partial):
                    if q > p - patience:
                        del partial[q]
                flush(r, partial, acc, upto=None)
                return
        if not r.no_muscle:
            # Positions before t get no more windows; the last ``patience - 1`` new slices may still turn out
            # to start a quiet tail, which is then dropped, so they wait. (A run from a "no muscle here" mark
            # is quiet from its start: the slices it has flushed before it stops are its say, as before.)
            flush(r, partial, acc, upto=min(t, newest + 2 - patience))
            return
    flush(r, partial, acc, upto=t)   # positions before t get no more windows


def flush(r: Run, partial, acc: "Accumulator", upto) -> None:
    """Move run ``r``'s finished positions (before ``upto``; all with None) from ``partial`` into ``acc``:
    the mean over the run's windows, weighted 1 / (1 + distance to the run's seed)."""
    for p in sorted(list(partial)):
        if upto is not None and p >= upto:
            break
        k = int(r.order[p])
        acc.add(k, torch_mean(partial.pop(p)), 1.0 / (1.0 + abs(k - r.weight_origin)), r.no_muscle)


@dataclass
class Accumulator:
    """One segment's probabilities from every run that reached a slice, on the working grid.

    ``num`` (K, S, S): sum of weight x probability; ``num2``: sum of weight x probability^2; ``den`` (K,):
    sum of the weights. For ``blend="max"`` (else None): ``peak`` (K, S, S), the largest probability of
    the runs from painted muscle; ``num_mark`` (K, S, S) and ``den_mark`` (K,), the weighted sums of the
    runs from slices marked "no muscle here" (the runs from muscle weigh ``den - den_mark``).
    """
    num: Any
    num2: Any
    den: Any
    peak: Any = None
    num_mark: Any = None
    den_mark: Any = None

    @classmethod
    def zeros(cls, K: int, S: int, peak: bool = False) -> "Accumulator":
        import torch

        maps = lambda: torch.zeros((K, S, S))  # noqa: E731
        return cls(maps(), maps(), torch.zeros(K), *((maps(), maps(), torch.zeros(K)) if peak else ()))

    def add(self, k: int, prob, weight: float, no_muscle: bool = False) -> None:
        """One run's probability (S, S) on slice ``k``, with its blending weight; ``no_muscle``: the run
        starts from slices marked "no muscle here"."""
        self.num[k] += weight * prob
        self.num2[k] += weight * prob * prob
        self.den[k] += weight
        if self.peak is None:
            return
        if no_muscle:
            self.num_mark[k] += weight * prob
            self.den_mark[k] += weight
        else:
            self.peak[k].copy_(self.peak[k].maximum(prob))

    def max_blend(self):
        """(K, S, S): the runs from painted muscle as one, by their largest probability, with their summed
        weight; averaged by weight with the runs from "no muscle here" marks, which keep their say near
        the marks as under the mean. Without marks: the largest probability; 0 where no run came."""
        muscle = (self.den - self.den_mark)[:, None, None]
        return self.peak.mul_(muscle).add_(self.num_mark).div_(self.den.clamp(min=1e-12)[:, None, None])

    def mean_and_variance(self):
        """(weighted mean, weighted variance) over the runs, each (K, S, S); 0 where no run came. In place
        of ``num`` and ``num2`` (the sums are gone afterwards)."""
        d = self.den.clamp(min=1e-12)[:, None, None]
        mean_p = self.num.div_(d)
        var_p = self.num2.div_(d).sub_(mean_p ** 2).clamp_(min=0)
        mean_p[self.den == 0] = 0.0
        self.num = self.num2 = None
        return mean_p, var_p


def torch_mean(tensors):
    import torch

    return torch.stack(tensors).mean(dim=0)
