"""Review of the comparison and its baselines (session 41): each test failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

from ifssnet import compare as C
from ifssnet.baselines import registry
from ifssnet.errors import SeedError
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume
from ifssnet.seeds import cut_seeds, make_seed_segmentation

from cli_output import error_line, run_cli  # noqa: E402
from slicer_nodes import scene_nodes  # noqa: E402,F401  (fixture; puts the Slicer modules on sys.path)
from slicer_fixture import slicer_app, slicer_scene  # noqa: E402,F401  (fixtures)

_FIXTURES = (scene_nodes, slicer_app, slicer_scene)  # used by name in the tests' arguments

K, J, I = 40, 20, 24
GEO = Geometry(spacing=(0.5, 0.5, 0.8))


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[4:36, 5:15, 6:18] = 1
    return m


def _volume(m):
    rng = np.random.default_rng(0)
    return (40 + 60 * m + rng.normal(0, 8, m.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture
def ran():
    """A cheap registered method ('r41copy': the seeds, nothing else); ``ran`` lists its calls' seed counts."""
    calls = []

    def copy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        calls.append(len(seeds.slices))
        return seeds.mask

    registry.register("r41copy", copy, "Copy")
    yield calls
    registry.unregister("r41copy")


# ------------------------------------------------------------------------------------------------
# 1. Seeds that Propagate refuses (fewer than 3 painted slices) are refused by the comparison, up front


def test_the_comparison_refuses_seeds_on_two_slices_before_any_method_runs(ran, tiny_model):
    """compare() ran every baseline on 2 painted slices and reported IFSS-Net's refusal ('The segment is painted
    on 2 slices only') as an error row beside them: a table of baselines IFSS-Net was never compared with."""
    m = _muscle()
    seeds = {"GM": cut_seeds(m, (10, 25))}
    with pytest.raises(SeedError) as err:
        C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy", "ifssnet"], seeds=seeds,
                  method_options={"ifssnet": {"model": tiny_model, "device": "cpu"}})
    text = str(err.value)
    assert "'GM' is painted on 2 slices only" in text and "at least 3" in text, text
    assert "Paint 'GM' on at least 3 slices" in text and "compare again" in text, text
    assert ran == []
    # the same rule as Propagate's: 2 painted slices and an empty one marked 'no muscle here' are taken
    rows = C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy"],
                     seeds={"GM": cut_seeds(m, (10, 25)).with_empty([38])})
    assert ran == [3] and not rows[0]["error"]


def test_a_protocol_count_under_3_is_refused_before_any_case_is_read(ran, tmp_path, monkeypatch):
    m = _muscle()
    with pytest.raises(SeedError, match=r"'GM' is painted on 2 slices only.*count 3"):
        C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy"], "3-seeds", count=2)
    assert ran == []
    read = []
    monkeypatch.setattr(C, "load_case", lambda *a, **k: read.append(a) or (_volume(m), {"GM": m}, GEO.spacing_kji))
    with pytest.raises(SeedError, match=r"count 3"):
        C.compare_set([tmp_path, tmp_path], ["r41copy"], "3-seeds", count=2)
    assert read == [] and ran == []


def test_ifssnet_compare_refuses_a_seed_file_with_two_painted_slices_and_writes_nothing(ran, tmp_path, capsys):
    m = _muscle()
    write_volume(Image(_volume(m), GEO), tmp_path / "volume.nrrd")
    ref = segmentation_from_masks({"GM": m}, GEO)
    write_segmentation(ref, tmp_path / "reference.seg.nrrd")
    write_segmentation(make_seed_segmentation(ref, ["GM"], at=12, count=2), tmp_path / "two.seg.nrrd")
    code, _, err = run_cli(capsys, "compare", tmp_path / "volume.nrrd", tmp_path / "two.seg.nrrd",
                           tmp_path / "reference.seg.nrrd", "--methods", "r41copy", "--csv", tmp_path / "out.csv")
    line = error_line(err)
    assert code == 2 and "'GM' is painted on 2 slices only" in line and "two.seg.nrrd" in line, line
    assert "or give '-'" in line, line
    assert ran == [] and not (tmp_path / "out.csv").exists()


@pytest.mark.slicer
@pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")
def test_the_slicer_comparison_refuses_seeds_on_two_slices_and_adds_nothing(scene_nodes):
    """The Comparison Logic, protocol 'seeds', a segment painted on 2 slices: the table had the baselines' rows
    beside IFSS-Net's failure; now it says what to do in Slicer before anything is computed, and adds no node."""
    from slicer_nodes import _assert_same, _paint, _reference_segmentation, _state

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    slicer, volumeNode, segNode, truth = scene_nodes
    _paint(slicer, volumeNode, segNode, truth, 1, (9, 15))
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    calls = []
    registry.register("r41seen", lambda volume, seeds, spacing_kji, *, progress=None, cancel=None:
                      calls.append(1) or seeds.mask)
    try:
        before, nodes = _state(segNode, volumeNode), slicer.mrmlScene.GetNumberOfNodes()
        with pytest.raises(SeedError) as err:
            IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, ["r41seen"], "seeds")
        text = str(err.value)
        assert "'GM' is painted on 2 slices only" in text and "at least 3" in text, text
        assert "in 'Seg'" in text and "protocol '3-seeds'" in text, text
        assert calls == [] and slicer.mrmlScene.GetNumberOfNodes() == nodes
        _assert_same(before, _state(segNode, volumeNode))
        # a third painted slice: it runs
        _paint(slicer, volumeNode, segNode, truth, 1, (9, 12, 15), name="GM3")
        table = IFSSNetComparisonLogic().compare(volumeNode, segNode,
                                                 _reference_segmentation(slicer, volumeNode, {"GM3": truth}, "R3"),
                                                 ["r41seen"], "seeds")
        assert calls == [1] and table.GetNumberOfRows() == 1
    finally:
        registry.unregister("r41seen")
