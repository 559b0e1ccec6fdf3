"""The IFSS-Net Training module's Logic on Slicer's real MRML (slicer-core), headless: the loss plot,
the training command, the base model's advice, and a tiny training run from scene nodes."""
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

from ifssnet.errors import Cancelled, InputError  # noqa: E402
from ifssnet.progress import CancelToken  # noqa: E402


def _earlier_model(tmp_path):
    """``m.pt`` and ``m.md`` of an earlier run, which a failed or cancelled run must leave byte for byte."""
    out, card = tmp_path / "m.pt", tmp_path / "m.md"
    out.write_bytes(b"an earlier model")
    card.write_text("# m\n")
    return out, card


def _earlier_model_kept(out, card) -> bool:
    return out.read_bytes() == b"an earlier model" and card.read_text() == "# m\n"


def test_training_loss_plot_and_command(slicer_scene, tmp_path):
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    steps = [{"step": i + 1, "loss": 1.0 / (i + 1), "alpha": 0.5 + i * 0.01, "beta": 0.5 - i * 0.01} for i in range(5)]
    table, chart = IFSSNetTrainingLogic.updateLossPlot(steps)
    assert table.GetNumberOfRows() == 5 and chart.GetNumberOfPlotSeriesNodes() == 4
    colors = {tuple(round(c, 3) for c in chart.GetNthPlotSeriesNode(n).GetColor()) for n in range(4)}
    assert len(colors) == 4 and (0.0, 0.0, 0.0) not in colors     # each series its own colour (they were all black)
    IFSSNetTrainingLogic.updateLossPlot(steps + steps[:1], table, chart)
    assert table.GetNumberOfRows() == 6
    # Validation records (after step 2 and step 4) are no rows of their own: they set val_dice from their step on.
    log = steps[:2] + [{"step": 2, "val_dice": 0.4}] + steps[2:4] + [{"step": 4, "val_dice": 0.6}] + steps[4:]
    IFSSNetTrainingLogic.updateLossPlot(log, table, chart)
    t = table.GetTable()
    column = [t.GetValue(r, 4).ToDouble() for r in range(t.GetNumberOfRows())]
    assert t.GetNumberOfRows() == 5 and t.GetColumnName(4) == "val_dice"
    assert np.isnan(column[0]) and column[1:] == [0.4, 0.4, 0.6, 0.6]
    assert IFSSNetTrainingLogic.stepRecords(log) == steps
    assert [v["val_dice"] for v in IFSSNetTrainingLogic.validationRecords(log)] == [0.4, 0.6]
    assert IFSSNetTrainingLogic.validationVerdict(steps) == ""
    assert "(Dice 0.600 at step 4)" in IFSSNetTrainingLogic.validationVerdict(log)
    # A fine-tune's step 0 is its starting model: where it stays the best, the user is told to keep it.
    start = [{"step": 0, "val_dice": 0.7}]
    verdict = IFSSNetTrainingLogic.validationVerdict(start + log, "my-ifssnet")
    assert verdict.startswith("No training step beat the starting model") and "my-ifssnet.best is the starting" in verdict
    start = [{"step": 0, "val_dice": 0.6}]   # a tie keeps the earlier network, as MODEL.best.pt does
    assert "(Dice 0.600)" in IFSSNetTrainingLogic.validationVerdict(start + log)
    start = [{"step": 0, "val_dice": 0.5}]
    assert "at step 4; the starting model 0.500)" in IFSSNetTrainingLogic.validationVerdict(start + log)
    start = [{"step": 0, "val_dice": float("nan")}]   # a failed validation loses to any score
    assert "(Dice 0.600 at step 4; the starting model nan)" in IFSSNetTrainingLogic.validationVerdict(start + log)
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(__import__("json").dumps(s) for s in steps) + "\n" + '{"step": 6, "lo')
    records, pos = IFSSNetTrainingLogic.readStepLog(str(log))
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "fewshot", 2, "out.pt", str(log),
                                               baseModel="base.pt")
    assert cmd[1:4] == ["-m", "ifssnet.cli", "train"] and "v.nrrd:a.seg.nrrd" in cmd and "--from" in cmd
    assert "--val" not in cmd
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "full", 2, "out.pt", str(log),
                                               validationPairs=[("w.nrrd", "b.seg.nrrd")], valEvery=25)
    assert cmd[cmd.index("--val"):][:4] == ["--val", "w.nrrd:b.seg.nrrd", "--val-every", "25"]
    assert "--val-protocol" not in cmd                  # the CLI's default, 3-seeds
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "full", 2, "out.pt", str(log),
                                               validationPairs=[("w.nrrd", "b.seg.nrrd")], valProtocol="both")
    assert cmd[cmd.index("--val-protocol") + 1] == "both"
    from ifssnet.cli import build_parser
    assert build_parser().parse_args(cmd[3:]).val_protocol == "both"
    assert "--fill-gap" not in cmd
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "fewshot", 2, "out.pt", str(log), fillGap=12)
    assert build_parser().parse_args(cmd[3:]).fill_gap == 12
    assert not build_parser().parse_args(cmd[3:]).empty_past_ends
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "fewshot", 2, "out.pt", str(log),
                                               emptyPastEnds=True)
    assert build_parser().parse_args(cmd[3:]).empty_past_ends
    assert build_parser().parse_args(cmd[3:]).tversky_beta is None          # the base model's beta
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "fewshot", 2, "out.pt", str(log),
                                               tverskyBeta=0.5)
    assert build_parser().parse_args(cmd[3:]).tversky_beta == 0.5
    assert build_parser().parse_args(cmd[3:]).lr is None          # the command line's default (train_recipe.default_lr)
    cmd = IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "full", 2, "out.pt", str(log),
                                               learningRate=1e-5)
    assert build_parser().parse_args(cmd[3:]).lr == 1e-5
    with pytest.raises(InputError, match="Unknown validation protocol"):
        IFSSNetTrainingLogic.trainingCommand([("v.nrrd", "a.seg.nrrd")], "full", 2, "out.pt", str(log),
                                             validationPairs=[("w.nrrd", "b.seg.nrrd")], valProtocol="3 seeds")


