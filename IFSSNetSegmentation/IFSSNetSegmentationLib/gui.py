"""The Propagate panel shared by the "IFSS-Net" Segment Editor effect and the IFSSNetSegmentation module page.

GUI only (qt, ctk, slicer): options, Propagate/Cancel, a progress bar with named states, preview with
Apply/Cancel, the least-confident slices, and "Show volume". The work is the Logic's: ``prepare`` and
``apply`` run in the main thread (MRML), ``compute`` runs on one persistent worker thread
(:class:`~IFSSNetSegmentationLib.worker.BackgroundWorker`), polled by a ``qt.QTimer``.

The owner (effect or module widget) gives three callables:
``inputs(allVisible: bool) -> (volumeNode, segmentationNode, segmentIds)``, ``saveUndo(segmentationNode)`` (before
that node is written; the Segment Editor's undo keeps the editor's own segmentation only, so the owner saves where
the editor edits that node: the user may have switched it while a run went on), and ``settings(name, default)`` /
``setSetting(name, value)`` to keep the options (effect parameters or parameter node). The effect also gives
``confirmVisible() -> bool``, asked before the selected segment is written (Propagate of that one segment, No muscle
here): its ``scriptedEffect.confirmCurrentSegmentVisible``, by which Slicer's effects ask to show a hidden segment
before they edit it (Cancel: no run), so a preview is not written into a segment the user cannot see, and
``editorNode() -> vtkMRMLSegmentEditorNode``: its parameter set node, whose masking settings (editable area, editable
intensity range, Modify other segments) the preview is written with (``Logic.apply(editorNode=...)``), read when the
result is written; the module page gives none and writes the result as it is.
"""
from __future__ import annotations

import logging

import qt
import slicer

from IFSSNetSegmentationLib import logic as L
from IFSSNetSegmentationLib import mrml_arrays as A
from IFSSNetSegmentationLib.worker import BackgroundWorker

README_URL = "https://github.com/ifssnet/SlicerIFSSNet#readme"
HELP_TEXT = (
    "Paint the muscle on at least 3 slices (consecutive or far apart, several groups allowed) in any view, "
    "then click Propagate: IFSS-Net carries them through the whole volume in the background. "
    "Check the preview (repaint a least-confident slice and propagate again if needed), click Apply, and read "
    'the volume with "Show volume". Where a mask runs on past the muscle\'s end, go to the first slice past '
    'the end and click "No muscle here": the next run stops there. '
    "In the Segment Editor, the result is written with the editor's Masking settings, as Grow from seeds writes its "
    "result: it changes only the editable area and intensity range, and Modify other segments decides which other "
    "segments give up the voxels it takes. Painted slices stay as painted, also outside the editable area (masking "
    "limits what Propagate changes, and never erases what is there). The module page ignores masking. "
    f'<a href="{README_URL}">User guide</a>.'
)

DEVICES = [("auto", "Auto"), ("cpu", "CPU"), ("cuda", "GPU (CUDA)")]
PRESETS = [("accurate", "Accurate"), ("balanced", "Balanced"), ("fast", "Fast")]
EXTENTS = [("muscle", "To the ends of the muscle"), ("between", "Only between seed groups")]
SETTINGS = {"Model": "", "Device": "auto", "Preset": "balanced", "Extent": "muscle", "AllVisible": "0",
            "Exclusive": "1"}
"""The panel's stored settings and their defaults (the effect's ``setMRMLDefaults`` sets these too)."""


