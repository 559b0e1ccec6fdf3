"""Review 41b (Comparison module and the learned baselines' inference): the Comparison Logic on Slicer's real MRML
(slicer-core), headless, and PG-Net / 3-D U-Net probabilities on non-finite network outputs."""
from __future__ import annotations

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (nearest, slicer_test, _arrays_module, _assert_same, _ijk_to_ras, _nearest_seed_method, _paint,  # noqa: F401
                          _reference_segmentation, _state, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)

def _cropped(slicer, volumeNode, first, name="US cropped"):
    """The volume without its first ``first`` slices across k, as Crop Volume leaves it."""
    voxels = slicer.util.arrayFromVolume(volumeNode)[first:].copy()
    m = _ijk_to_ras()
    m[:3, 3] = m[:3, :3] @ np.array([0.0, 0.0, float(first)]) + m[:3, 3]
    return slicer.util.addVolumeFromArray(voxels, m, name)


@slicer_test
def test_compare_on_a_cropped_volume_reads_the_seeds_as_propagate_does(scene_nodes, nearest):
    """The seed tags number their slices on the grid IFSSNet.SeedGrid records (c88c953). Propagate maps them onto a
    cropped volume's slices; the Comparison read them unmapped: painted 6, 10, 15 and the mark at 18 became seeds
    6, 10, 15, 18 of the crop, where the paint lies on 3, 7, 12 (empty slices taken for seeds)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic
    from IFSSNetSegmentationLib import logic

    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    sid = segNode.GetSegmentation().GetSegmentIdBySegmentName("GM")
    L = logic.IFSSNetSegmentationLogic()
    L.markNoMuscle(volumeNode, segNode, sid, 18)
    crop = _cropped(slicer, volumeNode, 3)
    ref = _reference_segmentation(slicer, crop, {"GM": truth[3:]}, "Reference")
    expected = L.prepare(crop, segNode, [sid], method=_nearest_seed_method).segments[0].seedSlices
    assert expected == (3, 7, 12, 15)
    job = IFSSNetComparisonLogic().prepare(crop, segNode, ref, [nearest], "seeds")
    assert job["seedJobs"][0].seedSlices == expected
    table = IFSSNetComparisonLogic().compare(crop, segNode, ref, [nearest], "seeds")
    from ifssnet.compare import COLUMNS

    assert float(table.GetCellText(0, COLUMNS.index("dice"))) > 0.6


# ---------------------------------------------------------------------- learned baselines: non-finite outputs


class _OverflowingPGNet:
    """Built lazily (torch): a PG-Net whose step copies the previous mask with logits of +-inf (as an overflow
    leaves them) and NaN on a corner of every slice. Like the real network (GroupNorm mixes every pixel), a NaN
    anywhere in its previous-mask input makes its whole output NaN."""

    @staticmethod
    def make():
        import torch

        from ifssnet.baselines.pgnet import PGNet, PGNetConfig

        class Net(PGNet):
            def step(self, ref_feat, image, prev_mask):
                z = torch.where(prev_mask > 0.5, torch.tensor(float("inf")), torch.tensor(-float("inf")))
                z = z + 0 * prev_mask.mean()                 # NaN in, NaN everywhere (GroupNorm's mean)
                z[..., :2, :2] = float("nan")
                return z

        return Net(PGNetConfig(size=32, width=4, stages=3)).eval()


def test_pgnet_keeps_the_muscle_past_a_non_finite_network_output():
    """sigmoid(NaN) is NaN, and PG-Net feeds each slice's probabilities back as the next slice's mask input: one NaN
    logit (a corner) made the whole next slice NaN in the real network, so every slice after the first of each chain
    came out as background (the muscle lost from one slice past the seeds). NaN logits now go to 0 before the
    sigmoid (an unsure 0.5), as IFSS-Net's (bc2e01b)."""
    from ifssnet.baselines.pgnet import pgnet
    from ifssnet.seeds import cut_seeds

    K = 16
    m = np.zeros((K, 32, 32), np.uint8)
    m[:, 10:26, 8:24] = 1
    vol = (np.random.default_rng(0).random((K, 32, 32)) * 100).astype(np.uint8)
    out = pgnet(vol, cut_seeds(m, [7]), (1, 1, 1), model=_OverflowingPGNet.make(), device="cpu")
    np.testing.assert_array_equal(out, m)


