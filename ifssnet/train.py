"""Training: full supervision, few-shot with sequential pseudo-labels, the decremental schedule, TBPTT.

One step takes a random run of ``run_length`` slices of one segment (:func:`ifssnet.dataset.sample_run`)
and slides a window of w slices over it with stride s, exactly as propagation does: the first window's
mask input is the annotation of the run's first w slices, and every later window gets the previous
window's prediction (detached), re-anchored on annotated slices and, in full supervision, on the
ground truth every ``refeed_every`` windows (the prototype's 30). s is 1 (the paper's) unless
``strides`` lists more: then each step draws one, so the network also learns the larger steps of
propagation's ``fast`` preset (stride w), whose mask input is the prediction w slices back and whose
ConvLSTM carries the state of the window's slice s-1 (see :mod:`ifssnet.model.convlstm`).

Targets per window (eq. 3-4 of the paper): in ``full`` mode the ground truth. In ``fewshot`` mode the
annotation where a slice is annotated, else the previous window's prediction for that slice
(sequential pseudo-label, thresholded at 0.5 and detached); slices with neither are left out of the
Tversky sums. Few-shot cases carry the decremental share of annotated slices and join the training in
that order (:func:`decremental_pool`). The loss of the run is 1 - mean over windows of TI, and TBPTT updates the network after
each half of the run (the ConvLSTM state is detached between halves).

Optimiser: Adam, ``lr`` (paper 1e-4) then ``lr_final`` (1e-5) for the last two epochs, L2 1e-5 on
the network's weights (not on alpha/beta), **decoupled** by default (AdamW: each step shrinks a weight by
lr x 2 lambda x w). The paper's L2 term in the gradient (``weight_decay="coupled"``, plain Adam) kills the
network's deep path: the gradient reaching the Bi-ConvLSTM is about 1e-7 per weight (it shrinks about 5x
per decoder level; ``benchmarks/dead_weights.py --gradients``), below the L2 term's 2 lambda w = 4e-7, and Adam normalises every
step to about lr whatever the gradient's size, so those weights are driven to 0 at about lr per step
(measured: 10x smaller in 40 steps at lr 1e-3; every checkpoint trained that way holds a fusion and a
Bi-ConvLSTM of 1e-9 to 1e-30; model card). Checkpoints every ``checkpoint_every`` steps hold the
weights, optimiser, step and the RNG seed, so ``--resume`` continues exactly: the data and dropout
of step n are drawn from generators seeded with (seed, n, rank).

``ema`` (off by default) keeps an exponential moving average of the weights, which the model files hold
and validation scores; ``warmup`` raises the learning rate linearly over the first steps, so that a fresh
Adam's first updates (about lr for every weight, whatever its gradient) do not jolt a network being
fine-tuned.

Distributed: ``torchrun --nproc_per_node N -m ifssnet.train ...`` runs data parallelism over cases
(each rank samples its own shard; gradients are all-reduced after every TBPTT update, as DDP does;
:mod:`ifssnet.distributed`), gloo on CPU, nccl on GPUs. One step's windows, burn-in and updates are in
:mod:`ifssnet.tbptt`, the extra loss terms in :mod:`ifssnet.extra_losses`, the deformed mask inputs in
:mod:`ifssnet.mask_noise`, ``--reach``'s runs in :mod:`ifssnet.reach`, ``--cycle``'s in :mod:`ifssnet.cycle`,
``--fill-gap``'s labels between painted groups in :mod:`ifssnet.fill_gaps`, ``--empty-past-ends``' labels past
the paint in :mod:`ifssnet.past_ends`. Those labels are targets; with ``anchor="painted"`` (``--anchor painted``) the
mask input is re-anchored on the painted slices alone, as propagation re-anchors on painted slices only, and
between them the network is fed its own predictions.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .cycle import cycle_step
from .dataset import Case, decremental_fractions, require_complete, require_painted, sample_run, sparsifier, thin_case
from .distributed import agreed, broadcast_parameters, rank0_decides
from .errors import InputError
from .fill_gaps import fill_gaps
from .past_ends import empty_past_ends
from .mask_noise import JITTER_RADIUS, JITTER_SHIFT
from .progress import CancelLike, ProgressFn, check_cancel, report
from .reach import reach_offsets
from .tbptt import image_step, train_step


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in the checkpoint)."""

    mode: str = "full"                 # "full" | "fewshot" | "image" (the encoder alone, see image_step)
    epochs: int = 10
    steps_per_epoch: int = 100
    run_length: int = 32               # slices per sampled run (prototype: 100-199 on a GPU)
    lr: float = 1e-4
    lr_final: float = 1e-5             # last two epochs (paper: a tenth of lr)
    l2: float = 1e-5                   # paper's lambda: + lambda ||W||^2 (weight_decay = 2 lambda)
    weight_decay: str = "decoupled"    # how l2 is applied: "decoupled" (AdamW) | "coupled" (Adam, in the gradient)
    refeed_every: int = 30             # full mode: re-feed the ground truth every N windows (0: never)
    annotated_total: float = 0.035     # fewshot: most annotated share of the slices (decremental_cases)
    decay_ratio: float = 0.5           # fewshot: annotated share ratio from one case to the next (1: the same share each)
    paint_group: int = 3               # fewshot: consecutive slices per painted group (sparsify's group)
    curriculum: bool = True            # fewshot: cases join in decremental order (decremental_pool)
    draw: str = "auto"                 # a run's case: "case" (each alike) | "paint" (by its painted slices) | "auto"
    seed: int = 0
    checkpoint_every: int = 50
    augment: bool = True
    grad_clip: float = 5.0
    bce_weight: float = 0.0            # + this x voxel-wise cross-entropy (0 = the paper's loss; see loss.py)
    mask_jitter: float = 0.0           # probability per window that the mask input is deformed (jitter_mask)
    jitter_first_only: bool = False    # deform only the run's first mask input (the annotation), as stage 3 did
    jitter_shift: int = JITTER_SHIFT   # jitter_mask: largest in-plane shift, pixels of the working grid
    jitter_radius: int = JITTER_RADIUS  # jitter_mask: largest dilation/erosion radius, pixels (0: shift only)
    strides: List[int] = field(default_factory=lambda: [1])   # window strides, one drawn per step (1 = paper)
    batch: int = 1                     # runs per step (one stride for all); more keep a GPU busy
    feedback_grad: bool = False        # backpropagate through the mask fed from window to window (windows_loss)
    mask_box: float = 0.0              # probability per window that the mask input becomes its bounding boxes (box_mask)
    image_aux: float = 0.0             # + this x the image-only head's loss (BCE + soft Dice; 0 = none)
    head_lr_mult: float = 10.0         # the image-only head learns at this x lr (it starts from nothing)
    learn_tversky: bool = True         # False: alpha and beta stay where they start (0.5, 0.5: the Dice loss)
    tversky_beta: float = 0.5          # where beta starts (alpha = 1 - beta); > 0.5 weights missed voxels more
    burn_in: int = 0                   # up to this many slices propagated without gradient before the trained part
    reach: int = 0                     # fewshot: runs this much longer, trained up to the next annotated group (reach.py)
    cycle: float = 0.0                 # weight of the way back to the run's annotated slices (cycle.py; 0: off)
    fill_gap: int = 0                  # fewshot: gaps of up to this many slices between painted groups filled (fill_gaps.py)
    empty_past_ends: bool = False      # fewshot: slices past a painted empty slice beyond the paint known empty (past_ends.py)
    anchor: str = "known"              # fewshot: the mask input is re-anchored on "known" slices, or on "painted" ones only
    ema: float = 0.0                   # decay of an exponential moving average of the weights (0: none); see train()
    warmup: int = 0                    # steps over which the learning rate rises linearly to lr (0: none)
    end_weight: float = 0.0            # + this x a window's predicted area past the muscle's end (leak_loss)

    def validate(self) -> None:
        if self.mode not in ("full", "fewshot", "image"):
            raise InputError(f"Unknown training mode '{self.mode}'.", "Use --mode full, fewshot or image.")
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise InputError("Epochs and steps per epoch must be at least 1.", "Check --epochs and --steps.")
        if self.weight_decay not in ("decoupled", "coupled"):
            raise InputError(f"Unknown weight decay '{self.weight_decay}'.", "Use --weight-decay decoupled or coupled.")
        # (option, value, the lowest it may be, what to give instead)
        bounds = (("refeed_every", self.refeed_every, 0, "0 never re-feeds the truth."),
                  ("--burn-in", self.burn_in, 0, "Give a number of slices, e.g. 24."),
                  ("--reach", self.reach, 0, "Give a number of slices, e.g. 96."),
                  ("--cycle", self.cycle, 0, "Give a loss weight, e.g. 1."),
                  ("--fill-gap", self.fill_gap, 0, "Give a number of slices, e.g. 40."),
                  ("--end-weight", self.end_weight, 0, "Give a loss weight, e.g. 1."),
                  ("--warmup", self.warmup, 0, "Give a number of steps, e.g. 20."),
                  ("--batch", self.batch, 1, "Give the number of runs per step."),
                  ("--image-aux", self.image_aux, 0, "Give a loss weight, e.g. 1."),
                  ("--checkpoint-every", self.checkpoint_every, 1, "Give a number of steps, e.g. 50."),
                  ("--seed", self.seed, 0, "Give a whole number of 0 or more, e.g. 0."),
                  ("--jitter-shift", self.jitter_shift, 0, "Give a number of pixels, e.g. 4 (0: no shift)."),
                  ("--jitter-radius", self.jitter_radius, 0, "Give a number of pixels, e.g. 2 (0: shift only)."),
                  ("--mask-jitter", self.mask_jitter, 0, "Give a probability between 0 and 1, e.g. 0.3."),
                  ("--mask-box", self.mask_box, 0, "Give a probability between 0 and 1, e.g. 0.1."),
                  ("--bce-weight", self.bce_weight, 0, "Give a loss weight, e.g. 1 (0: the paper's loss)."))
        for option, value, lowest, hint in bounds:
            if value < lowest:
                raise InputError(f"{option} must be at least {lowest}, not {value}.", hint)
        if not (self.lr > 0.0 and self.lr_final > 0.0):          # also refuses nan
            raise InputError(f"The learning rate must be above 0, not {self.lr:g} (last two epochs {self.lr_final:g}).",
                             "Give e.g. --lr 1e-4 (the paper's) or 1e-5 for a gentler fine-tune.")
        if not 0.0 < self.tversky_beta < 1.0:
            raise InputError(f"--tversky-beta must lie between 0 and 1, not {self.tversky_beta}.",
                             "Give e.g. 0.6 (missed voxels cost 1.5x a false one) or 0.5 (the Dice loss).")
        if self.reach and self.mode != "fewshot":
            raise InputError(f"--reach is for --mode fewshot (the next annotated group); this run is --mode {self.mode}.",
                             "Leave --reach out, or train with --mode fewshot.")
        if not 0.0 < self.annotated_total <= 1.0 or not 0.0 < self.decay_ratio <= 1.0:
            raise InputError(f"--annotated-total and --decay-ratio must lie in (0, 1], not {self.annotated_total} and "
                             f"{self.decay_ratio}.", "Give e.g. --annotated-total 0.035 (the paper's 3.5 %) and "
                             "--decay-ratio 0.5 (the paper's halving) or 1 (every case the same share).")
        if self.paint_group < 1:
            raise InputError(f"--paint-group must be at least 1, not {self.paint_group}.",
                             "Give the number of consecutive slices per painted group, e.g. 3.")
        if self.fill_gap and self.mode != "fewshot":
            raise InputError(f"--fill-gap fills the gaps between painted groups of --mode fewshot; this run is --mode "
                             f"{self.mode}.", "Leave --fill-gap out, or train with --mode fewshot.")
        if self.empty_past_ends and self.mode != "fewshot":
            raise InputError(f"--empty-past-ends labels the slices past the paint of --mode fewshot; this run is --mode "
                             f"{self.mode}.", "Leave --empty-past-ends out, or train with --mode fewshot.")
        if self.draw not in DRAWS:
            raise InputError(f"Unknown draw '{self.draw}'.", f"Use --draw {', '.join(DRAWS[:-1])} or {DRAWS[-1]}.")
        if self.anchor not in ("known", "painted"):
            raise InputError(f"Unknown anchor '{self.anchor}'.", "Use --anchor known or painted.")
        if self.anchor == "painted" and (self.mode != "fewshot" or self.cycle):
            raise InputError("--anchor painted chooses the slices a --mode fewshot run re-anchors on; this run is "
                             f"--mode {self.mode}{' with --cycle' if self.cycle else ''}.",
                             "Leave --anchor out, or train with --mode fewshot without --cycle.")
        if self.cycle and (self.burn_in or self.reach or self.mode == "image"):
            raise InputError("--cycle brings each run back to the annotated slices it starts on, so it cannot "
                             "start after a burn-in or reach another group, and --mode image has no runs.",
                             "Leave out --burn-in and --reach (or give 0), or leave out --cycle.")
        if not 0.0 <= self.ema < 1.0:
            raise InputError(f"--ema must be at least 0 and below 1, not {self.ema}.",
                             "Give a decay such as 0.99 (an average over about 100 steps), or 0 for none.")
        if not self.strides or any(int(v) < 1 for v in self.strides):
            raise InputError(f"Window strides must be whole numbers of at least 1, not {self.strides}.",
                             "Give --strides as e.g. 1 or 1,3.")

    @property
    def uses_lr_final(self) -> bool:
        """Whether the run reaches ``lr_final``: only a run of more than two epochs has last two epochs of its own."""
        return self.epochs > 2

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): ``lr``, ``lr_final`` for the last two epochs, and
        over the first ``warmup`` steps a linear rise, (step + 1) / warmup of that."""
        epoch = step // self.steps_per_epoch
        lr = self.lr_final if self.uses_lr_final and epoch >= self.epochs - 2 else self.lr
        return lr * min(1.0, (step + 1) / self.warmup) if self.warmup else lr


@dataclass
class StepLog:
    step: int
    loss: float
    alpha: float
    beta: float
    lr: float
    seconds: float


# --------------------------------------------------------------------------------------------------


def _past_time_limit(started: float, limit_s: Optional[float]) -> bool:
    """Whether ``limit_s`` seconds have passed since ``started``; rank 0 decides for every rank."""
    if limit_s is None:
        return False
    return rank0_decides(time.perf_counter() - started >= limit_s)


def _seed_everything(cfg: TrainConfig, step: int, rank: int):
    import torch

    torch.manual_seed(hash((cfg.seed, step, rank)) & 0x7FFFFFFF)
    return np.random.default_rng([cfg.seed, step, rank])


#: How a step picks the case its run comes from (``TrainConfig.draw``, ``--draw``); ``auto``: ``paint`` in
#: ``fewshot`` mode, ``case`` otherwise (full supervision's runs stay as they were drawn before the option).
DRAWS = ("auto", "case", "paint")


def draws_by_paint(cfg: TrainConfig) -> bool:
    """Whether ``cfg``'s runs draw their case by its painted slices (:func:`_draw_case`)."""
    return cfg.draw == "paint" or (cfg.draw == "auto" and cfg.mode == "fewshot")


