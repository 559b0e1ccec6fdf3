"""Review 40 (research workflows): the Training and Comparison Logic on Slicer's real MRML (slicer-core)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from slicer_nodes import (nearest, _arrays_module, _nearest_seed_method, _paint, _reference_segmentation,  # noqa: F401
                          scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


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


def _names(slicer):
    return [slicer.mrmlScene.GetNthNode(n).GetName() for n in range(slicer.mrmlScene.GetNumberOfNodes())]


def test_a_second_comparison_adds_outputs_of_their_own_names_and_leaves_the_first(scene_nodes, nearest):
    """Compare under 3-seeds, then under paper: the second run's table, charts and result segmentation had the
    same names as the first's (two 'IFSS-Net comparison', two 'Nearest seed slice result'...), so the Data module
    and the node selectors could not tell which protocol a node came from; a segmentation of the user's named like
    a result was as ambiguous. Now each new output gets a name no node has, and the first run's are as they were."""
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    arrays = _arrays_module()
    ref = _reference_segmentation(slicer, volumeNode, {"Vastus": truth}, "Reference")
    mine = _reference_segmentation(slicer, volumeNode, {"Vastus": truth}, "Nearest seed slice result (2)")
    L = IFSSNetComparisonLogic()
    L.compare(volumeNode, None, ref, [nearest], "3-seeds")
    first = dict(L.lastResult)
    firstTable = [[first["table"].GetCellText(r, c) for c in range(first["table"].GetNumberOfColumns())]
                  for r in range(first["table"].GetNumberOfRows())]
    firstSeg = first["segmentations"]["Nearest seed slice"]
    sid = firstSeg.GetSegmentation().GetSegmentIdBySegmentName("Vastus")
    firstMask = arrays.segmentToArray(firstSeg, sid, arrays.referenceGeometry(volumeNode, firstSeg)).copy()
    L.compare(volumeNode, None, ref, [nearest], "paper")
    second = L.lastResult
    outputs = [first["table"], first["diceChart"], first["volumeChart"], firstSeg, second["table"],
               second["diceChart"], second["volumeChart"], second["segmentations"]["Nearest seed slice"]]
    names = [n.GetName() for n in outputs]
    assert len(set(names)) == len(names), names
    allNames = [n for n in _names(slicer) if n not in ("SegmentationDisplay",) and not n.startswith("SegmentationDisplay_")]
    for node in outputs + [mine, ref]:
        assert allNames.count(node.GetName()) == 1, (node.GetName(), allNames)
    assert firstSeg.GetName() == "Nearest seed slice result" and first["table"].GetName() == "IFSS-Net comparison"
    assert [[first["table"].GetCellText(r, c) for c in range(first["table"].GetNumberOfColumns())]
            for r in range(first["table"].GetNumberOfRows())] == firstTable
    np.testing.assert_array_equal(
        arrays.segmentToArray(firstSeg, sid, arrays.referenceGeometry(volumeNode, firstSeg)), firstMask)
    assert mine.GetSegmentation().GetNumberOfSegments() == 1


def test_exporting_pairs_whose_volume_names_meet_after_renaming_does_not_crash(scene_nodes, tmp_path):
    """Train (the panel's export) on volumes named 'US-2', 'US' and 'US': the third was renamed 'US-2' (its index),
    the first one's folder, and the export failed with FileExistsError. Each pair now gets a folder of its own."""
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from slicer_nodes import _ijk_to_ras

    pairs = []
    for name in ("US-2", "US", "US", "us"):
        v = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), name)
        pairs.append((v, _reference_segmentation(slicer, v, {"GM": truth}, "R " + name)))
    files = IFSSNetTrainingLogic.exportPairs(pairs, str(tmp_path))
    folders = [os.path.basename(os.path.dirname(v)) for v, _ in files]
    assert folders[:2] == ["US-2", "US"] and len({f.lower() for f in folders}) == 4, folders
    assert all(os.path.dirname(v) == os.path.dirname(a) for v, a in files)


def test_a_finished_runs_checkpoint_is_not_offered_to_resume_and_its_card_stays(scene_nodes, tmp_path):
    """A finished run keeps OUT.ckpt.pt beside OUT.pt. The panel's Resume took it for an interrupted run: the
    'resumed' run took no step, wrote OUT.pt again and a card saying 'Final loss nan ... after 0 steps', and after a
    later run was cancelled before its first checkpoint the status said Resume would continue an earlier run. Now
    resumePath offers only a stopped run's checkpoint (the panel then says there is no interrupted run), the status
    says nothing was saved, and train(resume=) refuses a finished run with what to do, leaving its files as they were."""
    pytest.importorskip("torch")
    import time

    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import InputError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    out = tmp_path / "m.pt"
    L = IFSSNetTrainingLogic()
    L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), stepsPerEpoch=2, runLength=6, size=32,
            widthMult=0.15)
    ckpt = tmp_path / "m.ckpt.pt"
    assert ckpt.exists()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert L.resumePath(str(out)) is None
    assert L.cancelledText(str(out), time.time() + 10).endswith("nothing was saved. Click Train to start again.")
    with pytest.raises(InputError, match="has finished"):
        L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), resume=str(ckpt))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == files


