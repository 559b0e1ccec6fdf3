"""Building blocks in the fast CPU form.

Layout. Inside the network a window batch ``(B, C, w, H, W)`` is kept **slice-folded**: the w slices
go into the batch, ``(B*w, C, H, W)``, in ``torch.channels_last`` memory. This is the fast form of
issue 7: in-plane (depthwise, dilated) convolutions become 2-D convolutions, which PyTorch runs
many times faster on the CPU than ``Conv3d`` with a ``(1, k, k)`` kernel (see
``benchmarks/conv_forms.py``). Temporal mixing (kernel extent kt > 1 along w) is done by stacking the
kt shifted neighbour slices along the channels and running one 2-D convolution, which equals a
zero-padded ``Conv3d`` exactly.

:class:`SliceConv3d` keeps its weight in ``Conv3d`` shape ``(C_out, C_in/groups, kt, kh, kw)``, so it
can be checked against ``torch.nn.functional.conv3d`` with the same weights (tests do).

Normalisation is per slice (statistics over channels-in-group x H x W of one slice), so a slice is
normalised the same way whatever window it sits in.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CL = torch.channels_last


def fold(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> slice-folded ``(B*D, C, H, W)`` in channels_last memory."""
    b, c, d, h, w = x.shape
    return x.transpose(1, 2).reshape(b * d, c, h, w).contiguous(memory_format=CL)


def unfold(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Slice-folded ``(B*D, C, H, W)`` -> ``(B, C, D, H, W)`` (contiguous)."""
    n, c, h, w = x.shape
    return x.reshape(batch, n // batch, c, h, w).transpose(1, 2).contiguous()


def temporal_stack(x: torch.Tensor, depth: int, kt: int) -> torch.Tensor:
    """Stack kt temporal neighbours along channels, zero-padded at the window's ends.

    Args:
        x: ``(B*D, C, H, W)`` slice-folded.
        depth: D, slices per window.
        kt: odd temporal kernel length.
    Returns:
        ``(B*D, kt*C, H, W)`` channels_last; channel block k holds slice ``t + k - kt//2``.
    """
    if kt == 1:
        return x
    n, c, h, w = x.shape
    p = kt // 2
    xn = x.permute(0, 2, 3, 1).reshape(n // depth, depth, h, w, c)  # (B, D, H, W, C)
    st = xn.new_empty((n // depth, depth, h, w, kt, c))
    for k in range(kt):
        off = k - p                     # block k at slice t holds slice t + off
        t0, t1 = max(0, -off), min(depth, depth - off)
        if t1 > t0:
            st[:, t0:t1, :, :, k] = xn[:, t0 + off:t1 + off]
        if t0 > 0:
            st[:, :t0, :, :, k] = 0
        if t1 < depth:
            st[:, max(t1, 0):, :, :, k] = 0
    return st.reshape(n, h, w, kt * c).permute(0, 3, 1, 2)


class SliceConv3d(nn.Module):
    """A ``Conv3d`` with 'same' zero padding, computed in the slice-folded fast form.

    kt == 1: a 2-D convolution over the folded slices (any groups, in-plane dilation).
    kt > 1: neighbours stacked along channels (:func:`temporal_stack`) + one 2-D convolution
    (groups must be 1).

    Input ``(B*D, C_in, H, W)`` -> output ``(B*D, C_out, H, W)``; ``depth`` = D is needed when kt > 1.
    Kernel extents must be odd. Weight shape is that of ``nn.Conv3d``.
    """

    def __init__(self, c_in: int, c_out: int, kernel=(1, 3, 3), dilation=(1, 1), groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        kt, kh, kw = kernel
        if kt % 2 == 0 or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError("SliceConv3d needs odd kernel extents")
        if kt > 1 and groups != 1:
            raise ValueError("temporal kernels need groups=1")
        self.c_in, self.c_out, self.kernel, self.groups = c_in, c_out, (kt, kh, kw), groups
        self.dilation = tuple(dilation)
        self.padding = (self.dilation[0] * (kh // 2), self.dilation[1] * (kw // 2))
        self.weight = nn.Parameter(torch.empty(c_out, c_in // groups, kt, kh, kw))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (c_in // groups) * kt * kh * kw
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def weight2d(self) -> torch.Tensor:
        """The weight as a 2-D kernel ``(C_out, kt*C_in/groups, kh, kw)`` matching :func:`temporal_stack`."""
        co, ci, kt, kh, kw = self.weight.shape
        return self.weight.permute(0, 2, 1, 3, 4).reshape(co, kt * ci, kh, kw)

    def forward(self, x: torch.Tensor, depth: int = 1) -> torch.Tensor:
        x = temporal_stack(x, depth, self.kernel[0])
        return F.conv2d(x, self.weight2d(), self.bias, padding=self.padding, dilation=self.dilation,
                        groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.c_in}, {self.c_out}, kernel={self.kernel}, dilation={self.dilation}, "
                f"groups={self.groups}")


def reference_conv3d(m: SliceConv3d, x5: torch.Tensor) -> torch.Tensor:
    """The naive form: ``F.conv3d`` on ``(B, C, D, H, W)`` with the same weights (for tests/benchmarks)."""
    kt = m.kernel[0]
    return F.conv3d(x5, m.weight, m.bias, padding=(kt // 2,) + m.padding,
                    dilation=(1,) + m.dilation, groups=m.groups)


def _groups_for(channels: int, most: int) -> int:
    return max(g for g in range(1, min(most, channels) + 1) if channels % g == 0)


def make_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """Per-slice normalisation of ``(N, C, H, W)``.

    "group": GroupNorm with the largest divisor of C <= ``groups``; "layer": GroupNorm(1, C), i.e.
    LayerNorm over (C, H, W) with per-channel affine (the prototype used LayerNorm); "instance":
    GroupNorm(C, C); "none": identity. Batch statistics are avoided: training runs one case at a time.
    """
    if kind == "group":
        return nn.GroupNorm(_groups_for(channels, groups), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def make_dropout(p: float, mode: str = "channel") -> nn.Module:
    """Dropout for slice-folded ``(N, C, H, W)``: "channel" zeros whole maps of a slice (Dropout2d),
    "element" zeros single activations. p == 0 gives identity."""
    if p <= 0:
        return nn.Identity()
    return nn.Dropout2d(p) if mode == "channel" else nn.Dropout(p)


class ConvNormAct(nn.Module):
    """SliceConv3d + norm + ReLU. ``(B*D, C_in, H, W)`` -> ``(B*D, C_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, kernel=(3, 3, 3), norm: str = "group", groups: int = 8) -> None:
        super().__init__()
        self.conv = SliceConv3d(c_in, c_out, kernel, bias=norm == "none")
        self.norm = make_norm(norm, c_out, groups)

    def forward(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x, depth)), inplace=True)


