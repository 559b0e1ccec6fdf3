"""The parametric Tversky loss of the paper (eqs. 2-4), with learned alpha and beta.

For one window (w slices of N voxels), with p the predicted foreground probability and g the target
foreground (binary, or a soft pseudo-label in [0, 1]):

    TP = sum_j sum_i p g,   FP = sum_j sum_i p (1 - g),   FN = sum_j sum_i (1 - p) g
    TI = (TP + s) / (TP + alpha FP + beta FN + s)                              (eq. 3, s = smooth)

The sums run over the w slices and the voxels together (eq. 3 accumulates over the sub-volume), so a
window is one ratio, not a mean of per-slice ratios. alpha weights the false positives (predicted
foreground on target background) and beta the false negatives, as in eq. (2).
``(alpha, beta) = softmax(theta)`` with two learned logits theta that start equal (0.5 / 0.5, where TI is
the soft Dice ``2 TP / (|P| + |G|)``). The loss is ``1 - mean over windows of TI`` (eq. 4).

Note on eq. (4): it also writes a factor 1/w in front of TI. Eq. (3) already sums over the w slices,
so TI is in [0, 1]; an extra 1/w would only rescale the loss by a constant (and keep it from
reaching 0). We leave it out; it changes no gradient direction.

Note on the learned alpha/beta: d(1 - TI)/d(alpha) is proportional to (FP - FN) (beta = 1 - alpha),
so training moves weight onto whichever of FP and FN is currently smaller. This is what the paper's
formulation does; it is expected, and the tests check that alpha and beta move on imbalanced errors.

Smoothing ``s`` (default 1 voxel) keeps TI defined for windows where both the target and the
prediction are empty (the ends of a muscle): then TI -> 1 as the prediction -> 0.

Saturation on empty windows, and the optional cross-entropy term: where the target is empty (past a
muscle's end) TI = s / (s + alpha FP), whose gradient alpha s / (s + alpha FP)^2 vanishes as the leaked
area FP grows. A network that leaks a large mask past the end gets almost no signal to remove it (measured:
held-out runs that cross a muscle's end keep a loss of about 0.9). ``bce_weight`` > 0 adds that weight
times the voxel-wise binary cross-entropy (mean over the weighted voxels), whose gradient does not
saturate. 0 (the default) is the paper's loss; the shipped model's card says what it was trained with.

L2 regularisation (paper: lambda = 1e-5): use :func:`l2_penalty` and add it to the loss, which is
exactly eq. (4)'s ``lambda ||Omega||^2`` (coupled L2, through Adam's moments). Do not also set Adam's
``weight_decay`` (that is the same penalty with lambda/2 convention: ``weight_decay = 2 * lambda``).
The Tversky logits are not penalised. Put ``ParametricTversky.parameters()`` into the optimizer too.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def tversky_index(p: torch.Tensor, g: torch.Tensor, alpha, beta, smooth: float = 1.0,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """TI per window.

    Args:
        p: predicted foreground probability ``(B, w, H, W)`` or ``(B, 1, w, H, W)``.
        g: target foreground in [0, 1], same shape.
        alpha, beta: scalars or 0-d tensors (FP and FN weights).
        smooth: added to numerator and denominator.
        weight: optional voxel weights, same shape (0 excludes a voxel, e.g. an unannotated slice).
    Returns:
        ``(B,)`` Tversky index of each window.
    """
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(g.shape)} differ in shape")
    p = p.reshape(p.shape[0], -1)
    g = g.reshape(g.shape[0], -1).to(p.dtype)
    if weight is not None:
        wgt = weight.reshape(weight.shape[0], -1).to(p.dtype)
        pw = p * wgt
        tp = (pw * g).sum(1)
        fp = pw.sum(1) - tp                      # sum p (1 - g) w
        fn = (g * wgt).sum(1) - tp               # sum (1 - p) g w
    else:
        tp = (p * g).sum(1)
        fp = p.sum(1) - tp
        fn = g.sum(1) - tp
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


class ParametricTversky(nn.Module):
    """``loss = 1 - mean_b TI_b(alpha, beta)`` with ``(alpha, beta) = softmax(theta)``, theta learned
    (``learn=False``: theta stays where it starts). ``beta`` is where beta starts (alpha = 1 - beta); the
    paper's 0.5 makes the loss the Dice loss, and above 0.5 a missed voxel costs more than a false one.

    ``forward(pred, target, weight=None, from_logits=True)``:
      * pred: logits ``(B, 2, w, H, W)`` (channel 1 = foreground) when ``from_logits``; otherwise the
        foreground probability ``(B, 1, w, H, W)`` or ``(B, w, H, W)``.
      * target: foreground in [0, 1], ``(B, 1, w, H, W)`` or ``(B, w, H, W)``.
      * weight: optional voxel weights shaped like target.
    Returns a 0-d tensor. A batch of B windows (or a sequence stacked along B) is averaged.
    """

    def __init__(self, smooth: float = 1.0, bce_weight: float = 0.0, learn: bool = True, beta: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must lie strictly between 0 and 1, not {beta}")
        # softmax((0, log(beta / (1 - beta)))) = (1 - beta, beta); learn=False keeps it (0.5: the Dice loss)
        self.theta = nn.Parameter(torch.tensor([0.0, math.log(beta / (1.0 - beta))]), requires_grad=learn)
        self.smooth = float(smooth)
        self.bce_weight = float(bce_weight)

    def weights(self) -> torch.Tensor:
        """``tensor([alpha, beta])``, differentiable."""
        return torch.softmax(self.theta, dim=0)

    @property
    def alpha(self) -> float:
        return float(self.weights().detach()[0])

    @property
    def beta(self) -> float:
        return float(self.weights().detach()[1])

    def index(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
              from_logits: bool = True) -> torch.Tensor:
        """TI per window, ``(B,)``."""
        if from_logits:
            if pred.dim() != 5 or pred.shape[1] != 2:
                raise ValueError(f"logits must be (B, 2, w, H, W), got {tuple(pred.shape)}")
            p = torch.softmax(pred, dim=1)[:, 1]
        else:
            p = pred[:, 0] if pred.dim() == 5 else pred
        g = target[:, 0] if target.dim() == 5 else target
        wgt = None if weight is None else (weight[:, 0] if weight.dim() == 5 else weight)
        ab = self.weights()
        return tversky_index(p, g, ab[0], ab[1], self.smooth, wgt)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                from_logits: bool = True) -> torch.Tensor:
        loss = 1.0 - self.index(pred, target, weight, from_logits).mean()
        if self.bce_weight:
            loss = loss + self.bce_weight * self.cross_entropy(pred, target, weight, from_logits)
        return loss

    @staticmethod
    def cross_entropy(pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                      from_logits: bool = True) -> torch.Tensor:
        """Voxel-wise binary cross-entropy, averaged over the voxels with weight (0-d tensor)."""
        if from_logits:
            logp = torch.log_softmax(pred, dim=1)
            log_fg, log_bg = logp[:, 1], logp[:, 0]
        else:
            p = (pred[:, 0] if pred.dim() == 5 else pred).clamp(1e-6, 1 - 1e-6)
            log_fg, log_bg = torch.log(p), torch.log1p(-p)
        g = (target[:, 0] if target.dim() == 5 else target).to(log_fg.dtype)
        ce = -(g * log_fg + (1 - g) * log_bg)
        if weight is None:
            return ce.mean()
        wgt = (weight[:, 0] if weight.dim() == 5 else weight).to(ce.dtype)
        return (ce * wgt).sum() / wgt.sum().clamp(min=1.0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4f}, beta={self.beta:.4f}, smooth={self.smooth}, bce_weight={self.bce_weight}"


def l2_penalty(model: nn.Module, weight: float = 1e-5) -> torch.Tensor:
    """``weight * sum ||W||^2`` over the trainable parameters of ``model`` (eq. 4's lambda ||Omega||^2).

    All trainable parameters count (weights, biases, norm affines), as eq. (4) writes Omega.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return torch.zeros(())
    return weight * sum(p.pow(2).sum() for p in params)


def soft_dice_loss(prob, target, weight=None, dims=None, eps: float = 1.0):
    """1 - soft Dice, averaged over what ``dims`` leaves (default: per sample, axis 0).

    ``prob``, ``target``: same shape, values in [0, 1]; ``weight``: broadcastable 0/1 (unknown
    voxels out). ``eps`` smooths an empty target (then the loss pushes the prediction to empty).
    """
    if weight is not None:
        prob, target = prob * weight, target * weight
    if dims is None:
        dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    den = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (den + eps)).mean()


def weighted_bce_with_logits(logits, target, weight):
    """Binary cross-entropy averaged over the voxels with weight. ``logits``, ``target``: same shape;
    ``weight``: 0/1, broadcastable to them (unknown voxels out)."""
    w = weight.expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), weight=w,
                                              reduction="sum") / w.sum().clamp_min(1.0)
