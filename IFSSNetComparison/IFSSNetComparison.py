"""IFSS-Net Comparison: run IFSS-Net, Fill between slices, Grow from seeds and Watershed from the same seeds.

Thin shell: the Logic (headless) is ``IFSSNetComparisonLib/logic.py``. ``prepare`` and ``publish`` run in the
main thread (MRML; under a wait cursor, well under a second on a 400 x 128 x 128 phantom), ``compute`` (the
methods and the metrics, all in the ``ifssnet`` core) runs on a worker thread. The results are a table (one row
per method and muscle), "Dice along the sweep" and "Volume error" plots, and one segmentation per method, shown
in a table + plot layout.
"""
import unittest

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.util import VTKObservationMixin
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from IFSSNetComparisonLib.logic import PROTOCOLS, IFSSNetComparisonLogic as _HeadlessLogic

LAYOUT_ID = 20231  # a layout with the table on top and the two plots below


class IFSSNetComparison(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "IFSS-Net Comparison"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["IFSSNetSegmentation"]
        self.parent.contributors = ["IFSS-Net for 3D Slicer developers"]
        self.parent.helpText = (
            "Compare IFSS-Net with Slicer's Fill between slices, Grow from seeds and Watershed on a volume that has a "
            "complete reference segmentation. Every method starts from the same seed slices; the table lists Dice, "
            "surface distances and volume error per method and muscle. "
            '<a href="https://github.com/ifssnet/SlicerIFSSNet#readme">User guide</a>.')
        self.parent.acknowledgementText = "Method: Chanti et al., IFSS-Net, IEEE TMI 2021."


@parameterNodeWrapper
class IFSSNetComparisonParameterNode:
    volume: vtkMRMLScalarVolumeNode
    seeds: vtkMRMLSegmentationNode
    reference: vtkMRMLSegmentationNode
    protocol: Annotated[str, Choice(list(PROTOCOLS))] = "seeds"
    together: bool = False
    exclusive: bool = True


class IFSSNetComparisonWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    POLL_MS = 100

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.worker = None
        self.ticket = None
        self.job = None
        self.cancelToken = None
        self.slot = None   # Slicer's one propagation slot while a comparison runs (takePropagationSlot)
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import qt

        from IFSSNetComparisonLib.logic import availableMethods, methodLabel
        from IFSSNetSegmentationLib.gui import (addCollapsibleForm, addModelAndDeviceRows, addProgressAndStatus,
                                                followSceneClose, pollTimer)

        self.logic = IFSSNetComparisonLogic()
        box, form = addCollapsibleForm(self.layout, "Inputs")

        def selector(types, name, tip):
            s = slicer.qMRMLNodeComboBox()
            s.nodeTypes = types
            s.addEnabled = False
            s.noneEnabled = name == "seeds"
            s.setMRMLScene(slicer.mrmlScene)
            s.setProperty("SlicerParameterName", name)
            s.toolTip = tip
            return s

        form.addRow("Volume:", selector(["vtkMRMLScalarVolumeNode"], "volume", "The ultrasound volume."))
        form.addRow("Seeds:", selector(["vtkMRMLSegmentationNode"], "seeds",
                                       "Segmentation with the painted seed slices (protocol 'seeds')."))
        self.referenceSelector = selector(["vtkMRMLSegmentationNode"], "reference",
                                          "The complete segmentation the methods are scored against.")
        form.addRow("Reference:", self.referenceSelector)
        # The reference's segments to compare, as the command line's --segment (none ticked: all of them). The
        # Segmentation module's multi-selection segment selector, showing the reference's segments.
        self.segmentSelector = slicer.qMRMLSegmentSelectorWidget()
        self.segmentSelector.setMRMLScene(slicer.mrmlScene)
        self.segmentSelector.segmentationNodeSelectorVisible = False
        self.segmentSelector.multiSelection = True
        self.segmentSelector.toolTip = "The reference's segments to compare. None ticked: all of them."
        form.addRow("Segments:", self.segmentSelector)
        self.referenceSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.segmentSelector.setCurrentNode)
        self.protocolCombo = qt.QComboBox()
        self.protocolCombo.addItems(list(PROTOCOLS))
        self.protocolCombo.setProperty("SlicerParameterName", "protocol")
        self.protocolCombo.toolTip = ("seeds: your painted slices. 3-seeds: 3 consecutive slices at the largest "
                                      "cross-section of the reference. paper: 3 slices every 100 (as in the paper). "
                                      "3-seeds+ends: 3-seeds, and the slice past each end of the muscle marked "
                                      "'no muscle here'.")
        form.addRow("Protocol:", self.protocolCombo)
        self.methodChecks = {}
        methodsBox = qt.QHBoxLayout()
        for name in availableMethods() or ["ifssnet", "fbs", "gfs", "ws"]:
            check = qt.QCheckBox(methodLabel(name))
            check.checked = name in ("ifssnet", "fbs", "gfs", "ws")
            self.methodChecks[name] = check
            methodsBox.addWidget(check)
        form.addRow("Methods:", methodsBox)
        # IFSS-Net's model and the learned methods' device, as the command line's --model and --device, with the
        # Propagate panel's widgets and stored settings ("Model", "Device")
        self.modelCombo, self.deviceCombo = addModelAndDeviceRows(
            form, "IFSS-Net's network (its checkpoint). Hover an entry for its model card.")
        self.deviceCombo.toolTip = ("The device of the learned methods (IFSS-Net, PG-Net, 3-D U-Net). Auto uses the "
                                    "GPU when PyTorch sees one, else the CPU.")
        self.modelCombo.connect("currentIndexChanged(int)",
                                lambda i: self._setSetting("Model", self.modelCombo.currentData or ""))
        self.deviceCombo.connect("currentIndexChanged(int)",
                                 lambda i: self._setSetting("Device", self.deviceCombo.currentData))
        self.togetherCheck = qt.QCheckBox("All muscles in one run")
        self.togetherCheck.setProperty("SlicerParameterName", "together")
        self.togetherCheck.toolTip = ("IFSS-Net and PG-Net propagate all muscles in one run, as Propagate does with "
                                      "several segments; the other methods run one muscle at a time.")
        form.addRow(self.togetherCheck)
        self.exclusiveCheck = qt.QCheckBox("Muscles do not overlap")
        self.exclusiveCheck.setProperty("SlicerParameterName", "exclusive")
        self.exclusiveCheck.toolTip = ("With all muscles in one run: a voxel two muscles claim goes to the one "
                                       "painted nearer to its slice, the more probable at equal distance "
                                       "(IFSS-Net, PG-Net; ifssnet.exclusive).")
        form.addRow(self.exclusiveCheck)
        self.inputsFrame = box

        self.compareButton = qt.QPushButton("Compare")
        self.layout.addWidget(self.compareButton)
        self.progressBar, self.statusLabel = addProgressAndStatus(self.layout)

        self.timer = pollTimer(self.POLL_MS, self._poll)
        self.compareButton.connect("clicked()", self.onCompareOrCancel)
        followSceneClose(self)
        # A comparison running when the scene closes is of the closed scene's volume and reference (the job holds
        # the nodes, which publish then refuses as removed). It is cancelled ("Cancelled. Nothing was added.").
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent,
                         lambda caller, event: self.cancelToken.cancel() if self.ticket is not None else None)
        self.setParameterNode(self.logic.getParameterNode())

    def cleanup(self):
        self.removeObservers()
        if self.cancelToken is not None:
            self.cancelToken.cancel()
        self.timer.stop()
        if self.worker is not None:   # as PropagatePanel.cleanup: the thread (and the job it holds) ends after the job
            self.worker.stop()
            self.worker = None
        self._releaseSlot()

    def _releaseSlot(self):
        from IFSSNetComparisonLib.logic import releasePropagationSlot

        releasePropagationSlot(self.slot)
        self.slot = None

    def enter(self):
        if self._parameterNode is None:   # the scene was closed while another module was shown
            self.setParameterNode(self.logic.getParameterNode())
        self.refreshModels()   # a model trained or copied meanwhile

    def setParameterNode(self, node):
        from IFSSNetSegmentationLib.gui import connectParameterNode

        connectParameterNode(self, node, self.inputsFrame)
        self.segmentSelector.setCurrentNode(node.reference if node else None)
        self.refreshModels()

    def refreshModels(self):
        """The models (shipped first) and the device, as stored in the parameter node ("Model", "Device")."""
        from IFSSNetSegmentationLib.gui import fillModelCombo
        from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic

        fillModelCombo(self.modelCombo, IFSSNetSegmentationLogic.availableModels(), self._setting("Model"))
        self.deviceCombo.blockSignals(True)
        self.deviceCombo.setCurrentIndex(max(0, self.deviceCombo.findData(self._setting("Device"))))
        self.deviceCombo.blockSignals(False)

    def _setting(self, name):
        """A stored option (the Propagate panel's key and default, ``gui.SETTINGS``), from the parameter node."""
        from IFSSNetSegmentationLib.gui import SETTINGS

        node = self._parameterNode.parameterNode if self._parameterNode else None
        return (node.GetParameter(name) if node else "") or SETTINGS[name]

    def _setSetting(self, name, value):
        if self._parameterNode:
            self._parameterNode.parameterNode.SetParameter(name, str(value))

    def _segmentNames(self, referenceNode):
        """The names of the reference's segments ticked in Segments; None (all) where none is ticked."""
        if referenceNode is None:
            return None
        segmentation = referenceNode.GetSegmentation()
        names = [segmentation.GetSegment(sid).GetName() for sid in self.segmentSelector.selectedSegmentIDs()
                 if segmentation.GetSegment(sid) is not None]
        return names or None

    def onCompareOrCancel(self):
        if self.ticket is not None:
            self.cancelToken.cancel()
            self.statusLabel.text = "Cancelling..."
            return
        from IFSSNetSegmentationLib.gui import ensureTorch
        from IFSSNetSegmentationLib.worker import BackgroundWorker

        methods = [name for name, check in self.methodChecks.items() if check.checked]
        if any(m in ("ifssnet", "pgnet", "unet3d") for m in methods) and not ensureTorch():
            return
        p = self._parameterNode
        from IFSSNetComparisonLib.logic import takePropagationSlot

        try:
            options = {m: {"exclusive": bool(p.exclusive)} for m in ("ifssnet", "pgnet") if m in methods}
            # reads MRML: main thread. 0.03-0.3 s on a 400 x 128 x 128 phantom, 3 segments (with painted seeds: 0.3 s;
            # benchmarks/results/comparison-main-thread-s1000.txt): a wait cursor, no worker
            with slicer.util.WaitCursor():
                self.job = self.logic.prepare(p.volume, p.seeds, p.reference, methods, p.protocol,
                                              joint=p.together, methodOptions=options,
                                              segmentNames=self._segmentNames(p.reference),
                                              model=self.modelCombo.currentData or None,
                                              device=self.deviceCombo.currentData)
            self.slot = takePropagationSlot(p.reference)   # no Propagate (module page, effect) while it runs
        except Exception as exc:
            self.job = None
            slicer.util.errorDisplay(str(exc))
            return
        try:
            if self.worker is None:
                self.worker = BackgroundWorker()
            self.ticket, self.cancelToken = self.worker.startJob(self.logic.compute, self.job)
        except Exception as exc:
            self._releaseSlot()
            self.job = None
            slicer.util.errorDisplay(str(exc))
            return
        self.compareButton.text = "Cancel"
        self.progressBar.setRange(0, 0)
        self.progressBar.setFormat("preparing")
        self.progressBar.visible = True
        self.timer.start()

    def _poll(self):
        from IFSSNetSegmentationLib.logic import progressText

        latest = self.worker.latestProgress()
        if latest:
            stage, done, total = latest
            self.progressBar.setRange(0, max(total, 1))
            self.progressBar.setValue(min(done, max(total, 1)))
            self.progressBar.setFormat(progressText(stage, done, total))
        for ticket, result, error in self.worker.poll():
            if ticket != self.ticket:
                continue
            self.timer.stop()
            self.ticket = None
            self._releaseSlot()   # compute is over: publish only writes nodes, in this (main) thread
            job, self.job = self.job, None   # the volume, the references and the masks: not kept after the run
            self.compareButton.text = "Compare"
            self.progressBar.visible = False
            if error is not None:
                from ifssnet.errors import Cancelled

                from IFSSNetSegmentationLib.gui import offerInstall

                self.statusLabel.text = "Cancelled. Nothing was added." if isinstance(error, Cancelled) else f"Failed: {error}"
                if not isinstance(error, Cancelled) and not offerInstall(error):
                    slicer.util.errorDisplay(str(error))
                return
            if self.cancelToken is not None and self.cancelToken.is_set():   # Cancel clicked as compute finished
                self.statusLabel.text = "Cancelled. Nothing was added."
                return
            try:
                # writes MRML nodes: main thread. 0.2 s per method for 3 segments of 400 x 128 x 128 (same file)
                with slicer.util.WaitCursor():
                    table = self.logic.publish(job)
            except Exception as exc:
                slicer.util.errorDisplay(str(exc))
                return
            self.showResults(table)

    def showResults(self, table):
        layoutXml = """
        <layout type="vertical" split="true">
          <item><view class="vtkMRMLTableViewNode" singletontag="IFSSNetTable"><property name="viewlabel" action="default">T</property></view></item>
          <item><layout type="horizontal" split="true">
            <item><view class="vtkMRMLPlotViewNode" singletontag="IFSSNetPlot1"><property name="viewlabel" action="default">P1</property></view></item>
            <item><view class="vtkMRMLPlotViewNode" singletontag="IFSSNetPlot2"><property name="viewlabel" action="default">P2</property></view></item>
          </layout></item>
        </layout>"""
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        if not layoutNode.IsLayoutDescription(LAYOUT_ID):
            layoutNode.AddLayoutDescription(LAYOUT_ID, layoutXml)
        layoutManager.setLayout(LAYOUT_ID)
        # This layout's own view nodes, found by their singleton tags (the layout logic makes them as the layout is
        # set). Not tableWidget(0) / plotWidget(i): those index every view the layout manager has made, of any layout,
        # in the order of their view nodes (qMRMLLayoutViewFactory::viewWidget(int)), so with the table view of
        # Segment Statistics or the plot view of the Training loss the results went to views not shown. Through the
        # view node, not the Qt view: qMRMLTableView shows its view node's table again on each of the node's
        # Modified events (qMRMLTableViewPrivate::updateWidgetFromViewNode). The Logic also takes these views out of
        # Slicer's table and chart selection, which Show volume and the Training loss plot propagate to every view.
        self.logic.showInResultViews(table, [self.logic.lastResult["diceChart"], self.logic.lastResult["volumeChart"]])
        notes = " ".join(self.logic.lastResult.get("notes", ()))   # seeds read otherwise than painted, as Propagate says
        self.statusLabel.text = (f"{table.GetNumberOfRows()} rows; one segmentation per method was added to the scene."
                                 + (" " + notes if notes else ""))


