"""The Training module's Logic refuses a run too large for memory before it reads a case (slicer-core, headless):
the message of ``ifssnet train``, nothing written, an earlier model and its card byte for byte as they were."""
from __future__ import annotations

import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import _ijk_to_ras, _reference_segmentation, scene_nodes  # noqa: F401
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

pytestmark = [pytest.mark.slicer,
              pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
              pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]

OPTIONS = dict(stepsPerEpoch=1, runLength=6, size=32, widthMult=0.15)


def test_a_run_too_large_is_refused_before_any_case_is_read(scene_nodes, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    import ifssnet.dataset
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet import memory
    from ifssnet.errors import ResourceError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    out, card = tmp_path / "m.pt", tmp_path / "m.md"
    out.write_bytes(b"an earlier model")
    card.write_text("# m\n")
    read = []
    real = ifssnet.dataset.case_from_arrays
    monkeypatch.setattr(ifssnet.dataset, "case_from_arrays", lambda *a, **k: read.append(a) or real(*a, **k))
    monkeypatch.setenv(memory.ENV_VAR, "20M")
    L = IFSSNetTrainingLogic()
    with pytest.raises(ResourceError, match="This training run needs about") as err:
        L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), **OPTIONS)
    assert "0.02 GB are free" in str(err.value) and "IFSSNET_AVAILABLE_MEMORY" in err.value.todo
    assert read == [] and L.steps == []
    assert out.read_bytes() == b"an earlier model" and card.read_text() == "# m\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.md", "m.pt"]
    # Before a training process starts (the module's worker), the same check from the nodes alone.
    with pytest.raises(ResourceError, match="This training run needs about"):
        L.checkMemory([(volumeNode, ref)], "full", **{k: v for k, v in OPTIONS.items() if k != "stepsPerEpoch"})

    monkeypatch.setenv(memory.ENV_VAR, "64G")
    small = L.checkMemory([(volumeNode, ref)], "full", runLength=6, size=32, widthMult=0.15)
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "held")
    # Two cases need more, and validation node pairs held in memory for the whole run count too.
    assert L.checkMemory([(volumeNode, ref), (heldOut, ref)], "full", runLength=6, size=32, widthMult=0.15) > small
    assert L.checkMemory([(volumeNode, ref)], "full", runLength=6, size=32, widthMult=0.15,
                         validationPairs=[(heldOut, ref)]) > small
    L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), **OPTIONS)
    assert len(read) == 1 and len(L.steps) == 1 and out.read_bytes() != b"an earlier model"
