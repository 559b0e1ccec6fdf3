"""Review 42 (Comparison module and the comparison runner): the Comparison Logic on Slicer's real MRML (slicer-core),
headless: Slicer's one propagation slot, the seed-grid notes, the plot series' names across runs."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (nearest, slicer_test, _assert_same, _ijk_to_ras, _nearest_seed_method, _paint,  # noqa: F401
                          _reference_segmentation, _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

from ifssnet.errors import InputError  # noqa: E402

def _node_ids(slicer):
    scene = slicer.mrmlScene
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


# ---------------------------------------------------------------------- one propagation at a time (af9919a)


@slicer_test
def test_a_propagation_is_refused_while_a_comparison_runs(scene_nodes):
    """af9919a gave Slicer one propagation slot, which the Segmentation module page and its effect share; the
    Comparison's runs did not take it, so a Propagate ran beside a comparison (two networks in memory, each memory
    check counting one run). Now a Propagate meanwhile is refused naming the comparison, and changes nothing; it runs
    once the comparison is done."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic
    from ifssnet.baselines import registry

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (4, 10, 17), name="GM")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    L = logic.IFSSNetSegmentationLogic()
    before = _state(segNode, volumeNode)
    seen = []

    def reentrant(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        with pytest.raises(InputError, match="already running on 'IFSS-Net Comparison against Reference'") as err:
            L.propagate(volumeNode, segNode, [sid], method=_nearest_seed_method)
        seen.append(err.value.todo)
        return _nearest_seed_method(volume, seeds, spacing_kji)

    registry.register("test-reentrant", reentrant, "Reentrant")
    try:
        IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["test-reentrant"], "3-seeds")
    finally:
        registry.unregister("test-reentrant")
    assert seen and "wait" in seen[0].lower()
    _assert_same(before, _state(segNode, volumeNode))
    L.propagate(volumeNode, segNode, [sid], method=_nearest_seed_method)    # released afterwards


@slicer_test
def test_a_comparison_is_refused_while_a_propagation_runs_and_adds_nothing(scene_nodes, nearest):
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (4, 10, 17), name="GM")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    C = IFSSNetComparisonLogic()
    seen = []

    def reentrant(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        nodes = _node_ids(slicer)
        with pytest.raises(InputError, match="already running on 'Seg'") as err:
            C.compare(volumeNode, None, ref, [nearest], "3-seeds")
        seen.append((err.value.todo, _node_ids(slicer) == nodes))
        return _nearest_seed_method(volume, seeds, spacing_kji)

    logic.IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=reentrant)
    assert seen and "compare again" in seen[0][0] and seen[0][1]
    assert C.compare(volumeNode, None, ref, [nearest], "3-seeds").GetNumberOfRows() == 1   # released afterwards


@slicer_test
def test_a_failed_comparison_gives_the_slot_back(scene_nodes):
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic
    from ifssnet.baselines import registry
    from ifssnet.errors import DependencyError

    sid, _ = _paint(slicer, volumeNode, segNode, truth, 0, (4, 10, 17), name="GM")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")

    def missing(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        raise DependencyError("A package is missing.", "Install it.")

    registry.register("test-missing", missing, "Missing")
    try:
        with pytest.raises(DependencyError):
            IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["test-missing"], "3-seeds")
    finally:
        registry.unregister("test-missing")
    logic.IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=_nearest_seed_method)


# ---------------------------------------------------------------------- seed-grid notes


