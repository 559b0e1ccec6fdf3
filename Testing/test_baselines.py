"""The three Slicer baselines give Slicer's voxels; the registry; painted slices; cancellation.

Voxel-for-voxel references:
- FBS: the raw ITK MorphologicalContourInterpolator with Slicer's settings (and, with slicer-core,
  Slicer's own vtkITKMorphologicalContourInterpolator);
- GFS: slicer-core's vtkImageGrowCutSegment on the crop that Slicer's auto-complete effect computes;
- WS: the two SimpleITK calls of SegmentEditorExtraEffects' Watershed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ifssnet.baselines import BACKGROUND_LABEL, TARGET_LABEL, marker_labels, registry
from ifssnet.errors import Cancelled, DependencyError, InputError, SeedError
from ifssnet.progress import CancelToken
from ifssnet.seeds import SeedSet, cut_seeds

itk = pytest.importorskip("itk")
sitk = pytest.importorskip("SimpleITK")

from ifssnet.baselines.fbs import fill_between_slices, key_slices  # noqa: E402
from ifssnet.baselines import slicer_extent  # noqa: E402
from ifssnet.baselines.gfs import grow_from_seeds  # noqa: E402
from ifssnet.baselines.ws import watershed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACING = (0.9, 0.35, 0.3)  # (sz, sy, sx) mm, anisotropic on purpose


# ------------------------------------------------------------------------------------ synthetic data
def muscle_like(shape=(48, 56, 64), seed=0):
    """A drifting, non-elliptic tube (the target) and a second structure beside it, plus a
    speckled ultrasound-like image with bright boundaries. Returns (volume uint8, target, other)."""
    rng = np.random.default_rng(seed)
    K, J, I = shape
    k, j, i = np.meshgrid(np.arange(K), np.arange(J), np.arange(I), indexing="ij")
    cj = J * 0.45 + 0.12 * J * np.sin(k / 9.0 + seed)
    ci = I * 0.45 + 0.15 * I * np.cos(k / 13.0)
    rj = J * (0.18 + 0.05 * np.sin(k / 7.0))
    ri = I * (0.22 + 0.04 * np.cos(k / 5.0))
    ang = np.arctan2(j - cj, i - ci)
    lobe = 1.0 + 0.15 * np.cos(3 * ang + k / 10.0)
    target = ((j - cj) / rj) ** 2 + ((i - ci) / ri) ** 2 < lobe
    target &= (k > 3) & (k < K - 4)
    other = (((j - cj - 0.3 * J) / (0.1 * J)) ** 2 + ((i - ci) / (0.3 * I)) ** 2 < 1) & ~target
    img = np.full(shape, 35.0)
    img[target] = 70.0
    img[other] = 55.0
    from scipy import ndimage as ndi

    edge = ndi.morphological_gradient(target.astype(np.uint8) + 2 * other.astype(np.uint8), size=3) > 0
    img[edge] = 190.0
    img *= rng.rayleigh(0.8, shape)
    vol = np.clip(ndi.gaussian_filter(img, 0.6), 0, 255).astype(np.uint8)
    return vol, target.astype(np.uint8), other.astype(np.uint8)


@pytest.fixture(scope="module")
def case():
    vol, target, other = muscle_like()
    return vol, target, other


def raw_mci(labels: np.ndarray) -> np.ndarray:
    """ITK's filter called directly with the settings of Slicer's Fill between slices."""
    img = itk.image_from_array(np.ascontiguousarray(labels, np.uint8))
    f = itk.MorphologicalContourInterpolator[type(img)].New()
    f.SetInput(img)
    f.SetLabel(0)
    f.SetAxis(-1)
    f.SetHeuristicAlignment(True)
    f.SetUseDistanceTransform(False)
    f.SetUseBallStructuringElement(False)
    f.Update()
    return itk.array_from_image(f.GetOutput()).copy()


# ------------------------------------------------------------------------------------ FBS
def test_fbs_equals_raw_itk_filter_with_slicer_defaults(case):
    _, target, _ = case
    slices = (6, 20, 31, 42)  # isolated slices: exactly what the filter takes as key slices
    seeds = cut_seeds(target, slices)
    expected = raw_mci(seeds.mask)
    out = fill_between_slices(np.zeros_like(target), seeds, SPACING)
    assert out.dtype == np.uint8 and out.shape == target.shape
    assert np.array_equal(out, (expected != 0).astype(np.uint8))
    assert out[7:42].sum() > seeds.mask.sum()  # it did interpolate


def test_fbs_feeds_middle_slice_of_each_group_then_restores_painted(case):
    _, target, _ = case
    slices = (9, 10, 11, 29, 30, 31, 40, 41)
    seeds = cut_seeds(target, slices)
    # Given the three painted slices as they are, the filter interpolates nothing (no key slice).
    assert np.array_equal(raw_mci(seeds.mask) != 0, seeds.mask != 0)
    assert key_slices(slices) == (10, 30, 40)
    key = np.zeros_like(seeds.mask)
    key[[10, 30, 40]] = seeds.mask[[10, 30, 40]]
    expected = (raw_mci(key) != 0).astype(np.uint8)
    expected[list(slices)] = seeds.mask[list(slices)]
    out = fill_between_slices(np.zeros_like(target), seeds, SPACING)
    assert np.array_equal(out, expected)
    assert out[12:29].any(axis=(1, 2)).all()  # filled between the groups
    assert np.array_equal(out[list(slices)], seeds.mask[list(slices)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fbs_crop_gives_identical_voxels(seed):
    _, target, _ = muscle_like((40, 48, 56), seed=seed)
    # three groups, one with an empty annotated slice next to it
    seeds = cut_seeds(target, (5, 6, 7, 19, 20, 33, 34, 35))
    a = fill_between_slices(np.zeros_like(target), seeds, SPACING, crop=True)
    b = fill_between_slices(np.zeros_like(target), seeds, SPACING, crop=False)
    assert np.array_equal(a, b)


def test_fbs_single_group_returns_painted_only(case):
    _, target, _ = case
    seeds = cut_seeds(target, (20, 21, 22))
    out = fill_between_slices(np.zeros_like(target), seeds, SPACING)
    assert np.array_equal(out, seeds.mask)


@pytest.mark.slicer
def test_fbs_equals_slicer_core_interpolator(case):
    slicer = pytest.importorskip("slicer")
    from vtk.util import numpy_support as ns
    import vtk

    _, target, _ = case
    seeds = cut_seeds(target, (6, 20, 31, 42))
    img = vtk.vtkImageData()
    img.SetDimensions(target.shape[2], target.shape[1], target.shape[0])
    img.GetPointData().SetScalars(ns.numpy_to_vtk(seeds.mask.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    interp = slicer.vtkITKMorphologicalContourInterpolator()  # Slicer's own defaults, untouched
    interp.SetInputData(img)
    interp.Update()
    ref = ns.vtk_to_numpy(interp.GetOutput().GetPointData().GetScalars()).reshape(target.shape)
    out = fill_between_slices(np.zeros_like(target), seeds, SPACING)
    assert np.array_equal(out, (ref != 0).astype(np.uint8))


_STABILITY = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from ifssnet.baselines.fbs import fill_between_slices
from ifssnet.seeds import cut_seeds
K, J, I = {shape}
k, j, i = np.meshgrid(np.arange(K), np.arange(J), np.arange(I), indexing="ij")
cj = J / 2 + J / 6 * np.sin(k / 25.0); ci = I / 2 + I / 6 * np.cos(k / 31.0)
r = min(J, I) * (0.2 + 0.08 * np.sin(k / 17.0))
mask = (((j - cj) / r) ** 2 + ((i - ci) / (1.3 * r)) ** 2 < 1).astype(np.uint8)
slices = [s + d for s in range(5, K - 5, {every}) for d in (0, 1, 2)]
seeds = cut_seeds(mask, slices)
first = None
for n in range(10):
    out = fill_between_slices(mask, seeds, (1.0, 0.3, 0.3){extra})
    if first is None:
        first = out
    assert np.array_equal(out, first), "run %d differs" % n
    print("run", n, int(out.sum()), flush=True)
print("OK")
"""


