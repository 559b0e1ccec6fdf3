"""Few-shot runs that go out and come back to their annotated group (``ifssnet train --mode fewshot --cycle W``).

In few-shot mode most training windows are scored against the network's own previous prediction (sequential
pseudo-labels), which any stable mask satisfies, ballooned or not: with 3.5 % of the slices annotated most runs
never meet a second annotated group (:mod:`ifssnet.reach`). A run that propagates away from its group and then
back to it does meet one: its own. :func:`cycle_step` propagates a run forward from its annotated first slices,
as training always does, then turns round and propagates the same slices backward, starting from the forward
pass's last mask, until the windows cover the annotated slices again, where they are scored against the
painted truth. A mask that grew or drifted on the way out has to be pulled back onto the muscle on the way home,
and through the fed-back masks (``--feedback-grad``) that loss reaches the windows of the way out.

The way back starts from a fresh ConvLSTM state (no memory of the group carries over) and from the forward
mask thresholded at 0.5 with a straight-through gradient, so the shape is all that crosses the turn: a network
cannot hide the painted outline in faint probabilities and read it back.
This is the forward-backward (cycle) consistency of self-supervised video tracking, used here as a training
option where the paper is silent on what anchors its pseudo-labels; the paper's runs of 100-199 slices meet
the next annotated group instead, which a CPU cannot backpropagate through.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .extra_losses import annotated_area
from .tbptt import _apply_update, windows_loss

if TYPE_CHECKING:  # pragma: no cover
    from .train import TrainConfig


def turn_round(prev):
    """The mask input of the way back's first window: the forward pass's last mask input ``prev`` (B, w, S, S),
    its slices in reverse order, thresholded at 0.5; the gradient passes straight through the threshold."""
    flipped = prev.flip(1)
    return flipped + ((flipped > 0.5).to(flipped.dtype) - flipped).detach()


def cycle_step(model, loss_fn, optimizer, run_image, run_mask, run_known, cfg: TrainConfig, stride: int = 1,
               segments=None) -> float:
    """One update on a batch of runs (B, L, S, S) that start on annotated slices: the windows of the run
    forward (:func:`ifssnet.tbptt.windows_loss`), then the windows back over the slices they covered, in
    reverse order, to the run's first slice. ``run_known``: bool (B, L). Loss: forward mean + ``cfg.cycle`` x the
    way back's mean over its windows (its last windows hold the annotated slices, scored against them).
    One backward pass over both ways (no TBPTT halves: the way back's loss must reach the way out).
    Returns the loss (float)."""
    w = model.config.window
    seed_area = annotated_area(run_mask, w) if cfg.end_weight else None   # the leak loss's reference, both ways
    optimizer.zero_grad(set_to_none=True)
    out, _, prev = windows_loss(model, loss_fn, run_image, run_mask, run_known, cfg, stride=stride, segments=segments,
                                seed_area=seed_area)
    L = run_image.shape[1]
    end = stride * ((L - w) // stride) + w        # one past the last slice the way out's last window covered
    back = [x[:, :end].flip(1) for x in (run_image, run_mask, run_known)]
    home, _, _ = windows_loss(model, loss_fn, *back, cfg, state=None, first_prev=turn_round(prev), stride=stride,
                              segments=segments, seed_area=seed_area)
    loss = out + cfg.cycle * home
    _apply_update(optimizer, loss, cfg)
    return float(loss.detach())
