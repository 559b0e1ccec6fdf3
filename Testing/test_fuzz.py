"""Fuzz (hypothesis) over volume shape, dtype, spacing and seed layout for ``propagate`` and ``evaluate``.

Every run either succeeds with masks of the volume's shape or raises one of our errors
(:class:`ifssnet.errors.IFSSNetError`), never anything else (issue 8). Volumes are tiny and the
network is :class:`fake_models.CopyModel`, so the whole file runs in well under a minute on 2 cores.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_models import CopyModel
from ifssnet.errors import IFSSNetError
from ifssnet.metrics import evaluate
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds

DTYPES = ["uint8", "int16", "float32", "float64", "bool"]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _volume(rng, shape, dtype, kind):
    if kind == "constant":
        return np.full(shape, 3, dtype=dtype)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype == "uint8":
        return rng.integers(0, 256, shape).astype(np.uint8)
    if dtype == "int16":
        return rng.integers(-1024, 3000, shape).astype(np.int16)     # CT-like, negative values
    scale = 1e-3 if kind == "tiny-range" else 100.0
    return (rng.normal(size=shape) * scale - 50.0).astype(dtype)      # negative floats


def _blob(rng, shape):
    """A random box per slice, sometimes two disconnected pieces, sometimes nothing."""
    m = np.zeros(shape, np.uint8)
    K, J, I = shape
    if m.size == 0:
        return m
    for k in range(K):
        for _ in range(int(rng.integers(0, 3))):
            j0, i0 = int(rng.integers(0, J)), int(rng.integers(0, I))
            m[k, j0:j0 + int(rng.integers(1, J + 1)), i0:i0 + int(rng.integers(1, I + 1))] = 1
    return m


@st.composite
def propagation_cases(draw):
    # Mostly usable shapes, sometimes too thin (< 3 slices, or < 8 voxels in-plane).
    shape = (draw(st.sampled_from([3, 4, 6, 9, 12])), draw(st.sampled_from([8, 9, 11, 14])),
             draw(st.sampled_from([8, 10, 13, 14])))
    if draw(st.integers(0, 5)) == 3:
        shape = draw(st.sampled_from([(1, 9, 9), (2, 14, 14), (6, 3, 14), (6, 14, 1), (1, 1, 1)]))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["random", "tiny-range", "random", "constant"]))
    seed = draw(st.integers(0, 2 ** 16))
    groups = draw(st.sampled_from([2, 3, 1, 2, 3, 0]))
    per_group = draw(st.sampled_from([3, 2, 3, 1]))
    starts = draw(st.lists(st.integers(0, max(shape[0] - 1, 0)), min_size=groups, max_size=groups))
    empty_share = draw(st.sampled_from([0.0, 0.3, 0.0, 1.0]))
    between = draw(st.booleans())
    return shape, dtype, kind, seed, starts, per_group, empty_share, between


@FUZZ
@given(propagation_cases())
def test_propagate_succeeds_with_the_volume_shape_or_raises_our_error(case):
    shape, dtype, kind, seed, starts, per_group, empty_share, between = case
    rng = np.random.default_rng(seed)
    volume = _volume(rng, shape, dtype, kind)
    K = shape[0]
    slices = sorted({s + d for s in starts for d in range(per_group) if s + d < K})
    painted = _blob(rng, shape)
    for k in slices:
        if rng.random() < empty_share:
            painted[k] = 0                       # "no muscle here"
    before = volume.copy()
    try:
        seeds = cut_seeds(painted, slices)
        res = propagate(volume, {"S": seeds}, CopyModel(size=16), device="cpu", between_seeds_only=between)
    except IFSSNetError:
        return
    finally:
        np.testing.assert_array_equal(volume, before)            # the input is never changed
    out = res.masks["S"]
    assert out.shape == shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    for k in slices:                                             # painted slices come back as painted
        np.testing.assert_array_equal(out[k], painted[k] != 0)
    conf = res.confidence["S"]
    assert conf.shape == (K,) and np.all((conf >= 0) & (conf <= 1))


_GOOD_SPACING = [0.277, 0.3, 0.5, 1.0, 2.5, 0.05]
_BAD_SPACING = [0.0, -1.0, float("nan"), float("inf")]


@st.composite
def evaluation_cases(draw):
    shape = tuple(draw(st.sampled_from([1, 2, 5, 7, 9, 9])) for _ in range(3))
    if draw(st.integers(0, 9)) == 3:
        shape = (shape[0], 0, shape[2])              # no voxels
    other = shape if draw(st.integers(0, 9)) != 3 else (shape[0], shape[1], shape[2] + 1)
    dtype = draw(st.sampled_from(DTYPES))
    spacing = tuple(draw(st.sampled_from(_GOOD_SPACING)) for _ in range(3))
    if draw(st.integers(0, 5)) == 3:                 # sometimes one bad value
        spacing = spacing[:2] + (draw(st.sampled_from(_BAD_SPACING)),)
    if draw(st.integers(0, 9)) == 3:
        spacing = spacing[:2]
    excl = draw(st.lists(st.integers(0, max(shape[0] - 1, 0)), max_size=3))
    if draw(st.integers(0, 9)) == 3:
        excl.append(draw(st.sampled_from([-1, shape[0]])))
    return shape, other, dtype, spacing, excl, draw(st.integers(0, 2 ** 16))


@FUZZ
@given(evaluation_cases())
def test_evaluate_succeeds_or_raises_our_error(case):
    shape, other, dtype, spacing, excl, seed = case
    rng = np.random.default_rng(seed)
    pred = _blob(rng, shape).astype(dtype)
    ref = _blob(rng, other).astype(dtype)
    try:
        m = evaluate(pred, ref, spacing, exclude_slices=excl)
    except IFSSNetError:
        return
    for key in ("dice", "iou", "precision", "recall"):
        assert 0.0 <= m[key] <= 1.0, (key, m[key])
    for key in ("hd_mm", "hd95_mm", "asd_mm", "volume_mm3"):
        assert not np.isnan(m[key]) and m[key] >= 0, (key, m[key])        # inf allowed: one mask empty
    assert m["volume_mm3"] == pytest.approx(np.count_nonzero(pred) * float(np.prod(spacing)))