def test_training_base_model_advice(slicer_scene, tmp_path):
    """The panel says, under the base model, when fine-tuning from it will hardly train its deep parts."""
    torch = pytest.importorskip("torch")
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import IFSSNetError
    from ifssnet.model import IFSSNet, IFSSNetConfig, save_checkpoint

    torch.manual_seed(0)
    cfg = IFSSNetConfig(size=32, width_mult=0.25)
    dead = IFSSNet(cfg)
    with torch.no_grad():
        for p in list(dead.fusion.parameters()) + list(dead.lstm.parameters()) + list(dead.decoder.parameters()):
            p.mul_(1e-25)                       # as coupled decay left the deep path of earlier weights
    save_checkpoint(tmp_path / "dead.pt", dead, cfg)
    advice = IFSSNetTrainingLogic.baseModelAdvice(str(tmp_path / "dead.pt"))
    assert "dead.pt" in advice and "start a new network" in advice
    assert IFSSNetTrainingLogic.baseModelAdvice(None) == ""
    save_checkpoint(tmp_path / "alive.pt", IFSSNet(cfg), cfg)
    assert IFSSNetTrainingLogic.baseModelAdvice(str(tmp_path / "alive.pt")) == ""
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    with pytest.raises(IFSSNetError):
        IFSSNetTrainingLogic.baseModelAdvice(str(tmp_path / "broken.pt"))


