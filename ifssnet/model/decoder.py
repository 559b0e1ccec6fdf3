"""3-D decoder: 5 x (transposed conv in-plane stride (1, 2, 2) + refinement module), then 1x1x1 -> 2.

Refinement module (Pinheiro et al., "Learning to refine object segments", 2016): the mask-stream
skip feature of the matching scale goes through a conv (separable 3x3 + norm + ReLU), is
concatenated with the upsampled top-down feature, and a second conv (separable 3x3 + norm + ReLU)
merges them; dropout 0.1 follows (channel-wise by default, see config). Separable convs keep the
full-resolution levels cheap on CPU.

Level j = 5..1: top-down ``(B*w, C_{j+1}, s, s)`` -> ConvTranspose 2x2 stride 2 -> ``(B*w, C_j, 2s, 2s)``
(C_6 := C5 from the Bi-ConvLSTM), merged with skip j ``(B*w, C_j, 2s, 2s)``.
Head: 1x1 conv C1 -> 2 logits ``(B*w, 2, size, size)``; channel 0 background, channel 1 foreground.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import IFSSNetConfig
from .layers import SeparableConv, make_dropout


class Refinement(nn.Module):
    """``(top (N, C, h, w), skip (N, C, h, w)) -> (N, C, h, w)``."""

    def __init__(self, channels: int, cfg: IFSSNetConfig) -> None:
        super().__init__()
        self.skip = SeparableConv(channels, channels, 1, cfg.norm, cfg.norm_groups)
        self.merge = SeparableConv(2 * channels, channels, 1, cfg.norm, cfg.norm_groups)
        self.drop = make_dropout(cfg.dec_dropout, cfg.dropout_mode)

    def forward(self, top: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.drop(self.merge(torch.cat([top, self.skip(skip)], dim=1)))


class Decoder(nn.Module):
    """``forward(x (B*w, C5, f, f), skips: 5 mask-stream skips) -> logits (B*w, 2, size, size)``."""

    def __init__(self, cfg: IFSSNetConfig) -> None:
        super().__init__()
        chans = cfg.channels()
        tops = [chans[-1]] + chans[::-1][:-1]  # input widths for levels 5..1
        self.ups = nn.ModuleList(nn.ConvTranspose2d(ci, co, 2, stride=2) for ci, co in zip(tops, chans[::-1]))
        self.refine = nn.ModuleList(Refinement(co, cfg) for co in chans[::-1])
        self.head = nn.Conv2d(chans[0], 2, 1)

    def forward(self, x: torch.Tensor, skips) -> torch.Tensor:
        for up, ref, skip in zip(self.ups, self.refine, reversed(skips)):
            x = ref(up(x), skip)
        return self.head(x)
