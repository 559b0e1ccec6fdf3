"""benchmarks/dice_ceiling.py: the boundary error that Dice 0.95 allows, and the working size's own limit."""
import numpy as np
import pytest

from benchmark_scripts import load_benchmark

ceiling = load_benchmark("dice_ceiling")


def _slab(thickness: int, width: int = 200, slices: int = 4) -> np.ndarray:
    """A box ``thickness`` voxels deep and ``width`` wide on every slice, far from the image's edge."""
    m = np.zeros((slices, thickness + 20, width + 20), bool)
    m[:, 10:10 + thickness, 10:10 + width] = True
    return m


@pytest.mark.parametrize("t", [6, 12, 24])
def test_slab_budget_matches_the_geometry(t):
    """A slab's cross-section is a t x w box: V / S = t w / (2 t + 2 w) voxels (t / 2 when wide), and Dice
    0.95 allows a tenth of it."""
    w = 200
    b = ceiling.boundary_budget(_slab(t, w), (1.0, 0.5, 0.5))
    expected = 0.1 * t * w / (2 * t + 2 * w)
    assert b["allowed_error_vox"] == pytest.approx(expected, rel=0.01)
    assert b["allowed_error_mm"] == pytest.approx(0.5 * expected, rel=0.01)
    assert b["thickness_mm"] == pytest.approx(0.5 * t)
    # One voxel off on both faces: Dice 2 (t - 2) / (2 t - 2) inwards, 2 t / (2 t + 2) outwards (edges aside).
    assert b["dice_erode_1vox"] == pytest.approx(2 * (t - 2) / (2 * t - 2), abs=0.01)
    assert b["dice_dilate_1vox"] == pytest.approx(2 * t / (2 * t + 2), abs=0.01)


def test_thicker_muscles_allow_more_error():
    thin = ceiling.boundary_budget(_slab(6), (1.0, 1.0, 1.0))
    thick = ceiling.boundary_budget(_slab(24), (1.0, 1.0, 1.0))
    assert thick["allowed_error_vox"] > 3 * thin["allowed_error_vox"]
    assert thick["dice_erode_1vox"] > thin["dice_erode_1vox"]


def test_empty_segment_is_an_error():
    with pytest.raises(ValueError):
        ceiling.boundary_budget(np.zeros((2, 8, 8), bool), (1.0, 1.0, 1.0))


def test_working_size_round_trip():
    """A large disk survives 256 -> 64 -> 256; stripes 2 voxels wide, below the grid's resolution, do not."""
    yy, xx = np.mgrid[:256, :256]
    disk = np.repeat((((yy - 128) ** 2 + (xx - 120) ** 2) < 70 ** 2)[None], 3, axis=0)
    assert ceiling.working_size_dice(disk, 64) > 0.98
    assert ceiling.working_size_dice(disk, 256) == 1.0
    stripes = np.repeat(((xx // 2) % 2 == 0)[None], 3, axis=0)
    assert ceiling.working_size_dice(stripes, 64) < 0.8