def ensureTorch(parent=None) -> bool:
    """True if torch can be used; otherwise ask, then install it through the PyTorch extension."""
    if L.IFSSNetSegmentationLogic.torchAvailable():
        return True
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay("IFSS-Net needs PyTorch. Install the 'PyTorch' extension from the Extensions "
                                 "Manager, restart Slicer, and try again.", parent=parent)
        return False
    if not slicer.util.confirmOkCancelDisplay(
            "IFSS-Net needs PyTorch, which is not installed yet. Install it now? "
            "This downloads about 1-3 GB and can take several minutes.", parent=parent):
        return False
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    # installTorch returns None when the user declines, and raises where the download or pip fails (it runs
    # light-the-torch through slicer.util._executePythonModule): the callers are button slots, where an exception
    # would only reach the Python console and the click would seem to do nothing.
    try:
        with slicer.util.WaitCursor():
            torch = torchLogic.installTorch(askConfirmation=False)
    except Exception as exc:
        logging.exception("IFSS-Net: installing PyTorch failed")
        slicer.util.errorDisplay(f"PyTorch could not be installed: {exc}\n\nCheck the internet connection and try again, "
                                 "or install it in the PyTorch Utils module (Utilities category); restart Slicer if "
                                 "it says PyTorch files are in use.", parent=parent)
        return False
    if torch is None:
        slicer.util.errorDisplay("PyTorch could not be installed. See the Python console for details.", parent=parent)
        return False
    return True


def offerInstall(error, parent=None) -> bool:
    """For a DependencyError that names a pip command: ask, then install it with slicer.util.pip_install."""
    import re

    from ifssnet.errors import DependencyError

    if not isinstance(error, DependencyError):
        return False
    match = re.search(r"pip install ([\w.\-\[\]<>=!,]+(?:\s+[\w.\-\[\]<>=!,]+)*)", str(error))
    if not match:
        return False
    packages = match.group(1).strip().rstrip(".,")
    if packages.split()[0] == "torch":  # torch comes through the PyTorch extension, not plain pip
        return ensureTorch(parent)
    if not slicer.util.confirmOkCancelDisplay(f"{error}\n\nInstall {packages} into Slicer's Python now?", parent=parent):
        return False
    if not _pipInstall(packages, parent):
        return False
    slicer.util.infoDisplay(f"Installed {packages}. Click the button again.", parent=parent)
    return True


def _pipInstall(packages: str, parent=None) -> bool:
    """``slicer.util.pip_install(packages)``; False, with a message that says what to do, where it fails: it raises
    CalledProcessError (no network, no such version), which in a button's slot would reach only the Python console."""
    try:
        with slicer.util.WaitCursor():
            slicer.util.pip_install(packages)
    except Exception as exc:
        logging.exception("IFSS-Net: installing %s failed", packages)
        slicer.util.errorDisplay(f"Could not install {packages}: {exc}\n\nCheck the internet connection and try again, "
                                 f"or install it in the Python console: slicer.util.pip_install('{packages}')",
                                 parent=parent)
        return False
    return True


def ensurePythonPackages(packages, parent=None) -> bool:
    """``packages``: [(module name, pip name)]. Ask once, then pip-install the missing ones."""
    import importlib.util

    missing = [pipName for module, pipName in packages if importlib.util.find_spec(module) is None]
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(f"This needs the Python packages {', '.join(missing)}. Install them now?",
                                              parent=parent):
        return False
    return _pipInstall(" ".join(missing), parent)


# ---- small widget helpers shared by the module pages (IFSSNetSegmentation, IFSSNetComparison, IFSSNetTraining) ----


def addCollapsibleForm(layout, text):
    """A ``ctkCollapsibleButton`` titled ``text`` added to ``layout``, and the ``QFormLayout`` inside it."""
    import ctk

    box = ctk.ctkCollapsibleButton()
    box.text = text
    layout.addWidget(box)
    return box, qt.QFormLayout(box)


def addProgressAndStatus(layout):
    """A hidden progress bar and a word-wrapped status label added to ``layout`` (then a stretch)."""
    progressBar = qt.QProgressBar()
    progressBar.visible = False
    layout.addWidget(progressBar)
    statusLabel = qt.QLabel("")
    statusLabel.wordWrap = True
    layout.addWidget(statusLabel)
    layout.addStretch(1)
    return progressBar, statusLabel


