"""Logic of the IFSS-Net Training module: scene or file pairs in, a fine-tuned model in the user's model folder.

Imports ``slicer`` (MRML), ``vtk``, ``numpy`` and ``ifssnet`` only (no qt, ctk or ScriptedLoadableModule),
so it runs headless. torch is imported inside :meth:`IFSSNetTrainingLogic.train` by the core.

Two ways to run:
- in process: :meth:`IFSSNetTrainingLogic.train` (tests, Slicer's Python console);
- in a background process (the module's GUI): :meth:`exportPairs` writes the scene pairs to files, and
  :meth:`trainingCommand` gives the ``ifssnet train`` command line, which writes one JSON line per step
  (``--log``); :meth:`readStepLog` reads it back for the loss curve and :meth:`updateLossPlot` draws it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import slicer

from ifssnet.errors import InputError, ResourceError
from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices, Geometry, Segment, Segmentation, same_file
from ifssnet.validation import VALIDATION_CHOICES

try:  # the module folders are siblings on sys.path in Slicer and in the tests
    from IFSSNetSegmentationLib import logic as segmentationLogic
    from IFSSNetSegmentationLib import mrml_arrays as mrmlArrays
except ImportError:  # pragma: no cover - layout error
    segmentationLogic = None

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
MODES = ("full", "fewshot")
LOSS_TABLE_NAME = "IFSS-Net training loss"
EXPORTING_PAIRS = "exporting pairs"   # exportPairs' progress stage


def geometryOf(volumeNode) -> Geometry:
    """``ifssnet.io.Geometry`` (ITK order, LPS) of a volume node."""
    return Geometry.from_ijk_to_lps(RAS_TO_LPS @ mrmlArrays.ijkToRasArray(volumeNode))


def segmentationFromNodes(volumeNode, segmentationNode, segmentNames: Optional[Sequence[str]] = None) -> Segmentation:
    """The segmentation node on the volume's grid as an ``ifssnet.io.Segmentation`` (with annotated slices).
    A labelmap volume (or any other node) in place of the segmentation is refused with how to convert it."""
    if segmentationNode is None:
        raise InputError("A volume has no annotation.", "Pair every volume with its segmentation.")
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError(f"The annotation '{segmentationNode.GetName()}' has no volume, or its volume has no voxels.",
                         "Pair every segmentation with the volume it was painted on.")
    mrmlArrays.requireSegmentationNode(segmentationNode, "The annotation")
    geometry = mrmlArrays.referenceGeometry(volumeNode, segmentationNode)
    segmentationNode.CreateBinaryLabelmapRepresentation()
    segmentation = segmentationNode.GetSegmentation()
    segments = []
    seedReader = None
    for sid in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(sid)
        if segmentNames and segment.GetName() not in segmentNames:
            continue
        mask = mrmlArrays.segmentToArray(segmentationNode, sid, geometry)
        if not mask.any() and mrmlArrays.holdsVoxels(segmentationNode, sid):
            # Training would refuse it as "empty (no voxel on its annotated slices)": it is not, it lies elsewhere.
            raise InputError(f"Segment '{segment.GetName()}' of '{segmentationNode.GetName()}' is painted, but outside "
                             f"the volume '{volumeNode.GetName()}' it is paired with: none of its paint lies on the "
                             "volume's voxels (it was painted on another volume?).",
                             "Pair the segmentation with the volume it was painted on, or paint the muscle on this "
                             "volume.")
        annotated = None
        if segmentationLogic.segmentTag(segment, ANNOTATED_TAG):
            # Known slices as Propagate reads its seeds (and `ifssnet train` a saved file, ifssnet.io.seed_slices):
            # the painted slices, those corrected after a run (IFSSNet.ResultSliceCRC), mapped from the grid the tags
            # were recorded on (IFSSNet.SeedGrid: a crop, a flip, a resampled sweep). The tag alone missed the
            # corrections, and on a cropped volume named slices of the whole one.
            seedReader = seedReader or segmentationLogic.IFSSNetSegmentationLogic()
            axis, slices = seedReader._seedsOnGrid(segmentationNode, sid, geometry, mask,
                                                   volumeName=volumeNode.GetName())
            annotated = AnnotatedSlices(axis, tuple(slices))
        segments.append(Segment(segment.GetName(), mask, tuple(segment.GetColor()), annotated))
    return Segmentation(segments, geometryOf(volumeNode))


class IFSSNetTrainingLogic:
    """Fine-tune IFSS-Net on the user's annotated volumes.

    ``train(pairs, mode, epochs, baseModel=None, outputPath=None, progress=None, cancel=None, **options) -> str``
    ``pairs``: (volumeNode, segmentationNode) or (volumePath, annotationPath) tuples. Annotations may be
    complete or sparse (segments tagged ``IFSSNet.AnnotatedSlices`` are known only on those slices).
    Returns the path of the saved model; its model card is written next to it (``<stem>.md``).
    ``fillGap``: few-shot mode labels each gap of up to this many slices between two painted groups with Fill
    between slices and trains on it as on painted slices (:mod:`ifssnet.fill_gaps`; 0: off). Single painted
    slices train only where it joins them, since a run starts on a window of labelled slices.
    ``emptyPastEnds``: few-shot mode trains the slices past a slice marked "no muscle here" beyond a muscle's paint
    as empty (:mod:`ifssnet.past_ends`; the end marks of the IFSS-Net effect are such slices).
    ``validationPairs``: fully annotated pairs held out of training; every ``valEvery`` steps the network
    propagates them under ``valProtocol`` (``3-seeds``, ``paper`` or ``both``;
    :data:`ifssnet.validation.VALIDATION_CHOICES`) and the best by mean Dice is kept as ``<stem>.best.pt``
    (:mod:`ifssnet.validation`; while the run goes, as ``<stem>.ckpt.best.pt`` beside its checkpoint, so that a
    cancelled run leaves an earlier ``<stem>.best.pt`` as it was); a fine-tune scores ``baseModel`` first (step 0),
    so ``<stem>.best.pt`` is the base model where no step beats it (:meth:`validationVerdict` says so).
    ``self.validations`` holds the scores.
    A fine-tune trains with its base model's recipe (runs, batch, loss; :func:`ifssnet.train_recipe.inherit_recipe`),
    as ``ifssnet train --from`` does, except ``runLength`` and ``tverskyBeta`` where given (None: the base model's,
    or for a new network runs of 32; beta 0.5 in few-shot mode, :data:`ifssnet.train_recipe.FEWSHOT_BETA`);
    ``self.inheritedRecipe`` holds what was taken from it. ``learningRate``: Adam's rate, and a tenth of it for the
    last two epochs of a run of more than two, as ``--lr`` (None: 1e-5 for a fine-tune of a network trained to
    propagate, else the paper's 1e-4; :func:`ifssnet.train_recipe.learning_rates`).
    ``segmentNames``: the segments to train (None: every segment of each pair); a pair trains those it has, and a
    name that no pair has is refused (:func:`ifssnet.dataset.require_segments`). Each must be painted in every case
    that has it: one that is empty in a case (no voxel on its annotated slices) is refused by name before anything
    runs (:func:`ifssnet.dataset.require_painted`). ``cancel`` stops the run between steps, before a fine-tune's
    step-0 validation and between validation cases. Running out of memory raises ``ResourceError``. An error or a
    cancel before the end leaves the model file and its card as they were.
    """

    def __init__(self) -> None:
        self.steps: List[dict] = []
        self.validations: List[dict] = []
        self.inheritedRecipe: dict = {}

    # ---- in process ----------------------------------------------------------------------------

    def train(self, pairs, mode: str = "fewshot", epochs: int = 10, baseModel=None, outputPath=None,
              progress=None, cancel=None, *, resume=None, stepsPerEpoch: int = 100, runLength: Optional[int] = None,
              size: int = 128, widthMult: float = 1.0, device: str = "cpu",
              segmentNames: Optional[Sequence[str]] = None, onStep: Optional[Callable[[dict], None]] = None,
              validationPairs=None, valEvery: Optional[int] = None, valProtocol: str = "3-seeds",
              fillGap: int = 0, emptyPastEnds: bool = False, tverskyBeta: Optional[float] = None,
              learningRate: Optional[float] = None) -> str:
        if mode not in MODES:
            raise InputError(f"Unknown training mode '{mode}'.", "Use 'full' or 'fewshot'.")
        if not pairs:
            raise InputError("No training pairs.", "Add at least one volume with its segmentation.")
        outputPath = outputPath or self.defaultOutputPath("ifssnet-finetuned")
        from ifssnet.io import check_output_file, make_folders
        from ifssnet.train import refuse_writing_over_inputs, steps_of

        with _outOfMemoryAsResourceError(outputPath):
            # first: a corrupt or missing base model is refused before the output's folder is made (it stayed, empty)
            loaded, config, meta = _networkOf(baseModel, resume, size, widthMult)
        steps = steps_of(meta) if resume else None     # the checkpoint as read above, not read again
        if steps is not None and steps[0] >= steps[1]:
            raise InputError(f"{resume} holds a run that has finished (step {steps[0]} of {steps[0]}): there "
                             "is nothing to resume.", "Train to start a new run, or fine-tune its model (base "
                             "model).")
        make_folders(os.path.dirname(os.path.abspath(outputPath)))   # before any case is read, with what to do
        check_output_file(os.path.abspath(outputPath), file_hint="Give the model a file name, like my-model.pt.")
        refuse_writing_over_inputs(  # <stem>.best.pt as the base model: a run without validation removed it
            outputPath, [p for pair in [*pairs, *(validationPairs or [])] for p in pair
                         if isinstance(p, (str, os.PathLike))], base_model=None if resume else baseModel)
        with _outOfMemoryAsResourceError(outputPath):
            from ifssnet.dataset import case_from_arrays, load_case, require_painted, require_segments
            from ifssnet.train import TrainConfig, train as coreTrain
            from ifssnet.train_recipe import inherit_recipe, learning_rates

            size = config.size
            modelConfig = None if baseModel or resume else config   # a model file's network is the stored one
            baseMeta = None if resume else meta       # a resumed run keeps its own config
            recipe, inherited = inherit_recipe(baseMeta, {"run_length": runLength, "tversky_beta": tverskyBeta},
                                               mode=mode)
            _checkTrainingMemory(pairs, mode, config, _runRecipe(recipe, meta if resume else None),
                                 segmentNames=segmentNames, validationPairs=validationPairs, valProtocol=valProtocol,
                                 fillGap=fillGap, emptyPastEnds=emptyPastEnds, device=device)
            cases = []
            names = _caseNames(pairs)
            for n, (volume, annotation) in enumerate(pairs):
                if isinstance(volume, (str, os.PathLike)):
                    cases.append(load_case(volume, annotation, size, segmentNames, names[n]))
                else:
                    seg = segmentationFromNodes(volume, annotation, segmentNames)
                    cases.append(case_from_arrays(mrmlArrays.volumeToArray(volume), seg, size, segmentNames,
                                                  names[n], slice_spacing_mm=mrmlArrays.spacingKji(volume)[0]))
            require_segments(cases, segmentNames)   # a name no pair has; a pair trains the named segments it has
            require_painted(cases)          # before the validation cases are read (train checks them again, cheaply)
            if validationPairs and any(_sameVolume(v, tv) for v, _ in validationPairs for tv, _ in pairs):
                raise InputError("A validation volume is also a training volume.",
                                 "Hold out a volume the network does not train on, or leave validation off.")
            validator = self.validator(validationPairs, segmentNames, valProtocol) if validationPairs else None
            self.inheritedRecipe = inherited
            lr, lrFinal = learning_rates(baseMeta, learningRate)
            cfg = TrainConfig(mode=mode, epochs=int(epochs), steps_per_epoch=int(stepsPerEpoch),
                              fill_gap=int(fillGap), empty_past_ends=bool(emptyPastEnds), lr=lr, lr_final=lrFinal,
                              **recipe)
            self.steps, self.validations = [], []

            def stepHook(log) -> None:
                entry = dataclasses.asdict(log)
                self.steps.append(entry)
                if onStep:
                    onStep(entry)

            path = coreTrain(cases, outputPath, model_config=modelConfig, cfg=cfg, base_model=baseModel,
                             resume=resume, command="Slicer IFSSNetTraining",
                             data_description=", ".join(c.name for c in cases), progress=progress, cancel=cancel,
                             on_step=stepHook, device=device, validator=validator, val_every=valEvery,
                             on_validation=lambda score: self.validations.append(score.log_record()),
                             loaded=loaded)
        self.writeModelCard(str(path), mode=mode, epochs=epochs, baseModel=baseModel,
                            cases=[c.name for c in cases], steps=self.steps)
        return str(path)

    @staticmethod
    def validator(pairs, segmentNames: Optional[Sequence[str]] = None, protocol: str = "3-seeds"):
        """An :class:`ifssnet.validation.Validator` for (volumeNode, segmentationNode) or (volumePath,
        annotationPath) pairs, scoring under ``protocol`` (:data:`ifssnet.validation.VALIDATION_CHOICES`); node
        pairs are read into memory once. A segment painted on some slices only is scored by its held-out groups
        (:mod:`ifssnet.held_out_groups`); an unknown protocol is an error."""
        from ifssnet.validation import Validator

        cases = []
        for volume, annotation in pairs:
            if isinstance(volume, (str, os.PathLike)):
                cases.append((str(volume), str(annotation)))
                continue
            seg = segmentationFromNodes(volume, annotation, segmentNames)
            cases.append((mrmlArrays.volumeToArray(volume), seg, tuple(geometryOf(volume).spacing_kji)))
        return Validator(cases, protocol=protocol, segments=segmentNames)

    @staticmethod
    def checkMemory(pairs, mode: str = "fewshot", *, baseModel=None, resume=None, runLength: Optional[int] = None,
                    size: int = 128, widthMult: float = 1.0, device: str = "cpu",
                    segmentNames: Optional[Sequence[str]] = None, validationPairs=None, valProtocol: str = "3-seeds",
                    fillGap: int = 0, emptyPastEnds: bool = False) -> int:
        """Refuse (``ResourceError``: how much is needed, how much is free, what to do) a training run on ``pairs``
        that cannot fit in memory, from their shapes alone (:mod:`ifssnet.train_memory`), before any case is read
        and before a training process starts; the arguments are :meth:`train`'s. :meth:`train` checks the same
        before it reads the cases. Returns the bytes estimated."""
        from ifssnet.train_recipe import inherit_recipe

        _, config, meta = _networkOf(baseModel, resume, size, widthMult)
        recipe, _ = inherit_recipe(None if resume else meta, {"run_length": runLength}, mode=mode)
        return _checkTrainingMemory(pairs, mode, config, _runRecipe(recipe, meta if resume else None),
                                    segmentNames=segmentNames, validationPairs=validationPairs,
                                    valProtocol=valProtocol, fillGap=fillGap, emptyPastEnds=emptyPastEnds,
                                    device=device)

    # ---- background process --------------------------------------------------------------------

    @staticmethod
    def exportPairs(pairs, folder: str, progress=None, cancel=None) -> List[Tuple[str, str]]:
        """Write scene pairs to ``folder`` for a training process: each pair in a folder named after its volume
        node (``folder/NAME/volume.nrrd`` + ``annotation.seg.nrrd``; characters other than letters, digits,
        ``-_.`` become ``_``, and a name already taken gets ``-N``), so the training's messages and the model
        file's data description name the volumes as the scene does. File pairs are passed on as they are.
        ``progress(stage, done, total)`` is called with stage ``"exporting pairs"`` before each pair and once at
        the end (a full-size sweep takes seconds to write; the panel shows it and pumps Qt events there);
        ``cancel`` (a :class:`~ifssnet.progress.CancelToken` or a callable) is checked before each pair: a cancelled
        export removes the pair folders it made and raises :class:`~ifssnet.errors.Cancelled`."""
        import re
        import shutil

        from ifssnet.io import Image, write_segmentation, write_volume
        from ifssnet.progress import check_cancel, report

        os.makedirs(folder, exist_ok=True)
        out, used, made = [], set(), []
        try:
            for n, (volume, annotation) in enumerate(pairs):
                report(progress, EXPORTING_PAIRS, n, len(pairs))
                check_cancel(cancel)
                if isinstance(volume, (str, os.PathLike)):
                    out.append((str(volume), str(annotation)))
                    continue
                name = re.sub(r"[^A-Za-z0-9._-]", "_", volume.GetName() or "") or f"case{n}"
                base, suffix = name, n
                while name.lower() in used or name in (".", ".."):   # '-N' may itself be another volume's name
                    name, suffix = f"{base}-{suffix}", suffix + 1
                used.add(name.lower())
                os.makedirs(os.path.join(folder, name))
                made.append(os.path.join(folder, name))
                vpath = os.path.join(folder, name, "volume.nrrd")
                apath = os.path.join(folder, name, "annotation.seg.nrrd")
                write_volume(Image(mrmlArrays.volumeToArray(volume), geometryOf(volume)), vpath)
                write_segmentation(segmentationFromNodes(volume, annotation), apath)
                out.append((vpath, apath))
        except BaseException:
            for path in made:          # a cancelled or failed export leaves nothing of its own
                shutil.rmtree(path, ignore_errors=True)
            raise
        report(progress, EXPORTING_PAIRS, len(pairs), len(pairs))
        return out

    @staticmethod
    def baseModelAdvice(baseModel) -> str:
        """What the panel shows under the chosen base model: '' for a new network or a model that
        fine-tunes well; otherwise why it will hardly learn and what to choose instead
        (:func:`ifssnet.train.dead_weights_advice`: most of its weights are zero). Loads the model
        file (weights only); a file that cannot be read raises the core's clear error."""
        if not baseModel:
            return ""
        from ifssnet.model.checkpoint import load_checkpoint
        from ifssnet.train import dead_weights_advice

        model, _, _ = load_checkpoint(baseModel, map_location="cpu")
        return dead_weights_advice(model, os.path.basename(str(baseModel)))

    @staticmethod
    def trainingCommand(filePairs, mode: str, epochs: int, outputPath: str, logPath: str, *, baseModel=None,
                        resume=None, stepsPerEpoch: int = 100, device: str = "cpu", python: Optional[str] = None,
                        validationPairs=None, valEvery: Optional[int] = None,
                        valProtocol: Optional[str] = None, fillGap: int = 0,
                        emptyPastEnds: bool = False, tverskyBeta: Optional[float] = None,
                        learningRate: Optional[float] = None) -> List[str]:
        """The ``ifssnet train`` command line for a background process (Slicer's PythonSlicer runs it).
        ``validationPairs``: (volume, annotation) files held out of training (``--val``), scored under
        ``valProtocol`` (``--val-protocol``; the CLI's ``3-seeds`` when None). ``fillGap``: ``--fill-gap`` (as in
        :meth:`train`; 0 leaves it out), ``emptyPastEnds``: ``--empty-past-ends``, ``tverskyBeta``: ``--tversky-beta``
        (None: as in :meth:`train`), ``learningRate``: ``--lr`` (None: the command line's).
        With ``resume`` the run continues exactly as it was started (``ifssnet train --resume`` refuses options that
        would change it), so the panel's recipe (mode, epochs, steps, rates, the few-shot and validation settings)
        is left out: only the cases, the held-out pairs and their protocol, the output, the log and the device go
        with it."""
        if not filePairs:    # else the process stopped with argparse's usage line ('cases' are required)
            raise InputError("There are no (volume, segmentation) pairs to train on.",
                             "Add the pairs to the list: Resume needs the pairs the run was trained on, too."
                             if resume else "Add at least one pair to the list.")
        if valProtocol is not None and valProtocol not in VALIDATION_CHOICES:
            raise InputError(f"Unknown validation protocol '{valProtocol}'.",
                             f"Use one of {', '.join(VALIDATION_CHOICES)}.")
        cmd = [python or sys.executable, "-m", "ifssnet.cli", "train"]
        cmd += [f"{v}:{a}" for v, a in filePairs]
        cmd += ["--out", str(outputPath), "--log", str(logPath), "--device", device]
        if resume:
            if validationPairs:   # the run keeps its own --val-every; the protocol is not stored with it
                cmd += ["--val"] + [f"{v}:{a}" for v, a in validationPairs]
                cmd += ["--val-protocol", valProtocol] if valProtocol else []
            return cmd + ["--resume", str(resume)]
        cmd += ["--mode", mode, "--epochs", str(int(epochs)), "--steps", str(int(stepsPerEpoch))]
        if fillGap:
            cmd += ["--fill-gap", str(int(fillGap))]
        if emptyPastEnds:
            cmd += ["--empty-past-ends"]
        if tverskyBeta is not None:
            cmd += ["--tversky-beta", repr(float(tverskyBeta))]
        if learningRate is not None:
            cmd += ["--lr", repr(float(learningRate))]
        if validationPairs:
            cmd += ["--val"] + [f"{v}:{a}" for v, a in validationPairs]
            if valEvery:
                cmd += ["--val-every", str(int(valEvery))]
            if valProtocol:
                cmd += ["--val-protocol", valProtocol]
        if baseModel:
            cmd += ["--from", str(baseModel)]
        return cmd

    @staticmethod
    def readStepLog(logPath: str, start: int = 0) -> Tuple[List[dict], int]:
        """New step records from the JSON-lines log, from byte ``start``; returns (records, next start)."""
        if not os.path.exists(logPath):
            return [], start
        records = []
        with open(logPath, encoding="utf-8") as f:
            f.seek(start)
            while True:
                pos = f.tell()
                line = f.readline()
                if not line:
                    break
                if not line.endswith("\n"):  # a line still being written
                    f.seek(pos)
                    break
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
            return records, f.tell()

    @staticmethod
    def resumePath(outputPath: str) -> Optional[str]:
        """The training checkpoint that Resume continues from (``<stem>.ckpt.pt``), if there is one that holds a run
        stopped before its last step. A finished run's checkpoint (kept beside its model) is none: resuming it ran no
        step and wrote the model and its card again, the card with no final loss."""
        from ifssnet.train import checkpoint_path

        path = str(checkpoint_path(outputPath))
        return path if os.path.exists(path) and _finishedRun(path) is None else None

    @staticmethod
    def runTotal(resume, epochs: int, stepsPerEpoch: int) -> int:
        """The steps of the run a training process takes, for the progress bar: a resumed run's own (its checkpoint
        records them; ``ifssnet train --resume`` keeps the run's epochs and steps whatever the panel now says),
        else ``epochs`` x ``stepsPerEpoch``."""
        from ifssnet.train import run_steps

        steps = run_steps(resume) if resume else None
        return int(steps[1]) if steps is not None else int(epochs) * int(stepsPerEpoch)

    @classmethod
    def cancelledText(cls, outputPath: str, startedAt: float, resumed: bool = False) -> str:
        """The status line after Cancel: whether the run that started at ``startedAt`` (``time.time()``) saved a
        checkpoint that Resume continues (and the best model by validation beside it, ``<stem>.ckpt.best.pt``, which
        becomes ``<stem>.best.pt`` where the resumed run ends; ``<stem>.best.pt`` is as it was), or Resume would
        continue an earlier run of the same name, or nothing. ``resumed``: the process continued the run (Resume),
        so a checkpoint older than ``startedAt`` is that run's own last one, and a best model found since then is
        kept for the next Resume (``ifssnet train --resume`` goes on from it)."""
        from ifssnet.train import checkpoint_best_path

        ckpt = cls.resumePath(outputPath)
        best = checkpoint_best_path(outputPath)
        name = os.path.splitext(os.path.basename(outputPath))[0]
        newBest = best.exists() and os.path.getmtime(best) >= startedAt
        if ckpt and os.path.getmtime(ckpt) >= startedAt:
            text = "Training cancelled. Click Resume to continue from its last checkpoint."
            if newBest:
                text += (f" Its best model by validation so far is kept beside the checkpoint ({best.name}) and "
                         f"becomes {name}.best when the run is resumed to its end.")
            return text
        if ckpt and resumed:
            text = ("Training cancelled before its next checkpoint: the steps since the last one are lost. Click "
                    "Resume to continue from that checkpoint.")
            if newBest:
                text += (f" The best model by validation this run found is kept ({best.name}); Resume goes on from "
                         f"it, and it becomes {name}.best when the run is resumed to its end.")
            return text
        if ckpt:
            return ("Training cancelled before its first checkpoint, so nothing of it was saved. Resume would "
                    "continue an earlier run of this name; click Train to start again.")
        return "Training cancelled before its first checkpoint, so nothing was saved. Click Train to start again."

    # ---- results -------------------------------------------------------------------------------

    @staticmethod
    def defaultOutputPath(name: str) -> str:
        folder = segmentationLogic.IFSSNetSegmentationLogic.userModelFolder()
        return os.path.join(folder, name + ".pt")

    @staticmethod
    def writeModelCard(modelPath: str, *, mode, epochs, baseModel, cases, steps) -> str:
        """A short model card next to the model (``<stem>.md``): the effect shows it as a tooltip. The mode, epochs,
        base model and training cases are those the model file records where it does (a resumed run's are its own,
        not the panel's current ones; the cases it trained on, not a pair held out for validation); ``mode``,
        ``epochs``, ``baseModel`` and ``cases`` stand in for a file that does not."""
        last = steps[-1] if steps else {}
        from ifssnet.model.checkpoint import read_meta
        from ifssnet.train import TrainConfig
        from ifssnet.train_recipe import stored_config

        meta = read_meta(modelPath) or {}
        config = stored_config(meta)
        mode, epochs = config.get("mode", mode), config.get("epochs", epochs)
        recorded = meta.get("data") if "training" in meta else None   # the cases the run trained on, by name
        trainedOn = recorded if isinstance(recorded, str) and recorded.strip() else ", ".join(cases)
        base = meta.get("base")
        baseName = (str(base.get("file")) if isinstance(base, dict) and base.get("file")
                    else os.path.basename(str(baseModel)) if baseModel and "training" not in meta else None)
        rate = "not recorded"
        if config:
            trained = TrainConfig(**config)
            rate = f"{trained.lr:g}" + (f", then {trained.lr_final:g} for the last two epochs"
                                        if trained.uses_lr_final else "")
        lines = [
            f"# {os.path.splitext(os.path.basename(modelPath))[0]}",
            "",
            f"- Fine-tuned in 3D Slicer (IFSSNetTraining) on {datetime.datetime.now().isoformat(timespec='minutes')}",
            f"- Base model: {baseName or 'new network'}",
            f"- Mode: {'full supervision' if mode == 'full' else 'few-shot (sequential pseudo-labels)'}; epochs: {epochs}",
            f"- Training cases: {trainedOn}",
            f"- Final loss {last.get('loss', float('nan')):.4f}, alpha {last.get('alpha', float('nan')):.3f}, "
            f"beta {last.get('beta', float('nan')):.3f} after {last.get('step', 0)} steps",
            f"- Learning rate: {rate}",
            f"- Recipe (what differs from `ifssnet train`'s defaults): {_recipeOf(config) or 'the defaults'}",
            "- Check it on a held-out volume (IFSSNetComparison) before clinical use.",
        ]
        path = _writeCard(os.path.splitext(modelPath)[0] + ".md", lines)
        _writeBestCard(modelPath, baseName)
        return path

    @staticmethod
    def stepRecords(records: Sequence[dict]) -> List[dict]:
        """The training-step records of a log (``loss`` per step), without the validation records."""
        return [r for r in records if "loss" in r]

    @staticmethod
    def validationRecords(records: Sequence[dict]) -> List[dict]:
        """The validation records of a log (``val_dice``, ``val_volume_error_pct`` at a step)."""
        return [r for r in records if "val_dice" in r]

    @staticmethod
    def validationScores(records: Sequence[dict]) -> list:
        """The validation records of a log as :class:`ifssnet.validation.ValidationScore` (in log order)."""
        from ifssnet.validation import ValidationScore

        return [ValidationScore.from_log_record(r) for r in IFSSNetTrainingLogic.validationRecords(records)]

    @staticmethod
    def bestValidation(records: Sequence[dict]):
        """The validation that training kept as ``<stem>.best.pt`` (:func:`ifssnet.validation.best_of`); None
        where the log has none."""
        from ifssnet.validation import best_of

        return best_of(IFSSNetTrainingLogic.validationScores(records))

    @staticmethod
    def validationVerdict(records: Sequence[dict], modelPath: str = "<name>") -> str:
        """What the status line says of validation when training ends ("" without it): the best step and its
        Dice, or, where the starting model (a fine-tune's step 0) stayed the best, that ``<name>.best`` (the
        name of ``modelPath``, the new model) is that model and should be kept; where the last validation shows a
        collapse to empty masks, :func:`ifssnet.validation.collapse_note` too. The scores are those the model file
        records (the whole run's: a resumed run's log holds only the validations since the resume, and its best,
        kept as ``<name>.best``, may be from before), else the log's ``records``."""
        from ifssnet.validation import best_of, collapse_note

        scores = _recordedValidations(modelPath) or IFSSNetTrainingLogic.validationScores(records)
        best = best_of(scores)
        if best is None:
            return ""
        name = os.path.splitext(os.path.basename(modelPath))[0]
        if best.step == 0:
            return (f"No training step beat the starting model on validation (Dice {best.dice:.3f}), so "
                    f"{name}.best is the starting model: keep using it, or train on more (or fully annotated) volumes.")
        start = next((v for v in scores if v.step == 0), None)
        than = f"; the starting model {start.dice:.3f}" if start else ""
        collapsed = collapse_note(scores, f"{name}.best")
        return (f"The best by validation (Dice {best.dice:.3f} at step {best.step}{than}) is saved "
                f"next to it as {name}.best." + (f" {collapsed}" if collapsed else ""))

    @staticmethod
    def updateLossPlot(steps: Sequence[dict], tableNode=None, chartNode=None):
        """Loss, alpha, beta and the validation Dice per step in a table node and a plot chart node (created
        when not given). ``steps``: the log's records; validation records set ``val_dice`` from their step
        on (a step curve, nan before the first validation). A node given that is no longer in the scene (File > Close
        Scene, or deleted in the Data module since the last run) is made anew, so the curve is shown."""
        scene = slicer.mrmlScene
        if tableNode is not None and tableNode.GetScene() is not scene:   # removed (Close Scene, the Data module)
            tableNode, chartNode = None, None     # the chart's series would read the removed table: both anew
        if chartNode is not None and chartNode.GetScene() is not scene:
            chartNode = None
        if tableNode is None:
            tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", LOSS_TABLE_NAME)
        table = tableNode.GetTable()
        columns = ("step", "loss", "alpha", "beta", "val_dice")
        steps = _withValidationDice(steps)
        import vtk

        if table.GetNumberOfColumns() != len(columns):
            table.Initialize()
            for name in columns:
                array = vtk.vtkDoubleArray()
                array.SetName(name)
                table.AddColumn(array)
        table.SetNumberOfRows(len(steps))
        for row, entry in enumerate(steps):
            for col, name in enumerate(columns):
                table.SetValue(row, col, vtk.vtkVariant(float(entry.get(name, np.nan))))
        table.Modified()
        tableNode.Modified()
        if chartNode is None:
            chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "IFSS-Net training")
            chartNode.SetTitle("IFSS-Net training")
            chartNode.SetXAxisTitle("step")
            chartNode.SetYAxisTitle("loss / alpha / beta / validation Dice")
            for n, name in enumerate(columns[1:]):   # a colour each: the series were all black
                segmentationLogic.addLinePlotSeries(scene, chartNode, tableNode, name, "step",
                                                    segmentationLogic.SERIES_COLORS[n])
        return tableNode, chartNode