def _run_stability(shape, every, extra=""):
    code = _STABILITY.format(root=str(ROOT), shape=shape, every=every, extra=extra)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, PYTHONFAULTHANDLER="1"))
    # A crash after a correct result (ITK teardown) shows as a non-zero exit code here.
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("run ") == 10 and proc.stdout.strip().endswith("OK")


def test_fbs_200_slices_ten_runs_in_a_row_light():
    # In this process (ITK is loaded once per test session): 10 runs, same voxels, every time.
    K, J, I = 200, 40, 48
    k, j, i = np.meshgrid(np.arange(K), np.arange(J), np.arange(I), indexing="ij")
    cj, ci = J / 2 + J / 6 * np.sin(k / 25.0), I / 2 + I / 6 * np.cos(k / 31.0)
    r = min(J, I) * (0.2 + 0.08 * np.sin(k / 17.0))
    mask = (((j - cj) / r) ** 2 + ((i - ci) / (1.3 * r)) ** 2 < 1).astype(np.uint8)
    seeds = cut_seeds(mask, [s + d for s in range(5, K - 5, 20) for d in (0, 1, 2)])
    first = fill_between_slices(mask, seeds, (1.0, 0.3, 0.3))
    assert first[7:186].any(axis=(1, 2)).all()
    for _ in range(9):
        assert np.array_equal(fill_between_slices(mask, seeds, (1.0, 0.3, 0.3)), first)