def pollTimer(intervalMs, callback):
    """A (stopped) ``QTimer`` calling ``callback`` every ``intervalMs`` ms."""
    timer = qt.QTimer()
    timer.setInterval(intervalMs)
    timer.connect("timeout()", callback)
    return timer


def connectParameterNode(widget, node, frame):
    """Disconnect ``widget``'s parameter node from its GUI, make ``node`` the widget's one and connect it to the
    widgets in ``frame`` (``widget._parameterNode`` / ``widget._parameterNodeGuiTag``)."""
    if widget._parameterNode:
        widget._parameterNode.disconnectGui(widget._parameterNodeGuiTag)
    widget._parameterNode = node
    if node:
        widget._parameterNodeGuiTag = node.connectGui(frame)


def followSceneClose(widget, connect=None):
    """Keep ``widget``'s parameter node (``widget.logic.getParameterNode()``, bound by ``widget.setParameterNode``)
    across File > Close Scene. Closing the scene removes the node: it is disconnected when the close starts, and
    the new scene's one is connected when the close ends where the module is shown (without it the options would
    be bound to nothing and the buttons would read None; as Slicer's scripted module template). Where another
    module was shown, the widget's ``enter`` connects it. ``widget``: a ``VTKObservationMixin``. ``connect``: what
    connects the new scene's node instead (the Segmentation module's ``initializeParameterNode`` also picks inputs)."""
    connect = connect or (lambda: widget.setParameterNode(widget.logic.getParameterNode()))
    widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda c, e: widget.setParameterNode(None))

    def onSceneEndClose(caller, event):
        if widget.parent.isEntered:
            connect()

    widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, onSceneEndClose)


def addModelAndDeviceRows(form, modelTip="The network that propagates the slices. Hover an entry for its model card."):
    """The "Model:" and "Device:" rows (the Propagate panel's, the Comparison module's) added to ``form``:
    ``(modelCombo, deviceCombo)``. The model combo's item data is the checkpoint's path ("" for the shipped one;
    fill it with :func:`fillModelCombo`), the device combo's a key of :data:`DEVICES` (auto, cpu, cuda)."""
    modelCombo = qt.QComboBox()
    modelCombo.toolTip = modelTip
    form.addRow("Model:", modelCombo)
    deviceCombo = qt.QComboBox()
    for key, label in DEVICES:
        deviceCombo.addItem(label, key)
    deviceCombo.toolTip = "Auto uses the GPU when PyTorch sees one, else the CPU."
    form.addRow("Device:", deviceCombo)
    return modelCombo, deviceCombo


def fillModelCombo(combo, models, current: str) -> None:
    """List ``models`` (``IFSSNetSegmentationLogic.availableModels()``: shipped first, then the user's fine-tuned ones,
    each with its model card as tooltip) in ``combo`` and select the path ``current`` (the first where it is not
    listed), without emitting its signals."""
    combo.blockSignals(True)
    try:
        combo.clear()
        if not models:
            combo.addItem("Shipped IFSS-Net model", "")
        for model in models:
            label = model["name"] + (" (shipped)" if model["source"] == "shipped" else "")
            combo.addItem(label, model["path"])
            combo.setItemData(combo.count - 1, model["card"] or model["path"], qt.Qt.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(current)))
    finally:
        combo.blockSignals(False)


