"""IFSS-Net: twin encoders -> global feature matching -> Bi-ConvLSTM -> decoder.

Public tensors are ``(B, C, w, H, W)``; inside, everything is slice-folded ``(B*w, C, H, W)``
channels_last (see :mod:`ifssnet.model.layers`).

Typical propagation loop (windows slide by 1, the prediction is fed back)::

    net = IFSSNet(cfg).eval()
    feats = net.encode_image(all_windows)            # image stream has no recurrence: batch it
    state = None
    for k in range(n_windows):
        logits, state = net.forward_from_features(feats.select(k, k + 1), prev_mask, state)
        prev_mask = next window's mask input built from net.probabilities(logits)[:, 1:2]
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..errors import InputError
from .config import IFSSNetConfig
from .convlstm import BiConvLSTM, State
from .decoder import Decoder
from .encoder import SiameseEncoder, StreamFeatures
from .fusion import GlobalFeatureMatching
from .image_head import ImageHead
from .layers import fold, unfold

FOREGROUND = 1  # logits channel of the muscle; channel 0 is background


class IFSSNet(nn.Module):
    """The network of the paper (section III), configured by :class:`IFSSNetConfig`.

    ``forward(image, prev_mask, state=None, carry_index=0) -> (logits, new_state)``

    * image: float32 ``(B, 1, w, size, size)``, z-scored per volume by the caller.
    * prev_mask: float32 ``(B, 1, w, size, size)`` in [0, 1], the previous window's mask estimate.
    * state: forward ConvLSTM state (h, c), each ``(B, C5, size/32, size/32)``, or None (zeros).
    * carry_index: which slice's forward state to return; 0 for windows sliding by 1 (see convlstm).
    * logits: ``(B, 2, w, size, size)``; softmax over dim 1 gives (background, foreground).
    """

    def __init__(self, config: Optional[IFSSNetConfig] = None) -> None:
        super().__init__()
        self.config = config if config is not None else IFSSNetConfig()
        cfg = self.config
        self.encoder = SiameseEncoder(cfg)
        self.fusion = GlobalFeatureMatching(cfg)
        self.lstm = BiConvLSTM(cfg.channels()[-1], cfg.lstm_kernel, cfg.lstm_dropout)
        self.decoder = Decoder(cfg)
        # Built last, so that a network without it initialises exactly as before it existed.
        self.image_head = ImageHead(cfg) if cfg.image_head else None

    # ----------------------------------------------------------------- checks
    def _check(self, x: torch.Tensor, name: str) -> None:
        cfg = self.config
        if x.dim() != 5 or x.shape[1] != 1 or x.shape[-2:] != (cfg.size, cfg.size):
            raise InputError(
                f"{name} has shape {tuple(x.shape)}; the network expects (B, 1, w, {cfg.size}, {cfg.size}).",
                "Resample the slices to the network's working size and add the channel axis.")

    # ---------------------------------------------------------------- streams
    def encode_image(self, image: torch.Tensor) -> StreamFeatures:
        """Image stream only (no recurrence): ``(B, 1, w, size, size)`` -> :class:`StreamFeatures`.

        B may be many windows at once; take one with ``feats.select(k, k + 1)``.
        """
        self._check(image, "image")
        return self.encoder(fold(image), image.shape[2])

    def segment_logits(self, image_feats: StreamFeatures, segments: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image-only head (training aid): ``(B, K, w, size, size)`` logits, one per segment of
        ``config.image_head``, from the image stream alone; with ``segments`` (long ``(B,)``, head channels)
        only each window's own channel, ``(B, w, size, size)``. Raises if the network has no head."""
        if self.image_head is None:
            raise InputError("This network has no image-only head.",
                             "Train with --image-aux to add one (ifssnet train --image-aux 1).")
        logits = unfold(self.image_head(image_feats.skips), image_feats.batch)
        if segments is None:
            return logits
        return logits.gather(1, segments.view(-1, 1, 1, 1, 1).expand(-1, 1, *logits.shape[2:]))[:, 0]

    def forward_from_features(self, image_feats: StreamFeatures, prev_mask: torch.Tensor,
                              state: Optional[State] = None, carry_index: int = 0
                              ) -> Tuple[torch.Tensor, State]:
        """Mask stream, fusion, Bi-ConvLSTM and decoder for windows whose image stream is encoded.

        image_feats: from :meth:`encode_image`, batch B; prev_mask ``(B, 1, w, size, size)``.
        Returns logits ``(B, 2, w, size, size)`` and the carried forward state.
        """
        self._check(prev_mask, "prev_mask")
        b, _, d = prev_mask.shape[:3]
        if image_feats.batch != b or image_feats.depth != d:
            raise InputError(f"Image features hold {image_feats.batch} windows of {image_feats.depth} slices "
                             f"but the mask has {b} of {d}.", "Pass matching windows.")
        m = self.encoder(fold(prev_mask.to(image_feats.bottleneck.dtype)), d, guide=image_feats)
        g = self.fusion(image_feats.bottleneck, m.bottleneck, d)
        h, new_state = self.lstm(g, d, state, carry_index)
        logits = self.decoder(h, m.skips)
        return unfold(logits, b), new_state

    def forward(self, image: torch.Tensor, prev_mask: torch.Tensor, state: Optional[State] = None,
                carry_index: int = 0) -> Tuple[torch.Tensor, State]:
        if image.shape != prev_mask.shape:
            raise InputError(f"image {tuple(image.shape)} and prev_mask {tuple(prev_mask.shape)} differ in shape.",
                             "Pass a mask window for every image window.")
        return self.forward_from_features(self.encode_image(image), prev_mask, state, carry_index)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the 2 channels: ``(B, 2, w, H, W)`` -> ``(B, 2, w, H, W)`` (1 = foreground)."""
        return torch.softmax(logits, dim=1)

    @staticmethod
    def foreground(logits: torch.Tensor) -> torch.Tensor:
        """Foreground probability ``(B, 1, w, H, W)``."""
        return torch.softmax(logits, dim=1)[:, FOREGROUND:FOREGROUND + 1]


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_window(config: IFSSNetConfig) -> float:
    """Forward FLOPs (multiply-add = 2) of one window, batch 1, in GFLOP.

    Counted by ``torch.utils.flop_counter`` on meta tensors (convolutions and matmuls; elementwise ops,
    norms and pooling are not counted, they are a few percent).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = IFSSNet(config).eval()
        x = torch.zeros(1, 1, config.window, config.size, config.size)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x, x)
    return fc.get_total_flops() / 1e9
