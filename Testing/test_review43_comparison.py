"""Review 43 (Comparison module): the Comparison Logic on Slicer's real MRML (slicer-core), headless: the result
segmentations' colours, the model, segments and device of a comparison, and the results layout's views kept apart from
Slicer's table and plot selection."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_nearest_seed_method, _reference_segmentation, nearest, scene_nodes,  # noqa: F401
                          slicer_test)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401  (fixtures)

from ifssnet.errors import InputError  # noqa: E402


@pytest.fixture()
def two_methods():
    """``_nearest_seed_method`` registered twice, as "test-a" (label "Method A") and "test-b" ("Method B")."""
    from ifssnet.baselines import registry

    registry.register("test-a", _nearest_seed_method, "Method A")
    registry.register("test-b", _nearest_seed_method, "Method B")
    yield ["test-a", "test-b"]
    registry.unregister("test-a")
    registry.unregister("test-b")


def _two_muscles(truth):
    """GM: the scene's ellipsoid's upper half (j below the middle), GL: the rest, touching it."""
    gm = truth.copy()
    gm[:, truth.shape[1] // 2:] = 0
    return {"GM": gm, "GL": (truth - gm).astype(np.uint8)}


def _segment_colors(segmentationNode):
    seg = segmentationNode.GetSegmentation()
    return {seg.GetNthSegment(n).GetName(): tuple(round(c, 3) for c in seg.GetNthSegment(n).GetColor())
            for n in range(seg.GetNumberOfSegments())}


# ---------------------------------------------------------------------- colours of the results


@slicer_test
def test_each_methods_result_has_the_colour_of_its_line_in_the_chart_not_the_references(scene_nodes, two_methods):
    """The result segmentations' segments took the reference segment's colour: every method's result and the
    reference looked the same in the views. Each method's segments now have the method's colour (SERIES_COLORS, as
    its line in "Dice along the sweep"), each muscle a shade of it; the segments keep the reference's names."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib.logic import SERIES_COLORS

    ref = _reference_segmentation(slicer, volumeNode, _two_muscles(truth), "Reference")
    ref.GetSegmentation().GetSegment(ref.GetSegmentation().GetSegmentIdBySegmentName("GM")).SetColor(0.9, 0.1, 0.1)
    C = IFSSNetComparisonLogic()
    C.compare(volumeNode, None, ref, two_methods, "3-seeds")
    result = C.lastResult
    assert set(result["segmentations"]) == {"Method A", "Method B"}
    chart = result["diceChart"]
    lines = {chart.GetNthPlotSeriesNode(n).GetName(): tuple(round(c, 3) for c in chart.GetNthPlotSeriesNode(n).GetColor())
             for n in range(chart.GetNumberOfPlotSeriesNodes())}
    reference = _segment_colors(ref)
    seen = set()
    for i, label in enumerate(("Method A", "Method B")):
        colors = _segment_colors(result["segmentations"][label])
        assert set(colors) == {"GM", "GL"}                     # named as the reference's segments
        method = tuple(round(c, 3) for c in SERIES_COLORS[i])
        assert colors["GM"] == lines[f"{label} GM"] == method   # the segment and its chart line match
        assert colors["GL"] != colors["GM"]                    # touching muscles of one result told apart
        assert all(colors[m] != reference[m] for m in colors)  # not the reference's colour
        seen |= set(colors.values())
    assert len(seen) == 4                                      # no two methods' segments alike


# ---------------------------------------------------------------------- model, device and segments


