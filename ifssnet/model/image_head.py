"""Image-only segment head: what the image stream alone says about each trained segment.

A training aid (``ifssnet train --image-aux W``), not part of the paper's network and never used by
propagation. The twin encoder is shared, so features that the image stream must make useful here
are the same ones the mask stream adds to its own and the decoder reads. Without it the network was
measured to ignore the image: carrying the mask input forward already scores well on 1 mm slices
(model card, "The network does not read the image").

Shapes (slice-folded, ``N = B * w``): the image stream's skips 1, 3 and 5,
``(N, C1, S, S)``, ``(N, C3, S/4, S/4)``, ``(N, C5, S/16, S/16)``, each go through a 1 x 1
convolution to K logits, are upsampled bilinearly to ``S x S`` and summed: ``(N, K, S, S)``,
one independent (sigmoid) logit per segment named in ``IFSSNetConfig.image_head``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import IFSSNetConfig

LEVELS = (0, 2, 4)   # skips 1, 3 and 5: full resolution, a quarter, a sixteenth
PRIOR = 0.05         # initial foreground probability (Lin et al. 2017's prior init): a segment covers a few % of a slice


class ImageHead(nn.Module):
    """``forward(skips) -> (N, K, S, S)`` logits, K = ``len(cfg.image_head)``."""

    def __init__(self, cfg: IFSSNetConfig) -> None:
        super().__init__()
        chans = cfg.channels()
        k = len(cfg.image_head)
        self.proj = nn.ModuleList(nn.Conv2d(chans[i], k, 1) for i in LEVELS)
        # Start at the prior, not at 0.5 everywhere: the summed biases give logit(PRIOR), so the first
        # steps do not spend themselves on pushing the background down.
        prior = math.log(PRIOR / (1 - PRIOR))
        for conv in self.proj:
            nn.init.constant_(conv.bias, prior / len(LEVELS))

    def forward(self, skips) -> torch.Tensor:
        size = skips[0].shape[-2:]
        out = None
        for proj, i in zip(self.proj, LEVELS):
            y = proj(skips[i])
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return out


def with_image_head(model, names: Sequence[str], seed: int = 0):
    """``model`` with an image-only head for ``names`` (:mod:`ifssnet.model.image_head`).

    A network that has a head keeps it, and every name must be one of its segments. One without gets
    a new, seeded head (:func:`fresh_image_head`; fine-tuning ``--from`` the shipped weights).
    """
    have = tuple(model.config.image_head)
    if not have:
        return fresh_image_head(model, names, seed)
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(f"The network's image-only head knows the segments {list(have)}, not {missing}.",
                         "Train with --segments among those, or start from a network without a head.")
    return model


def fresh_image_head(model, names: Sequence[str], seed: int = 0):
    """A new network: ``model``'s weights with a new, seeded image-only head for ``names`` (any head
    ``model`` had is dropped), on ``model``'s device and in its train/eval mode."""
    from .net import IFSSNet     # here: net.py imports this module

    config = type(model.config).from_dict({**model.config.to_dict(), "image_head": list(names)})
    torch.manual_seed(seed)
    new = IFSSNet(config)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("image_head.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith("image_head.") for k in missing):
        raise InputError("Could not add the image-only head to this network.", "Train without --image-aux.")
    return new.to(next(model.parameters()).device).train(model.training)