def test_unet3d_picks_its_muscle_though_another_channel_has_a_nan():
    """The 3-D U-Net picks the output channel that best matches the seeds (choose_channel: argmax of a Dice). A NaN
    logit in another channel on a painted slice made that channel's Dice NaN, and argmax takes NaN for the largest:
    the wrong muscle was segmented (nothing, here, past the painted slices). NaN logits now go to 0 first."""
    import torch

    from ifssnet.baselines.unet3d import UNet3D, UNet3DConfig, unet3d
    from ifssnet.seeds import cut_seeds

    class Net(UNet3D):
        def forward(self, x):                  # channel GM: the bright voxels; GL: nothing, NaN on a corner
            gl = torch.full_like(x, -float("inf"))
            gl[..., :2, :2] = float("nan")
            return torch.cat([8.0 * torch.sign(x - 0.5), gl], 1)

    K = 16
    m = np.zeros((K, 32, 32), np.uint8)
    m[:, 10:26, 8:24] = 1
    vol = np.where(m > 0, 200, 20).astype(np.uint8)
    net = Net(UNet3DConfig(size=32, segments=("GM", "GL"), width=4, patch=(8, 32, 32))).eval()
    out = unet3d(vol, cut_seeds(m, [3, 8, 12]), (1, 1, 1), model=net, device="cpu")
    np.testing.assert_array_equal(out, m)


def _nodes(slicer):
    return [slicer.mrmlScene.GetNthNode(n).GetID() for n in range(slicer.mrmlScene.GetNumberOfNodes())]


@slicer_test
@pytest.mark.parametrize("second", ["GM", "gm"])
def test_a_segment_name_used_twice_is_refused_not_compared_as_the_first(scene_nodes, nearest, second):
    """Slicer allows two segments of one name, and finds a segment by its name ignoring case. The Comparison took
    the first for both: a reference with 'GM' twice (or 'GM' and 'gm') gave one row for the first, or two rows
    scoring the first twice, the second segment never compared, without a word; the same for the seeds. Refused
    now, naming the segment and the node, as the command line does (0bba5ac), and nothing is added to the scene."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.errors import InputError
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    arrays = _arrays_module()
    other = np.zeros_like(truth)
    other[:, :6, :8] = 1
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    sid = ref.GetSegmentation().AddEmptySegment("", second)
    arrays.writeSegment(ref, sid, other, arrays.referenceGeometry(volumeNode, ref))
    nodes = _nodes(slicer)
    L = IFSSNetComparisonLogic()
    with pytest.raises(InputError, match="'Reference' has more than one segment named 'GM'.*own name"):
        L.compare(volumeNode, None, ref, [nearest], "3-seeds")
    with pytest.raises(InputError, match="'Reference' has more than one segment named 'GM'"):
        L.compare(volumeNode, None, ref, [nearest], "3-seeds", segmentNames=["GM"])
    assert _nodes(slicer) == nodes
    # the seeds likewise, for a name compared
    single = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Single")
    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    _paint(slicer, volumeNode, segNode, truth, 0, (7, 11, 16), name=second)
    nodes = _nodes(slicer)
    with pytest.raises(InputError, match="'Seg' has more than one segment named 'GM'"):
        L.compare(volumeNode, segNode, single, [nearest], "seeds")
    assert _nodes(slicer) == nodes


@slicer_test
def test_the_modules_self_test_reads_the_dice_column(slicer_scene, monkeypatch):
    """The module's self-test (Reload and Test in Slicer) read column 2 of the table as the Dice: that is the
    protocol ('3-seeds'), so float() failed and the self-test could never pass. Run here with the GUI base classes
    stubbed (slicer-core has none), on a smaller phantom, Fill between slices only."""
    import importlib
    import sys
    import types
    import unittest

    pytest.importorskip("itk")
    import slicer

    import ifssnet.phantom as phantom
    from IFSSNetSegmentationLib import logic as segmentationLogic

    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for base in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic"):
        setattr(slm, base, type(base, (), {"__init__": lambda self, *a, **k: None}))
    slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,),
                                          {"delayDisplay": lambda self, *a, **k: None})
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.Choice = lambda *a, **k: None
    pnw.parameterNodeWrapper = lambda cls: cls
    util = types.ModuleType("slicer.util")
    util.__dict__.update(slicer.util.__dict__)
    util.VTKObservationMixin = type("VTKObservationMixin", (), {})
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", pnw)
    monkeypatch.setitem(sys.modules, "slicer.util", util)
    monkeypatch.delitem(sys.modules, "IFSSNetComparison", raising=False)
    make = phantom.make_phantom
    monkeypatch.setattr(phantom, "make_phantom", lambda seed, shape: make(seed=seed, shape=(40, 48, 48)))
    monkeypatch.setattr(segmentationLogic.IFSSNetSegmentationLogic, "torchAvailable", staticmethod(lambda: False))
    module = importlib.import_module("IFSSNetComparison")
    module.IFSSNetComparisonTest("test_CompareOnPhantom").test_CompareOnPhantom()


@slicer_test
def test_a_volume_that_changed_size_during_the_run_is_refused_with_what_to_do(scene_nodes, nearest):
    """Slicer stays usable while compute runs on the worker thread. A volume cropped or replaced meanwhile (another
    size) made publish fail on the first result segmentation with 'A mask of ... does not fit the grid ... Report
    this as a bug.'; it now says what happened and to compare again, as Propagate does, and adds nothing."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.errors import InputError
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    L = IFSSNetComparisonLogic()
    job = L.compute(L.prepare(volumeNode, segNode, ref, [nearest], "seeds"))
    slicer.util.updateVolumeFromArray(volumeNode, slicer.util.arrayFromVolume(volumeNode)[2:].copy())
    nodes = _nodes(slicer)
    with pytest.raises(InputError, match=r"'US' changed size during the run \(22 x 26 x 30 voxels, now 20 x 26 x 30\)"
                                         r".*Nothing was added.*Compare again"):
        L.publish(job)
    assert _nodes(slicer) == nodes


