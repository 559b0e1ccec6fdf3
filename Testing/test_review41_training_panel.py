"""The Training module's Train button, on Slicer's real MRML (slicer-core): the scene pairs are exported with
progress and can be cancelled (a large scene takes minutes), a cancelled export leaves nothing of its own, and a
Resume without the run's pairs is refused with what to do instead of an argparse usage line from the process."""
from __future__ import annotations

import os

import numpy as np
import pytest

from slicer_nodes import _reference_segmentation, scene_nodes  # noqa: F401
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

from ifssnet.errors import Cancelled, InputError  # noqa: E402
from ifssnet.progress import CancelToken  # noqa: E402


def _pairs(scene_nodes, n=3):
    slicer, volumeNode, _, truth = scene_nodes
    pairs = []
    for i in range(n):
        volume = volumeNode if i == 0 else slicer.util.addVolumeFromArray(
            slicer.util.arrayFromVolume(volumeNode).copy(), np.eye(4), f"US{i}")
        pairs.append((volume, _reference_segmentation(slicer, volume, {"GM": truth}, f"Ref{i}")))
    return pairs


def test_export_reports_each_pair(scene_nodes, tmp_path):
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    seen = []
    files = IFSSNetTrainingLogic.exportPairs(_pairs(scene_nodes), str(tmp_path / "work"),
                                             progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert len(files) == 3 and all(os.path.exists(v) and os.path.exists(a) for v, a in files)
    assert [(d, t) for _, d, t in seen] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert {s for s, _, _ in seen} == {"exporting pairs"}


def test_a_cancelled_export_raises_and_leaves_no_folder_of_its_own(scene_nodes, tmp_path):
    """Cancel after the first pair: Cancelled, and the pair folders it wrote are gone; a file the folder held
    before is kept."""
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    token = CancelToken()

    def progress(stage, done, total):
        if done == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        IFSSNetTrainingLogic.exportPairs(_pairs(scene_nodes), str(work), progress=progress, cancel=token)
    assert sorted(os.listdir(work)) == ["keep.txt"] and (work / "keep.txt").read_text() == "mine"


def test_resume_without_the_pairs_is_refused_with_what_to_do(tmp_path):
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    with pytest.raises(InputError, match="pairs"):
        IFSSNetTrainingLogic.trainingCommand([], "full", 1, str(tmp_path / "m.pt"), str(tmp_path / "log"),
                                             resume=str(tmp_path / "m.ckpt.pt"))
    with pytest.raises(InputError, match="pairs"):
        IFSSNetTrainingLogic.trainingCommand([], "full", 1, str(tmp_path / "m.pt"), str(tmp_path / "log"))


def test_the_status_after_cancelling_a_resumed_run_says_resume_goes_on(slicer_app, tmp_path):
    """A resumed run cancelled before its next checkpoint: the checkpoint is its own run's (older than the start),
    not 'an earlier run of this name', and a best model it found since is named as kept for the next Resume."""
    import time

    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.model import IFSSNetConfig
    from ifssnet.model.checkpoint import save_checkpoint
    from ifssnet.model import IFSSNet
    from ifssnet.train import TrainConfig

    from dataclasses import asdict

    out = str(tmp_path / "m.pt")
    config = IFSSNetConfig(size=32, width_mult=0.25)
    save_checkpoint(tmp_path / "m.ckpt.pt", IFSSNet(config), config,
                    {"training": {"step": 2, "config": asdict(TrainConfig(epochs=1, steps_per_epoch=4))}})
    started = time.time() + 1
    text = IFSSNetTrainingLogic.cancelledText(out, started, resumed=True)
    assert text.startswith("Training cancelled before its next checkpoint") and "earlier run" not in text
    assert "best model" not in text
    best = tmp_path / "m.ckpt.best.pt"
    best.write_bytes(b"a best found after the checkpoint")
    os.utime(best, (started + 5, started + 5))
    text = IFSSNetTrainingLogic.cancelledText(out, started, resumed=True)
    assert "(m.ckpt.best.pt); Resume goes on from it" in text
    assert "Resume would continue an earlier run" in IFSSNetTrainingLogic.cancelledText(out, started)


def test_the_card_of_an_earlier_runs_best_goes_with_it(slicer_app, tmp_path):
    """A run without validation removes an earlier <stem>.best.pt (ifssnet.train); the model card step removes its
    card, which the effect would show for a file that is not there."""
    from IFSSNetTrainingLib.logic import _writeBestCard

    card = tmp_path / "m.best.md"
    card.write_text("# m.best\n")
    assert _writeBestCard(str(tmp_path / "m.pt"), None) is None
    assert not card.exists()
