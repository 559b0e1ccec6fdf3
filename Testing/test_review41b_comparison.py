"""Review 41b (Comparison module and the learned baselines' inference): the Comparison Logic on Slicer's real MRML
(slicer-core), headless, and PG-Net / 3-D U-Net probabilities on non-finite network outputs."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _assert_same, _ijk_to_ras, _nearest_seed_method, _paint,  # noqa: F401
                          _reference_segmentation, _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

slicer_only = [pytest.mark.slicer,
               pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
               pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


def _slicer(fn):
    for mark in slicer_only:
        fn = mark(fn)
    return fn


@pytest.fixture()
def nearest():
    from ifssnet.baselines import registry

    registry.register("test-nearest", _nearest_seed_method, "Nearest seed slice")
    yield "test-nearest"
    registry.unregister("test-nearest")


def _cropped(slicer, volumeNode, first, name="US cropped"):
    """The volume without its first ``first`` slices across k, as Crop Volume leaves it."""
    voxels = slicer.util.arrayFromVolume(volumeNode)[first:].copy()
    m = _ijk_to_ras()
    m[:3, 3] = m[:3, :3] @ np.array([0.0, 0.0, float(first)]) + m[:3, 3]
    return slicer.util.addVolumeFromArray(voxels, m, name)


@_slicer
def test_compare_on_a_cropped_volume_reads_the_seeds_as_propagate_does(scene_nodes, nearest):
    """The seed tags number their slices on the grid IFSSNet.SeedGrid records (c88c953). Propagate maps them onto a
    cropped volume's slices; the Comparison read them unmapped: painted 6, 10, 15 and the mark at 18 became seeds
    6, 10, 15, 18 of the crop, where the paint lies on 3, 7, 12 (empty slices taken for seeds)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic

    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    sid = segNode.GetSegmentation().GetSegmentIdBySegmentName("GM")
    L = logic.IFSSNetSegmentationLogic()
    L.markNoMuscle(volumeNode, segNode, sid, 18)
    crop = _cropped(slicer, volumeNode, 3)
    ref = _reference_segmentation(slicer, crop, {"GM": truth[3:]}, "Reference")
    expected = L.prepare(crop, segNode, [sid], method=_nearest_seed_method).segments[0].seedSlices
    assert expected == (3, 7, 12, 15)
    job = IFSSNetComparisonLogic().prepare(crop, segNode, ref, [nearest], "seeds")
    assert job["seedJobs"][0].seedSlices == expected
    table = IFSSNetComparisonLogic().compare(crop, segNode, ref, [nearest], "seeds")
    from ifssnet.compare import COLUMNS

    assert float(table.GetCellText(0, COLUMNS.index("dice"))) > 0.6
