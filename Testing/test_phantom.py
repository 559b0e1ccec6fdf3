"""The lower-leg phantom: determinism, geometry, anatomy, speckle statistics, cancel, files."""
from __future__ import annotations

import numpy as np
import pytest

from ifssnet.errors import Cancelled, InputError
from ifssnet.phantom import MUSCLES, Phantom, default_spacing, make_phantom, write_phantom

SHAPE = (160, 96, 96)


@pytest.fixture(scope="module")
def ph() -> Phantom:
    return make_phantom(seed=3, shape=SHAPE)


def _extent(mask):
    ks = np.nonzero(mask.any(axis=(1, 2)))[0]
    return int(ks[0]), int(ks[-1])


def test_shapes_dtypes_and_spacing(ph):
    assert ph.volume.shape == SHAPE and ph.volume.dtype == np.uint8
    assert set(ph.labels) == set(MUSCLES)
    for m in ph.labels.values():
        assert m.shape == SHAPE and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert ph.spacing_kji == pytest.approx((default_spacing(SHAPE),) * 3)
    assert default_spacing((1400, 512, 512)) == pytest.approx(0.277)
    assert ph.geometry.spacing_kji == pytest.approx(ph.spacing_kji)


def test_explicit_spacing_only_changes_geometry():
    a = make_phantom(1, (40, 48, 48))
    b = make_phantom(1, (40, 48, 48), spacing=0.5)
    assert b.spacing_kji == (0.5, 0.5, 0.5)
    assert np.array_equal(a.volume, b.volume)


def test_deterministic_and_seed_dependent(ph):
    again = make_phantom(seed=3, shape=SHAPE)
    assert np.array_equal(again.volume, ph.volume)
    for n in MUSCLES:
        assert np.array_equal(again.labels[n], ph.labels[n])
    other = make_phantom(seed=4, shape=SHAPE)
    assert not np.array_equal(other.volume, ph.volume)
    assert not np.array_equal(other.labels["SOL"], ph.labels["SOL"])


def test_labels_do_not_overlap(ph):
    total = sum(ph.labels[n].astype(np.int32) for n in MUSCLES)
    assert total.max() == 1
    for n in MUSCLES:
        assert ph.labels[n].sum() > 1000


def test_anatomy_order_across_and_in_depth(ph):
    K = SHAPE[0]
    # slices where GM and GL are both present and large
    both = [k for k in range(K) if ph.labels["GM"][k].sum() > 50 and ph.labels["GL"][k].sum() > 50]
    assert len(both) > 10
    gm_i = np.mean([np.nonzero(ph.labels["GM"][k])[1].mean() for k in both])
    gl_i = np.mean([np.nonzero(ph.labels["GL"][k])[1].mean() for k in both])
    assert gm_i < gl_i, "GM is medial (low i) of GL"
    with_sol = [k for k in both if ph.labels["SOL"][k].sum() > 50]
    assert with_sol
    for k in with_sol:
        sol_j = np.nonzero(ph.labels["SOL"][k])[0].mean()
        for n in ("GM", "GL"):
            assert np.nonzero(ph.labels[n][k])[0].mean() < sol_j, f"{n} is superficial to SOL at slice {k}"


def test_muscles_appear_and_disappear_in_order(ph):
    K = SHAPE[0]
    gm, gl, sol = (_extent(ph.labels[n]) for n in MUSCLES)
    assert gm[0] <= 0.05 * K and gl[0] <= 0.06 * K
    assert gl[1] < gm[1], "GL ends before GM"
    assert 0.45 * K <= gm[1] <= 0.62 * K
    assert 0.08 * K <= sol[0] <= 0.22 * K
    assert 0.80 * K <= sol[1] <= 0.92 * K
    # SOL is widest in the middle third
    area = ph.labels["SOL"].sum(axis=(1, 2))
    assert K / 3 <= int(np.argmax(area)) <= 2 * K / 3 + 0.05 * K


def test_gastrocnemius_heads_are_small_at_the_knee(ph):
    """The heads arise just above the knee crease: present at slice 0, widest at 10-30 % of the sweep."""
    K = SHAPE[0]
    for n in ("GM", "GL"):
        area = ph.labels[n].sum(axis=(1, 2))
        assert 0 < area[0] < 0.35 * area.max()
        assert 0.10 * K <= int(np.argmax(area)) <= 0.30 * K


def test_cross_sections_are_not_ellipses(ph):
    """Lens/crescent shapes: the filled fraction of the bounding box is well below an ellipse's pi/4."""
    fills = []
    for n in MUSCLES:
        m = ph.labels[n]
        for k in np.nonzero(m.sum(axis=(1, 2)) > 100)[0][::10]:
            js, is_ = np.nonzero(m[k])
            box = (js.max() - js.min() + 1) * (is_.max() - is_.min() + 1)
            fills.append(m[k].sum() / box)
    assert np.median(fills) < 0.70


