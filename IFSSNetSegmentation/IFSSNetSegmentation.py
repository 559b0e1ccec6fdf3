"""IFSS-Net Segmentation: paint a muscle on 3 slices of a 3-D ultrasound volume, propagate it through the volume.

Thin shell: the Widget and the parameter node live here; the Logic (headless, MRML <-> numpy around the
``ifssnet`` core) lives in ``IFSSNetSegmentationLib/logic.py``; the Segment Editor effect "IFSS-Net" in
``IFSSNetSegmentationLib/SegmentEditorEffect.py`` is registered at start-up.
"""
import os
import unittest

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from IFSSNetSegmentationLib.logic import IFSSNetSegmentationLogic as _HeadlessLogic


class IFSSNetSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "IFSS-Net Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SegmentStatistics"]
        self.parent.contributors = ["IFSS-Net for 3D Slicer developers"]
        from IFSSNetSegmentationLib.gui import HELP_TEXT

        self.parent.helpText = HELP_TEXT
        self.parent.acknowledgementText = (
            "IFSS-Net: Interactive Few-Shot Siamese Network for faster muscle segmentation and propagation in "
            "volumetric ultrasound (Chanti et al., IEEE TMI 2021). This extension is an independent implementation.")
        slicer.app.connect("startupCompleted()", registerEditorEffect)


def registerEditorEffect():
    """Register the "IFSS-Net" Segment Editor effect (as SegmentEditorExtraEffects does)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

    import IFSSNetSegmentationLib
    from IFSSNetSegmentationLib.SegmentEditorEffect import SegmentEditorEffect

    # qSlicerSegmentEditorScriptedEffect::setPythonSource(<dir>/<Name>.py) instantiates the class <Name> (the file's
    # base name, "Effect" appended if missing) found on the module named <dir>, i.e. this package, which the module
    # has already imported. Export the class there, as SegmentEditorEffects/__init__.py does for Slicer's effects.
    IFSSNetSegmentationLib.SegmentEditorEffect = SegmentEditorEffect
    instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
    effectFilename = os.path.join(os.path.dirname(__file__), "IFSSNetSegmentationLib", "SegmentEditorEffect.py")
    instance.setPythonSource(effectFilename.replace("\\", "/"))
    instance.self().register()


@parameterNodeWrapper
class IFSSNetSegmentationParameterNode:
    """volume: the ultrasound volume; segmentation: holds the painted slices; options as in the effect."""

    volume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


class IFSSNetSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import ctk
        import qt

        from IFSSNetSegmentationLib.gui import PropagatePanel, addCollapsibleForm, followSceneClose

        self.logic = IFSSNetSegmentationLogic()
        inputs, form = addCollapsibleForm(self.layout, "Inputs")

        self.volumeSelector = slicer.qMRMLNodeComboBox()
        self.volumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.volumeSelector.addEnabled = False
        self.volumeSelector.removeEnabled = False
        self.volumeSelector.setMRMLScene(slicer.mrmlScene)
        self.volumeSelector.setProperty("SlicerParameterName", "volume")
        form.addRow("Volume:", self.volumeSelector)

        self.segmentSelector = slicer.qMRMLSegmentSelectorWidget()
        self.segmentSelector.setMRMLScene(slicer.mrmlScene)
        self.segmentSelector.multiSelection = True
        self.segmentSelector.noneEnabled = False
        form.addRow("Segments:", self.segmentSelector)
        self.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onSegmentationChanged)

        hint = qt.QLabel("Paint at least 3 slices of each segment in the Segment Editor first.")
        hint.wordWrap = True
        form.addRow(hint)
        self.inputsFrame = inputs

        run = ctk.ctkCollapsibleButton()
        run.text = "Propagate"
        self.layout.addWidget(run)
        runLayout = qt.QVBoxLayout(run)
        self.panel = PropagatePanel(runLayout, self._inputs, saveUndo=self._saveUndo, settings=self._setting,
                                    setSetting=self._setSetting)
        self.volumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.panel.updateEstimate())

        self.volumeTableButton = qt.QPushButton("Volume table (this module)")
        self.volumeTableButton.toolTip = "voxel count, mm3 and cm3 of every segment, computed like Segment Statistics."
        self.layout.addWidget(self.volumeTableButton)
        self.volumeTableButton.connect("clicked()", self.onVolumeTable)
        self.layout.addStretch(1)

        followSceneClose(self, self.initializeParameterNode)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        if self.panel:
            self.panel.cleanup()

    def enter(self):
        self.initializeParameterNode()
        if self.panel:
            self.panel.refreshModels()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.volume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.volume = first
        if not self._parameterNode.segmentation:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if first:
                self._parameterNode.segmentation = first
        if self._parameterNode.segmentation:
            self.segmentSelector.setCurrentNode(self._parameterNode.segmentation)

    def setParameterNode(self, inputParameterNode):
        from IFSSNetSegmentationLib.gui import connectParameterNode

        connectParameterNode(self, inputParameterNode, self.inputsFrame)

    def _onSegmentationChanged(self, node):
        if self._parameterNode and node is not self._parameterNode.segmentation:
            self._parameterNode.segmentation = node

    # ---- panel callbacks -----------------------------------------------------------------------

    def _inputs(self, allVisible):
        volumeNode = self.volumeSelector.currentNode()
        segmentationNode = self.segmentSelector.currentNode()
        if segmentationNode is None:
            return volumeNode, None, []
        if allVisible:
            display = segmentationNode.GetDisplayNode()
            ids = [sid for sid in segmentationNode.GetSegmentation().GetSegmentIDs()
                   if display is None or display.GetSegmentVisibility(sid)]
        else:
            ids = list(self.segmentSelector.selectedSegmentIDs()) or None
        return volumeNode, segmentationNode, ids

    def _saveUndo(self, segmentationNode):
        # Not slicer.mrmlScene.SaveStateForUndo(): the scene's undo is off in Slicer (vtkMRMLScene::SaveStateForUndo
        # returns at once unless UndoFlag is set), so that saved nothing. A segmentation's undo is the Segment
        # Editor's history: save there when the editor edits this segmentation, so its Undo takes the result back.
        # segmentationNode: the node about to be written (the run's), not the selector's, which may have changed.
        if segmentationNode is None:
            return
        try:
            editor = slicer.util.getModuleWidget("SegmentEditor").editor
        except Exception:  # no Segment Editor module (a custom application)
            return
        if editor is not None and editor.segmentationNodeID() == segmentationNode.GetID():
            editor.saveStateForUndo()

    def _setting(self, name, default):
        node = self.logic.getParameterNode().parameterNode
        value = node.GetParameter(name)
        return value if value else default

    def _setSetting(self, name, value):
        self.logic.getParameterNode().parameterNode.SetParameter(name, str(value))

    def onVolumeTable(self):
        segmentationNode = self.segmentSelector.currentNode()
        if segmentationNode is None:
            return
        volumes = self.logic.segmentVolumes(segmentationNode)
        tableNode = self.logic.volumeTable(volumes, f"{segmentationNode.GetName()} volumes")
        # a layout with a table view: the one shown where it has one, else Four-Up with a table (the Tables logic's
        # rule, as Segment Statistics' showTable); the propagation leaves alone the views that opt out (the Comparison's)
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        selectionNode = slicer.app.applicationLogic().GetSelectionNode()
        selectionNode.SetActiveTableID(tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


class IFSSNetSegmentationLogic(ScriptedLoadableModuleLogic, _HeadlessLogic):
    """The headless Logic (``IFSSNetSegmentationLib.logic``) with Slicer's parameter node."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        _HeadlessLogic.__init__(self)

    def getParameterNode(self):
        return IFSSNetSegmentationParameterNode(super().getParameterNode())


class IFSSNetSegmentationTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: a small phantom, 3 painted slices of GM, Propagate, Dice and volume."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PaintThreeSlicesAndPropagate()
        self.setUp()
        self.test_NoMuscleHereButton()
        self.setUp()
        self.test_SegmentsDoNotOverlapCheckbox()

    def test_PaintThreeSlicesAndPropagate(self):
        import numpy as np

        from ifssnet.metrics import evaluate
        from ifssnet.phantom import make_phantom

        from IFSSNetSegmentationLib import logic as L
        from IFSSNetSegmentationLib import mrml_arrays as A

        self.delayDisplay("Making a small phantom")
        phantom = make_phantom(seed=1, shape=(96, 128, 128))
        sz, sy, sx = phantom.spacing_kji
        volumeNode = slicer.util.addVolumeFromArray(phantom.volume, np.diag([-sx, -sy, sz, 1.0]), "Phantom")
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
        segNode.CreateDefaultDisplayNodes()
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        truth = phantom.labels["GM"]
        area = truth.reshape(truth.shape[0], -1).sum(axis=1)
        present = np.flatnonzero(area)
        seeds = [int(present[len(present) // 4]), int(present[len(present) // 2]), int(present[3 * len(present) // 4])]
        painted = np.zeros_like(truth)
        painted[seeds] = truth[seeds]
        sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
        A.writeSegment(segNode, sid, painted, A.referenceGeometry(volumeNode, segNode))

        method = "ifssnet" if (L.IFSSNetSegmentationLogic.torchAvailable()
                               and any(m["source"] == "shipped" for m in L.IFSSNetSegmentationLogic.availableModels())) else "fbs"
        if method == "ifssnet":  # the page shows the expected time for the loaded volume before the run
            widget = slicer.util.getModuleWidget("IFSSNetSegmentation")
            widget.volumeSelector.setCurrentNode(volumeNode)
            widget.panel.updateEstimate()
            self.assertIn("at most", widget.panel.estimateLabel.text)
        self.delayDisplay(f"Propagating with {method}")
        from ifssnet.errors import DependencyError

        try:
            result = IFSSNetSegmentationLogic().propagate(volumeNode, segNode, [sid], method=method)
        except DependencyError as exc:
            # Fill between slices imports ITK's Python packages when it runs (registry.get finds it without them);
            # a stock Slicer, where PyTorch comes on the first Propagate, has neither: nothing to test here.
            raise unittest.SkipTest(f"Neither the shipped model with PyTorch nor Fill between slices can run: {exc}")
        out = A.segmentToArray(segNode, sid, A.referenceGeometry(volumeNode, segNode))
        for s in seeds:
            self.assertTrue(np.array_equal(out[s], truth[s]), "painted slices must stay as painted")
        lo, hi = seeds[0], seeds[-1]
        metrics = evaluate(out[lo:hi + 1], truth[lo:hi + 1], phantom.spacing_kji)
        self.assertGreater(metrics["dice"], 0.8)
        vols = IFSSNetSegmentationLogic().segmentVolumes(segNode)[sid]
        self.assertEqual(result["segments"][sid]["voxel_count"], vols["voxel_count"])
        self.assertAlmostEqual(vols["volume_mm3"], out.sum() * sx * sy * sz, places=3)
        self.delayDisplay(f"Dice {metrics['dice']:.3f}, volume {vols['volume_cm3']:.2f} cm3")

    def test_NoMuscleHereButton(self):
        """The button marks the slice the axial view shows; the Logic behind it is tested headless."""
        import numpy as np

        from ifssnet.io import ANNOTATED_TAG, AnnotatedSlices
        from IFSSNetSegmentationLib import logic as L
        from IFSSNetSegmentationLib import mrml_arrays as A

        volume = np.zeros((40, 48, 48), np.uint8)
        volumeNode = slicer.util.addVolumeFromArray(volume, np.diag([-1.0, -1.0, 1.5, 1.0]), "US")
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
        segNode.CreateDefaultDisplayNodes()
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        painted = np.zeros_like(volume)
        painted[[18, 20, 22], 10:30, 12:34] = 1
        sid = segNode.GetSegmentation().AddEmptySegment("", "GM")
        A.writeSegment(segNode, sid, painted, A.referenceGeometry(volumeNode, segNode))
        widget = slicer.util.getModuleWidget("IFSSNetSegmentation")
        widget.volumeSelector.setCurrentNode(volumeNode)
        widget.segmentSelector.setCurrentNode(segNode)
        widget.segmentSelector.setSelectedSegmentIDs([sid])
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        r, a, s = A.sliceCenterRAS(volumeNode, 0, 33)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        widget.panel.noMuscleButton.click()
        tag = L.segmentTag(segNode.GetSegmentation().GetSegment(sid), ANNOTATED_TAG)
        self.assertEqual(AnnotatedSlices.from_tag(tag), AnnotatedSlices(0, (18, 20, 22, 33)))
        self.delayDisplay("Slice 33 marked 'no muscle here'")

    def test_SegmentsDoNotOverlapCheckbox(self):
        """The checkbox is stored with the other options and read back; the Logic's ``exclusive`` is
        tested headless (Testing/test_slicer_*.py)."""
        widget = slicer.util.getModuleWidget("IFSSNetSegmentation")
        panel = widget.panel
        for on in (True, False):
            panel.exclusiveCheck.checked = not on   # toggled(bool) is emitted only on a change: the box starts
            panel.exclusiveCheck.checked = on       # checked, and setUp's new scene has no "Exclusive" stored
            self.assertEqual(panel.settings("Exclusive", ""), "1" if on else "0")
            panel.exclusiveCheck.blockSignals(True)
            panel.exclusiveCheck.checked = not on
            panel.exclusiveCheck.blockSignals(False)
            panel.updateFromSettings()
            self.assertEqual(panel.exclusiveCheck.checked, on)
        self.delayDisplay("'Segments do not overlap' is kept with the options")


if __name__ == "__main__":
    unittest.main()
