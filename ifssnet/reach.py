"""Few-shot runs that reach the next annotated group (``ifssnet train --mode fewshot --reach N``).

In few-shot mode most training windows are scored against the network's own previous prediction
(sequential pseudo-labels), which any stable mask satisfies, ballooned or not. A short run that starts on an
annotated group never meets the next one, tens of slices away, so only its first window has a real target.
The paper's runs of 100-199 slices do meet it; on a CPU they are too long to backpropagate through.

With ``--reach N`` a run is drawn N slices longer, and each run's first part is propagated without gradient
(as :func:`ifssnet.tbptt.burn_in` does) to just before the next annotated group of its segment, when one lies
within reach. The trained part, ``--run-length`` slices, then ends on that group: its last windows are scored
against real annotation, and through the fed-back masks (``--feedback-grad``) and the ConvLSTM state the loss
there reaches the windows before it. Runs with no annotated group within reach get an ordinary burn-in.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


def next_group_end(known: np.ndarray, window: int) -> Optional[int]:
    """Index of the last slice of the first annotated group after the run's own, or None.

    ``known``: bool (L,), which slices of the run hold annotation, in the run's order. The run's own group is
    the known slices it starts on (at least ``window``); the next group begins at the next known slice after
    a gap and ends at the last known slice before the following gap (or at the run's end)."""
    known = np.asarray(known, bool)
    L = known.size
    own = window
    while own < L and known[own]:
        own += 1
    later = np.flatnonzero(known[own:])
    if later.size == 0:
        return None
    start = own + int(later[0])
    end = start
    while end + 1 < L and known[end + 1]:
        end += 1
    return end


def reach_offsets(knowns: Sequence[np.ndarray], length: int, run_length: int, window: int, stride: int,
                  burn_in: int, rng: np.random.Generator) -> List[int]:
    """Where each run's trained part starts: ``run_length`` slices that end on the next annotated group.

    ``knowns``: each run's bool (L_i,) annotation flags; ``length``: the slices every run has (the batch's
    common length). An offset is a multiple of ``stride``, at least ``stride`` (every run is burnt in, so the
    batch's ConvLSTM states stack), and at most ``length - run_length``. A run whose next group ends past
    ``length - 1`` (or has none) gets a burn-in drawn from ``stride .. max(burn_in, stride)``, as
    ``--burn-in`` draws one. Returns one offset per run, in slices."""
    top = stride * ((length - run_length) // stride)
    if top < stride:
        raise ValueError(f"runs of {length} slices leave no room for a burn-in before {run_length} trained ones")
    offsets = []
    for known in knowns:
        end = next_group_end(np.asarray(known)[:length], window)
        if end is not None and end < length:
            need = end + 1 - run_length                     # the trained part's last slice is the group's last
            off = stride * -(-max(need, stride) // stride)  # rounded up: the group stays inside
        else:
            off = stride * int(rng.integers(1, max(burn_in, stride) // stride + 1))
        offsets.append(min(off, top))
    return offsets
