"""The twin (Siamese) 3-D encoder: ONE module, applied to two streams.

Layer i (i = 1..5), on slice-folded tensors ``(B*w, C, H_i, W_i)`` with ``H_i = size / 2**(i-1)``:

1. 3x3x3 conv (temporal extent 3 over the window, via :class:`SliceConv3d`) + norm + ReLU;
2. 3-D atrous separable block at the layer's rates (:class:`AtrousSeparable`), dropout 0.1;
3. in the mask stream only: ``+`` the image stream's output of the same layer (the skip connection
   from E_phi into E_varphi; addition, so both streams keep the same widths and share every weight);
4. max-pool 2x2 in-plane (stride (1, 2, 2)).

The pre-pool output of each layer is a skip feature (the decoder uses the mask stream's ones).
The pooled output of layer 5 is the bottleneck ``(B*w, C5, size/32, size/32)``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import IFSSNetConfig
from .layers import AtrousSeparable, ConvNormAct


class StreamFeatures(NamedTuple):
    """Features of one stream, slice-folded.

    skips: 5 tensors, layer i's pre-pool output ``(B*w, C_i, size/2**(i-1), size/2**(i-1))``.
    bottleneck: ``(B*w, C5, size/32, size/32)``.
    batch: B; depth: w.
    """

    skips: tuple
    bottleneck: torch.Tensor
    batch: int
    depth: int

    def select(self, start: int, stop: int) -> "StreamFeatures":
        """Windows ``start:stop`` of the batch (features of a batched ``encode_image``)."""
        d = self.depth
        return StreamFeatures(tuple(s[start * d:stop * d] for s in self.skips),
                              self.bottleneck[start * d:stop * d], stop - start, d)


class EncoderLayer(nn.Module):
    """conv 3x3x3 + norm + ReLU, then atrous separable block. ``(B*w, C_in, h, w)`` -> ``(B*w, C, h, w)``."""

    def __init__(self, c_in: int, c_out: int, rates: Sequence[int], cfg: IFSSNetConfig) -> None:
        super().__init__()
        self.conv = ConvNormAct(c_in, c_out, (3, 3, 3), cfg.norm, cfg.norm_groups)
        self.aspp = AtrousSeparable(c_out, rates, cfg.norm, cfg.norm_groups, cfg.aspp_pool_branch,
                                    cfg.enc_dropout, cfg.dropout_mode)

    def forward(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        return self.aspp(self.conv(x, depth))


class SiameseEncoder(nn.Module):
    """One encoder, shared by the image stream and the mask stream (same parameters, same module).

    ``forward(x, depth, guide=None)``: x is slice-folded ``(B*w, 1, size, size)``. Without ``guide``
    it is the image stream; with ``guide`` (the image stream's :class:`StreamFeatures`) it is the mask
    stream, and each layer's output gets the image feature of that layer added before pooling.
    """

    def __init__(self, cfg: IFSSNetConfig) -> None:
        super().__init__()
        chans = cfg.channels()
        ins = [1] + chans[:-1]
        self.layers = nn.ModuleList(
            EncoderLayer(ci, co, r, cfg) for ci, co, r in zip(ins, chans, cfg.layer_rates()))

    def forward(self, x: torch.Tensor, depth: int, guide: Optional[StreamFeatures] = None) -> StreamFeatures:
        skips = []
        for i, layer in enumerate(self.layers):
            x = layer(x, depth)
            if guide is not None:
                x = x + guide.skips[i]
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return StreamFeatures(tuple(skips), x, x.shape[0] // depth, depth)
