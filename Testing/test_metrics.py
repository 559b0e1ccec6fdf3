"""Metrics agree with SimpleITK and with analytic shapes; edge cases are defined and stable."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ifssnet import metrics
from ifssnet.errors import Cancelled, GeometryError, InputError
from ifssnet.metrics import evaluate, slice_dice, slice_surface_distances, surface_distances, volume_stats
from ifssnet.progress import CancelToken

SPACING = (2.0, 0.7, 0.45)  # (sz, sy, sx) mm: strongly anisotropic on purpose
DIAG = float(np.linalg.norm(SPACING))


def _blob(shape, seed, thr=0.5, sigma=2.5):
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    return (field - field.mean()) / field.std() > thr


def _pair(seed, shape=(24, 36, 44)):
    """A reference blob and a perturbed copy (grown, then holes and bites): realistic disagreement."""
    ref = _blob(shape, seed)
    pred = ndimage.binary_dilation(ref, iterations=1) & _blob(shape, seed + 1000, thr=-1.2, sigma=1.5)
    return pred.astype(np.uint8), ref.astype(np.uint8)


def _sitk(a, spacing):
    img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    return img


def _ball(radius, spacing, extent=14.0, center=(0.31, -0.17, 0.23)):
    """Voxelised ball (mm) on a grid with the given spacing; centre off the grid."""
    axes = [np.arange(-int(extent / s), int(extent / s) + 1) * s for s in spacing]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return ((z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= radius ** 2).astype(np.uint8)


# ------------------------------------------------------------------------- against SimpleITK
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_matches_sitk_label_overlap(seed):
    pred, ref = _pair(seed)
    assert 0.5 < evaluate(pred, ref, SPACING)["dice"] < 0.99  # a real disagreement
    f = sitk.LabelOverlapMeasuresImageFilter()
    f.Execute(_sitk(ref, SPACING), _sitk(pred, SPACING))
    m = evaluate(pred, ref, SPACING)
    assert m["dice"] == pytest.approx(f.GetDiceCoefficient(), abs=1e-6)
    assert m["iou"] == pytest.approx(f.GetJaccardCoefficient(), abs=1e-6)
    assert m["volume_diff_pct"] / 100 == pytest.approx(pred.sum() / ref.sum() - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hausdorff_matches_sitk(seed):
    pred, ref = _pair(seed)
    m = evaluate(pred, ref, SPACING)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(_sitk(pred, SPACING), _sitk(ref, SPACING))
    # sitk measures between whole voxel sets, we between surfaces: within one voxel diagonal.
    assert abs(m["hd_mm"] - f.GetHausdorffDistance()) <= DIAG
    # Between the surface voxel sets the two definitions coincide: exact agreement.
    sp = metrics._surface(pred > 0, metrics._STRUCT_3D).astype(np.uint8)
    sr = metrics._surface(ref > 0, metrics._STRUCT_3D).astype(np.uint8)
    f.Execute(_sitk(sp, SPACING), _sitk(sr, SPACING))
    assert m["hd_mm"] == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)
    assert m["hd95_mm"] <= m["hd_mm"] and 0 < m["asd_mm"] <= m["hd95_mm"]


def test_edt_and_kdtree_agree():
    pred, ref = _pair(5)
    a = surface_distances(pred, ref, SPACING, exclude_slices=[3, 4], method="edt")
    b = surface_distances(pred, ref, SPACING, exclude_slices=[3, 4], method="kdtree")
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-9)
    with pytest.raises(InputError):
        surface_distances(pred, ref, SPACING, method="fast")


# ---------------------------------------------------------------------------- analytic shapes
def test_sphere_volume_converges():
    errors = []
    for h in (2.0, 1.0, 0.5):
        sp = (1.5 * h, h, 0.8 * h)
        v = volume_stats(_ball(10.0, sp), sp)
        assert v["volume_mm3"] == v["voxel_count"] * (sp[2] * sp[1] * sp[0])
        assert v["volume_cm3"] == v["volume_mm3"] / 1000.0
        errors.append(abs(v["volume_mm3"] / (4 / 3 * math.pi * 10.0 ** 3) - 1))
    assert errors[-1] < errors[0] and errors[-1] < 1e-3


@pytest.mark.parametrize("h", [1.0, 0.5])
def test_concentric_spheres_hausdorff_is_radius_difference(h):
    sp = (1.5 * h, h, 0.8 * h)
    m = evaluate(_ball(10.0, sp), _ball(7.0, sp), sp)
    diag = float(np.linalg.norm(sp))
    assert abs(m["hd_mm"] - 3.0) <= diag
    assert abs(m["hd95_mm"] - 3.0) <= diag
    assert abs(m["asd_mm"] - 3.0) <= diag
    assert m["volume_error_pct"] == pytest.approx(abs(m["volume_diff_pct"]))
    assert m["volume_diff_pct"] == pytest.approx((10 ** 3 / 7 ** 3 - 1) * 100, rel=0.03)


def test_stacked_concentric_discs_slice_hausdorff():
    sp = (3.0, 0.4, 0.3)
    j, i = np.ogrid[-40:41, -50:51]
    r2 = (j * sp[1] - 0.13) ** 2 + (i * sp[2] + 0.07) ** 2
    big = np.repeat((r2 <= 12.0 ** 2)[None], 6, axis=0).astype(np.uint8)
    small = np.repeat((r2 <= 8.0 ** 2)[None], 6, axis=0).astype(np.uint8)
    big[0] = small[0] = 0  # an empty slice in both: not scored
    m = evaluate(big, small, sp)
    pix = math.hypot(sp[1], sp[2])
    assert m["slices_scored"] == 5
    assert abs(m["slice_hd_mm"] - 4.0) <= pix
    assert abs(m["slice_asd_mm"] - 4.0) <= pix
    hd, asd = slice_surface_distances(big, small, sp)
    assert np.isnan(hd[0]) and np.all(np.abs(hd[1:] - 4.0) <= pix)


# ------------------------------------------------------------------------------- edge cases
def test_both_empty_is_perfect():
    z = np.zeros((4, 5, 6), np.uint8)
    m = evaluate(z, z, SPACING)
    assert m["dice"] == m["iou"] == m["precision"] == m["recall"] == 1.0
    for key in ("hd_mm", "hd95_mm", "asd_mm", "slice_hd_mm", "slice_asd_mm", "volume_error_pct"):
        assert m[key] == 0.0
    assert np.all(np.isnan(slice_dice(z, z)))


def test_one_empty_is_zero_and_infinite():
    z = np.zeros((4, 5, 6), np.uint8)
    a = z.copy()
    a[1:3, 1:4, 2:5] = 1
    for pred, ref in ((a, z), (z, a)):
        m = evaluate(pred, ref, SPACING)
        assert m["dice"] == m["iou"] == 0.0
        for key in ("hd_mm", "hd95_mm", "asd_mm", "slice_hd_mm", "slice_asd_mm"):
            assert m[key] == math.inf
    assert evaluate(a, z, SPACING)["volume_error_pct"] == math.inf
    assert evaluate(z, a, SPACING)["volume_diff_pct"] == -100.0
    assert evaluate(z, a, SPACING)["slices_missed"] == 2
    assert evaluate(a, z, SPACING)["slices_extra"] == 2


def test_known_small_case():
    ref = np.zeros((3, 4, 4), np.uint8)
    pred = np.zeros_like(ref)
    ref[1, 0:2, 0:2] = 1   # 4 voxels
    pred[1, 0:2, 0:3] = 1  # 6 voxels, 4 shared
    sp = (1.0, 1.0, 2.0)
    m = evaluate(pred, ref, sp)
    assert m["dice"] == pytest.approx(0.8)
    assert m["iou"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == 1.0
    assert m["volume_mm3"] == 12.0 and m["ref_volume_mm3"] == 8.0 and m["volume_cm3"] == 0.012
    assert m["volume_diff_pct"] == pytest.approx(50.0) and m["volume_error_pct"] == pytest.approx(50.0)
    assert m["hd_mm"] == pytest.approx(2.0)  # the extra column is one voxel (2 mm) away in x
    assert m["slice_hd_mm"] == pytest.approx(2.0)
    assert m["slices_scored"] == 1
    dice = slice_dice(pred, ref)
    assert np.isnan(dice[0]) and dice[1] == pytest.approx(0.8) and np.isnan(dice[2])


def test_exclude_slices():
    pred, ref = _pair(3)
    k = ref.shape[0]
    painted = [k // 2 - 1, k // 2, k // 2 + 1]
    # Copy the reference onto the excluded slices, as a method does with the painted seeds:
    # excluding them must give the same overlap as scoring the untouched prediction elsewhere.
    pred2 = pred.copy()
    pred2[painted] = ref[painted]
    keep = np.setdiff1d(np.arange(k), painted)
    m = evaluate(pred2, ref, SPACING, exclude_slices=painted)
    m_keep = evaluate(pred[keep], ref[keep], SPACING)
    assert m["dice"] == pytest.approx(m_keep["dice"], abs=1e-12)
    assert m["slices_excluded"] == 3
    assert m["slices_scored"] == evaluate(pred2, ref, SPACING)["slices_scored"] - 3
    # Volumes stay whole-mask volumes (Segment Statistics includes the painted slices).
    assert m["volume_mm3"] == volume_stats(pred2, SPACING)["volume_mm3"]
    # Everything excluded: nothing left to score.
    m_all = evaluate(pred, ref, SPACING, exclude_slices=range(k))
    assert m_all["dice"] == 1.0 and m_all["hd_mm"] == 0.0 and m_all["slice_hd_mm"] == 0.0
    with pytest.raises(InputError):
        evaluate(pred, ref, SPACING, exclude_slices=[k])


def test_bad_inputs():
    a = np.zeros((3, 4, 5), np.uint8)
    with pytest.raises(InputError):
        evaluate(a, np.zeros((3, 4, 6), np.uint8), SPACING)
    with pytest.raises(InputError):
        evaluate(a[0], a[0], SPACING)
    for bad in ((1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0), "abc"):
        with pytest.raises(GeometryError):
            evaluate(a, a, bad)


def test_cancel_and_progress():
    pred, ref = _pair(4)
    seen = []
    evaluate(pred, ref, SPACING, progress=lambda s, d, t: seen.append(s))
    assert "Slice distances" in seen and "Surface distances" in seen
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluate(pred, ref, SPACING, cancel=token)


def test_bounding_box_crop_is_invisible():
    """Padding the masks with background changes nothing (the crop has no edge effects)."""
    pred, ref = _pair(6, shape=(10, 16, 18))
    m = evaluate(pred, ref, SPACING)
    pad = [(3, 2), (5, 1), (0, 4)]
    m2 = evaluate(np.pad(pred, pad), np.pad(ref, pad), SPACING)
    for key in m:
        assert m2[key] == pytest.approx(m[key], rel=1e-12), key


# ---------------------------------------------------------------------------------- property
_masks = arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
                elements=st.integers(0, 1))


@settings(max_examples=60, deadline=None)
@given(a=_masks, data=st.data())
def test_dice_properties(a, data):
    b = data.draw(arrays(np.uint8, a.shape, elements=st.integers(0, 1)))
    sp = (1.3, 0.6, 0.9)
    ab, ba = evaluate(a, b, sp), evaluate(b, a, sp)
    assert 0.0 <= ab["dice"] <= 1.0
    assert ab["dice"] == ba["dice"] and ab["hd_mm"] == ba["hd_mm"] and ab["asd_mm"] == pytest.approx(ba["asd_mm"])
    if a.any() or b.any():
        assert (ab["dice"] == 1.0) == bool(np.array_equal(a, b))
        assert ab["iou"] == pytest.approx(ab["dice"] / (2 - ab["dice"]))
    if np.array_equal(a, b):
        assert ab["hd_mm"] == 0.0 and ab["slice_hd_mm"] == 0.0


# ------------------------------------------------------------------------------------ scale
@pytest.mark.heavy
def test_paper_scale_speed():
    import time

    k, j, i = 1400, 512, 512
    jj, ii = np.ogrid[:j, :i]
    ref = np.zeros((k, j, i), np.uint8)
    pred = np.zeros_like(ref)
    for kk in range(200, 1250):
        c, r = 250 + 40 * np.sin(kk / 200), 60 + 20 * np.sin(kk / 150)
        ref[kk] = (jj - 200) ** 2 / 0.3 + (ii - c) ** 2 < (1.9 * r) ** 2
        pred[kk] = (jj - 201) ** 2 / 0.3 + (ii - c - 1.5) ** 2 < (1.9 * r + 1) ** 2
    t = time.perf_counter()
    m = evaluate(pred, ref, (0.277,) * 3)
    assert time.perf_counter() - t < 60
    assert m["dice"] > 0.95 and m["hd_mm"] < 5
