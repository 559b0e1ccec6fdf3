"""The IFSS-Net Comparison module's Logic on Slicer's real MRML (slicer-core), headless: the table,
the plots and the result segmentations of a comparison run, its protocols, and joint runs."""
from __future__ import annotations


import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _method, _nearest_seed_method, _paint, _reference_segmentation,  # noqa: F401
                          scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

from ifssnet.errors import Cancelled  # noqa: E402
from ifssnet.progress import CancelToken  # noqa: E402


@pytest.fixture()
def registered_methods():
    """The test methods, registered in the core's registry (the comparison runner takes names)."""
    from ifssnet.baselines import registry

    def broken(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        raise RuntimeError("boom")

    registry.register("test-nearest", _nearest_seed_method, "Nearest seed slice")
    registry.register("test-broken", broken, "Broken")
    names = ["test-nearest"] + (["fbs"] if _method() is not _nearest_seed_method else [])
    yield names
    registry.unregister("test-nearest")
    registry.unregister("test-broken")


def test_compare_builds_table_plots_and_segmentations(scene_nodes, registered_methods):
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.compare import COLUMNS

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    _paint(slicer, volumeNode, segNode, truth, 1, (7, 13, 19))  # seeds across j: transposed for the runner
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    L = IFSSNetComparisonLogic()
    methods = registered_methods
    table = L.compare(volumeNode, segNode, ref, methods, "seeds")
    assert table.GetNumberOfRows() == len(methods)
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == list(COLUMNS)
    dice = COLUMNS.index("dice")
    for r in range(len(methods)):
        assert table.GetCellText(r, COLUMNS.index("muscle")) == "GM"
        assert float(table.GetCellText(r, dice)) > 0.6, table.GetCellText(r, COLUMNS.index("error"))
    assert L.lastResult["diceChart"].GetNumberOfPlotSeriesNodes() == len(methods)
    assert L.lastResult["volumeChart"].GetNumberOfPlotSeriesNodes() == len(methods)   # grouped bars, one series per method
    assert len(L.lastResult["segmentations"]) == len(methods)
    arrays = _arrays_module()

    result = next(iter(L.lastResult["segmentations"].values()))
    sid = result.GetSegmentation().GetSegmentIdBySegmentName("GM")
    out = arrays.segmentToArray(result, sid, arrays.referenceGeometry(volumeNode, result))
    for s_ in (7, 13, 19):  # back on the volume's grid, seeds as painted
        np.testing.assert_array_equal(out[:, s_], truth[:, s_])
    # Cancel and failure add nothing to the scene.
    nodesAfter = slicer.mrmlScene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        L.compare(volumeNode, segNode, ref, ["test-nearest"], "seeds", cancel=token)
    with pytest.raises(Exception):
        L.compare(volumeNode, segNode, ref, ["test-nearest", "test-broken"], "seeds")
    assert slicer.mrmlScene.GetNumberOfNodes() == nodesAfter > nodesBefore


def test_compare_protocol_seeds_from_reference(scene_nodes, registered_methods):
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    for protocol in ("3-seeds", "3-seeds+ends"):
        table = IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["test-nearest"], protocol)
        assert table.GetNumberOfRows() == 1


def test_compare_can_run_a_method_once_on_all_muscles(scene_nodes):
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.baselines import registry

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    other = np.zeros_like(truth)
    other[:, :6, :8] = 1
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": other}, "Reference")
    calls = []

    def together(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        calls.append(sorted(seeds) if isinstance(seeds, dict) else "one")
        return ({n: s.mask for n, s in seeds.items()} if isinstance(seeds, dict) else seeds.mask)

    together.joint = True
    registry.register("test-together", together)
    try:
        IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["test-together"], "3-seeds", joint=True)
        assert calls == [["GM", "SOL"]]
        table = IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["test-together"], "3-seeds")
        assert calls[1:] == ["one", "one"] and table.GetNumberOfRows() == 2
    finally:
        registry.unregister("test-together")


def _nodes(slicer):
    return [slicer.mrmlScene.GetNthNode(n).GetID() for n in range(slicer.mrmlScene.GetNumberOfNodes())]


