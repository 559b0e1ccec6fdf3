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

import torch
import torch.nn.functional as F
from torch import nn

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