def painted_weights(cases: Sequence[Case]) -> np.ndarray:
    """Each case's share of the painted slices that hold a muscle, float64 (n_cases,) summing to 1 (uniform where
    none holds any): ``--draw paint``'s probability of drawing the case. Counted per segment, so a slice painted for
    two muscles counts twice, as it starts runs of both (:func:`ifssnet.dataset.sample_run`)."""
    counts = np.array([sum(int(case.known_present(n).sum()) for n in case.masks) for case in cases], np.float64)
    return counts / counts.sum() if counts.sum() > 0 else np.full(len(cases), 1.0 / max(1, len(cases)))


def _draw_case(pool: int, rng, weights: Optional[np.ndarray]) -> int:
    """The index of the case a run is drawn from, among the first ``pool``: each alike (``weights`` None:
    ``draw="case"``, the prototype's), or in proportion to ``weights`` (:func:`painted_weights`, for ``draw="paint"``,
    and ``"auto"`` in ``fewshot`` mode; :func:`draws_by_paint`).

    Why ``paint``: in few-shot mode a run's windows past its first are scored against the network's own previous
    predictions wherever no slice is painted, and an empty prediction is its own pseudo-label. Only runs that meet
    painted slices past their start, in the densely painted cases at the head of the decremental order, teach the
    network to carry a mask on to the next slice. Drawn uniformly, the many cases with a few painted groups per
    muscle outweigh them once they join the pool: the paper's 250-step CPU recipe collapsed to (nearly) empty
    masks on 9 of the 10 runs measured with ``case``, and on 1 of 4 with ``paint`` (model card, "Session 45"):
    fewer collapses, not none, so few-shot runs still need validation (``--val``)."""
    if weights is None:
        return int(rng.integers(pool))
    p = weights[:pool] / weights[:pool].sum() if weights[:pool].sum() > 0 else None
    return int(rng.choice(pool, p=p))


