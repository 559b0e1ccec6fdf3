"""Tiny stand-in networks with IFSS-Net's call signature, for testing propagation plumbing exactly.

``CopyModel`` predicts, for every slice of the window, the mask it was given (so a painted mask is
carried unchanged through the sweep); ``EmptyModel`` predicts background everywhere;
``UnsureModel`` predicts 0.5 near the given mask's boundary; ``BrightModel`` predicts foreground where the
image is brighter than 1.5 (it reads the image and ignores the mask). ``BrightHeadModel`` is a
``CopyModel`` whose image-only head (``--image-aux``) finds segment "A" where the image is brighter than 1.5.
"""
from types import SimpleNamespace

import torch


class _Base(torch.nn.Module):
    def __init__(self, size=32, window=3):
        super().__init__()
        self.config = SimpleNamespace(window=window, size=size)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, image, prev_mask, state=None):
        p = self.prob(image, prev_mask).clamp(1e-4, 1 - 1e-4)
        logit = torch.log(p) - torch.log1p(-p)
        steps = torch.zeros(image.shape[0]) if state is None else state[0]
        return torch.cat([torch.zeros_like(logit), logit], dim=1), (steps + 1.0,)


class CopyModel(_Base):
    def prob(self, image, prev):
        last = prev[:, :, -1:]
        return (last > 0.5).float().expand_as(prev)


class EmptyModel(_Base):
    def prob(self, image, prev):
        return torch.zeros_like(prev)


class UnsureModel(_Base):
    def prob(self, image, prev):
        last = (prev[:, :, -1:] > 0.5).float().expand_as(prev)
        return 0.15 + 0.7 * last * 0.5 + 0.35 * last


class BrightModel(_Base):
    def prob(self, image, prev):
        return (image > 1.5).float()


class BrightHeadModel(CopyModel):
    """A copier with an image-only head for segment "A": logits +-10 by image > 1.5 (IFSSNet.segment_logits)."""

    def __init__(self, size=32, window=3):
        super().__init__(size, window)
        self.config.image_head = ("A",)

    def encode_image(self, image):
        return image

    def segment_logits(self, feats, segments=None):
        logits = (feats > 1.5).float() * 20.0 - 10.0          # (B, 1, w, S, S): segment "A" only
        return logits if segments is None else logits[:, 0]