@slicer_test
def test_publish_that_fails_midway_leaves_no_display_node_behind(scene_nodes, nearest, monkeypatch):
    """publish is all or nothing: a failure while writing the second method's result segmentation (out of memory)
    removed the nodes it had made, but not the display node of each result segmentation made so far
    (SegmentationDisplay_1, _2 were left in the scene, orphans)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from ifssnet.baselines import registry
    from ifssnet.errors import ResourceError
    from IFSSNetComparisonLib import logic as comparison

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    registry.register("test-nearest-2", _nearest_seed_method, "Nearest seed slice, again")
    try:
        L = comparison.IFSSNetComparisonLogic()
        job = L.compute(L.prepare(volumeNode, segNode, ref, [nearest, "test-nearest-2"], "seeds"))
    finally:
        registry.unregister("test-nearest-2")
    nodes, before, write = _nodes(slicer), _state(segNode, volumeNode), comparison.mrmlArrays.writeSegment

    def failSecond(*args, **kwargs):
        if failSecond.calls == 1:
            raise MemoryError()
        failSecond.calls += 1
        return write(*args, **kwargs)

    failSecond.calls = 0
    monkeypatch.setattr(comparison.mrmlArrays, "writeSegment", failSecond)
    with pytest.raises(ResourceError):
        L.publish(job)
    assert [slicer.mrmlScene.GetNodeByID(n).GetName() for n in _nodes(slicer) if n not in nodes] == []
    _assert_same(before, _state(segNode, volumeNode))


@slicer_test
def test_the_results_masks_are_not_kept_in_memory_after_they_are_written(scene_nodes, nearest):
    """lastResult['rows'] kept every method's mask of every muscle (a volume-sized array each: 12 x 367 MB for 4
    methods and 3 muscles of a 1400 x 512 x 512 sweep) for as long as the module lives, after they had been written
    into the result segmentations; a second comparison then read its volume beside them. They are dropped once
    written; the rows keep their scores."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    L = IFSSNetComparisonLogic()
    L.compare(volumeNode, segNode, ref, [nearest], "seeds")
    rows = L.lastResult["rows"]
    assert len(rows) == 1 and rows[0]["dice"] > 0.6
    assert not any(isinstance(v, np.ndarray) and v.size >= truth.size for r in rows for v in r.values())



def test_the_worker_thread_lets_go_of_a_finished_job():
    """BackgroundWorker's thread kept the last task's arguments (the job: the volume, the references, every method's
    masks) in its loop's variables while it waited for the next task, so a finished comparison or propagation held
    them in memory until the next run. It lets go once the task is done."""
    import gc
    import time
    import weakref

    from IFSSNetSegmentationLib.worker import BackgroundWorker

    class Job:
        pass

    worker, job = BackgroundWorker(), Job()
    alive = weakref.ref(job)
    try:
        worker.startJob(lambda j, progress=None, cancel=None: 1, job)
        del job
        for _ in range(500):
            done = worker.poll()
            if done:
                break
            time.sleep(0.01)
        assert done and done[0][1:] == (1, None)
        del done
        for _ in range(100):     # the thread lets go as it finishes the task
            gc.collect()
            if alive() is None:
                break
            time.sleep(0.01)
        assert alive() is None
    finally:
        worker.stop()
