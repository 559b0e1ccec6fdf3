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