def test_training_from_scene_pairs(scene_nodes, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("ifssnet.train")
    pytest.importorskip("ifssnet.loss")
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    out = tmp_path / "models" / "tiny.pt"
    token = CancelToken()
    token.cancel()
    L = IFSSNetTrainingLogic()
    with pytest.raises(Cancelled):
        L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), cancel=token, stepsPerEpoch=1, runLength=6,
                size=32, widthMult=0.15)
    assert not out.exists()
    seen = []
    path = L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), stepsPerEpoch=2, runLength=6, size=32,
                   widthMult=0.15, onStep=seen.append)
    assert os.path.exists(path) and len(seen) == 2 and "loss" in seen[0]
    assert (tmp_path / "models" / "tiny.md").read_text().startswith("# tiny")

    # A held-out volume node: scored as training goes; the best network is kept next to the model.
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(),
                                             _ijk_to_ras(), "US held out")
    with pytest.raises(InputError, match="also a training volume"):
        L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), stepsPerEpoch=2, runLength=6, size=32,
                widthMult=0.15, validationPairs=[(volumeNode, ref)])
    path = L.train([(volumeNode, ref)], "full", 1, outputPath=str(tmp_path / "models" / "val.pt"), stepsPerEpoch=2,
                   runLength=6, size=32, widthMult=0.15, validationPairs=[(heldOut, ref)], valEvery=1)
    assert [v["step"] for v in L.validations] == [1, 2] and 0.0 <= L.validations[0]["val_dice"] <= 1.0
    assert set(L.validations[0]["val_per_segment"]) == {"GM"}
    assert "val_per_protocol" not in L.validations[0]
    assert (tmp_path / "models" / "val.best.pt").exists()
    # A fine-tune scores its base model first (step 0), so its .best is never below where it started.
    L.train([(volumeNode, ref)], "full", 1, baseModel=path, outputPath=str(tmp_path / "models" / "ft.pt"),
            stepsPerEpoch=1, runLength=6, validationPairs=[(heldOut, ref)], valEvery=1)
    assert [v["step"] for v in L.validations] == [0, 1]
    # Under both protocols each validation reports each protocol's means, and the mean runs over both.
    L.train([(volumeNode, ref)], "full", 1, outputPath=str(tmp_path / "models" / "both.pt"), stepsPerEpoch=1,
            runLength=6, size=32, widthMult=0.15, validationPairs=[(heldOut, ref)], valEvery=1, valProtocol="both")
    (record,) = L.validations
    assert set(record["val_per_protocol"]) == {"3-seeds", "paper"}
    assert record["val_dice"] == pytest.approx(np.mean([d for d, _ in record["val_per_protocol"].values()]))
    with pytest.raises(InputError, match="Unknown validation protocol"):
        L.validator([(heldOut, ref)], protocol="papers")


@pytest.mark.parametrize("tagged", [True, False])
def test_fewshot_training_on_single_painted_slices_fills_their_gaps(scene_nodes, tmp_path, tagged):
    """Slices painted one by one (tagged as the effect tags its seeds, or just painted and never propagated:
    the same, since paint on slices of one view with gaps between counts as painted on those slices) train only
    with fillGap, which labels the slices between them; the refusal and the run leave the segmentation as painted."""
    pytest.importorskip("torch")
    pytest.importorskip("itk")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices

    painted = [5, 9, 13, 17]
    sparse = np.zeros_like(truth)
    sparse[painted] = truth[painted]
    node = _reference_segmentation(slicer, volumeNode, {"GM": sparse}, "Painted")
    segment = node.GetSegmentation().GetNthSegment(0)
    if tagged:
        segment.SetTag(ANNOTATED_TAG, AnnotatedSlices(0, tuple(painted)).to_tag())
    before = slicer.util.arrayFromSegmentBinaryLabelmap(node, node.GetSegmentation().GetNthSegmentID(0), volumeNode)
    options = dict(stepsPerEpoch=1, runLength=6, size=32, widthMult=0.15)
    L = IFSSNetTrainingLogic()
    with pytest.raises(InputError, match="consecutive annotated slices"):
        L.train([(volumeNode, node)], "fewshot", 1, outputPath=str(tmp_path / "off.pt"), **options)
    assert not (tmp_path / "off.pt").exists()
    with pytest.raises(InputError, match="annotated on 4 of .* --mode fewshot"):   # full would train them as empty
        L.train([(volumeNode, node)], "full", 1, outputPath=str(tmp_path / "full.pt"), **options)
    assert not (tmp_path / "full.pt").exists()
    path = L.train([(volumeNode, node)], "fewshot", 1, outputPath=str(tmp_path / "fill.pt"), fillGap=4,
                   emptyPastEnds=True, **options)
    assert os.path.exists(path) and len(L.steps) == 1
    from ifssnet.model.checkpoint import load_checkpoint
    assert load_checkpoint(path)[2]["training"]["config"]["empty_past_ends"] is True
    after = slicer.util.arrayFromSegmentBinaryLabelmap(node, node.GetSegmentation().GetNthSegmentID(0), volumeNode)
    assert np.array_equal(before, after)
    from IFSSNetSegmentationLib.logic import segmentTag
    assert bool(segmentTag(segment, ANNOTATED_TAG)) == tagged        # training reads the paint, and tags nothing