@slicer_test
def test_the_model_and_device_go_to_the_learned_methods_as_the_command_lines(scene_nodes):
    """``ifssnet compare`` has --model and --device; the module had neither. The Logic takes them and gives them to
    the learned methods among those compared, as the command line does (``ifssnet.compare.network_options``), with
    a method's own options on top; the other methods get none (an option they do not take would stop the run)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    job = IFSSNetComparisonLogic().prepare(volumeNode, None, ref, ["ifssnet", "ws"], "3-seeds", model="/m/my.pt",
                                           device="cpu", methodOptions={"ifssnet": {"exclusive": False}})
    assert job["methodOptions"] == {"ifssnet": {"device": "cpu", "model": "/m/my.pt", "exclusive": False}}
    job = IFSSNetComparisonLogic().prepare(volumeNode, None, ref, ["ws"], "3-seeds", model="/m/my.pt", device="cpu")
    assert job["methodOptions"] == {}
    job = IFSSNetComparisonLogic().prepare(volumeNode, None, ref, ["ifssnet"], "3-seeds", model="", device="auto")
    assert job["methodOptions"] == {}                  # the shipped model, on the GPU where there is one


@slicer_test
def test_a_gpu_asked_for_where_pytorch_sees_none_is_refused_before_the_run(scene_nodes):
    """The device is checked in ``prepare`` by the core's check (``resolve_device``), before anything runs or is
    added: an unknown device, or CUDA where PyTorch sees no GPU."""
    pytest.importorskip("torch")
    import torch

    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.errors import ResourceError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(InputError, match="Unknown device 'tpu'"):
        IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["ifssnet"], "3-seeds", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ResourceError, match="PyTorch sees none"):
            IFSSNetComparisonLogic().compare(volumeNode, None, ref, ["ifssnet"], "3-seeds", device="cuda")
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes


@slicer_test
def test_a_model_file_that_does_not_load_stops_the_comparison_before_any_method_and_adds_nothing(scene_nodes,
                                                                                                    nearest, tmp_path):
    """The model file goes to the core's loader (``registry.load_once``, read once when the run starts, on the
    worker thread), not a second validator: a file that is not a model stops the run with the loader's message,
    before the first method, and adds no node."""
    pytest.importorskip("torch")
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.errors import IFSSNetError

    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"this is not a checkpoint")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(IFSSNetError, match="not_a_model.pt"):
        IFSSNetComparisonLogic().compare(volumeNode, None, ref, [nearest, "ifssnet"], "3-seeds", model=str(bad),
                                         cancel=lambda: False)
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes


@slicer_test
def test_a_model_given_without_ifssnet_among_the_methods_is_not_read(scene_nodes, nearest, tmp_path):
    """The model file is IFSS-Net's: a comparison without IFSS-Net does not read it (nor fail on it)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"this is not a checkpoint")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    table = IFSSNetComparisonLogic().compare(volumeNode, None, ref, [nearest], "3-seeds", cancel=lambda: False,
                                             methodOptions={"ifssnet": {"model": str(bad)}})
    assert table.GetNumberOfRows() == 1