@pytest.mark.heavy
def test_fbs_200_slices_ten_runs_in_a_row_heavy():
    # A fresh process on a large input: a crash during a run or in ITK's teardown after a correct
    # result shows as a non-zero exit code. About 100 s on 2 shared cores.
    _run_stability((200, 256, 256), every=20)


def test_fbs_isolated_worker_is_killed_on_cancel(case):
    _, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 29, 30, 31))
    state = {"n": 0}

    def cancel():  # let the worker start, then cancel while it is still loading ITK
        state["n"] += 1
        return state["n"] > 3

    with pytest.raises(Cancelled):
        fill_between_slices(np.zeros_like(target), seeds, SPACING, isolate=True, cancel=cancel)


@pytest.mark.heavy
def test_fbs_isolated_worker_matches_in_process(case):
    _, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 29, 30, 31))
    a = fill_between_slices(np.zeros_like(target), seeds, SPACING)
    b = fill_between_slices(np.zeros_like(target), seeds, SPACING, isolate=True)
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------ GFS
def _vtk_image(a: np.ndarray, spacing_kji):
    import vtk
    from vtk.util import numpy_support as ns

    img = vtk.vtkImageData()
    img.SetDimensions(a.shape[2], a.shape[1], a.shape[0])
    img.SetSpacing(*[float(s) for s in spacing_kji[::-1]])
    img.GetPointData().SetScalars(ns.numpy_to_vtk(np.ascontiguousarray(a).ravel(), deep=True,
                                                  array_type=ns.get_vtk_array_type(a.dtype)))
    return img


def _slicer_growcut(intensity, labels, spacing_kji, penalty):
    import slicer
    from vtk.util import numpy_support as ns

    g = slicer.vtkImageGrowCutSegment()
    g.SetIntensityVolume(_vtk_image(intensity, spacing_kji))
    g.SetSeedLabelVolume(_vtk_image(labels, spacing_kji))
    g.SetDistancePenalty(penalty)
    g.Update()
    return ns.vtk_to_numpy(g.GetOutput().GetPointData().GetScalars()).reshape(intensity.shape)