def test_a_fine_tune_in_process_takes_the_base_models_recipe(scene_nodes, tmp_path):
    """Slicer's Python console fine-tunes (Logic.train with a base model) as ``ifssnet train --from`` does: with
    the base model's runs and loss, not TrainConfig's defaults (runs of 32, the learned Tversky loss); a given
    run length or beta wins, and a new network takes the defaults."""
    pytest.importorskip("torch")
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic, segmentationFromNodes

    from ifssnet.dataset import case_from_arrays
    from ifssnet.model import IFSSNetConfig
    from ifssnet.model.checkpoint import load_checkpoint
    from ifssnet.train import TrainConfig, train

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    case = case_from_arrays(slicer.util.arrayFromVolume(volumeNode).astype(np.float32),
                            segmentationFromNodes(volumeNode, ref), 32, None, "base")
    base = train([case], tmp_path / "base.pt", model_config=IFSSNetConfig(size=32, width_mult=0.15),
                 cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=6, batch=2, bce_weight=1.0,
                                 learn_tversky=False, feedback_grad=True, tversky_beta=0.6, end_weight=2.0))
    L = IFSSNetTrainingLogic()

    def config(path):
        c = load_checkpoint(path)[2]["training"]["config"]
        return c["run_length"], c["batch"], c["bce_weight"], c["learn_tversky"], c["feedback_grad"], \
            c["tversky_beta"], c["end_weight"]

    path = L.train([(volumeNode, ref)], "full", 1, baseModel=str(base), outputPath=str(tmp_path / "ft.pt"),
                   stepsPerEpoch=1)
    assert config(path) == (6, 2, 1.0, False, True, 0.6, 2.0)
    assert L.inheritedRecipe["batch"] == 2 and "lr" not in L.inheritedRecipe
    assert load_checkpoint(path)[2]["training"]["config"]["lr"] == 1e-5     # a fine-tune's default rate, as the CLI
    card = (tmp_path / "ft.md").read_text()                      # the model card says how it was trained
    assert "--run-length 6 --batch 2 --bce-weight 1.0 --fixed-tversky --feedback-grad --end-weight 2.0 " \
           "--tversky-beta 0.6" in card
    assert "- Learning rate: 1e-05\n" in card                       # one epoch: no final rate
    path = L.train([(volumeNode, ref)], "full", 1, baseModel=str(base), outputPath=str(tmp_path / "ft2.pt"),
                   stepsPerEpoch=1, runLength=4, tverskyBeta=0.5)
    assert config(path) == (4, 2, 1.0, False, True, 0.5, 2.0)
    assert "run_length" not in L.inheritedRecipe and "tversky_beta" not in L.inheritedRecipe
    path = L.train([(volumeNode, ref)], "fewshot", 1, baseModel=str(base), outputPath=str(tmp_path / "fs.pt"),
                   stepsPerEpoch=1, learningRate=3e-5)
    assert config(path) == (6, 2, 1.0, False, True, 0.5, 2.0)     # few-shot: beta 0.5, not the base model's
    rates = load_checkpoint(path)[2]["training"]["config"]
    assert (rates["lr"], rates["lr_final"]) == (3e-5, 3e-6)       # a given rate, and a tenth of it, as --lr
    path = L.train([(volumeNode, ref)], "full", 1, outputPath=str(tmp_path / "new.pt"), stepsPerEpoch=1,
                   runLength=6, size=32, widthMult=0.15)
    default = TrainConfig()
    assert config(path) == (6, default.batch, default.bce_weight, default.learn_tversky, default.feedback_grad,
                            default.tversky_beta, default.end_weight)
    assert L.inheritedRecipe == {}
    assert load_checkpoint(path)[2]["training"]["config"]["lr"] == 1e-4     # a new network: the paper's
    assert "--run-length 6\n" in (tmp_path / "new.md").read_text()    # only what differs from the defaults