class IFSSNetComparisonLogic(ScriptedLoadableModuleLogic, _HeadlessLogic):
    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        _HeadlessLogic.__init__(self)

    def getParameterNode(self):
        return IFSSNetComparisonParameterNode(super().getParameterNode())


class IFSSNetComparisonTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: FBS and (when available) IFSS-Net on a phantom with 3 painted slices; checks the table."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CompareOnPhantom()
        self.setUp()
        self.test_SegmentsModelDeviceAndResultViews()

    def test_CompareOnPhantom(self):
        import numpy as np

        from ifssnet.compare import COLUMNS
        from ifssnet.phantom import make_phantom

        from IFSSNetSegmentationLib import logic as L
        from IFSSNetSegmentationLib import mrml_arrays as A

        phantom = make_phantom(seed=3, shape=(96, 128, 128))
        sz, sy, sx = phantom.spacing_kji
        volumeNode = slicer.util.addVolumeFromArray(phantom.volume, np.diag([-sx, -sy, sz, 1.0]), "Phantom")
        reference = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Reference")
        reference.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        sid = reference.GetSegmentation().AddEmptySegment("", "GM")
        A.writeSegment(reference, sid, phantom.labels["GM"], A.referenceGeometry(volumeNode, reference))
        # 3 painted slices along the muscle, at 10, 50 and 90 % of its length (Fill between slices fills between them
        # only: 3 consecutive slices, as the protocol '3-seeds' cuts, would leave it nothing to fill)
        present = np.flatnonzero(phantom.labels["GM"].any(axis=(1, 2)))
        painted = np.zeros_like(phantom.labels["GM"])
        for k in {int(present[int(f * (len(present) - 1))]) for f in (0.1, 0.5, 0.9)}:
            painted[k] = phantom.labels["GM"][k]
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
        seeds.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        A.writeSegment(seeds, seeds.GetSegmentation().AddEmptySegment("", "GM"), painted,
                       A.referenceGeometry(volumeNode, seeds))
        from ifssnet.errors import DependencyError

        methods = ["fbs"] + (["ifssnet"] if L.IFSSNetSegmentationLogic.torchAvailable() else [])
        try:
            table = IFSSNetComparisonLogic().compare(volumeNode, seeds, reference, methods, "seeds")
        except DependencyError as exc:
            # Fill between slices needs ITK's Python packages (itk, itk-morphologicalcontourinterpolation), which a
            # stock Slicer lacks (the module offers to install them), and a DependencyError ends the whole comparison.
            methods.remove("fbs")
            if not methods:
                raise unittest.SkipTest(f"Neither Fill between slices nor IFSS-Net (PyTorch) can run here: {exc}")
            table = IFSSNetComparisonLogic().compare(volumeNode, seeds, reference, methods, "seeds")
        self.assertEqual(table.GetNumberOfRows(), len(methods))
        for row in range(table.GetNumberOfRows()):
            self.assertGreater(float(table.GetCellText(row, COLUMNS.index("dice"))), 0.5)
        self.delayDisplay("Comparison self-test passed")

    def test_SegmentsModelDeviceAndResultViews(self):
        """The widget's Segments, Device and results views (the Logic behind them is tested headless,
        Testing/test_review43_comparison.py): the ticked segments are the ones compared, the device is kept in the
        parameter node, and the Training loss plot's chart propagation leaves the results' plot views alone."""
        import numpy as np

        from ifssnet.baselines import registry

        from IFSSNetSegmentationLib import mrml_arrays as A

        volume = np.zeros((30, 40, 40), np.int16)
        volume[5:25, 10:30, 8:20] = 100
        volume[5:25, 10:30, 20:32] = 50
        volumeNode = slicer.util.addVolumeFromArray(volume, np.diag([-1.0, -1.0, 1.5, 1.0]), "US")
        reference = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Reference")
        reference.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        geometry = A.referenceGeometry(volumeNode, reference)
        ids = {}
        for name, value in (("GM", 100), ("GL", 50)):
            ids[name] = reference.GetSegmentation().AddEmptySegment("", name)
            A.writeSegment(reference, ids[name], (volume == value).astype(np.uint8), geometry)
        widget = slicer.util.getModuleWidget("IFSSNetComparison")
        widget.enter()   # the parameter node of this scene (setUp cleared the scene)
        widget._parameterNode.reference = reference
        widget.segmentSelector.setSelectedSegmentIDs([ids["GL"]])
        self.assertEqual(widget._segmentNames(reference), ["GL"])
        widget.deviceCombo.setCurrentIndex(widget.deviceCombo.findData("cpu"))
        widget.deviceCombo.blockSignals(True)
        widget.deviceCombo.setCurrentIndex(0)
        widget.deviceCombo.blockSignals(False)
        widget.refreshModels()
        self.assertEqual(widget.deviceCombo.currentData, "cpu")

        def nearestSeedSlice(volume, seeds, spacing_kji, *, progress=None, cancel=None):
            out = np.zeros(volume.shape, np.uint8)
            for k in range(min(seeds.slices), max(seeds.slices) + 1):
                out[k] = seeds.mask[min(seeds.slices, key=lambda s: abs(s - k))]
            return out

        registry.register("selftest-nearest", nearestSeedSlice, "Nearest seed slice")
        try:
            table = widget.logic.compare(volumeNode, None, reference, ["selftest-nearest"], "3-seeds",
                                         segmentNames=widget._segmentNames(reference))
        finally:
            registry.unregister("selftest-nearest")
        self.assertEqual(table.GetNumberOfRows(), 1)
        widget.showResults(table)
        loss = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Training loss")
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetActivePlotChartID(loss.GetID())
        slicer.app.applicationLogic().PropagatePlotChartSelection()   # as the Training module shows its loss
        plotView = slicer.mrmlScene.GetSingletonNode("IFSSNetPlot1", "vtkMRMLPlotViewNode")
        self.assertEqual(plotView.GetPlotChartNodeID(), widget.logic.lastResult["diceChart"].GetID())
        self.delayDisplay("Segments, device and the results views passed")


if __name__ == "__main__":
    unittest.main()