def _slicer_autocomplete_crop(labels, ratio=0.1):
    """Slicer's AbstractScriptedSegmentEditorAutoCompleteEffect.preview(): seed extent + margin."""
    box = []
    for ax in range(3):
        nz = np.flatnonzero(np.moveaxis(labels, ax, 0).reshape(labels.shape[ax], -1).any(axis=1))
        m = int(max(3, ratio * (nz[-1] - nz[0])))
        box.append(slice(max(0, nz[0] - m), min(labels.shape[ax] - 1, nz[-1] + m) + 1))
    return tuple(box)


@pytest.mark.slicer
@pytest.mark.parametrize("dtype,penalty", [(np.uint8, 0.0), (np.int16, 1.5), (np.float32, 0.0)])
def test_gfs_equals_slicer_core_growcut_whole_volume(case, dtype, penalty):
    pytest.importorskip("slicer")
    vol, target, _ = case
    vol = vol.astype(dtype) * (3 if dtype is np.int16 else 1)
    seeds = cut_seeds(target, (9, 10, 11, 35, 36, 37))
    labels = marker_labels(seeds.mask, seeds.slices)
    ref = _slicer_growcut(vol, labels, SPACING, penalty)
    out = grow_from_seeds(vol, seeds, SPACING, seed_locality=penalty, extent_growth=None)
    assert np.array_equal(out, (ref == TARGET_LABEL).astype(np.uint8))
    assert 0 < out.sum() < out.size


@pytest.mark.slicer
def test_gfs_equals_slicer_core_growcut_on_slicer_crop(case):
    pytest.importorskip("slicer")
    vol, target, _ = case
    seeds = cut_seeds(target, (20, 21, 22))  # the 3-seeds protocol
    labels = marker_labels(seeds.mask, seeds.slices)
    box = _slicer_autocomplete_crop(labels)
    assert box == slicer_extent(labels)
    expected = np.zeros_like(target)
    expected[box] = _slicer_growcut(vol[box], labels[box], SPACING, 0.0) == TARGET_LABEL
    out = grow_from_seeds(vol, seeds, SPACING)
    assert np.array_equal(out, expected)
    assert not out[:17].any() and not out[26:].any()  # Slicer grows 3 slices beyond 2-slice-wide seeds
    wide = cut_seeds(target, (5, 6, 7, 40, 41, 42))
    wl = marker_labels(wide.mask, wide.slices)
    assert slicer_extent(wl)[0] == slice(2, 46) and slicer_extent(wl, 0.2)[0] == slice(0, 48)


def test_gfs_background_is_everything_but_the_target(case):
    _, target, other = case
    seeds = cut_seeds(target, (10, 30))
    labels = marker_labels(seeds.mask, seeds.slices)
    assert set(np.unique(labels[[10, 30]])) == {TARGET_LABEL, BACKGROUND_LABEL}
    assert (labels[10][other[10] != 0] == BACKGROUND_LABEL).all()  # the other muscle is background
    assert not labels[11].any()


def test_gfs_isolated_gives_the_in_process_voxels(case, monkeypatch):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 35, 36, 37))
    options = dict(seed_locality=1.5, extent_growth=None)  # spacing and penalty reach the child
    out = grow_from_seeds(vol, seeds, SPACING, isolate=True, **options)
    assert np.array_equal(out, grow_from_seeds(vol, seeds, SPACING, **options))
    assert 0 < out.sum() < out.size
    from ifssnet.baselines import gfs

    def no_child(*args, **kwargs):
        raise AssertionError("a crop below AUTO_CHILD_VOXELS runs in this process")

    monkeypatch.setattr(gfs, "run_in_child", no_child)
    assert np.array_equal(grow_from_seeds(vol, seeds, SPACING, isolate="auto", **options), out)
    children = []

    def in_this_process(func, arrays, kwargs, **how):  # what the child runs, here
        children.append(arrays[0].size)
        return func(*arrays, **kwargs)

    monkeypatch.setattr(gfs, "run_in_child", in_this_process)
    monkeypatch.setattr(gfs, "AUTO_CHILD_VOXELS", vol.size)  # the whole volume is the crop: large enough
    assert np.array_equal(grow_from_seeds(vol, seeds, SPACING, isolate="auto", **options), out)
    assert children == [vol.size]