# ---- bad input: a clear message, and the segmentation and files as they were --------------------------------

OPTIONS = dict(stepsPerEpoch=1, runLength=6, size=32, widthMult=0.15)


def _voxels(slicer, segNode, volumeNode):
    """Every segment's name, voxels and painted-slice tag."""
    from IFSSNetSegmentationLib.logic import segmentTag

    from ifssnet.io import ANNOTATED_TAG

    seg = segNode.GetSegmentation()
    return {sid: (seg.GetSegment(sid).GetName(),
                  slicer.util.arrayFromSegmentBinaryLabelmap(segNode, sid, volumeNode).copy(),
                  segmentTag(seg.GetSegment(sid), ANNOTATED_TAG))
            for sid in seg.GetSegmentIDs()}


def _assert_same_voxels(before, after):
    assert before.keys() == after.keys()
    for sid in before:
        assert before[sid][0] == after[sid][0] and before[sid][2] == after[sid][2]
        np.testing.assert_array_equal(before[sid][1], after[sid][1])


def _no_outputs(folder, stem="m"):
    """No model file, checkpoint, best model or model card of ``stem``, and no temporary file, in ``folder``."""
    names = {p.name for p in folder.iterdir()} if folder.exists() else set()
    written = {f"{stem}.pt", f"{stem}.ckpt.pt", f"{stem}.ckpt.best.pt", f"{stem}.best.pt", f"{stem}.md"} & names
    return not written and not [n for n in names if ".tmp" in n]


def _tiny_base(path):
    import torch

    from ifssnet.model import IFSSNet, IFSSNetConfig, save_checkpoint

    torch.manual_seed(0)
    return str(save_checkpoint(path, IFSSNet(IFSSNetConfig(size=32, width_mult=0.15))))