class PropagatePanel:
    """Builds the widgets into ``parentLayout`` and runs propagation jobs."""

    POLL_MS = 100

    def __init__(self, parentLayout, inputs, saveUndo=None, settings=None, setSetting=None, showSelectors=False,
                 estimateAllowed=None, confirmVisible=None, editorNode=None):
        self.inputs = inputs
        self.editorNode = editorNode or (lambda: None)
        self.confirmVisible = confirmVisible or (lambda: True)
        # The expected time imports torch and times a network step (about 1 s): the effect allows it only while it
        # is the active effect (Slicer tells every registered effect when the source volume changes).
        self.estimateAllowed = estimateAllowed or (lambda: True)
        self.saveUndo = saveUndo or (lambda segmentationNode: None)
        self.settings = settings or (lambda name, default: default)
        self.setSetting = setSetting or (lambda name, value: None)
        self.logic = L.IFSSNetSegmentationLogic()
        self.worker = None
        self.job = None
        self.ticket = None
        self.cancelToken = None
        self.busyNode = None  # the segmentation node the running job holds (Logic._acquire), released by _poll
        self.previewShown = False
        # The segmentation node the preview was written to, held by the object, not its ID: IDs restart after File >
        # Close Scene (the next scene's first segmentation is "vtkMRMLSegmentationNode1" again, with segments "GM"...)
        self.previewNode = None
        self.timer = qt.QTimer()
        self.timer.setInterval(self.POLL_MS)
        self.timer.connect("timeout()", self._poll)
        self._build(parentLayout)
        self.refreshModels()
        self.updateButtons()

    # ---- widgets -------------------------------------------------------------------------------

    def _build(self, layout):
        form = qt.QFormLayout()
        layout.addLayout(form)

        self.modelCombo, self.deviceCombo = addModelAndDeviceRows(form)

        self.presetCombo = qt.QComboBox()
        for key, label in PRESETS:
            self.presetCombo.addItem(label, key)
        self.presetCombo.toolTip = ("Accurate and Balanced predict every slice three times (Balanced uses half precision "
                                    "on a GPU). Fast steps three slices at a time: about 3x quicker, but the shipped model "
                                    "was not trained for it, and on held-out phantoms its masks are worse (Dice 0.67 "
                                    "against 0.74, volume error 69 % against 16 %). Report volumes from Accurate or "
                                    "Balanced.")
        form.addRow("Preset:", self.presetCombo)

        self.estimateLabel = qt.QLabel("")
        self.estimateLabel.toolTip = ("How long Propagate takes at most for the loaded volume with these options on this "
                                      "computer (one network step is timed; runs usually stop earlier, at the muscle's end).")
        form.addRow("Expected time:", self.estimateLabel)

        self.extentCombo = qt.QComboBox()
        for key, label in EXTENTS:
            self.extentCombo.addItem(label, key)
        self.extentCombo.toolTip = ("To the ends of the muscle: propagation continues past the outer seed slices "
                                    "until the muscle ends. Only between seed groups: stops at the outer seeds.")
        form.addRow("Propagate:", self.extentCombo)

        self.allVisibleCheck = qt.QCheckBox("All visible segments at once")
        self.allVisibleCheck.toolTip = "Propagate every visible segment that has painted slices, in one run."
        form.addRow(self.allVisibleCheck)

        self.exclusiveCheck = qt.QCheckBox("Segments do not overlap")
        self.exclusiveCheck.checked = True
        self.exclusiveCheck.toolTip = ("Segments propagated together do not overlap: a voxel two of them claim goes to "
                                       "the one painted nearer to its slice, and a voxel painted for one is not given "
                                       "to another. Off: each segment is propagated as if it were alone (README, "
                                       "'Muscles that do not overlap').")
        form.addRow(self.exclusiveCheck)

        self.propagateButton = qt.QPushButton("Propagate")
        self.propagateButton.toolTip = "Propagate the painted slices through the volume (in the background)."
        self.noMuscleButton = qt.QPushButton("No muscle here")
        self.noMuscleButton.toolTip = ("Mark the slice shown in the view you painted in as 'no muscle here' for the "
                                       "selected segment, where the muscle has ended: the slice is cleared and the next "
                                       "Propagate does not run past it. Mark both ends to stop a mask that runs on.")
        propagateRow = qt.QHBoxLayout()
        propagateRow.addWidget(self.propagateButton, 3)
        propagateRow.addWidget(self.noMuscleButton, 1)
        layout.addLayout(propagateRow)

        self.progressBar = qt.QProgressBar()
        self.progressBar.setTextVisible(True)
        self.progressBar.visible = False
        layout.addWidget(self.progressBar)

        previewRow = qt.QHBoxLayout()
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.toolTip = "Keep the propagated result (the Segment Editor's Undo button can still take it back)."
        self.discardButton = qt.QPushButton("Cancel")
        self.discardButton.toolTip = "Discard the preview: the segment goes back to exactly what you painted."
        previewRow.addWidget(self.applyButton)
        previewRow.addWidget(self.discardButton)
        layout.addLayout(previewRow)

        self.confidenceList = qt.QListWidget()
        self.confidenceList.toolTip = ("First, per segment, the slice to paint next: the middle of the longest "
                                       "stretch no painted slice anchors. Then the slices most likely to be wrong: "
                                       "far from the painted slices (errors add up along the sweep), or with an "
                                       "unsure boundary. Click one to jump there; paint it and click Propagate "
                                       "again to re-anchor from it.")
        self.confidenceList.setMaximumHeight(110)
        self.confidenceLabel = qt.QLabel("Paint next, and the least confident slices:")
        layout.addWidget(self.confidenceLabel)
        layout.addWidget(self.confidenceList)

        self.volumeButton = qt.QPushButton("Show volume")
        self.volumeButton.toolTip = "Run Segment Statistics (voxel count, mm3, cm3) and show the table."
        layout.addWidget(self.volumeButton)

        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        layout.addWidget(self.statusLabel)

        self.propagateButton.connect("clicked()", self.onPropagateOrCancel)
        self.noMuscleButton.connect("clicked()", self.onNoMuscleHere)
        self.applyButton.connect("clicked()", self.onApply)
        self.discardButton.connect("clicked()", self.onDiscard)
        self.confidenceList.connect("itemClicked(QListWidgetItem*)", self.onConfidenceItemClicked)
        self.volumeButton.connect("clicked()", self.onShowVolume)
        for combo, name in ((self.deviceCombo, "Device"), (self.presetCombo, "Preset"), (self.extentCombo, "Extent")):
            combo.connect("currentIndexChanged(int)", lambda i, c=combo, n=name: self.setSetting(n, c.currentData))
        self.modelCombo.connect("currentIndexChanged(int)",
                                lambda i: self.setSetting("Model", self.modelCombo.currentData or ""))
        self.allVisibleCheck.connect("toggled(bool)", lambda on: self.setSetting("AllVisible", "1" if on else "0"))
        self.exclusiveCheck.connect("toggled(bool)", lambda on: self.setSetting("Exclusive", "1" if on else "0"))
        for combo in (self.modelCombo, self.deviceCombo, self.presetCombo):
            combo.connect("currentIndexChanged(int)", lambda i: self.updateEstimate())
        self.allVisibleCheck.connect("toggled(bool)", lambda on: self.updateEstimate())

    def refreshModels(self):
        """Shipped model first, then the fine-tuned ones in the user's model folder (model card as tooltip)."""
        fillModelCombo(self.modelCombo, self.logic.availableModels(), self.settings("Model", SETTINGS["Model"]))
        self.updateFromSettings()
        self.updateEstimate()

    def updateEstimate(self):
        """Show the expected time of Propagate for the loaded volume with the chosen options (Logic.expectedSeconds)."""
        if self.running or not self.estimateAllowed():
            return
        if not L.IFSSNetSegmentationLogic.torchAvailable():
            self.estimateLabel.text = "(PyTorch is not installed yet)"
            return
        try:
            volumeNode, segmentationNode, segmentIds = self.inputs(self.allVisibleCheck.checked)
            if volumeNode is None:
                self.estimateLabel.text = "(select a volume)"
                return
            with slicer.util.WaitCursor():
                seconds = self.logic.expectedSeconds(volumeNode, segmentationNode, segmentIds,
                                                     model=self.modelCombo.currentData or None,
                                                     device=self.deviceCombo.currentData,
                                                     preset=self.presetCombo.currentData)
            self.estimateLabel.text = L.durationText(seconds) + " at most"
        except Exception as exc:  # an estimate never stops the user; Propagate reports real problems
            logging.info("IFSS-Net: no time estimate: %s", exc)
            self.estimateLabel.text = ""

    def updateFromSettings(self):
        """Show the stored options (effect parameters or parameter node) without writing them back."""
        widgets = (self.modelCombo, self.deviceCombo, self.presetCombo, self.extentCombo, self.allVisibleCheck,
                   self.exclusiveCheck)
        for w in widgets:
            w.blockSignals(True)
        try:
            model = self.settings("Model", SETTINGS["Model"])
            if self.modelCombo.findData(model) >= 0:
                self.modelCombo.setCurrentIndex(self.modelCombo.findData(model))
            for combo, name in ((self.deviceCombo, "Device"), (self.presetCombo, "Preset"),
                                (self.extentCombo, "Extent")):
                combo.setCurrentIndex(max(0, combo.findData(self.settings(name, SETTINGS[name]))))
            self.allVisibleCheck.checked = self.settings("AllVisible", SETTINGS["AllVisible"]) == "1"
            self.exclusiveCheck.checked = self.settings("Exclusive", SETTINGS["Exclusive"]) == "1"
        finally:
            for w in widgets:
                w.blockSignals(False)

    # ---- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.ticket is not None

    def updateButtons(self):
        self.propagateButton.text = "Cancel" if self.running else "Propagate"
        self.propagateButton.enabled = True
        self.applyButton.enabled = self.previewShown and not self.running
        self.discardButton.enabled = self.previewShown and not self.running
        for w in (self.modelCombo, self.deviceCombo, self.presetCombo, self.extentCombo, self.allVisibleCheck,
                  self.exclusiveCheck, self.noMuscleButton):
            w.enabled = not self.running
        self.progressBar.visible = self.running

    def setStatus(self, text):
        self.statusLabel.text = text
        if text:
            slicer.util.showStatusMessage(text, 3000)

    # ---- actions -------------------------------------------------------------------------------

    def onPropagateOrCancel(self):
        if self.running:
            if self.cancelToken is not None:
                self.cancelToken.cancel()
            self.setStatus("Cancelling...")
            return
        if self.previewShown:  # a new run starts from the applied state of the previous preview
            self.onApply()
        method = L.DEFAULT_METHOD
        if not self.allVisibleCheck.checked and not self.confirmVisible():   # a hidden segment: shown, or no run
            return
        if not ensureTorch():
            return
        try:
            volumeNode, segmentationNode, segmentIds = self.inputs(self.allVisibleCheck.checked)
            self.job = self.logic.prepare(volumeNode, segmentationNode, segmentIds,
                                          model=self.modelCombo.currentData or None,
                                          device=self.deviceCombo.currentData, method=method,
                                          preset=self.presetCombo.currentData, extent=self.extentCombo.currentData,
                                          skipEmpty=self.allVisibleCheck.checked,
                                          exclusive=self.exclusiveCheck.checked)
            self.logic._acquire(segmentationNode)
        except Exception as exc:
            self.job = None
            self._showError(exc)
            return
        self.busyNode = segmentationNode
        try:
            if self.worker is None:
                self.worker = BackgroundWorker()
            self.ticket, self.cancelToken = self.worker.startJob(self.logic.compute, self.job)
        except Exception as exc:
            self._releaseBusyNode()
            self.job = None
            self._showError(exc)
            return
        self.progressBar.setRange(0, 0)
        self.progressBar.setFormat("preparing")
        self.setStatus("")
        self.timer.start()
        self.updateButtons()

    def onNoMuscleHere(self):
        """Mark the slice shown across the painted axis 'no muscle here' (Logic.markNoMuscle)."""
        from ifssnet.errors import InputError

        if self.previewShown:  # the mark applies to the kept result
            self.onApply()
        if not self.confirmVisible():
            return
        try:
            volumeNode, segmentationNode, segmentIds = self.inputs(False)
            if volumeNode is None or segmentationNode is None or not segmentIds or len(segmentIds) != 1:
                raise InputError("'No muscle here' marks one segment, and one segment is not selected.",
                                 "Select the volume and the one segment whose muscle has ended on this slice.")
            views = [A.matrixArray(slicer.app.layoutManager().sliceWidget(name).mrmlSliceNode().GetSliceToRAS())
                     for name in slicer.app.layoutManager().sliceViewNames()]
            self.saveUndo(segmentationNode)
            mark = self.logic.markNoMuscle(volumeNode, segmentationNode, segmentIds[0], views=views)
        except Exception as exc:
            self._showError(exc)
            return
        self.setStatus(f"Slice {mark.index} marked 'no muscle here' ({len(mark.slices)} annotated slices). "
                       "Propagate does not run past it.")

    def _poll(self):
        if self.worker is None:
            return
        latest = self.worker.latestProgress()
        if latest:
            stage, done, total = latest
            self.progressBar.setRange(0, max(total, 1))
            self.progressBar.setValue(min(done, max(total, 1)))
            self.progressBar.setFormat(L.progressText(stage, done, total))
        for ticket, result, error in self.worker.poll():
            if ticket != self.ticket:
                continue
            self.timer.stop()
            self.ticket = None
            # Released by the node the run acquired: after the node's removal or a scene close, GetNodeByID finds
            # nothing, and the ID (scene IDs restart after a close) would stay 'already running' until a restart.
            # The result goes to that node too: after a close, the ID names another scene's segmentation (apply
            # refuses a node that is in no scene, "removed during the run").
            segmentationNode = self.busyNode
            self._releaseBusyNode()
            try:
                if error is not None:
                    self.job = None
                    self.updateButtons()  # progress bar down, Propagate back, before the dialog (even if it fails)
                    self._showError(error)
                else:
                    self._showPreview(segmentationNode)
            finally:
                self.updateButtons()

    def _releaseBusyNode(self):
        if self.busyNode is not None:
            self.logic._release(self.busyNode)
            self.busyNode = None

    def _showPreview(self, segmentationNode):
        self.progressBar.setFormat("writing result")
        try:
            self.saveUndo(segmentationNode)
            summary = self.logic.apply(self.job, segmentationNode, cancel=self.cancelToken,
                                       editorNode=self.editorNode())
        except Exception as exc:
            self._showError(exc)
            self.job = None
            return
        self.previewShown = True
        self.previewNode = segmentationNode
        self.confidenceList.clear()
        for sid, entry in summary["segments"].items():
            if entry.get("paint_next") is not None:
                item = qt.QListWidgetItem(f"{entry['name']}: paint slice {entry['paint_next']} next "
                                          "(middle of the longest unpainted stretch)")
                item.setData(qt.Qt.UserRole, f"{entry['axis']}:{entry['paint_next']}")
                self.confidenceList.addItem(item)
            for end, sliceIndex in zip(("starts", "ends"), entry.get("ends") or ()):
                item = qt.QListWidgetItem(f"{entry['name']}: the mask {end} at slice {sliceIndex} (if the muscle "
                                          "ended before, go past its end and click No muscle here)")
                item.setData(qt.Qt.UserRole, f"{entry['axis']}:{sliceIndex}")
                self.confidenceList.addItem(item)
            for sliceIndex, confidence in entry["least_confident"]:
                item = qt.QListWidgetItem(f"{entry['name']}: slice {sliceIndex} (confidence {confidence:.2f})")
                item.setData(qt.Qt.UserRole, f"{entry['axis']}:{sliceIndex}")
                self.confidenceList.addItem(item)
        volumes = ", ".join(f"{e['name']} {e['volume_cm3']:.2f} cm3" for e in summary["segments"].values())
        notes = " ".join(text for text in (self.logic.framesText(summary), self.logic.notesText(summary)) if text)
        self.setStatus(f"Preview ready in {summary['run_time_s']:.1f} s on {summary['device']}: {volumes}. "
                       + (notes + " " if notes else "") + "Apply to keep it, Cancel to go back.")

    def onApply(self):
        self.job = None
        self.previewShown = False
        self.previewNode = None
        self.setStatus("Applied.")
        self.updateButtons()

    def onDiscard(self):
        status = "Preview discarded: the segment is as you painted it."
        if self.job is not None:
            # Not GetNodeByID(job.segmentationNodeId): after File > Close Scene that finds the next scene's
            # segmentation of that ID, and revert wrote the old preview's backup over its segments of the same IDs.
            segmentationNode = self.previewNode
            if segmentationNode is not None and segmentationNode.GetScene() is not None:
                self.logic.revert(self.job, segmentationNode)
            else:
                status = "The preview's segmentation is no longer in the scene (closed or deleted): nothing was changed."
        self.job = None
        self.previewShown = False
        self.previewNode = None
        self.confidenceList.clear()
        self.setStatus(status)
        self.updateButtons()

    def onConfidenceItemClicked(self, item):
        volumeNode, _, _ = self.inputs(False)
        if volumeNode is None:
            return
        axis, index = (int(v) for v in item.data(qt.Qt.UserRole).split(":"))
        r, a, s = A.sliceCenterRAS(volumeNode, axis, index)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    def onShowVolume(self):
        _, segmentationNode, _ = self.inputs(False)
        if segmentationNode is None:
            return
        import SegmentStatistics

        statsLogic = SegmentStatistics.SegmentStatisticsLogic()
        # A parameter node of its own, outside the scene: getParameterNode() gives the Segment Statistics module's
        # (ScriptedLoadableModuleLogic.getParameterNode: the scene's first node of that module), and the options
        # switched off below, and the segmentation, would have become the user's in that module.
        parameterNode = slicer.vtkMRMLScriptedModuleNode()
        statsLogic.setParameterNode(parameterNode)
        parameterNode.SetParameter("Segmentation", segmentationNode.GetID())
        parameterNode.SetParameter("ScalarVolumeSegmentStatisticsPlugin.enabled", "False")
        parameterNode.SetParameter("ClosedSurfaceSegmentStatisticsPlugin.enabled", "False")
        tableNode = None
        try:   # a slot's exception reaches only the Python console: say it where the user clicked
            with slicer.util.WaitCursor():
                # Its Labelmap plugin gives no volume for a segmentation without a binary labelmap (a model imported,
                # not yet propagated), and the closed-surface plugin is off: convert first, as segmentVolumes does.
                A.ensureLabelmap(segmentationNode)
                statsLogic.computeStatistics()
            tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentationNode.GetName()} volumes")
            statsLogic.exportToTable(tableNode)
            statsLogic.showTable(tableNode)
        except Exception as exc:
            logging.exception("Segment Statistics failed", exc_info=exc)
            if tableNode is not None and tableNode.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(tableNode)
            slicer.util.errorDisplay(f"Could not compute the volumes of '{segmentationNode.GetName()}': {exc}. "
                                     "The segmentation is unchanged. Open the Segment Statistics module to compute "
                                     "them there, and check that the segmentation has segments with voxels.")

    def _showError(self, exc):
        from ifssnet.errors import Cancelled, IFSSNetError

        if isinstance(exc, Cancelled):
            self.setStatus("Cancelled. Nothing was changed.")
            return
        if offerInstall(exc):
            self.setStatus("Installed the missing package. Click Propagate again.")
            return
        if isinstance(exc, IFSSNetError):
            slicer.util.errorDisplay(str(exc))
        else:
            logging.exception("IFSS-Net propagation failed", exc_info=exc)
            slicer.util.errorDisplay(f"Propagation failed: {exc}. Nothing was changed.")
        self.setStatus("Failed. Nothing was changed.")

    def cleanup(self):
        """Called when the effect or the module widget is destroyed (their ``cleanup``)."""
        if self.running and self.cancelToken is not None:
            self.cancelToken.cancel()
        self.timer.stop()
        self.ticket = None
        self._releaseBusyNode()
        if self.worker is not None:
            self.worker.stop()   # the thread ends after the (cancelled) job
            self.worker = None