@slicer_test
def test_seeds_painted_on_another_grid_are_taken_afresh_and_the_comparison_says_so(scene_nodes, nearest):
    """Propagate's summary says when a segment's seed tags were recorded on another volume's grid (IFSSNet.SeedGrid:
    resampled, moved) and its paint was taken as new seeds; the Comparison read them the same way but said nothing."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic

    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    sid = segNode.GetSegmentation().GetSegmentIdBySegmentName("GM")
    logic.IFSSNetSegmentationLogic().markNoMuscle(volumeNode, segNode, sid, 18)   # tags on this grid
    m = _ijk_to_ras()
    m[:3, 3] += m[:3, :3] @ np.array([0.0, 0.0, 0.5])    # moved half a slice along the sweep: no one-to-one map
    moved = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), m, "US moved")
    ref = _reference_segmentation(slicer, moved, {"GM": truth}, "Reference")
    C = IFSSNetComparisonLogic()
    C.compare(moved, segNode, ref, [nearest], "seeds")
    notes = C.lastResult["notes"]
    assert len(notes) == 1 and "another volume's grid" in notes[0] and "'GM'" in notes[0]
    C.compare(volumeNode, segNode, _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Ref 2"),
              [nearest], "seeds")
    assert C.lastResult["notes"] == []     # on the grid the tags were recorded on: nothing to say


# ---------------------------------------------------------------------- plot series across runs


@slicer_test
def test_a_second_comparisons_plot_series_are_told_apart_from_the_firsts(scene_nodes, nearest):
    """The table, charts and segmentations of a second run get "(2)"; its plot series (the names the plots' legends
    and the Data module show) were named as the first run's: "Nearest seed slice GM" and "volume error" twice."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    C = IFSSNetComparisonLogic()
    C.compare(volumeNode, None, ref, [nearest], "3-seeds")
    first = [C.lastResult["diceChart"].GetNthPlotSeriesNode(0).GetName(),
             C.lastResult["volumeChart"].GetNthPlotSeriesNode(0).GetName()]
    assert first == ["Nearest seed slice GM", "Nearest seed slice volume error"]
    C.compare(volumeNode, None, ref, [nearest], "3-seeds")
    second = [C.lastResult["diceChart"].GetNthPlotSeriesNode(0).GetName(),
              C.lastResult["volumeChart"].GetNthPlotSeriesNode(0).GetName()]
    assert second == ["Nearest seed slice GM (2)", "Nearest seed slice volume error (2)"]
    series = slicer.mrmlScene.GetNodesByClass("vtkMRMLPlotSeriesNode")
    names = [series.GetItemAsObject(n).GetName() for n in range(series.GetNumberOfItems())]
    assert len(names) == len(set(names)) == 4
    # the series still plot their own table's column
    assert C.lastResult["diceChart"].GetNthPlotSeriesNode(0).GetYColumnName() == "Nearest seed slice GM"


# ---------------------------------------------------------------------- seeds on every slice