def test_a_one_slice_volume_node_is_refused_as_a_2d_image(scene_nodes, tmp_path):
    """A single frame (Slicer holds a 2-D image as a volume one slice thick) is refused as a 2-D image before any
    training, not as a run too short for the network ("Use a longer --run-length")."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import VolumeError

    frame = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode)[5:6].copy(), _ijk_to_ras(), "frame")
    ref = _reference_segmentation(slicer, frame, {"GM": truth[5:6]}, "Frame reference")
    before = _voxels(slicer, ref, frame)
    L = IFSSNetTrainingLogic()
    with pytest.raises(VolumeError, match="2-D image") as err:
        L.train([(frame, ref)], "full", 1, outputPath=str(tmp_path / "m.pt"), **OPTIONS)
    assert "Load the reconstructed 3-D ultrasound volume" in str(err.value)
    assert _no_outputs(tmp_path) and L.steps == []
    _assert_same_voxels(before, _voxels(slicer, ref, frame))


def test_a_corrupt_base_model_leaves_an_earlier_model_as_it_was(scene_nodes, tmp_path):
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import ModelError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    half = tmp_path / "half.pt"
    with open(_tiny_base(tmp_path / "tiny.pt"), "rb") as f:
        half.write_bytes(f.read()[:5000])
    out = tmp_path / "m.pt"
    out.write_bytes(b"an earlier model")
    before = _voxels(slicer, ref, volumeNode)
    with pytest.raises(ModelError, match="corrupt or truncated") as err:
        IFSSNetTrainingLogic().train([(volumeNode, ref)], "full", 1, baseModel=str(half), outputPath=str(out),
                                     stepsPerEpoch=1, runLength=6)
    assert "half.pt" in str(err.value)
    assert out.read_bytes() == b"an earlier model" and not (tmp_path / "m.md").exists()
    assert not (tmp_path / "m.ckpt.pt").exists() and not (tmp_path / "m.best.pt").exists()
    _assert_same_voxels(before, _voxels(slicer, ref, volumeNode))


def test_an_annotation_painted_across_another_axis_is_refused_with_a_slicer_action(scene_nodes, tmp_path):
    """Seeds tagged across axis 2 (as the effect tags them after propagating along i): training follows the sweep
    along k, so it refuses them, and the message says what to do in Slicer, not only on the command line."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices

    painted = np.zeros_like(truth)
    painted[:, :, [9, 15, 21]] = truth[:, :, [9, 15, 21]]
    ref = _reference_segmentation(slicer, volumeNode, {"GM": painted}, "Painted along i")
    ref.GetSegmentation().GetNthSegment(0).SetTag(ANNOTATED_TAG, AnnotatedSlices(2, (9, 15, 21)).to_tag())
    before = _voxels(slicer, ref, volumeNode)
    with pytest.raises(InputError, match="'GM' of case 'US' is annotated across axis 2") as err:
        IFSSNetTrainingLogic().train([(volumeNode, ref)], "fewshot", 1, outputPath=str(tmp_path / "m.pt"), **OPTIONS)
    assert "In Slicer" in err.value.todo and "Orient Scalar Volume" in err.value.todo
    assert _no_outputs(tmp_path)
    _assert_same_voxels(before, _voxels(slicer, ref, volumeNode))


def test_an_empty_segment_is_refused_up_front_by_name(scene_nodes, tmp_path):
    """A segment chosen for training that is empty in a case is refused before anything runs (no step-0 validation
    of the base model, no step), naming the segment and the case; so is a segment that is empty in one case of
    two (the wrong segmentation paired with a volume), where every segment is trained."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": np.zeros_like(truth)}, "Reference")
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "held")
    before = _voxels(slicer, ref, volumeNode)
    L = IFSSNetTrainingLogic()
    with pytest.raises(InputError, match="Segment 'SOL' of case 'US' is empty") as err:
        L.train([(volumeNode, ref)], "full", 1, baseModel=_tiny_base(tmp_path / "tiny.pt"),
                 outputPath=str(tmp_path / "m.pt"), segmentNames=["SOL"], validationPairs=[(heldOut, ref)],
                 valEvery=1, stepsPerEpoch=1, runLength=6)
    assert "Segment Editor" in err.value.todo
    assert L.validations == [] and L.steps == [] and _no_outputs(tmp_path)
    _assert_same_voxels(before, _voxels(slicer, ref, volumeNode))

    second = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "US2")
    good = _reference_segmentation(slicer, second, {"GM": truth, "SOL": truth}, "Second reference")
    with pytest.raises(InputError, match="Segment 'SOL' of case 'US' is empty"):
        L.train([(second, good), (volumeNode, ref)], "full", 1, outputPath=str(tmp_path / "m.pt"), **OPTIONS)
    assert L.steps == [] and _no_outputs(tmp_path)


def test_running_out_of_memory_is_a_resource_error_and_keeps_an_earlier_model(scene_nodes, tmp_path, monkeypatch):
    """Memory that runs out while reading the cases or while training comes out as a ResourceError that says what
    to do, and an earlier model file and its card stay as they were."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    import ifssnet.dataset
    import ifssnet.train
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.errors import ResourceError

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    out, card = _earlier_model(tmp_path)

    def outOfMemory(*args, **kwargs):
        raise MemoryError

    for module, name in ((ifssnet.dataset, "case_from_arrays"), (ifssnet.train, "train")):
        with monkeypatch.context() as m:
            m.setattr(module, name, outOfMemory)
            with pytest.raises(ResourceError, match="ran out of memory") as err:
                IFSSNetTrainingLogic().train([(volumeNode, ref)], "full", 1, outputPath=str(out), **OPTIONS)
        assert "Close other programs" in err.value.todo and "Crop Volume" in err.value.todo
        assert _earlier_model_kept(out, card)


