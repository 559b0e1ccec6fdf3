"""The Comparison's volume error chart: grouped bars, a series per method in the method's colour.

Before: one bar series for every method and segment, all in the plot series' default colour, so a bar said whose it
was only through its label, and the colours that name the methods in "Dice along the sweep" and in the result
segmentations did not carry over.
"""
from __future__ import annotations

import math

import pytest

from slicer_nodes import slicer_test  # noqa: F401
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: F401  (fixtures)


def _rows():
    """Two methods on two segments; the second method has no GL row (a method that failed on it)."""
    return [{"method": "fbs", "muscle": "GM", "volume_diff_pct": 12.5},
            {"method": "fbs", "muscle": "GL", "volume_diff_pct": -4.0},
            {"method": "ws", "muscle": "GM", "volume_diff_pct": -30.0}]


@slicer_test
def test_each_method_is_one_bar_series_in_its_colour_with_a_row_per_segment(slicer_scene):
    from IFSSNetComparisonLib.logic import METHOD_COLORS, IFSSNetComparisonLogic, _seriesStyles, methodLabel

    created = []
    chart = IFSSNetComparisonLogic()._volumeErrorChart(_rows(), created)
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    fbs, ws = (chart.GetNthPlotSeriesNode(n) for n in range(2))
    assert [s.GetYColumnName() for s in (fbs, ws)] == [methodLabel("fbs"), methodLabel("ws")]
    assert fbs.GetColor() == pytest.approx(METHOD_COLORS[0]) and ws.GetColor() == pytest.approx(METHOD_COLORS[1])
    # the same colour as the method's lines in "Dice along the sweep"
    assert fbs.GetColor() == pytest.approx(_seriesStyles(_rows())[f"{methodLabel('fbs')} GM"][0])
    table = fbs.GetTableNode().GetTable()
    assert ws.GetTableNode() is fbs.GetTableNode() and table.GetNumberOfRows() == 2
    value = {(table.GetValueByName(r, "segment").ToString(), m): table.GetValueByName(r, m).ToDouble()
             for r in range(2) for m in (methodLabel("fbs"), methodLabel("ws"))}
    assert value[("GM", methodLabel("fbs"))] == 12.5 and value[("GL", methodLabel("fbs"))] == -4.0
    assert value[("GM", methodLabel("ws"))] == -30.0 and math.isnan(value[("GL", methodLabel("ws"))])
    assert all(s.GetPlotType() == s.PlotTypeBar and s.GetLabelColumnName() == "segment" for s in (fbs, ws))
    assert len(created) == 4      # table, chart, two series: all removed if publishing fails