def test_the_reference_chosen_as_the_seed_segmentation_is_refused(scene_nodes, nearest):
    """Protocol 'seeds' with the reference also chosen as the seed segmentation (the Reference selector picks the
    scene's first segmentation; the same node is easily chosen twice): every slice of the muscle became a seed and
    every method scored Dice 1.0, a result that looked valid. It is refused with what to choose; nothing is added."""
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    from ifssnet.errors import InputError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    before = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(InputError, match="is the reference itself"):
        IFSSNetComparisonLogic().compare(volumeNode, ref, ref, [nearest], "seeds")
    assert slicer.mrmlScene.GetNumberOfNodes() == before


def test_the_best_model_by_validation_is_listed_with_a_card_of_its_own(scene_nodes, tmp_path, monkeypatch):
    """Training with a held-out pair keeps OUT.best.pt, which the effect lists as 'OUT.best' and the status line
    recommends; its card (the effect's tooltip) was empty, since only OUT.md was written. Now OUT.best.md says which
    step it is and its validation scores."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from slicer_nodes import _ijk_to_ras

    monkeypatch.setenv("IFSSNET_MODEL_DIR", str(tmp_path))
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "B")
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    heldRef = _reference_segmentation(slicer, heldOut, {"GM": truth}, "Held-out reference")
    L = IFSSNetTrainingLogic()
    out = L.train([(volumeNode, ref)], "full", 1, outputPath=L.defaultOutputPath("m"), stepsPerEpoch=2, runLength=6,
                  size=32, widthMult=0.15, validationPairs=[(heldOut, heldRef)], valEvery=2)
    assert os.path.exists(os.path.join(tmp_path, "m.best.pt"))
    listed = {m["name"]: m["card"] for m in IFSSNetSegmentationLogic.availableModels() if m["source"] == "user"}
    assert set(listed) == {"m", "m.best"} and listed["m"].startswith("# m\n")
    card = listed["m.best"]
    assert card.startswith("# m.best\n") and "best by validation" in card and "mean Dice" in card, card
    assert "step 2 of 2" in card or "step 1 of 2" in card
    assert "- Dice per segment: GM" in card and "- Training cases: US" in card
    assert out == os.path.join(tmp_path, "m.pt")


def test_the_loss_curve_is_drawn_after_the_scene_was_closed_between_runs(slicer_scene):
    """The Training panel keeps the loss table and chart of its last run and hands them back for the next. After
    File > Close Scene (or deleting them in the Data module) they are no longer in the scene, and the next run's
    loss curve went into the removed nodes: nothing was shown. They are now made anew."""
    import slicer

    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    steps = [{"step": i + 1, "loss": 1.0 / (i + 1), "alpha": 0.5, "beta": 0.5} for i in range(3)]
    table, chart = IFSSNetTrainingLogic.updateLossPlot(steps)
    slicer.mrmlScene.Clear(0)
    assert table.GetScene() is None and chart.GetScene() is None
    table2, chart2 = IFSSNetTrainingLogic.updateLossPlot(steps[:2], table, chart)
    assert table2.GetScene() is slicer.mrmlScene and chart2.GetScene() is slicer.mrmlScene
    assert table2.GetTable().GetNumberOfRows() == 2 and chart2.GetNumberOfPlotSeriesNodes() == 4
    for n in range(chart2.GetNumberOfPlotSeriesNodes()):
        assert chart2.GetNthPlotSeriesNode(n).GetTableNodeID() == table2.GetID()
    slicer.mrmlScene.RemoveNode(chart2)                 # the chart deleted in the Data module, the table kept
    table3, chart3 = IFSSNetTrainingLogic.updateLossPlot(steps, table2, chart2)
    assert table3 is table2 and chart3.GetScene() is slicer.mrmlScene
    assert chart3.GetNthPlotSeriesNode(0).GetTableNodeID() == table2.GetID()


def test_an_empty_reference_segment_says_what_to_do_in_slicer(scene_nodes, nearest):
    """A reference with a segment empty on this volume (a template's SOL not in this sweep): the message's only
    advice for comparing the others was the command line's '--segment GM', which the module has no box for. It now
    says how to in Slicer (a clone of the reference without it, or segmentNames from the Python console)."""
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    from ifssnet.errors import SeedError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": np.zeros_like(truth)}, "Reference")
    with pytest.raises(SeedError) as err:
        IFSSNetComparisonLogic().compare(volumeNode, None, ref, [nearest], "3-seeds")
    text = str(err.value)
    assert "'SOL' is empty" in text and "--segment" not in text and "Segments list" in text and "segmentNames=['GM']" in text
