"""Bi-ConvLSTM with ONE cell used in both directions (paper III-B.3).

The cell (hidden = C5 maps, k x k kernels, tanh) runs forward over the w slices of the window, then
the SAME cell (same parameters) runs backward; the outputs merge residually:
``out = dropout(x + h_fwd + h_bwd)``.

The gate convolution is split into an input part ``W_x * x_t`` (with the bias) and a recurrent part
``W_h * h_{t-1}``. The input part does not depend on the recurrence, so it is computed once for all
w slices (one batched 2-D conv) and shared by both directions; only ``W_h * h`` runs per step.

State carried between windows (only the forward direction carries):
windows slide by ``step`` slices (1 by default). Window k holds slices k .. k+w-1 and window k+1
holds k+1 .. k+w. The state to hand to window k+1 is the forward state after slice k, the FIRST
slice of window k: it has seen every slice before k+1 exactly once. Carrying the state after the
last slice (k+w-1) would feed slices k+1 .. k+w-1 into the memory twice and break the recurrence's
meaning. With stride s, the state after slice s-1 of the window is carried (``carry_index = s-1``).
The backward direction starts from zeros in each window (the future beyond the window is unknown).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

State = Tuple[torch.Tensor, torch.Tensor]


def detach_state(state: Optional[State]) -> Optional[State]:
    """Cut the graph (TBPTT) but keep the values."""
    return None if state is None else (state[0].detach(), state[1].detach())


class ConvLSTMCell(nn.Module):
    """Gates ``[i, f, o, g] = W_x * x + W_h * h + b``; ``c' = s(f) c + s(i) tanh(g)``; ``h' = s(o) tanh(c')``."""

    def __init__(self, c_in: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.x2g = nn.Conv2d(c_in, 4 * hidden, kernel, padding=kernel // 2, bias=True)
        self.h2g = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)
        with torch.no_grad():  # forget-gate bias 1: remember by default at the start of training
            self.x2g.bias.zero_()
            self.x2g.bias[hidden:2 * hidden].fill_(1.0)

    def step(self, gx: torch.Tensor, state: State) -> State:
        """gx: precomputed ``W_x * x_t + b`` ``(B, 4*hid, h, w)``; state (h, c) each ``(B, hid, h, w)``."""
        h, c = state
        gates = gx + self.h2g(h)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class BiConvLSTM(nn.Module):
    """``forward(x (B*w, C, h, w), depth=w, state=None, carry_index=0) -> (out (B*w, C, h, w), new_state)``.

    ``state``/``new_state``: forward (h, c), each ``(B, C, h, w)``; None means zeros.
    """

    def __init__(self, channels: int, kernel: int = 3, dropout: float = 0.4) -> None:
        super().__init__()
        self.cell = ConvLSTMCell(channels, channels, kernel)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def zero_state(self, batch: int, h: int, w: int, like: torch.Tensor) -> State:
        z = like.new_zeros((batch, self.cell.hidden, h, w))
        return z, z

    def forward(self, x: torch.Tensor, depth: int, state: Optional[State] = None,
                carry_index: int = 0) -> Tuple[torch.Tensor, State]:
        n, c, hh, ww = x.shape
        b = n // depth
        gx = self.cell.x2g(x).reshape(b, depth, 4 * c, hh, ww)
        carry_index = min(max(carry_index, 0), depth - 1)
        st = state if state is not None else self.zero_state(b, hh, ww, x)
        fwd = []
        carry = st
        for t in range(depth):
            st = self.cell.step(gx[:, t], st)
            fwd.append(st[0])
            if t == carry_index:
                carry = st
        st = self.zero_state(b, hh, ww, x)
        bwd = [None] * depth
        for t in reversed(range(depth)):
            st = self.cell.step(gx[:, t], st)
            bwd[t] = st[0]
        h = torch.stack(fwd, 1) + torch.stack(bwd, 1)  # (B, w, C, h, w)
        out = x + h.reshape(n, c, hh, ww)
        return self.drop(out), carry