def test_bad_input_says_what_to_do_and_changes_nothing(scene_nodes, registered_methods):
    """A 2-D image (one slice thick, as Slicer holds it), an empty reference segment, a segment the
    reference lacks: a message that says what to do, and the scene and the painted seeds as they were."""
    from slicer_nodes import _assert_same, _ijk_to_ras, _state

    from ifssnet.errors import InputError, SeedError, VolumeError
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    slicer, volumeNode, segNode, truth = scene_nodes
    _paint(slicer, volumeNode, segNode, truth, 0, (9, 10, 11))
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": np.zeros_like(truth)}, "Reference")
    frame = slicer.util.addVolumeFromArray(np.ones((1,) + truth.shape[1:], np.int16), _ijk_to_ras(), "frame")
    before, nodes = _state(segNode, volumeNode), _nodes(slicer)
    L = IFSSNetComparisonLogic()
    with pytest.raises(VolumeError, match=r"2-D image \(one slice thick.*Load the reconstructed 3-D"):
        L.compare(frame, segNode, ref, ["test-nearest"], "seeds", segmentNames=["GM"])
    with pytest.raises(SeedError, match="Reference segment 'SOL' is empty.*complete"):
        L.compare(volumeNode, None, ref, ["test-nearest"], "3-seeds")
    with pytest.raises(InputError, match="no segment 'LG'.*GM, SOL"):
        L.compare(volumeNode, segNode, ref, ["test-nearest"], "seeds", segmentNames=["LG"])
    assert _nodes(slicer) == nodes
    _assert_same(before, _state(segNode, volumeNode))


def test_cancel_during_a_run_stops_it_and_adds_nothing(scene_nodes, registered_methods):
    from slicer_nodes import _assert_same, _state

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    slicer, volumeNode, segNode, truth = scene_nodes
    _paint(slicer, volumeNode, segNode, truth, 0, (5, 6, 7, 15, 16, 17))
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    before, nodes = _state(segNode, volumeNode), _nodes(slicer)
    token, seen = CancelToken(), []

    def cancelMidway(stage, done, total):   # the Cancel button, clicked while the first method runs
        seen.append(stage)
        if stage == "propagating" and done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, ["test-nearest", "test-nearest"], "seeds",
                                         progress=cancelMidway, cancel=token)
    assert seen.count("propagating") == 2    # it stopped at once: no further slice, no second method
    assert _nodes(slicer) == nodes
    _assert_same(before, _state(segNode, volumeNode))


def test_with_a_cancel_flag_the_itk_baselines_run_isolated_when_large(scene_nodes, monkeypatch):
    """compute (the module's worker) gives fbs and gfs isolate='auto' unless the options set it; without
    a cancel flag (nothing could stop it) the options go through as given."""
    import ifssnet.compare as core

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.baselines.child_process import cancellable_options

    given = {"gfs": {"seed_locality": 1.0}, "fbs": {"isolate": False}}
    assert cancellable_options(["fbs", "gfs", "ws"], given) == {"gfs": {"seed_locality": 1.0, "isolate": "auto"},
                                                               "fbs": {"isolate": False}}
    assert given == {"gfs": {"seed_locality": 1.0}, "fbs": {"isolate": False}}  # not changed
    slicer, volumeNode, segNode, truth = scene_nodes
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    seen = []
    monkeypatch.setattr(core, "compare", lambda *a, method_options=None, **k: seen.append(method_options) or [])
    L = IFSSNetComparisonLogic()
    job = L.prepare(volumeNode, None, ref, ["gfs", "ws"], "3-seeds")
    L.compute(job, cancel=CancelToken())
    L.compute(job)
    assert seen == [{"gfs": {"isolate": "auto"}}, {}]


def test_cancel_during_an_isolated_grow_from_seeds_kills_it_and_adds_nothing(scene_nodes, child_processes):
    import threading
    import time

    from slicer_nodes import _assert_same, _state

    pytest.importorskip("itk")
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    started = child_processes
    slicer, volumeNode, segNode, truth = scene_nodes
    _paint(slicer, volumeNode, segNode, truth, 0, (5, 6, 7, 15, 16, 17))
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    before, nodes = _state(segNode, volumeNode), _nodes(slicer)
    token, alive = CancelToken(), []

    def click_cancel():  # Cancel while the child still loads ITK (seconds)
        while not started:
            time.sleep(0.01)
        time.sleep(0.3)
        alive.append(started[0].poll() is None)
        token.cancel()

    threading.Thread(target=click_cancel, daemon=True).start()
    with pytest.raises(Cancelled):
        IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, ["gfs"], "seeds", cancel=token,
                                         methodOptions={"gfs": {"isolate": True}})
    assert alive == [True] and started[0].poll() is not None  # killed mid-run, and gone
    assert _nodes(slicer) == nodes
    _assert_same(before, _state(segNode, volumeNode))