def test_cancel_stops_a_fine_tune_before_its_step_0_validation(scene_nodes, tmp_path):
    """Cancel before a fine-tune's first validation: Cancelled, no validation run, nothing written."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    heldOut = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "held")
    token = CancelToken()
    token.cancel()
    L = IFSSNetTrainingLogic()
    with pytest.raises(Cancelled, match="Cancelled by the user"):
        L.train([(volumeNode, ref)], "full", 1, baseModel=_tiny_base(tmp_path / "tiny.pt"),
                outputPath=str(tmp_path / "m.pt"), validationPairs=[(heldOut, ref)], valEvery=1, cancel=token,
                stepsPerEpoch=1, runLength=6)
    assert L.validations == [] and L.steps == [] and _no_outputs(tmp_path)


def test_exported_scene_pairs_are_named_after_their_volumes_and_keep_their_tags(scene_nodes, tmp_path):
    """What the module's Train button hands the training process: each pair in a folder named after its volume
    node (two nodes of one name told apart), the voxels and the painted-slice tag as in the scene, so the
    training's messages name the scene's volumes."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    from ifssnet.dataset import load_case
    from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices, read_segmentation

    volumeNode.SetName("Left calf: GM/SOL")
    twin = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(),
                                          "Left calf: GM/SOL")
    painted = np.zeros_like(truth)
    painted[[5, 11, 17]] = truth[[5, 11, 17]]
    tagged = _reference_segmentation(slicer, volumeNode, {"GM": painted}, "Painted")
    tagged.GetSegmentation().GetNthSegment(0).SetTag(ANNOTATED_TAG, AnnotatedSlices(0, (5, 11, 17)).to_tag())
    complete = _reference_segmentation(slicer, twin, {"GM": truth}, "Reference")
    pairs = IFSSNetTrainingLogic.exportPairs([(volumeNode, tagged), (twin, complete),
                                              ("/a/volume.nrrd", "/a/ref.seg.nrrd")], str(tmp_path))
    assert [os.path.relpath(v, tmp_path) for v, _ in pairs[:2]] == [
        os.path.join("Left_calf__GM_SOL", "volume.nrrd"), os.path.join("Left_calf__GM_SOL-1", "volume.nrrd")]
    assert pairs[2] == ("/a/volume.nrrd", "/a/ref.seg.nrrd")
    seg = read_segmentation(pairs[0][1])
    assert seg.get("GM").annotated == AnnotatedSlices(0, (5, 11, 17))
    np.testing.assert_array_equal(seg.get("GM").mask, painted)
    case = load_case(*pairs[1], size=32)
    assert case.name == "Left_calf__GM_SOL-1" and case.known["GM"].all()


