"""What the network sees: a fine sweep reaches the working grid as the same sweep recorded coarse does."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ifssnet.errors import InputError
from ifssnet.phantom import MUSCLES, _shrink, default_spacing, make_phantom
from ifssnet.preprocess import InPlaneGrid, intensity_stats, normalized_work_volume

SEED, K, COARSE, F4 = 7, 24, 48, 4


@pytest.fixture(scope="module")
def fine():
    return make_phantom(SEED, (K, COARSE * F4, COARSE * F4))


@pytest.fixture(scope="module")
def supersampled():
    return make_phantom(SEED, (K, COARSE, COARSE), supersample=F4)


def test_the_phantom_shrinks_with_torchs_antialiased_bilinear():
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 48), dtype=np.uint8)
    ref = F.interpolate(torch.from_numpy(x.astype(np.float32))[:, None], size=(16, 12), mode="bilinear",
                        antialias=True, align_corners=False)[:, 0].numpy()
    got, labels = _shrink(x, np.zeros_like(x), 4)
    assert np.array_equal(got, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    assert labels.shape == (2, 16, 12) and not labels.any()


def test_a_supersampled_phantom_is_the_fine_one_shrunk_as_propagation_shrinks_it(fine, supersampled):
    assert supersampled.volume.shape == (K, COARSE, COARSE) and supersampled.volume.dtype == np.uint8
    assert supersampled.spacing_kji == pytest.approx((default_spacing((K, COARSE, COARSE)),) * 3)
    grid = InPlaneGrid((COARSE * F4, COARSE * F4), COARSE)
    shrunk = grid.to_work(torch.from_numpy(fine.volume.astype(np.float32))).numpy()
    assert np.abs(supersampled.volume.astype(np.float32) - shrunk).max() <= 0.5 + 1e-3  # rounded to uint8
    for name in MUSCLES:  # block majority: the labels agree with the fine labels shrunk, except on the border
        small = grid.to_work(torch.from_numpy(fine.labels[name].astype(np.float32))).numpy() > 0.5
        big = supersampled.labels[name] > 0
        assert big.any() and (small != big).mean() < 0.01
    native = make_phantom(SEED, (K, COARSE, COARSE))
    assert not np.array_equal(native.volume, supersampled.volume)  # speckle finer than a voxel: another picture
    assert np.array_equal(make_phantom(SEED, (K, COARSE, COARSE), supersample=1).volume, native.volume)


@pytest.mark.parametrize("bad", [0, 2.5, -1])
def test_supersampling_must_be_a_whole_number(bad):
    with pytest.raises(InputError, match="whole number"):
        make_phantom(0, (20, 32, 32), supersample=bad)


def test_a_fine_sweep_is_normalised_as_the_network_sees_it(fine, supersampled):
    """The z-score comes from the slices on the working grid: a 4x finer sweep of the same calf reaches the
    network with the spread that the coarse sweep has, not the larger spread of its resolved speckle."""
    vol = fine.volume
    grid = InPlaneGrid(vol.shape[1:], COARSE)
    own_mean, own_std = intensity_stats(vol)
    mean, std = intensity_stats(vol, grid)
    coarse_mean, coarse_std = intensity_stats(supersampled.volume, InPlaneGrid((COARSE, COARSE), COARSE))
    assert std < 0.9 * own_std  # shrinking averages the speckle away
    assert std == pytest.approx(coarse_std, rel=0.02) and mean == pytest.approx(coarse_mean, rel=0.02)
    seen_fine = normalized_work_volume(vol, grid, mean, std)
    seen_coarse = normalized_work_volume(supersampled.volume, InPlaneGrid((COARSE, COARSE), COARSE),
                                         coarse_mean, coarse_std)
    assert float((seen_fine - seen_coarse).abs().mean()) < 0.02
    assert float(seen_fine.std()) == pytest.approx(float(seen_coarse.std()), rel=0.02)
    # normalised with the fine voxels' own statistics, the same picture would look duller
    dull = normalized_work_volume(vol, grid, own_mean, own_std)
    assert float(dull.std()) < 0.9 * float(seen_fine.std())


def test_shrink_keeps_the_aspect_of_a_slice_that_is_not_square():
    grid = InPlaneGrid((400, 512), 128)
    assert tuple(grid.shrink(torch.zeros(2, 400, 512)).shape) == (2, 100, 128)


def test_a_grid_that_does_not_shrink_changes_nothing():
    vol = np.random.default_rng(1).integers(0, 255, (10, 40, 30), dtype=np.uint8)
    assert intensity_stats(vol, InPlaneGrid(vol.shape[1:], 64)) == intensity_stats(vol)
    assert intensity_stats(vol, InPlaneGrid(vol.shape[1:], 40)) == intensity_stats(vol)


def test_cli_writes_a_supersampled_phantom_and_refuses_a_bad_factor(tmp_path, capsys):
    from ifssnet.cli import main
    from ifssnet.io import read_volume

    assert main(["phantom", str(tmp_path / "ss"), "--seed", str(SEED), "--shape", str(K), str(COARSE), str(COARSE),
                 "--supersample", str(F4)]) == 0
    written = read_volume(tmp_path / "ss" / "volume.nrrd")
    assert np.array_equal(written.array, make_phantom(SEED, (K, COARSE, COARSE), supersample=F4).volume)
    assert written.geometry.spacing_kji == pytest.approx((default_spacing((K, COARSE, COARSE)),) * 3)
    assert main(["phantom", str(tmp_path / "bad"), "--shape", "20", "32", "32", "--supersample", "0"]) == 2
    assert "whole number" in capsys.readouterr().err and not (tmp_path / "bad").exists()
