"""Deformed mask inputs for training (``--mask-jitter``, ``--mask-box``): what a drifted mask looks like.

At inference a window's mask input is the network's own previous output. Training from the truth alone
teaches it to copy that input; these perturbations teach it to correct it from the image
(:func:`ifssnet.tbptt.windows_loss` applies them). Masks are torch (B, w, S, S) in [0, 1], pixels of the
working grid; both use torch's RNG, so a seeded training step deforms the same way.
"""
from __future__ import annotations

JITTER_SHIFT = 3     # largest in-plane shift, pixels (``--jitter-shift``; the box's largest margin too)
JITTER_RADIUS = 3    # largest dilation/erosion radius, pixels (``--jitter-radius``; 0: shift only)


def jitter_mask(mask, max_shift: int = JITTER_SHIFT, max_radius: int = JITTER_RADIUS):
    """Deform a mask input (B, w, S, S) in [0, 1]: one random in-plane shift (up to ``max_shift``
    pixels) and one dilation or erosion (square, radius 1..``max_radius`` pixels; none when
    ``max_radius`` is 0), the same for the w slices. Uses torch's RNG, so a seeded step deforms the same
    way. Shift only (``max_radius=0``) keeps the mask's area, so the network cannot lower the loss by
    learning to grow or shrink every mask (what dilation and erosion taught it, measured in the model
    card); only by finding the muscle in the image.

    Deformed mask inputs teach the network to pull a wrong mask back onto the muscle's borders
    instead of copying it (MaskTrack, Perazzi et al. 2017). Without them the network learned to copy
    its mask input (neighbouring slices 1 mm apart are nearly equal): measured on validation runs, its
    predicted area stayed constant over 40 slices while the muscle shrank to nothing. At inference the
    mask input is the network's own previous output, so such errors compound slice after slice.
    """
    import torch
    import torch.nn.functional as F

    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    out = _shift(mask, dy, dx)
    if max_radius <= 0:
        return out
    r = int(torch.randint(1, max_radius + 1, (1,)))
    B, w, S, T = out.shape
    flat = out.reshape(B * w, 1, S, T)
    if bool(torch.rand(()) < 0.5):
        flat = F.max_pool2d(flat, 2 * r + 1, stride=1, padding=r)                  # dilate
    else:
        flat = 1.0 - F.max_pool2d(1.0 - flat, 2 * r + 1, stride=1, padding=r)      # erode
    return flat.reshape(B, w, S, T)


def _shift(mask, dy: int, dx: int):
    """``mask`` (..., S, T) moved by (dy, dx) pixels, background (0) where it leaves the grid. (``torch.roll``
    brought a mask touching one edge back on the opposite edge.)"""
    import torch

    out = torch.zeros_like(mask)
    S, T = mask.shape[-2:]
    if abs(dy) >= S or abs(dx) >= T:
        return out
    out[..., max(dy, 0):S + min(dy, 0), max(dx, 0):T + min(dx, 0)] = \
        mask[..., max(-dy, 0):S + min(-dy, 0), max(-dx, 0):T + min(-dx, 0)]
    return out


def box_mask(mask, max_margin: int = JITTER_SHIFT):
    """The mask input (B, w, S, S) replaced by each slice's bounding box of ``mask > 0.5``, grown by a
    random margin of 0..``max_margin`` pixels (one for the whole batch; torch's RNG). Empty slices stay
    empty.

    ``--mask-box``: the box keeps which muscle and where, and drops its outline, which the network must
    then find in the image. Copying the mask input scores well on 1 mm slices, and jittered masks taught an
    area prior instead (model card); from a box neither works.
    """
    import torch

    m = mask > 0.5
    B, w, S, T = m.shape
    margin = int(torch.randint(0, max_margin + 1, (1,)))
    rows, cols = m.any(-1), m.any(-2)                              # (B, w, S), (B, w, T)
    ar_s, ar_t = torch.arange(S, device=mask.device), torch.arange(T, device=mask.device)

    def span(any_, ar, n):
        lo = torch.where(any_, ar, n).amin(-1) - margin              # (B, w)
        hi = torch.where(any_, ar, -1).amax(-1) + margin
        return (ar >= lo[..., None]) & (ar <= hi[..., None])          # (B, w, n)

    box = span(rows, ar_s, S)[..., :, None] & span(cols, ar_t, T)[..., None, :]
    return (box & m.flatten(2).any(-1)[..., None, None]).to(mask.dtype)
