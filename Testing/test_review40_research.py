"""Review 40 (research workflows): the Training and Comparison Logic on Slicer's real MRML (slicer-core)."""
from __future__ import annotations

import numpy as np
import pytest

from slicer_nodes import (_arrays_module, _nearest_seed_method, _paint, _reference_segmentation,  # noqa: F401
                          scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


@pytest.fixture()
def nearest():
    from ifssnet.baselines import registry

    registry.register("test-nearest", _nearest_seed_method, "Nearest seed slice")
    yield "test-nearest"
    registry.unregister("test-nearest")


def test_the_model_card_lists_the_cases_trained_on_not_the_held_out_pair(scene_nodes, tmp_path, capsys):
    """The panel trains in a background process on its pairs less the held-out one ('Hold out the last pair for
    validation', ticked by default), then writes the model card with every pair of its list. The card said the
    held-out volume was a training case; it now names the cases the model file records it was trained on."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from cli_output import run_cli
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from slicer_nodes import _ijk_to_ras

    volumeNode.SetName("Train calf")
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(),
                                             "Held-out calf")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    heldRef = _reference_segmentation(slicer, heldOut, {"GM": truth}, "Held-out reference")
    L = IFSSNetTrainingLogic()
    files = L.exportPairs([(volumeNode, ref)], str(tmp_path / "work"))
    valFiles = L.exportPairs([(heldOut, heldRef)], str(tmp_path / "work" / "validation"))
    out, log = tmp_path / "m.pt", tmp_path / "work" / "steps.jsonl"
    cmd = L.trainingCommand(files, "full", 1, str(out), str(log), stepsPerEpoch=2, validationPairs=valFiles,
                            valEvery=2)
    code, _, err = run_cli(capsys, *cmd[3:], "--size", "32", "--width-mult", "0.15", "--run-length", "6")
    assert code == 0, err
    records, _ = L.readStepLog(str(log))
    panelCases = ["Train calf  +  Reference", "Held-out calf  +  Held-out reference"]   # the panel's pair list
    card = open(L.writeModelCard(str(out), mode="full", epochs=1, baseModel=None, cases=panelCases,
                                 steps=L.stepRecords(records))).read()
    line = next(x for x in card.splitlines() if x.startswith("- Training cases:"))
    assert "Held-out" not in line and "Train_calf" in line, line
    assert "- Final loss" in card and "after 2 steps" in card