def _draw_run(cases, pool: int, rng, cfg: TrainConfig, window: int, weights: Optional[np.ndarray] = None):
    """One training run from the first ``pool`` cases (a few tries: a case may have no segment that fits); the case
    is chosen by :func:`_draw_case` (``weights``: :func:`painted_weights` of ``cases`` where :func:`draws_by_paint`,
    else None)."""
    for _ in range(64):
        run = sample_run(cases[_draw_case(pool, rng, weights)], rng, cfg.run_length + max(cfg.burn_in, cfg.reach),
                         window, cfg.augment)
        if run is not None:
            return run
    _refuse_runs_that_do_not_fit(cases[:pool], cfg, window)
    raise AssertionError("unreachable")


def _run_fits(cases, length: int, window: int) -> bool:
    """Whether :func:`ifssnet.dataset.sample_run` can draw a run of ``length`` slices from some case of ``cases``:
    a start on ``window`` known slices where a segment is present, with ``length`` slices after it (all of a
    sweep shorter than that, from its first slice)."""
    for case in cases:
        room = max(0, case.n_slices - length)           # the last start sample_run takes
        for name in case.masks:
            ok = case.known_present(name)
            for order in (ok, ok[::-1]):
                if any(order[p:p + window].all() for p in range(room + 1)):
                    return True
    return False


def _refuse_runs_that_do_not_fit(cases, cfg: TrainConfig, window: int, thinned: Sequence[str] = ()) -> None:
    """Raise the :class:`InputError` that says why no training run can be drawn from ``cases`` (the run's length,
    or no annotated group); ``thinned``: lines naming the cases thinned to the network's slice spacing, whose
    frames the message counts (a sweep of 120 slices 0.25 mm apart is 28 frames at 1.108 mm)."""
    longest = _longest_run(cases, window)
    length = cfg.run_length + max(cfg.burn_in, cfg.reach)
    note = (" The sweeps are on the network's slice spacing: " + "; ".join(thinned) + ".") if thinned else ""
    if 0 < longest < length:
        extra = max(cfg.burn_in, cfg.reach)
        parts = f"--run-length {cfg.run_length}" + (
            f" + --{'reach' if cfg.reach == extra else 'burn-in'} {extra}" if extra else "")
        raise InputError(f"A training run of {length} slices ({parts}) does not fit: a run starts on {window} "
                         f"consecutive annotated slices where a segment is present, and at most {longest} slices "
                         f"lie from such a start to the sweep's end in any training case.{note}",
                         "Give a smaller --run-length, --burn-in or --reach, or train on longer sweeps.")
    hint = "Annotate at least one group of consecutive slices per case"
    if cfg.mode == "fewshot" and not cfg.fill_gap:
        hint += (", or label the slices between painted ones with --fill-gap N (in Slicer: Fill gaps up to N "
                 "slices), N at least the widest gap")
    raise InputError(f"No training case has {window} consecutive annotated slices where a segment is present.{note}",
                     hint + ".")


def _longest_run(cases, window: int) -> int:
    """The most slices, in either direction, from a start on ``window`` known slices where a segment is present to
    the sweep's end, over ``cases`` (0 when there is no such start): a longer run cannot be drawn
    (:func:`ifssnet.dataset.sample_run`)."""
    longest = 0
    for case in cases:
        for name in case.masks:
            ok = case.known_present(name)
            for order in (ok, ok[::-1]):
                starts = [p for p in range(len(order) - window + 1) if order[p:p + window].all()]
                if starts:
                    longest = max(longest, len(order) - starts[0])
    return longest


def _window_of(run, rng, window: int):
    """``--mode image``: a window of ``window`` slices at a random place in ``run``. Runs cross a muscle's
    end often (``sample_run``'s ``end_fraction``), so some windows show slices without the segment, and the
    image-only head learns to say so (windows at the run's start only, it found muscle everywhere)."""
    o = int(rng.integers(0, len(run.known) - window + 1))
    return replace(run, image=run.image[o:o + window], mask=run.mask[o:o + window], known=run.known[o:o + window])


