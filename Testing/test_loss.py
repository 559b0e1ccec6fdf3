"""Parametric Tversky loss (eqs. 2-4) and the L2 helper."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ifssnet.loss import ParametricTversky, l2_penalty, tversky_index  # noqa: E402


def _pair(seed=0, shape=(3, 1, 3, 16, 16), fg=0.3):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(shape, generator=g)
    t = (torch.rand(shape, generator=g) < fg).float()
    return p, t


def test_half_half_is_soft_dice():
    p, t = _pair()
    loss = ParametricTversky(smooth=0.0)
    assert loss.alpha == pytest.approx(0.5) and loss.beta == pytest.approx(0.5)
    got = loss(p, t, from_logits=False)
    pf, tf = p.reshape(3, -1), t.reshape(3, -1)
    dice = 2 * (pf * tf).sum(1) / (pf.sum(1) + tf.sum(1))
    assert abs(float(got.detach()) - float(1 - dice.mean())) < 1e-6


def test_beta_start_weights_missed_voxels_and_stays_when_fixed():
    """``beta`` sets where (alpha, beta) start; above 0.5 a missed voxel costs more than a false one, so a mask
    too small loses more than one as much too large; ``learn=False`` keeps it there through a step."""
    loss = ParametricTversky(smooth=0.0, learn=False, beta=0.7)
    assert (loss.alpha, loss.beta) == (pytest.approx(0.3), pytest.approx(0.7))
    t = torch.zeros(1, 1, 3, 8, 8); t[..., 2:6, 2:6] = 1
    small = torch.zeros_like(t); small[..., 3:5, 2:6] = 1            # half the muscle missed
    large = t.clone(); large[..., 1, 2:6] = 1; large[..., 6, 2:6] = 1  # as many voxels added around it
    assert float((large - t).clamp(min=0).sum()) == float((t - small).sum())
    assert float(loss(small, t, from_logits=False)) > float(loss(large, t, from_logits=False))
    fp_heavy = ParametricTversky(smooth=0.0, learn=False, beta=0.3)     # the other way round
    assert float(fp_heavy(small, t, from_logits=False)) < float(fp_heavy(large, t, from_logits=False))
    p = torch.rand(1, 1, 3, 8, 8, requires_grad=True)
    opt = torch.optim.Adam([p, *loss.parameters()], lr=0.1)
    loss(p, t, from_logits=False).backward()
    opt.step()
    assert loss.beta == pytest.approx(0.7)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ParametricTversky(beta=1.0)


def test_sums_over_slices_not_mean_of_slices():
    p, t = _pair(shape=(1, 1, 3, 8, 8))
    ti = tversky_index(p, t, 0.3, 0.7, smooth=0.0)
    tp = (p * t).sum(); fp = (p * (1 - t)).sum(); fn = ((1 - p) * t).sum()
    assert torch.allclose(ti, tp / (tp + 0.3 * fp + 0.7 * fn))


def test_alpha_weights_false_positives():
    t = torch.zeros(1, 1, 3, 8, 8); t[..., :4, :] = 1
    p_fp = torch.ones_like(t)           # all FP errors, no FN
    lo = tversky_index(p_fp, t, 0.1, 0.9, 0.0)
    hi = tversky_index(p_fp, t, 0.9, 0.1, 0.0)
    assert float(lo) > float(hi)        # larger alpha penalises the FPs more


def test_logits_input_uses_channel_1_as_foreground():
    t = torch.zeros(2, 1, 3, 8, 8); t[..., 2:6, 2:6] = 1
    logits = torch.cat([-10 * (t - 0.5), 10 * (t - 0.5)], dim=1)  # confident and correct
    assert float(ParametricTversky()(logits, t).detach()) < 1e-3


def test_gradient_reaches_alpha_beta():
    p, t = _pair(fg=0.1)
    p.requires_grad_()
    loss = ParametricTversky()
    loss(p, t, from_logits=False).backward()
    assert loss.theta.grad is not None and loss.theta.grad.abs().sum() > 0
    assert p.grad.abs().sum() > 0


def test_alpha_beta_move_on_imbalanced_target():
    torch.manual_seed(0)
    t = torch.zeros(2, 1, 3, 32, 32); t[..., 12:18, 12:18] = 1        # ~3.5 % foreground
    logit = torch.zeros(2, 2, 3, 32, 32, requires_grad=True)          # p = 0.5 everywhere: FP >> FN
    loss = ParametricTversky()
    opt = torch.optim.Adam([logit, *loss.parameters()], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss(logit, t).backward()
        opt.step()
    a, b = loss.alpha, loss.beta
    assert abs(a + b - 1) < 1e-6
    assert abs(a - 0.5) > 0.05          # moved
    assert a < b                        # weight moves away from the larger error sum (FP here)


def test_weight_excludes_voxels_and_empty_windows_are_fine():
    p, t = _pair(shape=(2, 1, 3, 8, 8))
    w = torch.ones_like(t); w[:, :, 1] = 0
    full = tversky_index(p[:, :, [0, 2]], t[:, :, [0, 2]], 0.5, 0.5, 1.0)
    masked = tversky_index(p, t, 0.5, 0.5, 1.0, weight=w)
    assert torch.allclose(full, masked, atol=1e-6)
    z = torch.zeros(1, 1, 3, 8, 8)
    assert float(tversky_index(z, z, 0.5, 0.5)) == pytest.approx(1.0)


def test_l2_penalty():
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(1.0); m.bias.fill_(2.0)
    assert float(l2_penalty(m, 1e-5).detach()) == pytest.approx(1e-5 * (6 * 1 + 2 * 4))
    assert l2_penalty(m).requires_grad


def _leak_gradient(bce_weight, leaked):
    """|d loss / d logit| for a window whose target is empty and whose prediction leaks ``leaked`` voxels."""
    logit = torch.full((1, 3, 32, 32), -6.0)
    logit.view(-1)[:leaked] = 6.0
    logit.requires_grad_(True)
    p = torch.sigmoid(logit)
    ParametricTversky(bce_weight=bce_weight)(p, torch.zeros_like(p), from_logits=False).backward()
    return float(logit.grad.abs().sum())


def test_tversky_saturates_on_empty_targets_and_cross_entropy_does_not():
    # Past a muscle's end the target is empty: the larger the leak, the weaker Tversky's pull to remove it.
    assert _leak_gradient(0.0, 1000) < 1e-3 * _leak_gradient(0.0, 10)
    assert _leak_gradient(1.0, 1000) > 1e3 * _leak_gradient(0.0, 1000)


def test_cross_entropy_term_from_logits_equals_from_probabilities():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 3, 8, 8)
    t = (torch.rand(2, 1, 3, 8, 8) > 0.7).float()
    w = torch.ones_like(t); w[:, :, 1] = 0
    a = ParametricTversky(bce_weight=0.5)(logits, t, w)
    b = ParametricTversky(bce_weight=0.5)(torch.softmax(logits, 1)[:, 1:], t, w, from_logits=False)
    assert torch.allclose(a, b, atol=1e-5)
    ce = torch.nn.functional.binary_cross_entropy(torch.softmax(logits, 1)[:, 1:][w > 0], t[w > 0])
    assert float((a - ParametricTversky()(logits, t, w)).detach()) == pytest.approx(0.5 * float(ce), rel=1e-4)