@slicer_test
def test_a_clone_of_the_reference_as_the_seeds_is_refused_and_adds_nothing(scene_nodes, nearest):
    """The Logic refused the reference node itself as the seed segmentation, but not a clone of it (or a propagated
    result): every slice of the muscle was a seed, none was scored, and every method got a Dice of 1."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.errors import SeedError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    clone = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference clone")
    nodes = _node_ids(slicer)
    with pytest.raises(SeedError, match="cover every slice") as err:
        IFSSNetComparisonLogic().compare(volumeNode, clone, ref, [nearest], "seeds")
    assert "painted slices" in err.value.todo and "3-seeds" in err.value.todo
    assert _node_ids(slicer) == nodes


# ---------------------------------------------------------------------- the volume error chart


@slicer_test
def test_the_volume_error_chart_tells_over_from_under_segmentation(scene_nodes):
    """The chart plotted the absolute volume error: a method that doubles the muscle and one that halves it drew the
    same kind of bar, where `ifssnet compare --plot` draws the signed error (volume_diff_pct)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.baselines import registry

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")

    def grown(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        from scipy.ndimage import binary_dilation

        return binary_dilation(truth, iterations=2).astype(np.uint8)

    def shrunk(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        from scipy.ndimage import binary_erosion

        return binary_erosion(truth, iterations=2).astype(np.uint8)

    registry.register("r42grown", grown, "Grown")
    registry.register("r42shrunk", shrunk, "Shrunk")
    try:
        C = IFSSNetComparisonLogic()
        C.compare(volumeNode, None, ref, ["r42grown", "r42shrunk"], "3-seeds")
    finally:
        registry.unregister("r42grown")
        registry.unregister("r42shrunk")
    chart = C.lastResult["volumeChart"]
    values = {}
    for n in range(chart.GetNumberOfPlotSeriesNodes()):   # a bar series per method, a row per segment
        series = chart.GetNthPlotSeriesNode(n)
        table = series.GetTableNode().GetTable()
        for r in range(table.GetNumberOfRows()):
            values[f"{series.GetYColumnName()} {table.GetValueByName(r, 'segment').ToString()}"] = \
                table.GetValueByName(r, series.GetYColumnName()).ToDouble()
    rows = {r["method"]: r for r in C.lastResult["rows"]}
    assert values["Grown GM"] > 0 > values["Shrunk GM"]
    assert values["Shrunk GM"] == pytest.approx(rows["r42shrunk"]["volume_diff_pct"])
    assert "+ larger" in C.lastResult["volumeChart"].GetYAxisTitle()


# ---------------------------------------------------------------------- units


@slicer_test
def test_the_table_columns_carry_their_units(scene_nodes, nearest):
    """The table's columns were bare names ('hd', 'volume_cm3', 'peak_mb'): in Slicer a researcher could not tell a
    distance in mm from one in voxels. Each column now has its unit and description, which Slicer's table view shows
    as the header's tooltip (as Segment Statistics' table does)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.compare import COLUMN_INFO, COLUMNS

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    table = IFSSNetComparisonLogic().compare(volumeNode, None, ref, [nearest], "3-seeds")
    units = {name: table.GetColumnUnitLabel(name) for name in ("hd", "hd95", "asd", "slice_hd", "volume_cm3",
                                                                "volume_diff_pct", "time_s", "peak_mb", "dice")}
    assert units == {"hd": "mm", "hd95": "mm", "asd": "mm", "slice_hd": "mm", "volume_cm3": "cm3",
                     "volume_diff_pct": "%", "time_s": "s", "peak_mb": "MiB", "dice": ""}
    assert set(COLUMNS) <= set(COLUMN_INFO)
    assert all(table.GetColumnDescription(name) for name in COLUMNS)


# ---------------------------------------------------------------------- a segment missing from the seeds


@slicer_test
def test_seeds_without_one_of_the_reference_muscles_say_how_to_compare_the_painted_ones(scene_nodes, nearest):
    """The module compares every segment of the reference and offers no choice of segments. Seeds painted for GM alone
    against a GM + SOL reference were refused with "The seed segmentation has no segment 'SOL'. Paint it, or use
    protocol '3-seeds'.": nothing said how to compare GM, which was painted, nor what the seeds hold."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.errors import SeedError

    _paint(slicer, volumeNode, segNode, truth, 0, (4, 10, 17), name="GM")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": truth}, "Reference")
    nodes = _node_ids(slicer)
    with pytest.raises(SeedError) as err:
        IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, [nearest], "seeds")
    assert "has no segment named 'SOL' (it has: GM)" in err.value.what
    assert "segmentNames=['GM']" in err.value.todo and "Segments list" in err.value.todo
    assert _node_ids(slicer) == nodes
    table = IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, [nearest], "seeds", segmentNames=["GM"])
    assert table.GetNumberOfRows() == 1


# ---------------------------------------------------------------------- series colours


