"""IFSS-Net Training: fine-tune the network on your own annotated volumes, in a background process.

Thin shell: the Logic (headless) is ``IFSSNetTrainingLib/logic.py``. Training runs as ``ifssnet train`` in a
separate process (Slicer's PythonSlicer), so Slicer stays responsive and Cancel can stop it at once; the
process writes one JSON line per step, which this module reads with a timer into a live loss plot.
"""
import os
import shutil
import tempfile
import time
import unittest

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper, WithinRange
from slicer.util import VTKObservationMixin
from typing import Annotated

from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic as _HeadlessLogic


class IFSSNetTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "IFSS-Net Training"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["IFSSNetSegmentation"]
        self.parent.contributors = ["IFSS-Net for 3D Slicer developers"]
        self.parent.helpText = (
            "Fine-tune IFSS-Net on your own volumes: add (volume, segmentation) pairs from the scene, choose full "
            "supervision (complete annotations) or few-shot (a few annotated slices), and click Train. "
            "The new model is saved to your model folder and appears in the IFSS-Net effect's model list. "
            '<a href="https://github.com/ifssnet/SlicerIFSSNet#readme">User guide</a>.')
        self.parent.acknowledgementText = "Method: Chanti et al., IFSS-Net, IEEE TMI 2021."


def _parameterRow(form, label: str, widget, parameter: str, toolTip: str):
    """Add ``widget`` to ``form`` under ``label``, bound to the parameter node's ``parameter`` (connectParameterNode
    reads the SlicerParameterName property), with its tooltip; returns the widget."""
    widget.setProperty("SlicerParameterName", parameter)
    widget.toolTip = toolTip
    form.addRow(label, widget)
    return widget


def _spinWithDefault(maximum: float, step: float, decimals: int):
    """A spin box from 0 to ``maximum`` whose 0 reads "default": the parameter's 0 lets the Logic choose."""
    import qt

    spin = qt.QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(0.0, maximum)
    spin.setSingleStep(step)
    spin.specialValueText = "default"
    return spin


@parameterNodeWrapper
class IFSSNetTrainingParameterNode:
    # full by default: few-shot mode keeps only a decremental 3.5 % of a complete annotation's slices, and full
    # refuses sparse paint with a message that says to switch (model card: no few-shot fine-tune beat its start).
    mode: Annotated[str, Choice(["fewshot", "full"])] = "full"
    epochs: Annotated[int, WithinRange(1, 1000)] = 10
    stepsPerEpoch: Annotated[int, WithinRange(1, 100000)] = 100
    fillGap: Annotated[int, WithinRange(0, 10000)] = 0
    emptyPastEnds: bool = False
    tverskyBeta: Annotated[float, WithinRange(0.0, 0.95)] = 0.0   # 0: the default (see Logic.train)
    learningRate: Annotated[float, WithinRange(0.0, 0.01)] = 0.0  # 0: the default (see Logic.train)
    outputName: str = "my-ifssnet"
    holdOutLast: bool = True   # the validation guard: fine-tunes of the shipped model can end below it (model card)
    valProtocol: Annotated[str, Choice(["both", "3-seeds", "paper"])] = "both"
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"


class IFSSNetTrainingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    POLL_MS = 500

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.process = None
        self.cancelRequested = False  # Cancel was clicked: on Windows terminate() exits with 1, not a signal
        self.resumed = False          # the running process continues a run (Resume)
        self.startedAt = 0.0          # time.time() when the running process started (which checkpoint is its own)
        self.logPath = None
        self.logOffset = 0
        self.steps = []
        self.lossTable = None
        self.lossChart = None
        self.outputPath = None
        self.workDir = None           # the exported pairs and the step log of the running process (removed after it)
        self.runOptions = {}          # what the model card falls back on, as the run was started (not the panel's now)
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import qt

        from IFSSNetSegmentationLib.gui import addCollapsibleForm, addProgressAndStatus, followSceneClose, pollTimer

        self.logic = IFSSNetTrainingLogic()
        box, form = addCollapsibleForm(self.layout, "Training data")
        self.volumeSelector = slicer.qMRMLNodeComboBox()
        self.volumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.volumeSelector.setMRMLScene(slicer.mrmlScene)
        self.segmentationSelector = slicer.qMRMLNodeComboBox()
        self.segmentationSelector.nodeTypes = ["vtkMRMLSegmentationNode"]
        self.segmentationSelector.setMRMLScene(slicer.mrmlScene)
        form.addRow("Volume:", self.volumeSelector)
        form.addRow("Segmentation:", self.segmentationSelector)
        self.addPairButton = qt.QPushButton("Add pair")
        self.removePairButton = qt.QPushButton("Remove selected")
        row = qt.QHBoxLayout()
        row.addWidget(self.addPairButton)
        row.addWidget(self.removePairButton)
        form.addRow(row)
        self.pairList = qt.QListWidget()
        self.pairList.toolTip = "The (volume, segmentation) pairs to train on. Sparse annotations are fine in few-shot mode."
        form.addRow(self.pairList)

        options, oform = addCollapsibleForm(self.layout, "Training")
        self.modeCombo = qt.QComboBox()
        self.modeCombo.addItems(["fewshot", "full"])
        self.modeCombo.setProperty("SlicerParameterName", "mode")
        self.modeCombo.toolTip = ("full (default): complete annotations. fewshot: a few painted slices per volume; a "
                                  "complete annotation trained in fewshot mode keeps only about 3.5 % of its slices.")
        oform.addRow("Mode:", self.modeCombo)
        self.epochsSpin = qt.QSpinBox()
        self.epochsSpin.setRange(1, 1000)
        self.epochsSpin.setProperty("SlicerParameterName", "epochs")
        oform.addRow("Epochs:", self.epochsSpin)
        self.stepsSpin = qt.QSpinBox()
        self.stepsSpin.setRange(1, 100000)
        self.stepsSpin.setProperty("SlicerParameterName", "stepsPerEpoch")
        oform.addRow("Steps per epoch:", self.stepsSpin)
        self.fillGapSpin = qt.QSpinBox()
        self.fillGapSpin.setRange(0, 10000)
        self.fillGapSpin.specialValueText = "off"
        self.fillGapSpin.suffix = " slices"
        _parameterRow(oform, "Fill gaps up to:", self.fillGapSpin, "fillGap",
                      "Few-shot: label each gap of up to this many slices between two painted slices (or groups) with "
                      "Fill between slices, and train on it as on painted slices. Needed where you painted single "
                      "slices apart.")
        self.pastEndsCheck = _parameterRow(
            oform, "", qt.QCheckBox("Empty past the end marks"), "emptyPastEnds",
            "Few-shot: where you marked a slice 'no muscle here' beyond a muscle's paint, train every slice past "
            "it as empty, so the network learns where the muscle ends (a muscle is one run of slices).")
        self.betaSpin = _spinWithDefault(0.95, 0.05, 2)
        _parameterRow(oform, "Tversky beta:", self.betaSpin, "tverskyBeta",
                      "Where the Tversky loss's beta starts (0.5: the Dice loss; above 0.5 a missed voxel costs more "
                      "than a false one, and masks grow). Default: 0.5 in few-shot mode (few-shot fine-tunes of the "
                      "shipped model scored better with 0.5 than with its 0.65), the base model's in full mode.")
        self.lrSpin = _spinWithDefault(0.01, 0.00001, 6)
        _parameterRow(oform, "Learning rate:", self.lrSpin, "learningRate",
                      "Adam's learning rate, and a tenth of it for the last two epochs. Default: 0.00001 to fine-tune "
                      "a trained model (every fine-tune of the shipped model at the paper's 0.0001 ended below it; at "
                      "0.00001 they drifted less, and one on sweeps of a finer probe beat it: model card), 0.0001 for "
                      "a new network.")
        self.deviceCombo = qt.QComboBox()
        self.deviceCombo.addItems(["cpu", "cuda"])
        self.deviceCombo.setProperty("SlicerParameterName", "device")
        oform.addRow("Device:", self.deviceCombo)
        self.baseCombo = qt.QComboBox()
        self.baseCombo.toolTip = "The model to fine-tune from (hover for its model card)."
        oform.addRow("Base model:", self.baseCombo)
        self.baseAdviceLabel = qt.QLabel("")
        self.baseAdviceLabel.wordWrap = True
        oform.addRow("", self.baseAdviceLabel)
        self.holdOutCheck = qt.QCheckBox("Hold out the last pair for validation")
        self.holdOutCheck.setProperty("SlicerParameterName", "holdOutLast")
        self.holdOutCheck.toolTip = ("Do not train on the last pair: propagate it from its seed slices as training "
                                     "goes, and keep the best model as <name>.best. A pair painted on a few groups of "
                                     "slices is propagated from its largest group and scored on the others.")
        oform.addRow("", self.holdOutCheck)
        self.valProtocolCombo = qt.QComboBox()
        self.valProtocolCombo.addItems(["both", "3-seeds", "paper"])
        _parameterRow(oform, "Validation seeds:", self.valProtocolCombo, "valProtocol",
                      "How the held-out pair is seeded when it is scored: 3-seeds (the 3 largest cross-sections), "
                      "paper (the paper's seed slices), or both (twice the time; a model that stops at the muscle's "
                      "ends but shrinks every mask wins under 3-seeds alone).")
        self.outputEdit = qt.QLineEdit()
        self.outputEdit.setProperty("SlicerParameterName", "outputName")
        self.outputEdit.toolTip = "Name of the new model in your model folder."
        oform.addRow("Output name:", self.outputEdit)

        buttons = qt.QHBoxLayout()
        self.trainButton = qt.QPushButton("Train")
        self.resumeButton = qt.QPushButton("Resume")
        self.resumeButton.toolTip = "Continue an interrupted run of this output name from its last checkpoint."
        buttons.addWidget(self.trainButton)
        buttons.addWidget(self.resumeButton)
        self.layout.addLayout(buttons)
        self.progressBar, self.statusLabel = addProgressAndStatus(self.layout)

        self.timer = pollTimer(self.POLL_MS, self._poll)
        self.baseCombo.connect("currentIndexChanged(int)", lambda i: self._showBaseAdvice())
        self.addPairButton.connect("clicked()", self.onAddPair)
        self.removePairButton.connect("clicked()", lambda: self.pairList.takeItem(self.pairList.currentRow))
        self.trainButton.connect("clicked()", lambda: self.onTrainOrCancel(resume=False))
        self.resumeButton.connect("clicked()", lambda: self.onTrainOrCancel(resume=True))
        self.holdOutCheck.connect("toggled(bool)", self.valProtocolCombo.setEnabled)
        self.valProtocolCombo.enabled = self.holdOutCheck.checked
        self.modeCombo.connect("currentTextChanged(QString)", self._enableFewshotOptions)
        self._enableFewshotOptions(self.modeCombo.currentText)
        self.optionsFrame = options
        followSceneClose(self)
        # The pairs name their nodes by ID (_pairs), and IDs restart after File > Close Scene: Train would have taken
        # the next scene's nodes of those IDs, listed under the closed scene's names. The list goes with the scene.
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda caller, event: self.pairList.clear())
        self._refreshBaseModels()
        self.setParameterNode(self.logic.getParameterNode())

    def cleanup(self):
        self.removeObservers()
        self.timer.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:   # let it exit, so that its files can be removed (Windows keeps open files)
                self.process.wait(timeout=5)
            except Exception:
                pass
        if self.workDir:   # the exported copies of the pairs (volume-sized): _poll, which removes them, stopped above
            shutil.rmtree(self.workDir, ignore_errors=True)
            self.workDir = None

    def enter(self):
        if self._parameterNode is None:   # the scene was closed while another module was shown
            self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, node):
        from IFSSNetSegmentationLib.gui import connectParameterNode

        connectParameterNode(self, node, self.optionsFrame)

    def _enableFewshotOptions(self, mode: str) -> None:
        """The few-shot options (Fill gaps up to, Empty past the end marks) apply to mode fewshot only."""
        for widget in (self.fillGapSpin, self.pastEndsCheck):
            widget.setEnabled(mode == "fewshot")

    def _refreshBaseModels(self):
        import qt

        from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

        self.baseCombo.blockSignals(True)          # one advice (one model file read) per refresh, below
        self.baseCombo.clear()
        self.baseCombo.addItem("New network (no base model)", "")
        for model in IFSSNetSegmentationLogic.availableModels():
            self.baseCombo.addItem(model["name"], model["path"])
            self.baseCombo.setItemData(self.baseCombo.count - 1, model["card"] or model["path"], qt.Qt.ToolTipRole)
        if self.baseCombo.count > 1:
            self.baseCombo.setCurrentIndex(1)
        self.baseCombo.blockSignals(False)
        self._showBaseAdvice()

    def _showBaseAdvice(self):
        from ifssnet.errors import IFSSNetError

        try:
            self.baseAdviceLabel.text = self.logic.baseModelAdvice(self.baseCombo.currentData or None)
        except IFSSNetError as err:
            self.baseAdviceLabel.text = str(err)

    def onAddPair(self):
        import qt

        volume, seg = self.volumeSelector.currentNode(), self.segmentationSelector.currentNode()
        if volume is None or seg is None:
            slicer.util.errorDisplay("Select a volume and its segmentation first.")
            return
        item = qt.QListWidgetItem(f"{volume.GetName()}  +  {seg.GetName()}")
        item.setData(qt.Qt.UserRole, f"{volume.GetID()}|{seg.GetID()}")
        self.pairList.addItem(item)

    def _pairs(self):
        import qt

        pairs = []
        for row in range(self.pairList.count):
            vid, sid = self.pairList.item(row).data(qt.Qt.UserRole).split("|")
            volume, seg = slicer.mrmlScene.GetNodeByID(vid), slicer.mrmlScene.GetNodeByID(sid)
            if volume is not None and seg is not None:
                pairs.append((volume, seg))
        return pairs

    def onTrainOrCancel(self, resume=False):
        if self.process is not None and self.process.poll() is None:
            self.cancelRequested = True
            self.process.terminate()  # the core writes atomically: no partial model is left behind
            self.statusLabel.text = "Cancelling..."
            return
        from IFSSNetSegmentationLib.gui import ensurePythonPackages, ensureTorch

        if not ensureTorch() or not ensurePythonPackages([("tqdm", "tqdm"), ("slicerio", "slicerio")]):
            return
        p = self._parameterNode
        self.outputPath = self.logic.defaultOutputPath(p.outputName.strip() or "my-ifssnet")
        resumeFrom = self.logic.resumePath(self.outputPath) if resume else None
        if resume and not resumeFrom:
            slicer.util.errorDisplay(f"There is no interrupted run of '{p.outputName}' to resume.")
            return
        pairs = self._pairs()
        if not pairs:
            slicer.util.errorDisplay("Add at least one (volume, segmentation) pair." if not resume else
                                     "Resume needs the (volume, segmentation) pairs the run was trained on: add them.")
            return
        heldOut = []
        if p.holdOutLast and pairs:
            if len(pairs) < 2:
                slicer.util.errorDisplay("Holding out a pair for validation needs at least two pairs: "
                                         "add another, or untick 'Hold out the last pair'.")
                return
            pairs, heldOut = pairs[:-1], pairs[-1:]
        fewshot = p.mode == "fewshot"
        try:
            with slicer.util.WaitCursor():   # refuse a run that cannot fit before minutes of export (Logic tests)
                self.logic.checkMemory(pairs, p.mode, baseModel=self.baseCombo.currentData or None,
                                       resume=resumeFrom, device=p.device, validationPairs=heldOut or None,
                                       valProtocol=p.valProtocol, fillGap=p.fillGap if fewshot else 0,
                                       emptyPastEnds=p.emptyPastEnds and fewshot)
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not start training: {exc}")
            return
        from ifssnet.errors import Cancelled

        workDir = tempfile.mkdtemp(prefix="IFSSNetTraining-")
        try:
            filePairs, valPairs = self._exportPairs(pairs, heldOut, workDir)
            self.logPath = os.path.join(workDir, "steps.jsonl")
            self.logOffset = 0
            self.steps = []
            python = shutil.which("PythonSlicer") or None
            cmd = self.logic.trainingCommand(filePairs, p.mode, p.epochs, self.outputPath, self.logPath,
                                             baseModel=self.baseCombo.currentData or None, resume=resumeFrom,
                                             stepsPerEpoch=p.stepsPerEpoch, device=p.device, python=python,
                                             validationPairs=valPairs, valProtocol=p.valProtocol,
                                             fillGap=p.fillGap if p.mode == "fewshot" else 0,
                                             emptyPastEnds=p.emptyPastEnds and p.mode == "fewshot",
                                             tverskyBeta=p.tverskyBeta or None,
                                             learningRate=p.learningRate or None)
            env = os.environ.copy()
            env["TQDM_DISABLE"] = "1"  # progress comes from the step log
            import ifssnet

            packageRoot = os.path.dirname(os.path.dirname(ifssnet.__file__))
            env["PYTHONPATH"] = packageRoot + os.pathsep + env.get("PYTHONPATH", "")
            import subprocess

            # stderr to a file, not a pipe: a pipe nobody reads until the end blocks a long run once it is full.
            self.stderrPath = os.path.join(workDir, "stderr.txt")
            self.startedAt = time.time()
            with open(self.stderrPath, "w") as err:
                self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            self.cancelRequested = False
            self.resumed = bool(resumeFrom)
            # The card is written when the process ends, maybe hours later: by then the options may have been
            # changed, or File > Close Scene has left no parameter node (None while another module is shown).
            self.runOptions = {"mode": p.mode, "epochs": p.epochs, "baseModel": self.baseCombo.currentData or None,
                               "cases": [f"{volume.GetName()}  +  {seg.GetName()}" for volume, seg in pairs]}
        except Cancelled:
            shutil.rmtree(workDir, ignore_errors=True)
            self.statusLabel.text = "Export cancelled: no training was started."
            return
        except Exception as exc:
            shutil.rmtree(workDir, ignore_errors=True)
            slicer.util.errorDisplay(f"Could not start training: {exc}")
            return
        self.workDir = workDir
        self.total = self.logic.runTotal(resumeFrom, p.epochs, p.stepsPerEpoch)   # a resumed run's own steps
        self.progressBar.setRange(0, self.total)
        self.progressBar.setValue(0)
        self.progressBar.setFormat("preparing")
        self.progressBar.visible = True
        self.trainButton.text = "Cancel"
        self.resumeButton.enabled = False
        self.timer.start()

    def _exportPairs(self, pairs, heldOut, workDir):
        """The Logic's exportPairs for the training and held-out pairs, behind a progress dialog whose Cancel stops
        it between pairs (Qt events are pumped there; a full-size sweep takes seconds to write). Returns
        (training files, held-out files or None); a cancel raises Cancelled."""
        import qt

        from ifssnet.progress import CancelToken

        token = CancelToken()
        # Window-modal: a QProgressDialog is modeless by default, and the processEvents below would let the user click
        # Train again (a second export and process), edit the pairs or close the scene in the middle of the export.
        # (createProgressDialog sets its keyword arguments as Qt properties before the dialog is first shown.)
        dialog = slicer.util.createProgressDialog(maximum=len(pairs) + len(heldOut), windowTitle="IFSS-Net training",
                                                  labelText="Writing the pairs for the training process",
                                                  windowModality=qt.Qt.WindowModal)
        dialog.connect("canceled()", token.cancel)
        offset = 0

        def progress(stage, done, total):
            dialog.setValue(offset + done)
            slicer.app.processEvents()

        try:
            filePairs = self.logic.exportPairs(pairs, workDir, progress=progress, cancel=token)
            offset = len(pairs)
            valPairs = (self.logic.exportPairs(heldOut, os.path.join(workDir, "validation"), progress=progress,
                                               cancel=token) if heldOut else None)
        finally:
            dialog.close()
        return filePairs, valPairs

    def _poll(self):
        code = self.process.poll()   # first: the log read next then holds every record of a process that has exited
        self._readStepLog()
        if code is None:
            return
        self.timer.stop()
        self.progressBar.visible = False
        self.trainButton.text = "Train"
        self.resumeButton.enabled = True
        try:
            self._finished(code)
        except Exception as exc:   # a slot's exception would leave the panel as if the run were still going
            self.statusLabel.text = f"Training ended, but: {exc}"
            slicer.util.errorDisplay(f"Training ended, but: {exc}")
        finally:
            self.process = None
            if self.workDir:   # the exported copies of the pairs (a Resume exports them again)
                shutil.rmtree(self.workDir, ignore_errors=True)
                self.workDir = None

    def _readStepLog(self):
        """New records of the step log: the loss plot (shown with the first) and the progress bar's text."""
        records, self.logOffset = self.logic.readStepLog(self.logPath, self.logOffset)
        if not records:
            return
        self.steps += records
        chart = self.lossChart
        self.lossTable, self.lossChart = self.logic.updateLossPlot(self.steps, self.lossTable, self.lossChart)
        # first records, or the chart made anew (File > Close Scene during the run removed it): show the plot
        if len(self.steps) == len(records) or self.lossChart is not chart:
            # a layout with a plot view: the one shown where it has one, else Four-Up with a plot (the Plots logic's
            # rule, as its ShowChartInLayout); the propagation leaves alone the views that opt out (the Comparison's)
            layoutManager = slicer.app.layoutManager()
            layoutManager.setLayout(slicer.modules.plots.logic().GetLayoutWithPlot(layoutManager.layout))
            selection = slicer.app.applicationLogic().GetSelectionNode()
            selection.SetActivePlotChartID(self.lossChart.GetID())
            slicer.app.applicationLogic().PropagatePlotChartSelection()
        stepRecords = self.logic.stepRecords(self.steps)
        best = self.logic.bestValidation(self.steps)
        if stepRecords:
            last = stepRecords[-1]
            text = f"training step {int(last['step'])}/{self.total}, loss {last['loss']:.4f}"
            if best is not None:
                text += f", best validation Dice {best.dice:.3f} (step {best.step})"
            self.progressBar.setValue(int(last["step"]))
            self.progressBar.setFormat(text)

    def _finished(self, code):
        """The status line (and model card) for a training process that exited with ``code``."""
        if code == 0:
            self.logic.writeModelCard(self.outputPath, **self.runOptions, steps=self.logic.stepRecords(self.steps))
            self.statusLabel.text = f"Saved {self.outputPath}. It is now in the IFSS-Net effect's model list."
            verdict = self.logic.validationVerdict(self.steps, self.outputPath)
            if verdict:
                self.statusLabel.text += " " + verdict
            self._refreshBaseModels()
        elif code < 0 or self.cancelRequested:
            self.statusLabel.text = self.logic.cancelledText(self.outputPath, self.startedAt, self.resumed)
        else:
            with open(self.stderrPath, errors="replace") as f:
                err = f.read()
            lastLine = err.strip().splitlines()[-1] if err.strip() else f"exit code {code}"
            self.statusLabel.text = f"Training failed: {lastLine}"
            slicer.util.errorDisplay(f"Training failed: {lastLine}")