@slicer_test
def test_only_the_segments_chosen_are_compared_and_a_refusal_says_how_to_choose_them(scene_nodes, nearest):
    """The widget had no choice of segments (the Logic's ``segmentNames`` only from the Python console), so seeds
    painted for GM alone against a GM + GL reference were refused with a clone-the-reference recipe. The Logic's
    message now names the module's Segments list, and the chosen segments alone are compared."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.errors import SeedError
    from slicer_nodes import _paint

    muscles = _two_muscles(truth)
    _paint(slicer, volumeNode, segNode, muscles["GM"], 0, (4, 10, 17), name="GM")
    ref = _reference_segmentation(slicer, volumeNode, muscles, "Reference")
    with pytest.raises(SeedError) as err:
        IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, [nearest], "seeds")
    assert "tick GM alone in the module's Segments list" in err.value.todo
    C = IFSSNetComparisonLogic()
    C.compare(volumeNode, segNode, ref, [nearest], "seeds", segmentNames=["GM"])
    assert [r["muscle"] for r in C.lastResult["rows"]] == ["GM"]
    assert list(C.lastResult["segmentations"].values())[0].GetSegmentation().GetNumberOfSegments() == 1



# ---------------------------------------------------------------------- the main thread's steps


def test_prepare_and_publish_run_under_a_wait_cursor():
    """``prepare`` (reading MRML) and ``publish`` (writing the table, charts and segmentations) must run in Qt's main
    thread, and ran there with no sign of work. Measured once on the 400 x 128 x 128 test phantom s1000 (3 segments;
    benchmarks/comparison_main_thread.py, benchmarks/results/comparison-main-thread-s1000.txt): prepare 0.03 s
    (0.3 s with painted seeds), publish about 0.2 s per method; the numpy work in them is a small part of that, so
    they stay in the main thread, each under ``slicer.util.WaitCursor`` (checked by reading the widget)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / "IFSSNetComparison/IFSSNetComparison.py").read_text())
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "IFSSNetComparisonWidget")
    wrapped = set()
    for node in ast.walk(klass):
        if isinstance(node, ast.With) and any(ast.unparse(item.context_expr) == "slicer.util.WaitCursor()"
                                              for item in node.items):
            wrapped |= {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
    calls = {ast.unparse(c.func) for c in ast.walk(klass) if isinstance(c, ast.Call)}
    for step in ("self.logic.prepare", "self.logic.publish"):
        assert step in calls and step in wrapped, f"{step} is not under a wait cursor"


# ---------------------------------------------------------------------- the results layout's views


def _results_layout_xml():
    """The Comparison module's results layout XML (its widget's ``showResults``), read with ``ast``."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / "IFSSNetComparison/IFSSNetComparison.py").read_text())
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "IFSSNetComparisonWidget")
    show = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == "showResults")
    return next(n.value.value for n in show.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "layoutXml")


@slicer_test
def test_show_volume_and_the_training_loss_plot_leave_the_comparisons_views_alone(scene_nodes, nearest):
    """Segment Statistics' showTable (the Segmentation module's Show volume) and the Training module's loss plot set
    the active table / chart and call PropagateTableSelection / PropagatePlotChartSelection, which set it in every
    table / plot view node that allows it (vtkMRMLApplicationLogic.cxx): the Comparison layout's views then showed
    the volume table and the loss chart instead of the comparison's results. Its views now opt out; the other
    layouts' views still show the volume table and the loss."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    scene = slicer.mrmlScene
    layoutLogic = slicer.vtkMRMLLayoutLogic()
    layoutLogic.SetMRMLScene(scene)
    layoutNode = layoutLogic.GetLayoutNode()
    layoutNode.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)  # a plot and a table view
    layoutNode.AddLayoutDescription(20231, _results_layout_xml())
    layoutNode.SetViewArrangement(20231)
    C = IFSSNetComparisonLogic()
    table = C.compare(volumeNode, None, _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference"),
                      [nearest], "3-seeds")
    charts = [C.lastResult["diceChart"], C.lastResult["volumeChart"]]
    assert C.showInResultViews(table, charts) == 3

    appLogic = slicer.app.applicationLogic()
    selection = appLogic.GetSelectionNode()
    volumes = scene.AddNewNodeByClass("vtkMRMLTableNode", "Seg volumes")      # Show volume's table
    selection.SetActiveTableID(volumes.GetID())
    appLogic.PropagateTableSelection()
    loss = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Training loss")   # the Training module's chart
    selection.SetActivePlotChartID(loss.GetID())
    appLogic.PropagatePlotChartSelection()

    assert scene.GetSingletonNode("IFSSNetTable", "vtkMRMLTableViewNode").GetTableNodeID() == table.GetID()
    for tag, chart in zip(("IFSSNetPlot1", "IFSSNetPlot2"), charts):
        assert scene.GetSingletonNode(tag, "vtkMRMLPlotViewNode").GetPlotChartNodeID() == chart.GetID()
    others = {cls: [scene.GetNthNodeByClass(n, cls) for n in range(scene.GetNumberOfNodesByClass(cls))]
              for cls in ("vtkMRMLTableViewNode", "vtkMRMLPlotViewNode")}
    assert [v.GetTableNodeID() for v in others["vtkMRMLTableViewNode"]
            if not v.GetSingletonTag().startswith("IFSSNet")] == [volumes.GetID()]
    assert [v.GetPlotChartNodeID() for v in others["vtkMRMLPlotViewNode"]
            if not v.GetSingletonTag().startswith("IFSSNet")] == [loss.GetID()]