@contextlib.contextmanager
def _outOfMemoryAsResourceError(outputPath: str):
    """A ``MemoryError`` while reading the base model or the cases, or while training, becomes a
    :class:`ResourceError` that says what to do. The core writes the model file last and atomically, and the model
    card comes after it (outside this block), so an earlier model and card of that name are as they were.
    A run that clearly cannot fit is refused before this, before any case is read (:meth:`IFSSNetTrainingLogic.checkMemory`,
    :mod:`ifssnet.train_memory`); this catches what the estimate did not foresee (other programs taking memory
    during the run, an estimate too low for some input)."""
    try:
        yield
    except MemoryError:
        raise ResourceError(
            "The computer ran out of memory while training.",
            "Close other programs, or train on fewer volumes or on volumes cropped to the muscles (Crop Volume "
            f"module); {os.path.basename(outputPath)} and its model card were not written, and earlier files of "
            "those names are as they were.") from None


def _networkOf(baseModel, resume, size: int, widthMult: float):
    """``(loaded, config, meta)`` of the network a run trains: the ``resume`` or ``baseModel`` file's
    (:func:`ifssnet.model.checkpoint.load_checkpoint`'s ``(model, config, meta)`` as ``loaded``, for the core's
    ``train`` not to read the file again), else a new one of ``size`` and ``widthMult`` (loaded and meta None)."""
    if baseModel or resume:
        from ifssnet.model.checkpoint import load_checkpoint

        loaded = load_checkpoint(resume or baseModel)
        return (loaded, *loaded[1:])
    from ifssnet.model import IFSSNetConfig

    return None, IFSSNetConfig(size=size, width_mult=widthMult), None