def test_the_status_after_cancel_says_whether_resume_continues_this_run(slicer_app, tmp_path):
    """Resume continues OUT.ckpt.pt: this run's when it saved one, else an earlier run's, else there is none; the
    run's best by validation so far (OUT.ckpt.best.pt) is named where it saved one."""
    import time

    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    out = str(tmp_path / "m.pt")
    ckpt = tmp_path / "m.ckpt.pt"
    started = time.time()
    assert "nothing was saved. Click Train" in IFSSNetTrainingLogic.cancelledText(out, started)
    ckpt.write_bytes(b"an earlier run's checkpoint")
    os.utime(ckpt, (started - 3600, started - 3600))
    assert "Resume would continue an earlier run" in IFSSNetTrainingLogic.cancelledText(out, started)
    os.utime(ckpt, (started + 5, started + 5))
    assert IFSSNetTrainingLogic.cancelledText(out, started).startswith("Training cancelled. Click Resume")
    assert "best model" not in IFSSNetTrainingLogic.cancelledText(out, started)
    best = tmp_path / "m.ckpt.best.pt"          # the run's best by validation so far, beside its checkpoint
    best.write_bytes(b"this run's best so far")
    os.utime(best, (started + 5, started + 5))
    text = IFSSNetTrainingLogic.cancelledText(out, started)
    assert text.startswith("Training cancelled. Click Resume")
    assert "kept beside the checkpoint (m.ckpt.best.pt) and becomes m.best when the run is resumed" in text


def test_cancel_mid_training_leaves_an_earlier_model_and_its_card_as_they_were(scene_nodes, tmp_path):
    """Cancel at the second of four steps (in process, as the Python console runs it): Cancelled, and the model
    file and card of an earlier run of that name stay byte for byte; no checkpoint was due, so a new run may start."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    out, card = _earlier_model(tmp_path)
    token = CancelToken()

    def progress(stage, done, total):
        if stage == "training" and done >= 2:
            token.cancel()

    L = IFSSNetTrainingLogic()
    with pytest.raises(Cancelled, match="Cancelled by the user"):
        L.train([(volumeNode, ref)], "full", 1, outputPath=str(out), progress=progress, cancel=token,
                stepsPerEpoch=4, runLength=6, size=32, widthMult=0.15)
    assert len(L.steps) == 2
    assert _earlier_model_kept(out, card)
    assert L.cancelledText(str(out), 0.0).endswith("nothing was saved. Click Train to start again.")


def test_the_panels_resume_command_continues_the_run_whatever_the_panel_now_says(slicer_scene, tmp_path, capsys):
    """Resume in the Training panel runs ``ifssnet train --resume``, which refuses options that would change the
    run. The panel used to pass its current recipe with it, so a user who had changed the epochs or the learning
    rate since the run started could not resume at all; now the recipe stays the run's own and the run ends at its
    own last step, and its model card says how the run was trained, not what the panel now says."""
    from cli_output import run_cli
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    from ifssnet.model.checkpoint import load_checkpoint

    case = cli_case(tmp_path / "c")
    volume, annotation = case.rsplit(":", 1)
    out, ckpt, log = tmp_path / "m.pt", tmp_path / "m.ckpt.pt", tmp_path / "log.jsonl"
    code, _, _ = run_cli(capsys, "train", case, "--out", out, "--epochs", "1", "--steps", "3",
                         "--checkpoint-every", "1", "--time-limit", "0", *CLI_TINY)
    assert code == 0 and load_checkpoint(ckpt)[2]["training"]["step"] == 1
    cmd = IFSSNetTrainingLogic.trainingCommand([(volume, annotation)], "fewshot", 5, str(out), str(log),
                                               resume=str(ckpt), stepsPerEpoch=50, learningRate=0.5, tverskyBeta=0.7,
                                               fillGap=12, emptyPastEnds=True, baseModel="other.pt")
    assert "--epochs" not in cmd and "--lr" not in cmd and "--from" not in cmd
    code, _, err = run_cli(capsys, *cmd[3:])
    assert code == 0, err
    assert load_checkpoint(out)[2]["training"]["step"] == 3
    card = open(IFSSNetTrainingLogic.writeModelCard(str(out), mode="fewshot", epochs=5, baseModel="other.pt",
                                                    cases=["c"], steps=[])).read()
    assert "- Base model: new network" in card and "- Mode: full supervision; epochs: 1" in card   # the run's own
