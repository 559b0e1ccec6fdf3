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
    image: the stream's input ``(B*w, 1, size, size)``, kept when the mask stream needs it
        (``IFSSNetConfig.mask_sees_image``), else None.
    """

    skips: tuple
    bottleneck: torch.Tensor
    batch: int
    depth: int
    image: Optional[torch.Tensor] = None

    def select(self, start: int, stop: int) -> "StreamFeatures":
        """Windows ``start:stop`` of the batch (features of a batched ``encode_image``)."""
        d = self.depth
        image = None if self.image is None else self.image[start * d:stop * d]
        return StreamFeatures(tuple(s[start * d:stop * d] for s in self.skips),
                              self.bottleneck[start * d:stop * d], stop - start, d, image)

    def rows(self, rows: torch.Tensor, batch: int) -> "StreamFeatures":
        """The slice-folded rows ``rows`` (long, ``batch * depth`` of them) of every tensor."""
        image = None if self.image is None else self.image.index_select(0, rows)
        return StreamFeatures(tuple(s.index_select(0, rows) for s in self.skips),
                              self.bottleneck.index_select(0, rows), batch, self.depth, image)

    @staticmethod
    def cat(parts: Sequence["StreamFeatures"]) -> "StreamFeatures":
        """Concatenate the windows of several batches of features of the same depth."""
        if len(parts) == 1:
            return parts[0]
        skips = tuple(torch.cat([p.skips[i] for p in parts]) for i in range(len(parts[0].skips)))
        image = None if parts[0].image is None else torch.cat([p.image for p in parts])
        return StreamFeatures(skips, torch.cat([p.bottleneck for p in parts]), sum(p.batch for p in parts),
                              parts[0].depth, image)


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
    With ``cfg.mask_sees_image`` the first layer takes 2 channels: (image, zeros) for the image
    stream, (image, mask) for the mask stream (``guide.image``).
    """

    def __init__(self, cfg: IFSSNetConfig) -> None:
        super().__init__()
        self.mask_sees_image = bool(cfg.mask_sees_image)
        chans = cfg.channels()
        ins = [2 if self.mask_sees_image else 1] + chans[:-1]
        self.layers = nn.ModuleList(
            EncoderLayer(ci, co, r, cfg) for ci, co, r in zip(ins, chans, cfg.layer_rates()))

    def forward(self, x: torch.Tensor, depth: int, guide: Optional[StreamFeatures] = None) -> StreamFeatures:
        image = None
        if self.mask_sees_image:
            image = x if guide is None else guide.image
            x = torch.cat([x, torch.zeros_like(x)] if guide is None else [image, x], dim=1)
        skips = []
        for i, layer in enumerate(self.layers):
            x = layer(x, depth)
            if guide is not None:
                x = x + guide.skips[i]
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return StreamFeatures(tuple(skips), x, x.shape[0] // depth, depth, image if guide is None else None)
