"""Review 40 of ifssnet/baselines: each test failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

from ifssnet.seeds import SeedSet

itk = pytest.importorskip("itk")
sitk = pytest.importorskip("SimpleITK")


def _seeds(mask: np.ndarray, slices) -> SeedSet:
    keep = np.isin(np.arange(mask.shape[0]), slices)[:, None, None]
    return SeedSet(np.where(keep, mask, 0).astype(np.uint8), tuple(slices))


def test_fbs_group_whose_middle_slice_is_empty_keys_on_its_painted_slice():
    """A group where the muscle ends (30 painted, 31 and 32 marked 'no muscle here'): Slicer interpolates up
    to the one slice painted there; the middle slice 31 is empty, and keying on it left 8..29 empty."""
    from ifssnet.baselines.fbs import fill_between_slices, key_slices

    K = 40
    m = np.zeros((K, 30, 30), np.uint8)
    m[5:31, 8:22, 8:22] = 1
    slices = (5, 6, 7, 30, 31, 32)
    seeds = _seeds(m, slices)
    assert key_slices(slices, seeds.mask) == (6, 30)
    assert key_slices(slices) == (6, 31)            # without a mask: the middle, as before
    out = fill_between_slices(np.zeros(m.shape, np.uint8), seeds, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out[5:31], m[5:31])
    assert not out[31:].any() and not out[:5].any()


def _box_case(shape, slices, dtype=np.uint8):
    K, J, I = shape
    m = np.zeros(shape, np.uint8)
    m[:, J // 4:3 * J // 4, I // 4:3 * I // 4] = 1
    vol = (np.random.default_rng(0).random(shape) * 100).astype(dtype)
    return vol, _seeds(m, slices)


def test_ws_object_scale_zero_is_refused_with_a_clear_message():
    """Sigma 0 passed the check (>= 0) and failed inside ITK's Gaussian (Slicer's slider stops at 0.0001)."""
    from ifssnet.baselines.ws import watershed
    from ifssnet.errors import InputError

    vol, seeds = _box_case((20, 20, 20), (5, 15))
    with pytest.raises(InputError, match="Object scale"):
        watershed(vol, seeds, (1.0, 0.5, 0.5), object_scale_mm=0.0)


def test_ws_volume_thinner_than_four_voxels_says_why():
    """A 3-slice volume failed inside SimpleITK's recursive Gaussian with ITK's error text only."""
    from ifssnet.baselines.ws import watershed
    from ifssnet.errors import VolumeError

    vol, seeds = _box_case((3, 20, 20), (0, 2))
    with pytest.raises(VolumeError, match="at least 4 voxels"):
        watershed(vol, seeds, (1.0, 0.5, 0.5))


def test_ws_float16_volume_runs():
    """check_inputs accepts float16 (Grow from seeds converts it); Watershed raised SimpleITK's TypeError."""
    from ifssnet.baselines.ws import watershed

    vol, seeds = _box_case((20, 20, 20), (5, 15), np.float16)
    out = watershed(vol, seeds, (1.0, 0.5, 0.5))
    ref = watershed(vol.astype(np.float32), seeds, (1.0, 0.5, 0.5))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("dtype", [">u2", ">f4"])
def test_ws_big_endian_volume_runs(dtype):
    """A big-endian array (pynrrd reads big-endian NRRD so) raised SimpleITK's TypeError; Grow from seeds ran."""
    from ifssnet.baselines.ws import watershed

    vol, seeds = _box_case((20, 20, 20), (5, 15), np.uint16)
    out = watershed(vol.astype(dtype), seeds, (1.0, 0.5, 0.5))
    np.testing.assert_array_equal(out, watershed(vol.astype(np.dtype(dtype).newbyteorder("=")), seeds, (1.0, 0.5, 0.5)))


@pytest.mark.parametrize("locality", ["-5.0", "float('nan')"])
def test_gfs_unusable_seed_locality_is_refused(locality):
    """A negative seed locality (``--option gfs.seed_locality=-5``) crashed the process inside FastGrowCut
    (SIGSEGV); NaN silently grew nothing. Run in a child so that the crash before the fix fails only this test."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import numpy as np
        from ifssnet.errors import InputError
        from ifssnet.seeds import SeedSet
        from ifssnet.baselines.gfs import grow_from_seeds
        m = np.zeros((20, 20, 20), np.uint8); m[:, 5:12, 5:12] = 1
        vol = (np.where(m > 0, 60, 20) + np.random.default_rng(0).integers(0, 5, m.shape)).astype(np.uint8)
        keep = np.isin(np.arange(20), (3, 16))[:, None, None]
        seeds = SeedSet(np.where(keep, m, 0).astype(np.uint8), (3, 16))
        try:
            grow_from_seeds(vol, seeds, (1.0, 1.0, 1.0), seed_locality={locality})
        except InputError as exc:
            print("refused:", exc)
        else:
            print("ran")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "refused: Seed locality" in proc.stdout


@pytest.mark.parametrize("growth", [float("inf"), -1.0, float("nan"), "0.2"])
@pytest.mark.parametrize("method", ["gfs", "ws"])
def test_unusable_extent_growth_is_refused(method, growth):
    """``--option gfs.extent_growth=inf`` raised OverflowError, a string TypeError, and -1 or NaN ran silently
    as the minimum margin."""
    from ifssnet.baselines.gfs import grow_from_seeds
    from ifssnet.baselines.ws import watershed
    from ifssnet.errors import InputError

    vol, seeds = _box_case((20, 20, 20), (5, 15))
    fn = grow_from_seeds if method == "gfs" else watershed
    with pytest.raises(InputError, match="Extent growth"):
        fn(vol, seeds, (1.0, 0.5, 0.5), extent_growth=growth)


def test_unet3d_patch_depth_whose_chunk_is_not_a_multiple_of_32():
    """A network trained with --run-length 24 has 24-slice patches: the blending chunk is 240 slices, and its last
    32-slice piece (16 slices) was written into 32 output slices: ValueError on any volume past 240 slices."""
    torch = pytest.importorskip("torch")
    from ifssnet.baselines.unet3d import SlidingWindow, UNet3D, UNet3DConfig, unet3d
    from ifssnet.preprocess import InPlaneGrid, normalized_work_volume

    torch.manual_seed(0)
    net = UNet3D(UNet3DConfig(size=16, segments=("GM",), width=2, patch=(24, 16, 16))).eval()
    K = 300
    m = np.zeros((K, 16, 16), np.uint8)
    m[:, 4:10, 4:10] = 1
    seeds = _seeds(m, (100,))
    vol = (np.random.default_rng(0).random((K, 16, 16)) * 255).astype(np.uint8)
    out = unet3d(vol, seeds, (1.0, 1.0, 1.0), model=net, device="cpu")
    grid = InPlaneGrid(vol.shape[1:], 16)
    prob = SlidingWindow(net, normalized_work_volume(vol, grid), "cpu").predict(0, K)[0]
    ref = (grid.to_volume(prob) > 0.5).numpy().astype(np.uint8)
    ref[100] = m[100]
    np.testing.assert_array_equal(out, ref)