@slicer_test
def test_show_volume_and_the_loss_plot_switch_the_layout_only_where_it_has_no_table_or_plot_view():
    """The Volume table button switched to Four-Up with a table, and the Training loss plot to Four-Up with a plot,
    whatever was shown (a layout with a table and a plot view included). They now take the Tables / Plots logic's
    layout for the one shown (as Segment Statistics' showTable and the Plots module do): the same where it has such
    a view, else the Four-Up one. The Comparison's own layout (custom, 20231) has its views opted out, so it is
    switched away from."""
    import ast
    from pathlib import Path

    import slicer

    root = Path(__file__).resolve().parent.parent
    for path, cls, method, logic in (("IFSSNetSegmentation/IFSSNetSegmentation.py", "IFSSNetSegmentationWidget",
                                      "onVolumeTable", "slicer.modules.tables.logic().GetLayoutWithTable("),
                                     ("IFSSNetTraining/IFSSNetTraining.py", "IFSSNetTrainingWidget", "_readStepLog",
                                      "slicer.modules.plots.logic().GetLayoutWithPlot(")):
        klass = next(n for n in ast.parse((root / path).read_text()).body
                     if isinstance(n, ast.ClassDef) and n.name == cls)
        text = ast.unparse(next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == method))
        assert f"setLayout({logic}layoutManager.layout))" in text, path
        assert "setLayout(slicer.vtkMRMLLayoutNode." not in text, path
    L = slicer.vtkMRMLLayoutNode
    both = L.SlicerLayoutFourUpPlotTableView
    assert slicer.vtkSlicerTablesLogic.GetLayoutWithTable(both) == both
    assert slicer.vtkSlicerPlotsLogic.GetLayoutWithPlot(both) == both
    assert slicer.vtkSlicerTablesLogic.GetLayoutWithTable(20231) == L.SlicerLayoutFourUpTableView
    assert slicer.vtkSlicerPlotsLogic.GetLayoutWithPlot(20231) == L.SlicerLayoutFourUpPlotView


@slicer_test
def test_a_muscle_keeps_its_shade_where_a_method_failed_on_another(scene_nodes, nearest):
    """The shade of a muscle follows its place among all the muscles compared, not among the masks one method
    returned: where a method failed on GM (an error row, no mask), its GL is GL's shade, as in the other results."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from ifssnet.baselines import registry
    from ifssnet.errors import IFSSNetError

    def not_on_gm(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        if np.nonzero(seeds.mask)[1].mean() < volume.shape[1] / 2:   # GM: the upper half
            raise IFSSNetError("Cannot segment this one.", "Nothing to do.")
        return _nearest_seed_method(volume, seeds, spacing_kji)

    registry.register("test-not-gm", not_on_gm, "Not on GM")
    try:
        C = IFSSNetComparisonLogic()
        C.compare(volumeNode, None, _reference_segmentation(slicer, volumeNode, _two_muscles(truth), "Reference"),
                  [nearest, "test-not-gm"], "3-seeds")
    finally:
        registry.unregister("test-not-gm")
    whole = _segment_colors(C.lastResult["segmentations"]["Nearest seed slice"])
    partial = _segment_colors(C.lastResult["segmentations"]["Not on GM"])
    assert set(partial) == {"GL"}
    from IFSSNetComparisonLib.logic import _muscleShade
    from IFSSNetSegmentationLib.logic import SERIES_COLORS

    assert partial["GL"] == tuple(round(c, 3) for c in _muscleShade(SERIES_COLORS[1], 1)) != \
        tuple(round(c, 3) for c in SERIES_COLORS[1])
    assert whole["GL"] == tuple(round(c, 3) for c in _muscleShade(SERIES_COLORS[0], 1))