def _caseNames(pairs) -> List[str]:
    """The name of each pair's case, for messages, the model card and the model file's data description: a file
    pair's as ``ifssnet train`` names it (:func:`ifssnet.dataset.case_names`: ``a/leg`` and ``b/leg`` where both
    folders are 'leg'), a node pair's its volume node's name (``caseN`` where it has none); a name that an earlier
    pair has (two nodes named alike) gets ``-N``, as :meth:`IFSSNetTrainingLogic.exportPairs` names their folders."""
    from ifssnet.dataset import case_names

    files = [n for n, (volume, _) in enumerate(pairs) if isinstance(volume, (str, os.PathLike))]
    ofFiles = dict(zip(files, case_names([pairs[n][0] for n in files])))
    names, used = [], {name.lower() for name in ofFiles.values()}
    for n, (volume, _) in enumerate(pairs):
        if n in ofFiles:
            names.append(ofFiles[n])
            continue
        name = base = (volume.GetName() if volume is not None else "") or f"case{n}"   # no volume: refused later
        suffix = n
        while name.lower() in used:
            name, suffix = f"{base}-{suffix}", suffix + 1
        used.add(name.lower())
        names.append(name)
    return names


def _recordedValidations(modelPath) -> list:
    """The validation history a model file records (:class:`ifssnet.validation.ValidationScore` in step order);
    [] where there is no such file or it records none."""
    if not modelPath or not os.path.isfile(str(modelPath)):
        return []
    try:
        from ifssnet.model.checkpoint import read_meta
        from ifssnet.validation import recorded_history

        return recorded_history(read_meta(modelPath))
    except Exception:  # a file of another kind, or one without validation: the log's records
        return []