@slicer_test
def test_the_dice_series_of_each_method_have_their_own_colour_and_each_muscle_its_line(scene_nodes, nearest):
    """A plot series node is black unless its colour is set, and the Comparison set none: every method's 'Dice along
    the sweep' line was black, IFSS-Net's not to be told from Fill between slices'. Now a colour per method (tab10, as
    the command line's plot) and a line style per muscle."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.baselines import registry

    def copy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        return seeds.mask

    sol = np.roll(truth, 1, axis=2)
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": sol}, "Reference")
    registry.register("r42copy", copy, "Copy")
    try:
        C = IFSSNetComparisonLogic()
        C.compare(volumeNode, None, ref, [nearest, "r42copy"], "3-seeds")
    finally:
        registry.unregister("r42copy")
    chart = C.lastResult["diceChart"]
    series = {chart.GetNthPlotSeriesNode(n).GetName(): chart.GetNthPlotSeriesNode(n)
              for n in range(chart.GetNumberOfPlotSeriesNodes())}
    assert len(series) == 4
    colour = {name: tuple(round(c, 3) for c in s.GetColor()) for name, s in series.items()}
    line = {name: s.GetLineStyle() for name, s in series.items()}
    assert colour["Nearest seed slice GM"] == colour["Nearest seed slice SOL"] != colour["Copy GM"] == colour["Copy SOL"]
    assert (0.0, 0.0, 0.0) not in colour.values()
    assert line["Nearest seed slice GM"] == line["Copy GM"] != line["Nearest seed slice SOL"] == line["Copy SOL"]


# ---------------------------------------------------------------------- memory of the kept results


@slicer_test
def test_the_results_are_kept_as_bounding_boxes_until_written(scene_nodes):
    """compute kept every method's result for every muscle as a whole volume (uint8) until publish: 12 volumes for 4
    methods on 3 muscles, 4.4 GB on a 1400 x 512 x 512 sweep, beside the volume and the network. It now keeps each
    result's bounding box, and publish writes the same voxels."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import mrml_arrays as A
    from ifssnet.baselines import registry

    small = np.zeros_like(truth)
    small[6:15, 8:18, 9:20] = truth[6:15, 8:18, 9:20]

    def copy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        return np.moveaxis(small, 0, 0).copy()

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    registry.register("r42small", copy, "Small")
    try:
        C = IFSSNetComparisonLogic()
        job = C.prepare(volumeNode, None, ref, ["r42small"], "3-seeds")
        C.compute(job)
        kept = job["rows"][0]["mask"]
        assert kept.array.nbytes < truth.nbytes / 2
        C.publish(job)
    finally:
        registry.unregister("r42small")
    out = C.lastResult["segmentations"]["Small"]
    sid = out.GetSegmentation().GetSegmentIdBySegmentName("GM")
    np.testing.assert_array_equal(A.segmentToArray(out, sid, A.referenceGeometry(volumeNode, out)), small)


@slicer_test
def test_a_comparison_whose_scene_was_closed_publishes_nothing_into_the_next_scene(scene_nodes, nearest):
    """``publish`` found the volume and the reference by their IDs, which restart after File > Close Scene: a run
    whose scene was closed meanwhile published its table, charts and segmentations into the next scene, on that
    scene's nodes of the same IDs. It now holds the nodes and refuses where they left the scene."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    ids = (volumeNode.GetID(), ref.GetID())
    C = IFSSNetComparisonLogic()
    job = C.compute(C.prepare(volumeNode, None, ref, [nearest], "3-seeds"))
    slicer.mrmlScene.Clear(0)                                        # File > Close Scene during the run
    nextVolume = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "next")
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "next seeds")
    nextRef = _reference_segmentation(slicer, nextVolume, {"GM": truth}, "Next reference")
    assert (nextVolume.GetID(), nextRef.GetID()) == ids             # the IDs the closed scene's nodes had
    before = _node_ids(slicer)
    with pytest.raises(InputError, match="removed during the run"):
        C.publish(job)
    assert _node_ids(slicer) == before


@slicer_test
def test_seeds_cut_by_a_protocol_say_which_axis_they_were_cut_across(scene_nodes, nearest):
    """The Comparison cut protocol seeds from the reference across the volume's K axis without a word (the command
    line says it compares along axis 0); a sweep stored along another axis was compared across it. Now said."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    C = IFSSNetComparisonLogic()
    C.compare(volumeNode, None, ref, [nearest], "3-seeds")
    assert len(C.lastResult["notes"]) == 1 and "K axis" in C.lastResult["notes"][0]
    assert "'3-seeds'" in C.lastResult["notes"][0]