def decremental_pool(n_cases: int, step: int, total: int) -> int:
    """Few-shot curriculum: how many cases step ``step`` (0-based, of ``total``) draws from, uniformly.

    The cases are in decremental order (the most annotated first; :func:`ifssnet.dataset.decremental_fractions`).
    Case i joins at step ``i * total / n_cases``, so the network learns the muscles from the densely
    annotated subjects before the sparse ones make most of its targets pseudo-labels; the paper feeds
    the subjects in this order ("the model has firstly learned proper and relevant target muscle features
    from the annotated set, before adding noisy pseudo-labeled slices"). Earlier cases stay in the pool.
    Drawing every case from the first step (``curriculum=False``) collapsed a 250-step run to empty
    masks: with 35 of 40 cases holding one annotated group, an empty prediction is its own pseudo-label.
    """
    if n_cases <= 0 or total <= 0:
        return max(0, n_cases)
    return min(n_cases, 1 + (max(0, step) * n_cases) // total)


def decremental_cases(cases: Sequence[Case], cfg: TrainConfig) -> List[Case]:
    """``--mode fewshot``'s cases, in their order: a completely annotated case keeps its annotation on the
    decremental share of its slices (:func:`ifssnet.dataset.decremental_fractions`, in groups of
    ``cfg.paint_group`` slices, :func:`ifssnet.dataset.sparsify`); a partly annotated one (a seeds file) stays as
    it is.

    ``cfg.annotated_total`` bounds the share of the completely annotated cases' slices that stay annotated
    (:func:`annotated_share`: a slice with any segment annotated counts once), as the paper keeps "the 3.5 %
    annotation margin". The schedule's own mean is only a start: every case keeps at least one group, and
    every muscle one group (:func:`ifssnet.dataset.sparsify`), which on phantom subjects 1-40 (400 slices)
    made the paper's 3.5 % schedule annotate 4.1 % of the slices, 4.9 % with the group per muscle
    (``python benchmarks/fewshot_share.py .data/train/s*``). The schedule is scaled down (bisection on its mean)
    until the kept share is within the margin; where the groups every case keeps already exceed it, they are
    kept and a warning gives the share."""
    import warnings

    complete = [all(k.all() for k in c.known.values()) for c in cases]
    thin = [sparsifier(c, cfg.paint_group) if full else None for c, full in zip(cases, complete)]  # masks read once

    def kept(total: float) -> List[Case]:
        fractions = decremental_fractions(len(cases), total, cfg.decay_ratio)
        return [of(f) if of is not None else c for c, f, of in zip(cases, fractions, thin)]

    def share(out: List[Case]) -> float:
        return annotated_share([c for c, full in zip(out, complete) if full])

    margin = cfg.annotated_total * (1 + 1e-9)
    out = kept(cfg.annotated_total)
    if share(out) <= margin:
        return out
    low, high, best = 0.0, cfg.annotated_total, None
    for _ in range(24):                    # the largest schedule whose kept share is within the margin
        mid = (low + high) / 2
        trial = kept(mid)
        if share(trial) <= margin:
            low, best = mid, trial
        else:
            high = mid
    if best is None:
        best = kept(0.0)
        warnings.warn(f"Few-shot training keeps one group of {cfg.paint_group} annotated slice(s) per case and per "
                      f"segment: {share(best):.1%} of the slices, more than --annotated-total "
                      f"{cfg.annotated_total:.1%}. Give more or longer cases, or a smaller --paint-group, to stay "
                      f"within it.", stacklevel=2)
    return best


def annotated_share(cases: Sequence[Case]) -> float:
    """The share of the slices of ``cases`` on which any segment is annotated (``Case.known``), in [0, 1]:
    the slices a user would have painted. 0 for no slices."""
    slices = sum(c.n_slices for c in cases)
    painted = sum(int(np.logical_or.reduce(list(c.known.values())).sum()) for c in cases if c.known)
    return painted / slices if slices else 0.0


def gap_on_frames(gap: int, sweep_mm: Optional[float], frame_mm: Optional[float]) -> int:
    """``--fill-gap``'s ``gap`` slices of a sweep ``sweep_mm`` apart, as frames ``frame_mm`` apart (the same
    millimetres, rounded, at least 1): a sweep 4x finer than the network's frames fills a gap of 40 of its slices
    where 10 frames lie between the paint. ``gap`` itself where either spacing is unknown or the sweep was not
    thinned. Counted in frames, a gap covered 4x the millimetres the user meant on such a sweep."""
    if not gap or not sweep_mm or not frame_mm or frame_mm <= sweep_mm:
        return gap
    return max(1, int(round(gap * float(sweep_mm) / float(frame_mm))))


def added_labels(case: Case, cfg: TrainConfig, sweep_mm: Optional[float] = None) -> Case:
    """``case`` with the labels ``--mode fewshot`` adds to its paint, as training adds them: ``cfg.fill_gap``'s
    between painted groups (:func:`ifssnet.fill_gaps.fill_gaps`), then ``cfg.empty_past_ends``' past the ends
    (:func:`ifssnet.past_ends.empty_past_ends`). Neither set: the case itself. ``sweep_mm``: the slice spacing of
    the user's sweep where ``case`` was thinned to the network's frames (:func:`match_slice_spacing`), so that
    ``--fill-gap`` counts the sweep's slices, as the user painted them (:func:`gap_on_frames`)."""
    if cfg.fill_gap:
        case = fill_gaps(case, gap_on_frames(cfg.fill_gap, sweep_mm, case.slice_spacing_mm))
    if cfg.empty_past_ends:
        case = empty_past_ends(case)
    return case


#: Fine-tuning from a model with more than this share of zero weights warns that those parts hardly learn.
DEAD_SHARE_WARNING = 0.25


def dead_weights_advice(model, path) -> str:
    """What to tell a user who fine-tunes from ``model`` (loaded from ``path``): '' when at most
    :data:`DEAD_SHARE_WARNING` of its weights are below ``NEGLIGIBLE_WEIGHT``, else why those parts hardly
    learn and what to do. The CLI warns with it; the Slicer Training module shows it under the base model."""
    from .model.checkpoint import NEGLIGIBLE_WEIGHT, negligible_share

    share = negligible_share(model)
    if share <= DEAD_SHARE_WARNING:
        return ""
    return (f"{share:.0%} of the weights of {path} are zero (below {NEGLIGIBLE_WEIGHT:g}): weights of 0 pass "
            "almost no gradient to each other, so fine-tuning brings those parts back slowly if at all (the "
            "shipped weights' fusion and Bi-ConvLSTM are such parts; model card, 'The deep path was dead'). "
            "To train every part, start a new network (leave out --from).")


def _zero_and_warn_if_dead(model, path) -> None:
    """``--from``: weights killed by coupled decay become exact zeros (not slow subnormals), and a model
    with more than :data:`DEAD_SHARE_WARNING` of them zero gets a warning (:func:`dead_weights_advice`)."""
    import warnings

    from .model.checkpoint import zero_negligible_weights

    zero_negligible_weights(model)
    advice = dead_weights_advice(model, path)
    if advice:
        warnings.warn(advice, stacklevel=3)


def match_slice_spacing(cases: Sequence[Case], config) -> List[Case]:
    """The cases on the network's slice spacing (``config.slice_spacing_mm``, :mod:`ifssnet.slice_spacing`).
    A network that does not know its spacing (a new one, or one saved before it was recorded) takes the
    median spacing of the cases that know theirs, and keeps it in its configuration; then the cases
    finer than that spacing are thinned to it (:func:`ifssnet.dataset.thin_case`)."""
    if config.slice_spacing_mm is None:
        known = [float(c.slice_spacing_mm) for c in cases if c.slice_spacing_mm]
        if not known:
            return list(cases)
        config.slice_spacing_mm = float(np.median(known))
    return [thin_case(c, config.slice_spacing_mm, getattr(config, "window", 3)) for c in cases]


def weight_average(model, decay: float):
    """An exponential moving average of ``model``'s weights (``torch.optim.swa_utils.AveragedModel``), or
    None when ``decay`` is 0. After each step ``update_parameters(model)`` sets avg = decay x avg +
    (1 - decay) x w; the first update copies w. It averages over about 1 / (1 - decay) steps, so the
    network written is not the one step that happened to end the run: checkpoints of one run differ a lot
    in propagation (model card). Parameters and buffers alike (``use_buffers``); GroupNorm keeps no running
    statistics, so nothing needs recomputing."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def make_optimizer(model, loss_fn, cfg: TrainConfig):
    """Adam over the network (L2 ``cfg.l2``, applied as ``cfg.weight_decay`` says: AdamW when "decoupled"),
    the loss's alpha/beta (no decay) and the image-only head if any (its own group, ``lr_mult``)."""
    import torch

    head = list(model.image_head.parameters()) if model.image_head is not None else []
    head_ids = {id(h) for h in head}
    body = [q for q in model.parameters() if id(q) not in head_ids]
    params = [{"params": body, "weight_decay": 2 * cfg.l2},
              {"params": loss_fn.parameters(), "weight_decay": 0.0}]
    if head:
        params.append({"params": head, "weight_decay": 2 * cfg.l2, "lr_mult": cfg.head_lr_mult})
    return (torch.optim.AdamW if cfg.weight_decay == "decoupled" else torch.optim.Adam)(params, lr=cfg.lr)


def base_lineage(path, meta: dict) -> dict:
    """What a fine-tune records of its base model (the checkpoint's ``base`` entry): the file's name, the command
    and data it was trained with, its step and alpha / beta, its own ``base`` (so a fine-tune of a fine-tune
    keeps the whole chain) and ``resumed`` (the commands that continued it) or, for a file that records them by
    hand, its ``stages`` (the shipped model's). Strings, numbers and dicts only (``weights_only`` loading); the
    optimiser state and validation history are left out."""
    tr = meta.get("training") or {}
    out = {"file": Path(str(path)).name, "command": str(meta.get("command", "")), "data": str(meta.get("data", "")),
           "version": str(meta.get("version", meta.get("package_version", "")))}
    for key in ("step", "alpha", "beta"):
        if key in tr:
            out[key] = tr[key]
    for key in ("base", "stages", "resumed"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    return out


def train(cases: Sequence[Case], out_path, *, model_config=None, cfg: Optional[TrainConfig] = None,
          base_model=None, resume=None, command: str = "", data_description: str = "",
          progress: Optional[ProgressFn] = None, cancel: CancelLike = None,
          on_step: Optional[Callable[[StepLog], None]] = None, rank: int = 0, world: int = 1,
          device: str = "cpu", time_limit_s: Optional[float] = None, validator=None,
          val_every: Optional[int] = None, on_validation: Optional[Callable] = None, loaded=None) -> Path:
    """Train (or fine-tune) IFSS-Net on ``cases`` and write the checkpoint to ``out_path``.

    ``model_config``: an :class:`ifssnet.model.IFSSNetConfig` for a new network; ``base_model``: a
    checkpoint to fine-tune from; ``resume``: a training checkpoint to continue exactly; ``loaded``: what
    :func:`~ifssnet.model.checkpoint.load_checkpoint` returned for ``resume`` (else ``base_model``) where the caller
    has read it already (the file is not read again; the model is trained in place). A cancel
    stops after the current step, or between validation cases (and before a fine-tune's step-0 validation), and
    leaves ``out_path`` as it was before the run started.
    Returns the path written. ``on_step`` receives a :class:`StepLog` per step (for loss curves).
    ``time_limit_s``: stop after the first step that ends past this many seconds of training, and
    write the checkpoint and the model file there (a run sized to a lent machine's time; ``--resume``
    continues it). In distributed runs rank 0's clock decides, so that every rank stops at the same step.
    ``validator``: an :class:`ifssnet.validation.Validator`, or any callable ``validator(model, step, rank=,
    world=, cancel=[, progress=])`` that returns a :class:`~ifssnet.validation.ValidationScore` (``progress`` is
    passed where it takes one: the Validator reports ``"validating"`` per case); every ``val_every`` steps (default
    ``cfg.checkpoint_every``) and at the last step, the network propagates the validation cases (in a
    distributed run every rank takes its share of them, and all get the same score); rank 0 passes the
    :class:`~ifssnet.validation.ValidationScore` to ``on_validation`` and keeps the best network by Dice. While
    the run goes, that network is the run's own file beside its checkpoint (``MODEL.ckpt.best.pt``,
    :func:`checkpoint_best_path`); where ``MODEL.pt`` is written it is moved to ``MODEL.best.pt``, so a cancelled,
    killed or failed run leaves an earlier run's ``MODEL.best.pt`` as it was (and its own best file for
    ``--resume``, where it saved a checkpoint); a run that writes ``MODEL.pt`` without a best of its own (no
    validator) removes an earlier run's ``MODEL.best.pt``, which is not the best of the new model. A new run removes a ``MODEL.ckpt.best.pt`` it finds when it starts: it
    may start only where no unfinished run's checkpoint is, so that file is a killed run's that can never be resumed.
    A fine-tune (``base_model``) validates ``base_model`` first, as step 0, so that ``MODEL.best.pt`` is the
    starting network where no step beats it. The history and the best score travel in the checkpoint, so
    ``--resume`` keeps them; where a run (new or resumed) found a better network after its last checkpoint and
    stopped before the next one, ``MODEL.ckpt.best.pt`` holds that network, and ``--resume`` goes on from it, its
    score and the validations that led to it (:func:`_best_file_of_resumed_run`). A resumed run keeps the command
    that started it as ``command`` and lists the commands that continued it in ``resumed``.
    """
    import torch

    from .loss import ParametricTversky
    from .model import IFSSNet, IFSSNetConfig
    from .model.checkpoint import load_checkpoint, resume_state, save_checkpoint
    from .model.image_head import with_image_head

    if val_every is not None and int(val_every) < 1:
        raise InputError(f"Validating every {val_every} steps is not possible.", "Give --val-every 1 or more.")
    if not cases:
        raise InputError("No training cases.", "Give at least one volume with its annotation.")
    start_step, opt_state, loss_state, val_state, ema_state = 0, None, None, {}, None
    stored_val_every = None               # --resume: the validation interval of the run it continues
    lineage = None                        # what the network was fine-tuned from (base_lineage), kept by --resume
    resumed: list = []                    # the commands that continued the run, after the one that started it
    if resume is not None:
        # First: the cases are checked against the resumed run's own config (its mode), not the caller's.
        model, model_config, meta = loaded or load_checkpoint(resume, map_location="cpu")
        tr = resume_state(meta, resume)
        # runs from before a field were coupled, and drew each case alike
        cfg = TrainConfig(**{"weight_decay": "coupled", "draw": "case", **tr["config"]})
    cfg = cfg or TrainConfig()
    cfg.validate()
    require_painted(cases)
    if cfg.mode == "full":
        require_complete(cases, "--mode full", "--mode fewshot")
    trained_segments = sorted({n for c in cases for n in c.masks})    # recorded in the checkpoint (save)
    describe = getattr(validator, "description", None)                 # a Validator's protocols and cases
    validated_on = describe() if callable(describe) else None
    out_path = Path(out_path)
    refuse_writing_over_inputs(out_path, base_model=base_model if resume is None else None)
    if resume is None or Path(resume).resolve() != checkpoint_path(out_path).resolve():
        refuse_replacing_an_unfinished_run(out_path)      # a resumed run writes OUT.ckpt.pt too: not over another run
    if resume is not None:
        _refuse_other_cases(resume, meta, data_description)
        _refuse_other_base(resume, meta, base_model)
        _refuse_other_segments(resume, tr, trained_segments)
        _refuse_other_validation(resume, tr, validated_on)
        lineage = meta.get("base")
        resumed = [*(meta.get("resumed") or []), command]
        command = str(meta.get("command") or command)     # the command that started the run reproduces it
        start_step = int(tr["step"])
        opt_state = tr["optimizer"]
        loss_state = tr.get("loss")
        val_state = tr.get("validation") or {}
        ema_state = tr.get("ema")
        stored_val_every = tr.get("val_every")
    elif base_model is not None:
        model, model_config, base_meta = loaded or load_checkpoint(base_model, map_location="cpu")
        lineage = base_lineage(base_model, base_meta)
        _zero_and_warn_if_dead(model, base_model)
    else:
        torch.manual_seed(cfg.seed)          # the same seed gives the same initial weights
        model = IFSSNet(model_config or IFSSNetConfig())
    trains_head = bool(cfg.image_aux) or cfg.mode == "image"
    if trains_head:
        model = with_image_head(model, sorted({n for c in cases for n in c.masks}), cfg.seed)
    model_config = model.config
    # Per case by its place in ``cases`` (kept by match_slice_spacing and decremental_cases), not by name: two cases
    # of one name (a/leg/volume.nrrd and b/leg/volume.nrrd, two volume nodes named alike) took each other's.
    given = [c.n_slices for c in cases]
    sweep_mm = [c.slice_spacing_mm for c in cases]             # --fill-gap counts these slices (added_labels)
    cases = match_slice_spacing(cases, model_config)
    thinned = [f"{c.name} keeps {c.n_slices} of its {n} slices ({model_config.slice_spacing_mm:.3g} mm apart)"
               for c, n in zip(cases, given) if c.n_slices < n]
    if max(int(v) for v in cfg.strides) > model_config.window:
        raise InputError(f"A window stride of {max(cfg.strides)} skips slices: the network's window has "
                         f"{model_config.window}.", f"Give --strides between 1 and {model_config.window}.")
    if cfg.mode == "fewshot":
        cases = decremental_cases(cases, cfg)
    mine = [i for i in range(len(cases)) if i % world == rank] or list(range(len(cases)))
    my_cases = [added_labels(cases[i], cfg, sweep_mm[i])       # each rank labels the cases it trains on (fewshot)
                for i in mine]
    weights = painted_weights(my_cases) if draws_by_paint(cfg) else None
    if not _run_fits(my_cases, cfg.run_length + max(cfg.burn_in, cfg.reach), model_config.window):
        # before anything is written or a fine-tune's step-0 validation (minutes at full size): the first step
        # would find no run either
        _refuse_runs_that_do_not_fit(my_cases, cfg, model_config.window, thinned)

    model.to(device).train()
    loss_fn = ParametricTversky(bce_weight=cfg.bce_weight, learn=cfg.learn_tversky, beta=cfg.tversky_beta).to(device)
    if loss_state is not None:
        loss_fn.load_state_dict(loss_state)
    broadcast_parameters([model, loss_fn])
    opt = make_optimizer(model, loss_fn, cfg)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ema = weight_average(model, cfg.ema)
    if ema is not None and ema_state is not None:
        ema.load_state_dict(ema_state)
    net = ema.module if ema is not None else model     # what is validated and written to the model files

    total = cfg.epochs * cfg.steps_per_epoch
    report(progress, "training", start_step, total)

    def save(step: int, path: Path, optimizer: bool = True) -> None:
        """The model and how it was trained; with the optimiser state for ``--resume`` (the .ckpt.pt), without
        it for the model file (a third of the size: Adam keeps two moments per weight). With ``--ema`` the
        model file holds the average, and the .ckpt.pt the trained weights with the average beside them."""
        if rank != 0:
            return
        training = {"config": asdict(cfg), "step": step, "loss": loss_fn.state_dict(),
                    "alpha": float(loss_fn.alpha), "beta": float(loss_fn.beta), "val_every": val_every,
                    "segments": trained_segments}
        if validated_on is not None:
            training["validated_on"] = validated_on
        if history:
            training["validation"] = {"history": [v.to_dict() for v in history],
                                      "best": best.to_dict() if best is not None else None}
        if optimizer:
            training["optimizer"] = opt.state_dict()
            if ema is not None:
                training["ema"] = ema.state_dict()
        extra = {"command": command, "data": data_description, "version": __version__, "training": training}
        if lineage is not None:
            extra["base"] = lineage
        if resumed:
            extra["resumed"] = resumed
        save_checkpoint(path, model if optimizer else net, model_config, extra)

    from .validation import ValidationScore, best_model_path

    run_best = checkpoint_best_path(out_path)      # the run's best network until MODEL.pt is written
    if resume is None and rank == 0:
        # A new run starts only where no unfinished run's checkpoint is (refuse_replacing_an_unfinished_run), so a
        # best file here belongs to no run that can be resumed: a new run killed before its first checkpoint (no
        # except clause below ran) left it. Removed before the first step, so that it is never taken for this run's
        # best (a run without validation kept it for good beside its model).
        run_best.unlink(missing_ok=True)
    history = [ValidationScore.from_dict(v) for v in val_state.get("history", [])]
    best = ValidationScore.from_dict(val_state["best"]) if val_state.get("best") else None
    carried: list = []                    # validations of a continuation stopped before its next checkpoint
    if resume is not None and rank == 0:
        best, carried = _best_file_of_resumed_run(resume, out_path, best, meta)
        history += carried
    # The validation schedule is the run's own: a resumed run keeps the interval it was started with unless one
    # is given (it is not a TrainConfig field, so without this a resume fell back to checkpoint_every).
    val_every = int(val_every or stored_val_every or cfg.checkpoint_every)

    def validate(step: int) -> None:
        """Every rank validates its share of the cases and gets the same score (Validator); rank 0 reports
        it and saves the best network."""
        nonlocal best
        if validator is None:
            return
        import inspect

        shows = progress is not None and "progress" in inspect.signature(validator).parameters
        score = validator(net, step, rank=rank, world=world, cancel=cancel, **({"progress": progress} if shows else {}))
        net.to(device)                    # propagation's CUDA out-of-memory fallback moves a network to the CPU
        model.to(device).train()
        repeated = next((c for c in carried if _same_scores(c, score)), None)
        if repeated is None:
            history.append(score)
        else:                             # the carried validation, repeated (an exact resume): recorded once
            carried.remove(repeated)
        if on_validation and rank == 0:
            on_validation(score)
        if score.better_than(best):
            best = score
            save(step, run_best, optimizer=False)

    step = start_step
    ckpt_path = checkpoint_path(out_path)
    checkpointed = False                  # whether this run has saved a checkpoint (see the except below)
    try:
        if base_model is not None and resume is None:
            # The network a fine-tune starts from is scored first (step 0): where no step beats it, MODEL.best.pt
            # is that network, so the best by validation is never below where the user started (fine-tunes of
            # the shipped weights can end below it; model card, session 33).
            check_cancel(cancel)              # a cancel before it scores nothing and writes nothing
            validate(0)
        started = time.perf_counter()
        while step < total:
            check_cancel(cancel)
            t0 = time.perf_counter()
            rng = _seed_everything(cfg, step, rank)
            for g in opt.param_groups:
                g["lr"] = cfg.lr_at(step) * g.get("lr_mult", 1.0)
            pool = (decremental_pool(len(my_cases), step, total) if cfg.mode == "fewshot" and cfg.curriculum
                    else len(my_cases))
            runs = [_draw_run(my_cases, pool, rng, cfg, model_config.window, weights) for _ in range(cfg.batch)]
            if cfg.mode == "image":          # windows, not runs: the encoder has no recurrence
                runs = [_window_of(r, rng, model_config.window) for r in runs]
            # One stride per step; with the default [1] no number is drawn, so earlier runs repeat exactly.
            stride = int(cfg.strides[0]) if len(cfg.strides) == 1 else int(rng.choice(cfg.strides))
            L = min(len(r.known) for r in runs)          # a case shorter than --run-length gives a shorter run
            # --burn-in: one length per step, 0..burn_in; without it no number is drawn (earlier runs repeat).
            burn = (stride * int(rng.integers(0, cfg.burn_in // stride + 1))
                    if cfg.burn_in and cfg.mode != "image" else 0)
            # Distributed: every rank makes as many TBPTT updates (each all-reduces the gradients), so the numbers that
            # decide them are the same on every rank: rank 0's stride and burn-in, the shortest rank's run. A stride
            # or burn-in that is not drawn is the same on every rank already: no collective (each waits for the GPU).
            if len(cfg.strides) > 1:
                stride = agreed(stride)
            if cfg.burn_in and cfg.mode != "image":
                burn = agreed(burn)
            L = agreed(L, "min")
            offsets = None
            if cfg.reach and L > cfg.run_length + stride:   # --reach: each run trained up to its next annotated group
                offsets = reach_offsets([r.known for r in runs], L, cfg.run_length, model_config.window, stride,
                                        cfg.burn_in, rng)
                L = max(offsets) + cfg.run_length          # no run needs slices past its trained part
            else:
                L = min(L, burn + cfg.run_length)
            img = torch.from_numpy(np.stack([r.image[:L] for r in runs])).to(device)
            msk = torch.from_numpy(np.stack([r.mask[:L] for r in runs])).to(device)
            kn = torch.from_numpy(np.stack([r.known[:L] for r in runs])).to(device)
            anchors = (torch.from_numpy(np.stack([r.painted[:L] for r in runs])).to(device)
                       if cfg.anchor == "painted" else None)
            segs = (torch.tensor([model_config.image_head.index(r.segment) for r in runs], device=device)
                    if trains_head else None)
            if cfg.mode == "image":
                loss = image_step(model, opt, img, msk, kn, segs, cfg)
            elif cfg.cycle:
                loss = cycle_step(model, loss_fn, opt, img, msk, kn, cfg, stride=stride, segments=segs)
            else:
                loss = train_step(model, loss_fn, opt, img, msk, kn, cfg, stride=stride, segments=segs, burn=burn,
                                  offsets=offsets, anchors=anchors)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            log = StepLog(step, loss, float(loss_fn.alpha), float(loss_fn.beta), cfg.lr_at(step - 1),
                          time.perf_counter() - t0)
            if on_step:
                on_step(log)
            report(progress, "training", step, total)
            out_of_time = _past_time_limit(started, time_limit_s)
            if step % val_every == 0 or step == total or out_of_time:
                validate(step)
            if step % cfg.checkpoint_every == 0 or step == total or out_of_time:
                save(step, ckpt_path)
                checkpointed = True
            if out_of_time:
                break
    except BaseException:
        # A new run stopped before its first checkpoint cannot be resumed, so its best network so far has no run
        # to go on with: it is removed (MODEL.best.pt, an earlier run's, is untouched either way).
        if rank == 0 and resume is None and not checkpointed and best is not None:
            run_best.unlink(missing_ok=True)
        raise
    save(step, out_path, optimizer=False)
    if rank == 0 and best is not None and run_best.exists():
        os.replace(run_best, best_model_path(out_path))     # the run's best becomes MODEL.best.pt with MODEL.pt
    elif rank == 0:
        # MODEL.best.pt is the best of MODEL.pt's run: an earlier run's, left beside a model it is not the best of,
        # was listed (and recommended) as the new model's best. It goes with the earlier MODEL.pt it belonged to.
        best_model_path(out_path).unlink(missing_ok=True)
    return out_path


def _refuse_other_cases(resume, meta: dict, data_description: str) -> None:
    """Raise :class:`InputError` where ``--resume`` is given other training cases than its run's: the checkpoint
    records them (its ``data``, the cases' names in order, as ``data_description`` gives them now), and a resume
    continues the run exactly, each step drawing from the cases by their place. Other cases trained the rest of the
    run on them without a word, and the model file recorded only them as its data. Nothing to compare where either
    is not given (a call in code, a file from before the names were recorded)."""
    recorded = meta.get("data")
    if not isinstance(recorded, str) or not recorded or not data_description or recorded == data_description:
        return
    raise InputError(f"--resume continues the run of {resume}, which trained on {recorded}; the cases given now are "
                     f"{data_description}.",
                     "Give the run's cases, in that order, to continue it (in Slicer: the pairs it was started with), "
                     f"or start a new run from its weights on these cases with --from {resume} (a fine-tune).")


def _refuse_other_base(resume, meta: dict, base_model) -> None:
    """Raise :class:`InputError` where a resume is given a base model (``base_model``: ``--from``, the Training
    Logic's ``baseModel``) other than the one its run started from (the checkpoint's ``base``, by file name; none
    for a new network): the run goes on from its own network, and the base model given was ignored without a word."""
    if base_model is None:
        return
    lineage = meta.get("base") if isinstance(meta.get("base"), dict) else {}
    if lineage.get("file") == Path(str(base_model)).name:
        return
    raise InputError(f"--resume continues the run of {resume}, which started from "
                     f"{lineage.get('file') or 'a new network'}, not from {base_model}.",
                     f"Leave out the base model (--from) to continue the run, or fine-tune {base_model} in a new run.")


def _refuse_other_segments(resume, training: dict, segments: Sequence[str]) -> None:
    """Raise :class:`InputError` where ``--resume`` trains other segments than its run did (``--segments``, the
    Training module's segment names): the checkpoint's ``training`` block records the run's (sorted), and the rest
    of the run trained the others without a word. Nothing to compare where it records none (a file from before
    they were recorded)."""
    recorded = training.get("segments")
    if not isinstance(recorded, list) or [str(n) for n in recorded] == list(segments):
        return
    raise InputError(f"--resume continues the run of {resume}, which trained the segments {', '.join(recorded)}; "
                     f"this run would train {', '.join(segments)}.",
                     "Give the run's segments to continue it (--segments, or leave it out if the run trained every "
                     f"segment), or start a new run from its weights with --from {resume} (a fine-tune).")


def _refuse_other_validation(resume, training: dict, validated_on: Optional[dict]) -> None:
    """Raise :class:`InputError` where ``--resume`` validates under other protocols or on other cases than its run
    did (the checkpoint's ``validated_on``, :meth:`ifssnet.validation.Validator.description`): the run's best network
    is the one of highest Dice among its scores, and scores of another protocol or other cases do not compare with
    those before (a network that scored 0.8 under ``3-seeds`` may score 0.6 under ``paper``), so the best kept would
    have been chosen on a mix. Cases held in memory (None) and a run that records none are not compared."""
    recorded = training.get("validated_on")
    if not isinstance(recorded, dict) or validated_on is None:
        return
    was, now = recorded.get("protocols"), validated_on.get("protocols")
    cases = [(a, b) for a, b in zip(recorded.get("cases") or [], validated_on.get("cases") or [])
             if a is not None and b is not None]
    if was == now and len(recorded.get("cases") or []) == len(validated_on.get("cases") or []) \
            and all(a == b for a, b in cases):
        return

    def said(d: dict) -> str:
        names = [c if c is not None else "a case in memory" for c in d.get("cases") or []]
        return f"{'+'.join(d.get('protocols') or [])} on {', '.join(names) or 'no case'}"

    raise InputError(f"--resume continues the run of {resume}, which validated {said(recorded)}; this run would "
                     f"validate {said(validated_on)}, and the best network would be chosen among scores that do not "
                     "compare.", "Give the run's validation cases and protocol (--val, --val-protocol; in Slicer, the "
                     f"held-out pair and protocol it was started with), leave validation out, or start a new run "
                     f"from its weights with --from {resume}.")


def _best_file_of_resumed_run(resume, out_path, best, meta):
    """``--resume``: the run's own best file (``OUT.ckpt.best.pt``, :func:`checkpoint_best_path`) must hold the
    run's best network so far, since it becomes ``OUT.best.pt`` where the run ends (a run that never beats it again
    ended without that file, and ``ifssnet train`` failed after 'wrote OUT' with 'OUT.best.pt does not exist').
    ``best``: the best the checkpoint records (a ValidationScore, or None), ``meta``: the checkpoint's metadata.
    Returns ``(best to go on from, validations to add to the history)``:

    - the file holds ``best``, written by this run (:func:`_of_the_run`; a file that only shares the step and
      Dice, such as one a killed run to another output left there, is not taken for it): ``(best, [])``;
    - the file holds a better network that a continuation of this run found after the checkpoint, before it was
      cancelled, killed or failed ahead of its next checkpoint (the validation overwrote ``best``'s network, and
      the checkpoint still records ``best``): that network is the run's best, with the score it records, and the
      continuation's validations up to it (the file's history past the checkpoint's) join the history, so that the
      history holds the best's score: ``(the file's score, those validations)``. The resumed run repeats those
      steps and their validations: one that gives the same scores (an exact resume) is recorded once, one that
      differs (other validation cases, a GPU's nondeterminism) is recorded as well, as the log has both;
    - else the file is copied from one that holds ``best``: the best file beside the checkpoint resumed
      (``X.ckpt.best.pt`` beside ``X.ckpt.pt``; another output's when resumed into another), or that run's
      ``X.best.pt`` (a run stopped by ``--time-limit`` wrote ``X.pt`` and moved its best there; runs from before the
      best file was kept beside the checkpoint wrote ``X.best.pt`` as they went): ``(best, [])``;
    - where no file holds it, the best is forgotten, so that the next validation writes one (the history keeps
      every score): ``(None, [])``."""
    import math
    import shutil

    from .errors import IFSSNetError
    from .io import atomic_write
    from .model.checkpoint import read_meta
    from .validation import ValidationScore, best_model_path, recorded_best

    def read(path: Path):
        """``(score, metadata)`` of a best file; None where there is none or it cannot be read."""
        try:
            got_meta = read_meta(path) if path.exists() else None
            return (recorded_best(got_meta), got_meta) if got_meta else None
        except (IFSSNetError, KeyError, TypeError, ValueError):
            return None

    def holds(got) -> bool:
        """Whether a best file (``got``: :func:`read`'s) is the network of ``best``: its step and Dice, written by
        this run before the checkpoint (its history is the start of the checkpoint's)."""
        return best is not None and got is not None and got[0].step == best.step and (
            got[0].dice == best.dice or (math.isnan(got[0].dice) and math.isnan(best.dice))) and _of_the_run(
            got[1], meta) == "before"

    target, resume = checkpoint_best_path(out_path), Path(resume)
    got = read(target)                                  # the whole file: read once
    if holds(got):
        return best, []
    if got is not None and _of_the_run(got[1], meta) == "after" and got[0].better_than(best):
        training = meta.get("training") or {}
        done = len((training.get("validation") or {}).get("history") or [])
        carried = [ValidationScore.from_dict(v) for v in got[1]["training"]["validation"]["history"][done:]]
        if all(v.step > int(training.get("step", 0)) for v in carried):     # validated past the checkpoint
            return got[0], carried
    if best is None:
        return None, []
    sources = [best_model_path(resume)]                  # X.ckpt.pt -> X.ckpt.best.pt
    if resume.name.endswith(".ckpt.pt"):
        sources.append(best_model_path(resume.with_name(resume.name[:-len(".ckpt.pt")] + ".pt")))
    for source in sources:
        if source.resolve() != target.resolve() and holds(read(source)):
            atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
            return best, []
    return None, []


def _same_scores(a, b) -> bool:
    """Whether two ValidationScores are the same validation's result: step and scores (NaN equal to NaN), whatever
    the time each took."""
    import json

    def key(score) -> str:
        return json.dumps({**score.to_dict(), "seconds": None}, sort_keys=True, default=str)

    return key(a) == key(b)


def _of_the_run(file_meta: dict, meta: dict) -> Optional[str]:
    """Whether a model file a run wrote (its metadata ``file_meta``: a best file) is of the run whose checkpoint's
    metadata is ``meta``: the same command started both, the training configs agree (on the fields both record), and
    one's validation history starts with the other's. ``"before"``: written at or before the checkpoint's step (its
    history is the start of the checkpoint's), ``"after"``: written past it by a continuation of the run that saved
    no checkpoint since (the checkpoint's history is the start of its), None: another run's."""
    import json

    def scores(m: dict) -> list:
        validation = ((m.get("training") or {}).get("validation") or {}).get("history") or []
        return [json.dumps(v, sort_keys=True, default=str) for v in validation]     # NaN Dice compares equal

    if file_meta.get("command") != meta.get("command"):
        return None
    mine, theirs = ((m.get("training") or {}).get("config") or {} for m in (file_meta, meta))
    if any(mine[k] != theirs[k] for k in mine.keys() & theirs.keys()):
        return None
    mine, theirs = scores(file_meta), scores(meta)
    if mine == theirs[:len(mine)]:
        return "before"
    if mine[:len(theirs)] == theirs:
        return "after"
    return None


def checkpoint_path(out_path) -> Path:
    """``OUT.ckpt.pt``: the checkpoint a run to ``OUT.pt`` writes every ``checkpoint_every`` steps, for ``--resume``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".ckpt.pt")


def checkpoint_best_path(out_path) -> Path:
    """``OUT.ckpt.best.pt``: the best network by validation of a run to ``OUT.pt`` while it goes, beside its
    checkpoint and as much the run's own: written at each validation that beats the best so far, and moved to
    ``OUT.best.pt`` (:func:`ifssnet.validation.best_model_path`) where the run writes ``OUT.pt``. A run that is
    cancelled, killed or fails after a checkpoint leaves it for ``--resume``, and ``OUT.best.pt`` as it was (where a
    validation after the last checkpoint found a better network, the file holds that one with its score, and
    ``--resume`` goes on from it). A new run cancelled or failing before its first checkpoint removes it; one killed
    then leaves it, and the next new run to ``OUT`` removes it when it starts."""
    from .validation import best_model_path

    return best_model_path(checkpoint_path(out_path))


def run_steps(ckpt) -> Optional[Tuple[int, int]]:
    """``(step, total)``: the step a training checkpoint's run is at and the steps of the whole run (epochs x steps
    per epoch); None for a file that cannot be read or records no run."""
    from .errors import ModelError
    from .model.checkpoint import read_meta

    try:
        return steps_of(read_meta(ckpt))
    except ModelError:
        return None


def steps_of(meta: dict) -> Optional[Tuple[int, int]]:
    """:func:`run_steps` of a checkpoint's metadata ``meta`` already read; None where it records no run."""
    try:
        tr = meta.get("training") or {}
        step, config = int(tr["step"]), tr["config"]
        return step, int(config["epochs"]) * int(config["steps_per_epoch"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def refuse_writing_over_inputs(out_path, inputs: Sequence = (), base_model=None, log=None, resume=None) -> None:
    """Raise :class:`InputError`, before anything is read or written, where a file a run to ``out_path`` writes or
    removes is one of its inputs: ``OUT.pt``, ``OUT.ckpt.pt``, ``OUT.ckpt.best.pt`` and ``OUT.best.pt`` (moved there
    from the run's best file, or removed where the run has no validation: an earlier run's best), and ``log`` (the
    ``--log`` file, appended to). ``base_model``: the ``--from`` model (``--from m.best.pt --out m.pt`` removed the
    base model when the run ended, ``--from m.pt --out m.pt`` replaced it); ``inputs``: the case and validation
    files. A ``--resume`` checkpoint is not an input here: a run resumed to its own output writes it on purpose; but
    ``log`` may be none of the files the run writes, nor ``resume`` (a log appended to a checkpoint spoils it)."""
    from .io import same_file
    from .validation import best_model_path

    written = [Path(out_path), checkpoint_path(out_path), checkpoint_best_path(out_path), best_model_path(out_path)]
    if log is not None:
        for target in written:      # the model or a checkpoint saved over the log: every line of it gone
            if os.path.abspath(target) == os.path.abspath(log) or same_file(target, log):
                raise InputError(f"--log {log} is {target}, a file the run writes (its model or a checkpoint): "
                                 "saving it would replace the log.",
                                 "Give --log a file name of its own, e.g. run.jsonl.")
        if resume is not None and same_file(resume, log):
            raise InputError(f"--log {log} is the checkpoint given to --resume: the log's lines appended to it "
                             "would spoil it.", "Give --log a file name of its own, e.g. run.jsonl.")
        written.append(Path(log))
    given = ([(base_model, "the base model (--from)")] if base_model is not None else []) + [
        (p, "an input file of this run") for p in inputs if p is not None]
    for target in written:
        for path, what in given:
            if same_file(target, path):
                verb = "append to" if log is not None and target == Path(log) else "replace (or remove)"
                raise InputError(f"Training to {out_path} would {verb} {target}, which is {what}.",
                                 "Choose another output name (--out; in Slicer, another model name), "
                                 "or copy the file elsewhere first.")


def refuse_replacing_an_unfinished_run(out_path) -> None:
    """Raise :class:`InputError` when ``OUT.ckpt.pt`` holds a run that stopped before its last step (cancelled,
    killed or out of time): a new run to the same ``OUT`` would overwrite it, and the stopped run could no longer be
    resumed. A finished run's checkpoint, or one that cannot be read, may be replaced. The stopped run's best network
    by validation (``OUT.ckpt.best.pt``, :func:`checkpoint_best_path`) is as much that run's, and is kept with it;
    without a checkpoint that can be resumed, it is a killed run's that no run continues, and a new run that may
    start removes it before its first step."""
    ckpt = checkpoint_path(out_path)
    if not ckpt.exists() or (steps := run_steps(ckpt)) is None:
        return
    step, total = steps
    if step < total:
        best = checkpoint_best_path(out_path)
        files = f"that file (and {best}, its best network by validation so far)" if best.exists() else "that file"
        raise InputError(f"{ckpt} holds a run to this output that stopped at step {step} of {total}; a new run "
                         "would replace it.",
                         f"Continue it with --resume {ckpt} (in Slicer: Resume), or choose another output name "
                         f"(--out), or delete {files} to start again.")


if __name__ == "__main__":  # pragma: no cover  (python -m ifssnet.train, torchrun -m ifssnet.train)
    from .train_cli import main

    sys.exit(main())