class IFSSNetTrainingLogic(ScriptedLoadableModuleLogic, _HeadlessLogic):
    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        _HeadlessLogic.__init__(self)

    def getParameterNode(self):
        return IFSSNetTrainingParameterNode(super().getParameterNode())


class IFSSNetTrainingTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: a tiny fine-tuning run on a small phantom writes a model and its model card."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TinyTrainingRun()
        self.setUp()
        self.test_OptionBoxesSetTheParameters()

    def test_OptionBoxesSetTheParameters(self):
        """The Tversky beta and Learning rate boxes write the parameter node that Train reads (0: the default);
        what Train passes on to the command is tested headless (Testing/test_slicer_training.py)."""
        slicer.util.selectModule("IFSSNetTraining")   # entered: setUp's scene close left it a new parameter node
        widget = slicer.util.getModuleWidget("IFSSNetTraining")
        node = widget._parameterNode
        self.assertIsNotNone(node)
        widget.betaSpin.value = 0.55
        widget.lrSpin.value = 0.00001
        self.assertAlmostEqual(node.tverskyBeta, 0.55)
        self.assertAlmostEqual(node.learningRate, 0.00001)
        widget.betaSpin.value = 0.0
        widget.lrSpin.value = 0.0
        self.assertEqual((node.tverskyBeta, node.learningRate), (0.0, 0.0))
        self.delayDisplay("Beta and learning rate boxes set their parameters")

    def test_TinyTrainingRun(self):
        import numpy as np

        from ifssnet.phantom import make_phantom

        from IFSSNetSegmentationLib import mrml_arrays as A
        from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

        if not IFSSNetSegmentationLogic.torchAvailable():   # a stock Slicer installs PyTorch on the first Train
            raise unittest.SkipTest("Training needs PyTorch, which is not installed yet (the module installs it, after "
                                    "asking, on the first Train).")
        phantom = make_phantom(seed=2, shape=(48, 64, 64))
        sz, sy, sx = phantom.spacing_kji
        volumeNode = slicer.util.addVolumeFromArray(phantom.volume, np.diag([-sx, -sy, sz, 1.0]), "Phantom")
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Reference")
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
        A.writeSegment(segNode, sid, phantom.labels["GM"], A.referenceGeometry(volumeNode, segNode))
        out = os.path.join(tempfile.mkdtemp(), "selftest.pt")
        path = IFSSNetTrainingLogic().train([(volumeNode, segNode)], "full", 1, outputPath=out, stepsPerEpoch=2,
                                            runLength=6, size=32, widthMult=0.15)
        self.assertTrue(os.path.exists(path))
        self.assertTrue(os.path.exists(os.path.splitext(path)[0] + ".md"))
        self.delayDisplay("Training self-test passed")


if __name__ == "__main__":
    unittest.main()