def test_gfs_isolated_child_is_killed_promptly_on_cancel(child_processes):
    import threading
    import time

    started = child_processes
    # A long run: FastGrowCut on 4.8 M random voxels takes about 8 s in-process on 2 shared cores, and
    # the child first loads ITK (4-8 s).
    vol = np.random.default_rng(0).integers(0, 256, (120, 200, 200), dtype=np.uint8)
    target = np.zeros(vol.shape, np.uint8)
    target[:, 50:150, 50:150] = 1
    seeds = cut_seeds(target, (60,))
    token, at_cancel = CancelToken(), {}

    def click_cancel():  # the Cancel button, a second after the child started
        while not started:
            time.sleep(0.01)
        time.sleep(1.0)
        at_cancel["alive"] = started[0].poll() is None
        at_cancel["t"] = time.monotonic()
        token.cancel()

    threading.Thread(target=click_cancel, daemon=True).start()
    with pytest.raises(Cancelled):
        grow_from_seeds(vol, seeds, SPACING, extent_growth=None, isolate=True, cancel=token)
    waited = time.monotonic() - at_cancel["t"]
    assert at_cancel["alive"]  # cancelled mid-run, not after the child's end
    assert waited < 2.0, f"{waited:.1f} s from Cancel to return"
    assert len(started) == 1 and started[0].poll() is not None and started[0].returncode != 0  # killed, gone