class SeparableConv(nn.Module):
    """Depthwise 3x3 in-plane (optionally dilated) + pointwise + norm + ReLU, per slice.

    ``(N, C_in, H, W)`` -> ``(N, C_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, dilation: int = 1, norm: str = "group", groups: int = 8) -> None:
        super().__init__()
        self.dw = SliceConv3d(c_in, c_in, (1, 3, 3), (dilation, dilation), groups=c_in, bias=False)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=norm == "none")
        self.norm = make_norm(norm, c_out, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.pw(self.dw(x))), inplace=True)


class AtrousSeparable(nn.Module):
    """3-D atrous separable block (ASPP-like), fast form.

    Branches on the slice-folded input x ``(N, C, H, W)``: x itself (the 1x1 branch), one depthwise
    3x3 conv per rate (in-plane dilation r), and optionally a global average pool over H x W.
    Each branch has its pointwise conv (C -> C), and the results are summed: this equals
    "concatenate the branches, project with one 1x1 conv" exactly, without materialising the
    concatenation (whose channel-sliced gradients push the depthwise backward onto a slow path).
    The pool branch's pointwise output is broadcast-added. Then norm, ReLU, dropout.
    Shape-preserving: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, rates, norm: str = "group", groups: int = 8,
                 pool_branch: bool = True, dropout: float = 0.0, dropout_mode: str = "channel") -> None:
        super().__init__()
        self.rates = list(rates)
        self.dw = nn.ModuleList(
            SliceConv3d(channels, channels, (1, 3, 3), (r, r), groups=channels, bias=False) for r in self.rates)
        self.pw = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=(i == 0 and norm == "none"))
                                for i in range(len(self.rates) + 1))
        self.pool_proj = nn.Conv2d(channels, channels, 1, bias=False) if pool_branch else None
        self.norm = make_norm(norm, channels, groups)
        self.drop = make_dropout(dropout, dropout_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The pointwise convs as matrix products on the channels_last view (N*H*W, C), each branch's
        # product accumulated into one buffer (addmm): no separate pass per sum, 5 % of a network step.
        n, _, h, w = x.shape
        first = self.pw[0]
        y = (_pixels(x) @ _matrix(first) if first.bias is None
             else torch.addmm(first.bias, _pixels(x), _matrix(first)))
        for dw, pw in zip(self.dw, self.pw[1:]):
            y = torch.addmm(y, _pixels(dw(x)), _matrix(pw))
        y = y.view(n, h, w, -1).permute(0, 3, 1, 2)          # channels_last (N, C, H, W)
        if self.pool_proj is not None:
            y = y + self.pool_proj(x.mean(dim=(2, 3), keepdim=True))
        return self.drop(F.relu(self.norm(y), inplace=True))


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """channels_last ``(N, C, H, W)`` -> ``(N*H*W, C)`` (a view; a copy if x is not channels_last)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _matrix(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 conv's weight ``(C_out, C_in, 1, 1)`` as the ``(C_in, C_out)`` matrix of ``pixels @ matrix``."""
    return conv.weight[:, :, 0, 0].t()


class ResidualBlock(nn.Module):
    """Two 3x3x3 convs with norm, identity shortcut: ``relu(x + n(c(relu(n(c(x))))))``. Shape-preserving."""

    def __init__(self, channels: int, norm: str = "group", groups: int = 8) -> None:
        super().__init__()
        self.c1 = ConvNormAct(channels, channels, (3, 3, 3), norm, groups)
        self.c2 = SliceConv3d(channels, channels, (3, 3, 3), bias=norm == "none")
        self.n2 = make_norm(norm, channels, groups)

    def forward(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        return F.relu(x + self.n2(self.c2(self.c1(x, depth), depth)))


class ChannelAttention(nn.Module):
    """Squeeze-excitation per slice: pool H x W, 1x1, ReLU, 1x1, sigmoid. ``(N,C,H,W)`` -> ``(N,C,1,1)``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = max(4, channels // reduction)
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.fc2 = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