def _sameVolume(a, b) -> bool:
    """Whether two pairs' volumes are one: the same node, or two paths of the same file (two strings of one path
    are two objects, so ``is`` took them for two volumes)."""
    if isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike)):
        return same_file(a, b)
    return a is b


def _finishedRun(checkpointPath) -> Optional[int]:
    """The last step of the run a training checkpoint holds where that run has finished (every step taken), else
    None: a run stopped before its end, or a file that cannot be read (resuming it says what is wrong)."""
    try:
        from ifssnet.errors import IFSSNetError
        from ifssnet.train import run_steps

        steps = run_steps(checkpointPath)
    except (ImportError, IFSSNetError, OSError):
        return None
    return steps[0] if steps is not None and steps[0] >= steps[1] else None


def _writeCard(path: str, lines: Sequence[str]) -> str:
    """Write a model card (atomically: an earlier card stays whole if writing fails)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ResourceError(f"Could not write the model card {path}: {exc}.", "Check the folder is writable.") from exc
    return path


def _writeBestCard(modelPath: str, baseName: Optional[str]) -> Optional[str]:
    """The card of ``<stem>.best.pt`` (the best network by validation, which the effect lists as ``<stem>.best`` and
    the status line recommends), from what that file records: its step, its validation scores, the cases it was
    trained on. Without it the effect showed no card for it. None where there is no such file or it records no
    validation."""
    from ifssnet.model.checkpoint import read_meta
    from ifssnet.train_recipe import stored_config
    from ifssnet.validation import best_model_path, recorded_best

    bestPath = best_model_path(modelPath)
    if not bestPath.is_file():   # a run without validation removes an earlier run's best (ifssnet.train): its card too
        with contextlib.suppress(OSError):
            os.remove(os.path.splitext(str(bestPath))[0] + ".md")
        return None
    try:
        meta = read_meta(bestPath) or {}
        score = recorded_best(meta)
    except Exception:  # a file of another kind, or one without validation: no card rather than a wrong one
        return None
    config = stored_config(meta)
    total = int(config.get("epochs", 0)) * int(config.get("steps_per_epoch", 0))
    stem = os.path.splitext(os.path.basename(modelPath))[0]
    scores = f"mean Dice {score.dice:.3f}, volume error {score.volume_error_pct:.1f} %"
    if score.step == 0:
        what = (f"- The starting model ({baseName or 'base model'}), kept as the best by validation: no training "
                f"step of the run to {stem} beat it ({scores} on the held-out volumes, seed slices excluded)")
    else:
        what = (f"- The network of training step {score.step}" + (f" of {total}" if total else "")
                + f" of the run to {stem}, the best by validation ({scores} on the held-out volumes, seed slices "
                "excluded)")
    lines = [f"# {stem}.best", "", what]
    if score.per_segment:
        lines.append("- Dice per segment: " + ", ".join(f"{k} {v:.3f}" for k, v in score.per_segment.items()))
    if score.step != 0 and isinstance(meta.get("data"), str) and meta["data"]:
        lines.append(f"- Training cases: {meta['data']}")
    if score.step != 0:
        lines.append(f"- Base model: {baseName or 'new network'}")
    lines.append("- Check it on a held-out volume (IFSSNetComparison) before clinical use.")
    return _writeCard(os.path.splitext(str(bestPath))[0] + ".md", lines)


def _runRecipe(recipe: dict, resumedMeta: Optional[dict]) -> dict:
    """The recipe a run trains with: a resumed run's own (its checkpoint's training config), else ``recipe``."""
    from ifssnet.train_recipe import stored_config

    return {**recipe, **stored_config(resumedMeta)}


def _nodeCaseShape(volume, annotation, segmentNames: Optional[Sequence[str]] = None):
    """The :class:`ifssnet.train_memory.CaseShape` of a (volumeNode, segmentationNode) pair, from the nodes' grid
    alone; None where the volume has no voxels or the annotation is not a segmentation (reading it says so). Reading a pair copies the voxels and each
    chosen segment's labelmap (:func:`segmentationFromNodes`; a labelmap and its resampled copy at once): what the
    nodes already hold in the scene is not counted."""
    from ifssnet.train_memory import CaseShape

    image = volume.GetImageData() if volume is not None else None
    if image is None or annotation is None or not hasattr(annotation, "GetSegmentation"):
        return None
    I, J, K = image.GetDimensions()
    names = [annotation.GetSegmentation().GetNthSegment(n).GetName()
             for n in range(annotation.GetSegmentation().GetNumberOfSegments())]
    chosen = [n for n in names if not segmentNames or n in segmentNames]
    return CaseShape((K, J, I), int(image.GetScalarSize()), max(1, len(chosen)), read_bytes=2 * K * J * I,
                     slice_spacing_mm=mrmlArrays.spacingKji(volume)[0])


def _checkTrainingMemory(pairs, mode: str, config, recipe: dict, *, segmentNames=None, validationPairs=None,
                         valProtocol: str = "3-seeds", fillGap: int = 0, emptyPastEnds: bool = False,
                         device: str = "cpu") -> int:
    """:meth:`IFSSNetTrainingLogic.checkMemory` for a network ``config`` and a run ``recipe`` (TrainConfig fields).
    File pairs are measured from their headers (:func:`ifssnet.train_memory.case_shape`); validation node pairs
    are read into memory once and held for the whole run (:meth:`IFSSNetTrainingLogic.validator`), so they count
    beside the cases; a validation file that cannot be read is left out (the validator says what is wrong)."""
    from ifssnet.errors import IFSSNetError
    from ifssnet.train_memory import case_shape, check_training_memory, estimate_training_bytes, trains_on_gpu

    def shapeOf(volume, annotation):
        if isinstance(volume, (str, os.PathLike)):
            return case_shape(volume, annotation, segmentNames, training=True)
        return _nodeCaseShape(volume, annotation, segmentNames)

    cases = [c for c in (shapeOf(v, a) for v, a in pairs) if c is not None]
    heldOut, held = [], 0
    for volume, annotation in validationPairs or []:
        try:
            shape = shapeOf(volume, annotation)
        except IFSSNetError:
            continue
        if shape is None:
            continue
        heldOut.append(shape)
        if not isinstance(volume, (str, os.PathLike)):
            held += (shape.itemsize + shape.segments) * shape.voxels
    need = estimate_training_bytes(
        cases, config.size, width_mult=config.width_mult, batch=int(recipe.get("batch", 1)),
        run_length=int(recipe.get("run_length", 32)), window=config.window, cycle=bool(recipe.get("cycle", 0)),
        validation=heldOut, paper_protocol=valProtocol in ("paper", "both"), network_mm=config.slice_spacing_mm,
        added_labels=mode == "fewshot" and bool(fillGap or emptyPastEnds), on_gpu=trains_on_gpu(device)) + held
    check_training_memory(need)
    return need


def _recipeOf(config: dict) -> str:
    """The recipe of a stored training config (:func:`ifssnet.train_recipe.recipe_options` of the fields that
    differ from the defaults), e.g. ``--run-length 8 --batch 2 --tversky-beta 0.5``."""
    from ifssnet.train_recipe import differs_from_default, recipe_options

    return recipe_options(differs_from_default(config))


def _withValidationDice(records: Sequence[dict]) -> List[dict]:
    """Step records (in log order) with ``val_dice``: the latest validation Dice at or before that step."""
    out, current = [], float("nan")
    for r in records:
        if "val_dice" in r:
            current = float(r["val_dice"])
            if out and out[-1]["step"] == r["step"]:       # validated after this step's record
                out[-1] = {**out[-1], "val_dice": current}
        elif "loss" in r:
            out.append({**r, "val_dice": current})
    return out
