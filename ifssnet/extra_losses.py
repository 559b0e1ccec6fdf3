"""Training's loss terms beside the parametric Tversky index (:mod:`ifssnet.loss`).

``leak_loss`` (``--end-weight``) charges a mask that runs on past a muscle's end; ``image_head_loss``
(``--image-aux``) trains the image-only head (:mod:`ifssnet.model.image_head`). Neither is the paper's;
the model card says why each was added and what it measured. Shapes: runs (B, L, S, S), windows
(B, w, S, S), pixels of the working grid.
"""
from __future__ import annotations

from .errors import InputError


def annotated_area(mask, w: int):
    """The annotated pixels of a run's first window: ``mask`` (B, L, S, S) -> (B,), summed over ``w`` slices."""
    return mask[:, 0:w].flatten(1).sum(-1)


def leak_loss(prob, target, known, seed_area):
    """The predicted area of windows that lie wholly past a muscle's end, as a fraction of the run's first
    annotated window's area; the mean over the batch (0-d tensor).

    ``prob``, ``target``: (B, w, S, S); ``known``: bool (B, w); ``seed_area``: (B,), the annotated pixels of
    the run's first window (w slices). A window counts when every slice is known and its target is empty;
    others add 0.
    Past an end the Tversky index is smooth / (alpha FP + smooth), which saturates as the leak grows, and
    the cross-entropy is averaged over every pixel of the window: a leak of a tenth of the muscle's area
    costs both almost nothing. This term costs it a tenth (x ``--end-weight``), however large it grows.
    """
    empty = (target.flatten(2).sum(-1) == 0).all(dim=1) & known.all(dim=1)          # (B,)
    return (prob.flatten(1).sum(-1) / seed_area.clamp(min=1.0) * empty.to(prob.dtype)).mean()


def image_head_loss(model, feats, segments, target, known):
    """Loss of the image-only head (:mod:`ifssnet.model.image_head`) for one window: BCE + (1 - soft
    Dice) of each run's own segment channel, on its annotated slices only.

    ``feats``: the window's image-stream features, batch B; ``segments``: long (B,), head channels;
    ``target``: (B, w, S, S) in {0, 1}; ``known``: bool (B, w).
    """
    import torch

    from .loss import soft_dice_loss, weighted_bce_with_logits

    if segments is None:
        raise InputError("The image-only head's loss needs each run's segment.", "Pass segments to windows_loss.")
    own = model.segment_logits(feats, segments)                            # (B, w, S, S)
    weight = known.to(own.dtype)[:, :, None, None]
    return (weighted_bce_with_logits(own, target, weight)
            + soft_dice_loss(torch.sigmoid(own), target, weight, dims=(2, 3)))
