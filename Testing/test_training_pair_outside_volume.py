"""A Training pair whose annotation was painted on another volume, away from the one it is paired with.

Before: training refused it as "Segment 'GM' of case ... is empty (no voxel on its annotated slices)", which sent
the user to paint a segment that holds paint. Propagate said "painted, but outside the selected volume" since
session 42; the Training Logic now says the same in its own words, before anything is written.
"""
import pytest

from slicer_fixture import slicer_app, slicer_scene  # noqa: F401  (fixtures; skipped without slicer-core)
from slicer_nodes import nodes, scene_nodes  # noqa: F401


def _far_annotation(slicer, volumeNode, truth):
    """An annotation with GM painted on slices 10-12 of a copy of the volume 500 mm away."""
    from slicer_nodes import _paint, far_annotation

    other, seg = far_annotation(slicer, volumeNode, "Annotation of the other sweep")
    _paint(slicer, other, seg, truth, 0, (10, 11, 12), name="GM")
    return other, seg


@pytest.mark.slicer
def test_a_training_pair_painted_outside_its_volume_says_so_and_writes_nothing(nodes, tmp_path):
    from slicer_nodes import _assert_same, _state

    from ifssnet.errors import InputError
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    slicer, volumeNode, segNode, truth = nodes
    other, far = _far_annotation(slicer, volumeNode, truth)
    before = _state(far, other)
    with pytest.raises(InputError, match="'GM' of 'Annotation of the other sweep' is painted, but outside the volume "
                                         f"'{volumeNode.GetName()}'") as err:
        IFSSNetTrainingLogic().train([(volumeNode, far)], mode="fewshot", epochs=1, stepsPerEpoch=1, size=32,
                                     widthMult=0.25, outputPath=str(tmp_path / "m.pt"))
    assert "Pair the segmentation with the volume it was painted on" in err.value.todo
    _assert_same(before, _state(far, other))
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


@pytest.mark.slicer
def test_the_pair_with_the_volume_it_was_painted_on_is_read_and_an_empty_segment_keeps_its_message(nodes):
    from ifssnet.dataset import case_from_arrays, require_painted
    from ifssnet.errors import InputError
    from IFSSNetTrainingLib.logic import segmentationFromNodes

    slicer, volumeNode, segNode, truth = nodes
    other, far = _far_annotation(slicer, volumeNode, truth)
    seg = segmentationFromNodes(other, far)          # its own volume: read as painted
    assert int(seg.get("GM").mask.sum()) == int(truth[[10, 11, 12]].sum()) > 0
    far.GetSegmentation().AddEmptySegment("", "SOL")  # empty everywhere: still "is empty", from the training
    seg = segmentationFromNodes(volumeNode, far, ["SOL"])
    case = case_from_arrays(slicer.util.arrayFromVolume(volumeNode), seg, 32, name="case")
    with pytest.raises(InputError, match="'SOL' of case 'case' is empty"):
        require_painted([case])