# ------------------------------------------------------------------------------------ WS
def _two_simpleitk_calls(vol, labels):
    """What the Watershed effect runs on its (cropped) source image and merged seed labelmap."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(vol))
    image.SetSpacing(SPACING[::-1])
    markers = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    markers.CopyInformation(image)
    feature = sitk.GradientMagnitudeRecursiveGaussian(image, 2.0)
    result = sitk.MorphologicalWatershedFromMarkers(feature, markers, markWatershedLine=False, fullyConnected=False)
    return (sitk.GetArrayFromImage(result) == 1).astype(np.uint8)


@pytest.mark.parametrize("painted", [(20, 21, 22), (9, 10, 11, 35, 36, 37)])
def test_ws_equals_the_two_simpleitk_calls_on_the_effects_crop(case, painted):
    vol, target, _ = case
    seeds = cut_seeds(target, painted)
    labels = marker_labels(seeds.mask, seeds.slices)
    box = _slicer_autocomplete_crop(labels)  # the effect's clippedMasterImageData extent
    expected = np.zeros_like(target)
    expected[box] = _two_simpleitk_calls(vol[box], labels[box])
    out = watershed(vol, seeds, SPACING)
    assert np.array_equal(out, expected)
    assert 0 < out.sum() < out.size
    assert not out[:box[0].start].any() and not out[box[0].stop:].any()  # nothing outside the crop
    if painted == (20, 21, 22):
        assert box[0] == slice(17, 26)  # 3 slices beyond 3 consecutive painted ones, as Grow from seeds


def test_ws_whole_volume_when_asked(case):
    vol, target, _ = case
    seeds = cut_seeds(target, (20, 21, 22))
    expected = _two_simpleitk_calls(vol, marker_labels(seeds.mask, seeds.slices))
    out = watershed(vol, seeds, SPACING, extent_growth=None)
    assert np.array_equal(out, expected)
    assert out[:17].any()  # the whole-volume run floods past the effect's crop


def test_ws_object_scale_and_spacing_matter(case):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 35, 36, 37))
    a = watershed(vol, seeds, SPACING)
    assert not np.array_equal(a, watershed(vol, seeds, SPACING, object_scale_mm=0.5))
    assert not np.array_equal(a, watershed(vol, seeds, (0.3, 0.3, 0.3)))


def test_ws_uint16_fast_path_is_close_but_opt_in(case):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 35, 36, 37))
    exact = watershed(vol, seeds, SPACING)
    fast = watershed(vol, seeds, SPACING, feature_dtype="uint16")
    assert np.mean(exact != fast) < 1e-3
    with pytest.raises(InputError):
        watershed(vol, seeds, SPACING, feature_dtype="int8")


# ------------------------------------------------------------------------------------ all three
METHODS = {"fbs": fill_between_slices, "gfs": grow_from_seeds, "ws": watershed}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_painted_slices_come_out_exactly_as_painted(case, name):
    vol, target, _ = case
    slices = (2, 9, 10, 11, 29, 30, 31)  # slice 2 is annotated and empty: "no muscle here"
    seeds = cut_seeds(target, slices)
    assert not seeds.mask[2].any()
    out = registry.get(name)(vol, seeds, SPACING)
    assert out.dtype == np.uint8 and out.shape == vol.shape and set(np.unique(out)) <= {0, 1}
    assert np.array_equal(out[list(slices)], seeds.mask[list(slices)])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_cancel_raises_before_any_output(case, name):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 29, 30, 31))
    token = CancelToken()
    token.cancel()
    calls = []
    with pytest.raises(Cancelled):
        METHODS[name](vol, seeds, SPACING, cancel=token, progress=lambda *a: calls.append(a))
    assert calls == []  # stopped before doing (or reporting) anything


@pytest.mark.parametrize("name", sorted(METHODS))
def test_cancel_during_the_run_raises(case, name):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 29, 30, 31))
    state = {"n": 0}

    def cancel():  # cancelled after the first check: mid-run
        state["n"] += 1
        return state["n"] > 1

    with pytest.raises(Cancelled):
        METHODS[name](vol, seeds, SPACING, cancel=cancel)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bad_inputs_raise_clear_errors(case, name):
    vol, target, _ = case
    seeds = cut_seeds(target, (10,))
    with pytest.raises(SeedError):
        METHODS[name](vol[:-1], seeds, SPACING)
    with pytest.raises(InputError):
        METHODS[name](vol[0], seeds, SPACING)
    with pytest.raises(SeedError):
        METHODS[name](vol, SeedSet(np.zeros_like(target), ()), SPACING)


# ------------------------------------------------------------------------------------ registry
def test_registry_builtins_and_lazy_import():
    assert {"fbs", "gfs", "ws"} <= set(registry.available())
    assert registry.label("fbs") == "Fill between slices"
    assert registry.get("FBS") is fill_between_slices
    assert registry.get("gfs") is grow_from_seeds and registry.get("ws") is watershed
    with pytest.raises(InputError):
        registry.get("nope")


def test_registry_register_and_missing_dependency():
    def toy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        return seeds.mask.copy()

    try:
        registry.register("toy", toy, "Toy")
        assert "toy" in registry.available() and registry.get("toy") is toy
        registry.register_lazy("ghost", "no_such_pkg_for_ifssnet.mod:fn", "Ghost", requires="ifssnet-ghost")
        assert "ghost" not in registry.available() and "ghost" in registry.available(all_registered=True)
        with pytest.raises(DependencyError, match="pip install ifssnet-ghost"):
            registry.get("ghost")
        with pytest.raises(InputError):
            registry.register("bad name", toy)
    finally:
        registry.unregister("toy")
        registry.unregister("ghost")


@pytest.mark.parametrize("name,module", [("fbs", "itk"), ("gfs", "itk"), ("ws", "SimpleITK")])
def test_missing_package_raises_dependency_error_with_pip_command(case, monkeypatch, name, module):
    vol, target, _ = case
    seeds = cut_seeds(target, (9, 10, 11, 29, 30, 31))
    monkeypatch.setitem(sys.modules, module, None)  # makes "import <module>" fail
    with pytest.raises(DependencyError, match="pip install"):
        METHODS[name](vol, seeds, SPACING)