def test_shapes_change_along_the_sweep(ph):
    """Lateral drift of 10-20 mm (or more) and non-linear size change."""
    m = ph.labels["SOL"]
    ks = [k for k in range(SHAPE[0]) if m[k].sum() > 100]
    ci = np.array([np.nonzero(m[k])[1].mean() for k in ks]) * ph.spacing_kji[2]
    assert ci.max() - ci.min() > 8.0
    area = m.sum(axis=(1, 2))[ks].astype(float)
    lin = np.interp(ks, [ks[0], ks[-1]], [area[0], area[-1]])
    assert np.abs(area - lin).max() > 0.3 * area.max()


def test_speckle_statistics(ph):
    v = ph.volume.astype(np.float32)
    k = SHAPE[0] // 3
    muscle = np.concatenate([v[k][ph.labels[n][k] > 0] for n in MUSCLES])
    assert 25 < muscle.mean() < 120, "muscle is mid-to-dark grey"
    assert muscle.std() > 12, "speckle texture, not a flat fill"
    # bright boundaries: the brightest rows inside the leg are far brighter than muscle
    assert np.percentile(v[k], 99.5) > muscle.mean() + 60
    # bone shadows and the gel above the skin are black
    assert (v[k] < 10).mean() > 0.03
    # texture is not constant between slices either
    assert not np.array_equal(ph.volume[k], ph.volume[k + 1])


def test_sweep_seams_exist(ph):
    assert 3 <= len(ph.seams) <= 5


def test_cancel_raises():
    calls = []

    def cancel():
        return len(calls) > 0

    def progress(stage, done, total):
        calls.append(done)

    with pytest.raises(Cancelled):
        make_phantom(0, (80, 48, 48), progress=progress, cancel=cancel)
    assert len(calls) == 1


def test_bad_shape():
    with pytest.raises(InputError):
        make_phantom(0, (5, 8, 8))


def test_write_phantom(tmp_path):
    io = pytest.importorskip("ifssnet.io")
    ph = write_phantom(tmp_path, seed=2, shape=(40, 48, 48))
    img = io.read_volume(tmp_path / "volume.nrrd")
    assert np.array_equal(img.array, ph.volume)
    seg = io.read_segmentation(tmp_path / "reference.seg.nrrd")
    assert set(seg.names) == set(MUSCLES)
    for n in MUSCLES:
        assert np.array_equal(seg.mask(n) > 0, ph.labels[n] > 0)
    assert img.geometry.same_as(seg.geometry)


@pytest.mark.heavy
def test_calibration_gate_test_scale():
    """Fill between slices under the paper's protocol lands near the paper's Table I (about 1-2 min).

    Test scale: the paper's 1400 slices (so "every 100 slices" gives the paper's 14 groups) at 128 x 128."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("itk")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_phantom.py"
    spec = importlib.util.spec_from_file_location("calibrate_phantom", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    d, v = [], []
    for seed in (0, 1):
        res = cal.calibrate(make_phantom(seed, (1400, 128, 128)), verbose=False)
        d += [r[0] for r in res.values()]
        v += [r[1] for r in res.values()]
    assert 0.86 <= np.mean(d) <= 0.95
    assert np.mean(v) > 4.0


def test_write_phantom_reports_writing_and_a_cancel_there_keeps_both_old_files(tmp_path):
    """At 1400 x 512 x 512 writing takes about a minute after the last slice: it shows, and a cancel while the
    reference is written (the volume already is) leaves the volume and the reference of the folder as they were."""
    from ifssnet.io import STAGE_WRITING
    from ifssnet.progress import CancelToken

    seen = []
    write_phantom(tmp_path / "new", seed=2, shape=(40, 48, 48), progress=lambda s, d, t: seen.append((s, d, t)))
    assert ("Writing volume", 1, 1) in seen and seen[-1] == (STAGE_WRITING, 4, 4)
    for name in ("volume.nrrd", "reference.seg.nrrd"):
        (tmp_path / name).write_bytes(b"old " + name.encode())
    token = CancelToken()

    def progress(stage, done, total):
        if stage == STAGE_WRITING and done >= 1:
            token.cancel()

    with pytest.raises(Cancelled):
        write_phantom(tmp_path, seed=3, shape=(40, 48, 48), progress=progress, cancel=token)
    for name in ("volume.nrrd", "reference.seg.nrrd"):
        assert (tmp_path / name).read_bytes() == b"old " + name.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "reference.seg.nrrd", "volume.nrrd"]
