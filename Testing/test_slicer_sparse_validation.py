"""The Training module's held-out pair painted on a few groups of slices (Slicer's real MRML, slicer-core): a
few-shot user has no fully annotated sweep to hold out, so the pair is scored by its held-out painted groups
(ifssnet.held_out_groups) instead of being refused as sparse, and the segmentation is left as painted."""
from __future__ import annotations

import os

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import _ijk_to_ras, _reference_segmentation, scene_nodes  # noqa: F401
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


@pytest.mark.parametrize("tagged", [True, False])
def test_a_sparsely_painted_held_out_pair_validates_a_fewshot_run(scene_nodes, tmp_path, tagged):
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.held_out_groups import PROTOCOL
    from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices

    rows = np.flatnonzero(truth.reshape(truth.shape[0], -1).any(axis=1))
    painted = [int(k) for k in (rows[0] + 1, rows[0] + 2, rows[0] + 3, rows[-1] - 2, rows[-1] - 1)]
    sparse = np.zeros_like(truth)
    sparse[painted] = truth[painted]
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(),
                                             "US held out")
    node = _reference_segmentation(slicer, heldOut, {"GM": sparse}, "Held out, painted")
    if tagged:
        node.GetSegmentation().GetNthSegment(0).SetTag(ANNOTATED_TAG, AnnotatedSlices(0, tuple(painted)).to_tag())
    sid = node.GetSegmentation().GetNthSegmentID(0)
    before = slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, heldOut).copy()

    L = IFSSNetTrainingLogic()
    assert L.validator([(heldOut, node)]).description()["protocols"] == ["3-seeds", PROTOCOL]
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Training reference")
    path = L.train([(volumeNode, ref)], "full", 1, outputPath=str(tmp_path / "models" / "m.pt"), stepsPerEpoch=2,
                   runLength=6, size=32, widthMult=0.15, validationPairs=[(heldOut, node)], valEvery=1)
    assert os.path.exists(path) and (tmp_path / "models" / "m.best.pt").exists()
    assert [v["step"] for v in L.validations] == [1, 2]
    assert all(0.0 <= v["val_dice"] <= 1.0 and set(v["val_per_segment"]) == {"GM"} for v in L.validations)
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, heldOut), before)


def test_the_status_line_says_when_the_last_validation_collapsed(slicer_app):  # noqa: F811
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    log = [{"step": 25, "val_dice": 0.25}, {"step": 50, "val_dice": 0.0}]
    verdict = IFSSNetTrainingLogic.validationVerdict(log, "/models/mine.pt")
    assert "(Dice 0.250 at step 25) is saved next to it as mine.best." in verdict
    assert "fell to 0.000 at step 50" in verdict and "Use mine.best (step 25)" in verdict
    assert "fell to" not in IFSSNetTrainingLogic.validationVerdict(log[:1] + [{"step": 50, "val_dice": 0.2}])
