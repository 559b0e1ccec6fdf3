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
