"""Global feature matching fusion (paper Fig. 4, after Peng et al.'s large separable kernels).

Input: the image-stream and mask-stream bottlenecks, slice-folded ``(B*w, C5, f, f)`` each.
They are concatenated (2*C5 channels), then two chains of large separable kernels are summed:

    A: [kt x 1 x 1] -> [1 x kf x 1] -> [1 x 1 x kf]
    B: [kt x 1 x 1] -> [1 x 1 x kf] -> [1 x kf x 1]

with kt = w and kf = f (each rounded up to odd for centred 'same' padding), no nonlinearity inside
a chain (as in Peng et al.). The sum is gated by channel attention (prototype; optional) and
processed by one residual block (paper). Output ``(B*w, C5, f, f)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import IFSSNetConfig
from .layers import ChannelAttention, ResidualBlock, SliceConv3d


class GlobalFeatureMatching(nn.Module):
    def __init__(self, cfg: IFSSNetConfig) -> None:
        super().__init__()
        c = cfg.channels()[-1]
        kt, kf = cfg.fusion_kernels()
        self.a = nn.ModuleList([SliceConv3d(2 * c, c, (kt, 1, 1)), SliceConv3d(c, c, (1, kf, 1)),
                                SliceConv3d(c, c, (1, 1, kf))])
        self.b = nn.ModuleList([SliceConv3d(2 * c, c, (kt, 1, 1)), SliceConv3d(c, c, (1, 1, kf)),
                                SliceConv3d(c, c, (1, kf, 1))])
        self.attention = ChannelAttention(c) if cfg.fusion_attention else None
        self.res = ResidualBlock(c, cfg.norm, cfg.norm_groups)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, depth: int) -> torch.Tensor:
        """image, mask: ``(B*w, C5, f, f)`` -> ``(B*w, C5, f, f)``."""
        x = torch.cat([image, mask], dim=1)
        ya, yb = x, x
        for ca, cb in zip(self.a, self.b):
            ya, yb = ca(ya, depth), cb(yb, depth)
        g = ya + yb
        if self.attention is not None:
            g = g * self.attention(g)
        return self.res(g, depth)
